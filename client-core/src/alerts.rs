//! The user's alerts and roll-calls (D16, D23), from the server: the inbox of alerts that
//! reached this user, acknowledging one, and the roll-calls a superior office calls on a
//! unit's duty post and the post answers. Unlike the documents of `duty`, these live on the
//! server only, so every method here needs a network; the device keeps no copy.

use zhiban_api::{
    Acknowledged, AlertList, RollcallAnswered, RollcallCalled, RollcallList, RollcallRequest,
};

use crate::{Device, Error};

/// The body of a POST whose path says everything: `{}`, which the server reads as no fields.
#[derive(serde::Serialize)]
struct Empty {}

impl Device {
    /// The alerts that reached this user, newest first (at most 50): the open ones only
    /// (neither acknowledged nor resolved) when `open_only`.
    pub async fn alerts(&self, open_only: bool) -> Result<AlertList, Error> {
        let path = if open_only {
            "/api/alerts?mine=true&open=true"
        } else {
            "/api/alerts?mine=true"
        };
        self.inner.session.api_get(path).await
    }

    /// Acknowledges an alert, which stops its repeats and escalation. Acknowledging one
    /// already acknowledged (or resolved) changes nothing and answers `already: true`.
    /// Acknowledging a roll-call's alert answers the roll-call: the answer then carries it in
    /// `rollcall` (see also [`Device::answer_rollcall`]).
    pub async fn acknowledge(&self, alert_id: &str) -> Result<Acknowledged, Error> {
        let alert_id = segment(alert_id, "an alert")?;
        self.inner
            .session
            .api_post(&format!("/api/alerts/{alert_id}/ack"), &Empty {})
            .await
    }

    /// Answers a roll-call on the user's unit within its window; the server keeps the
    /// delay (`delay_ms`).
    pub async fn answer_rollcall(&self, rollcall_id: &str) -> Result<RollcallAnswered, Error> {
        let rollcall_id = segment(rollcall_id, "a roll-call")?;
        self.inner
            .session
            .api_post(&format!("/api/rollcalls/{rollcall_id}/answer"), &Empty {})
            .await
    }

    /// The roll-calls of `unit` (default: the user's), newest first, with their status and
    /// how long the answer took.
    pub async fn rollcalls(&self, unit: Option<&str>) -> Result<RollcallList, Error> {
        let path = match unit {
            Some(unit) => format!("/api/rollcalls?unit={}", encode(unit)),
            None => "/api/rollcalls".to_owned(),
        };
        self.inner.session.api_get(&path).await
    }

    /// Calls a roll-call on a unit below the user's (superior offices only): its duty post
    /// has `window_secs` (30 to 3600; the server's default is 5 minutes) to answer. The
    /// answer names the roll-call, its alert and when the answer is due.
    pub async fn call_rollcall(
        &self,
        unit_id: &str,
        window_secs: Option<i64>,
    ) -> Result<RollcallCalled, Error> {
        if unit_id.trim().is_empty() {
            return Err(Error::Invalid("a roll-call needs a unit".into()));
        }
        let body = RollcallRequest {
            unit_id: unit_id.into(),
            window_secs,
        };
        self.inner.session.api_post("/api/rollcalls", &body).await
    }
}

/// An id as one path segment, refused if blank (it would name another route).
fn segment(id: &str, what: &str) -> Result<String, Error> {
    if id.trim().is_empty() {
        return Err(Error::Invalid(format!("{what} id cannot be empty")));
    }
    Ok(encode(id))
}

/// Percent-encodes everything but the unreserved characters of RFC 3986, so a value is safe
/// both as a path segment and in a query.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(byte).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_path_segment() {
        assert_eq!(
            encode("0191e5c4-7d1a-7c3e-9f00-1a2b3c4d5e6f"),
            "0191e5c4-7d1a-7c3e-9f00-1a2b3c4d5e6f"
        );
        assert_eq!(encode("a/b?c=d"), "a%2Fb%3Fc%3Dd");
        assert_eq!(encode("镇"), "%E9%95%87");
        assert!(matches!(segment(" ", "an alert"), Err(Error::Invalid(_))));
    }
}
