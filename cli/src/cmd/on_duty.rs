//! `zhiban on-duty [--unit U] [--at TIME]` — who is on duty now (or at TIME), from the server
//! (D5): the leader and the officers with their phones, after approved swaps and leaves.

use clap::Args;
use zhiban_api::{OnDuty as Answer, ShiftOnDuty};
use zhiban_records::Shift;

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
        context
            .out
            .emit(&serde_json::to_value(&answer)?, render(&answer))?;
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

fn render(answer: &Answer) -> String {
    if answer.shifts.is_empty() {
        return "nobody on duty in the roster".into();
    }
    let mut human = String::new();
    for shift in &answer.shifts {
        if !human.is_empty() {
            human.push('\n');
        }
        describe_shift(&mut human, "shift", &roster_shift(shift), "");
    }
    human
}

/// The shift as its roster holds it, which is what [`describe_shift`] reads.
fn roster_shift(shift: &ShiftOnDuty) -> Shift {
    Shift {
        start: Some(shift.start),
        end: Some(shift.end),
        kind: shift.kind.clone(),
        leader: shift.leader.clone(),
        officers: shift.officers.clone(),
        backup_leader: shift.backup_leader.clone(),
        backup_officers: shift.backup_officers.clone(),
    }
}

#[cfg(test)]
mod tests {
    use zhiban_api::{DocumentId, Person};

    use super::*;
    use crate::cmd::local_time;

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
        let answer = |shifts| Answer {
            unit_id: "u".into(),
            at: 0,
            shifts,
        };
        assert_eq!(render(&answer(Vec::new())), "nobody on duty in the roster");
        let person = |name: &str, phone: Option<&str>| Person {
            user_id: None,
            name: name.into(),
            phone: phone.map(Into::into),
        };
        let human = render(&answer(vec![ShiftOnDuty {
            roster: DocumentId::random(),
            start: 0,
            end: 1,
            kind: Some("workday".into()),
            leader: Some(person("李局长", Some("13800000001"))),
            officers: vec![person("安娜", Some("13800000002")), person("赵", None)],
            backup_leader: None,
            backup_officers: Vec::new(),
        }]));
        let lines: Vec<&str> = human.lines().collect();
        assert_eq!(lines.len(), 3, "{human}");
        assert_eq!(
            lines[0],
            format!("shift {} – {} (workday)", local_time(0), local_time(1))
        );
        assert_eq!(lines[1], "leader: 李局长 (13800000001)");
        assert_eq!(lines[2], "officers: 安娜 (13800000002), 赵");
    }
}
