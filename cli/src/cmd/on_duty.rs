//! `zhiban on-duty [--unit U] [--at TIME]` — who is on duty now (or at TIME), from the server
//! (D5): the leader and the officers with their phones, after approved swaps and leaves.

use clap::Args;
use serde_json::Value;

use super::{describe_shift, explain_online};
use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct OnDuty {
    /// The unit's id; the user's own unit if not given.
    #[arg(long, value_name = "UNIT_ID")]
    unit: Option<String>,
    /// The instant: RFC 3339 (`2026-11-22T21:30:00+08:00`) or milliseconds since the epoch.
    #[arg(long, value_name = "TIME", value_parser = parse_instant)]
    at: Option<i64>,
}

impl OnDuty {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        let answer = device
            .on_duty(self.unit.as_deref(), self.at)
            .await
            .map_err(|error| explain_online(error, "who is on duty"))?;
        context.out.emit(&answer, render(&answer))?;
        Ok(EXIT_OK)
    }
}

/// RFC 3339 or milliseconds since the epoch, as milliseconds.
fn parse_instant(text: &str) -> Result<i64, String> {
    if let Ok(millis) = text.parse::<i64>() {
        return Ok(millis);
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|time| time.timestamp_millis())
        .map_err(|_| {
            format!(
                "`{text}` is neither an RFC 3339 time (2026-11-22T21:30:00+08:00) nor \
                 milliseconds since the epoch"
            )
        })
}

fn render(answer: &Value) -> String {
    let shifts = answer["shifts"].as_array().map_or(&[][..], Vec::as_slice);
    if shifts.is_empty() {
        return "nobody on duty in the roster".into();
    }
    let mut human = String::new();
    for shift in shifts {
        if !human.is_empty() {
            human.push('\n');
        }
        describe_shift(&mut human, "shift", shift, "");
    }
    human
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn instants_are_rfc3339_or_milliseconds() {
        assert_eq!(parse_instant("1795348800000"), Ok(1_795_348_800_000));
        assert_eq!(
            parse_instant("2026-11-22T20:00:00+08:00"),
            Ok(1_795_348_800_000)
        );
        assert!(parse_instant("tonight").is_err());
    }

    #[test]
    fn each_shift_reads_as_leader_and_officers() {
        assert_eq!(
            render(&json!({"shifts": []})),
            "nobody on duty in the roster"
        );
        let human = render(&json!({"shifts": [{
            "start": 0, "end": 1, "kind": "workday",
            "leader": {"name": "李局长", "phone": "13800000001"},
            "officers": [{"name": "安娜", "phone": "13800000002"}, {"name": "赵"}],
            "backup_leader": null, "backup_officers": null,
        }]}));
        let lines: Vec<&str> = human.lines().collect();
        assert_eq!(lines.len(), 3, "{human}");
        assert_eq!(lines[1], "leader: 李局长 (13800000001)");
        assert_eq!(lines[2], "officers: 安娜 (13800000002), 赵");
    }
}
