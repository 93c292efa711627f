//! `zhiban alerts [--all]` — the alerts that reached this user, from the server (D23): the
//! open ones (neither acknowledged nor resolved) unless `--all`. `zhiban ack` stops one;
//! a roll-call is answered with `zhiban rollcall answer`.

use clap::Args;
use serde_json::Value;

use super::{explain_online, local_time};
use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct Alerts {
    /// Also the alerts already acknowledged or resolved (the latest 50).
    #[arg(long)]
    all: bool,
}

impl Alerts {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        let answer = device
            .alerts(!self.all)
            .await
            .map_err(|error| explain_online(error, "listing alerts"))?;
        context.out.emit(&answer, render(&answer, self.all))?;
        Ok(EXIT_OK)
    }
}

/// One line per alert: `ID  KIND  GRADE  TITLE  [STATUS]`.
fn render(answer: &Value, all: bool) -> String {
    let alerts = answer["alerts"].as_array().map_or(&[][..], Vec::as_slice);
    if alerts.is_empty() {
        return if all { "no alerts" } else { "no open alerts" }.into();
    }
    alerts
        .iter()
        .map(|alert| {
            format!(
                "{}  {}  {}  {}  [{}]",
                alert["id"].as_str().unwrap_or("?"),
                alert["kind"].as_str().unwrap_or("?"),
                alert["grade"].as_str().unwrap_or("-"),
                alert["title"].as_str().unwrap_or("-"),
                state(alert)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where an alert stands: open (and when it is due), acknowledged, or how it ended.
fn state(alert: &Value) -> String {
    let time = |key: &str| alert[key].as_i64().map(local_time);
    if let Some(at) = time("acknowledged_at") {
        let by = alert["acknowledged_by"].as_str().unwrap_or("somebody");
        return format!("acknowledged by {by} at {at}");
    }
    if let Some(at) = time("resolved_at") {
        let resolution = alert["resolution"].as_str().unwrap_or("resolved");
        return format!("{resolution} at {at}");
    }
    match time("due_at") {
        Some(due) => format!("open, due {due}"),
        None => "open".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_alert_reads_as_one_line_with_its_state() {
        assert_eq!(render(&json!({"alerts": []}), false), "no open alerts");
        assert_eq!(render(&json!({"alerts": []}), true), "no alerts");
        let human = render(
            &json!({"alerts": [
                {"id": "a1", "kind": "incident", "grade": "red", "title": "追尾 G4",
                 "acknowledged_at": null, "resolved_at": null, "due_at": null},
                {"id": "a2", "kind": "rollcall", "grade": null, "title": "Roll-call",
                 "acknowledged_at": null, "resolved_at": 0, "resolution": "answered"},
                {"id": "a3", "kind": "instruction", "grade": "yellow", "title": "批示",
                 "acknowledged_at": 0, "acknowledged_by": "u1"},
            ]}),
            true,
        );
        let lines: Vec<&str> = human.lines().collect();
        assert_eq!(lines[0], "a1  incident  red  追尾 G4  [open]");
        assert!(
            lines[1].starts_with("a2  rollcall  -  Roll-call  [answered at "),
            "{human}"
        );
        assert!(
            lines[2].starts_with("a3  instruction  yellow  批示  [acknowledged by u1 at "),
            "{human}"
        );
    }
}
