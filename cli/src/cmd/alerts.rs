//! `zhiban alerts [--all]` — the alerts that reached this user, from the server (D23): the
//! open ones (neither acknowledged nor resolved) unless `--all`. `zhiban ack` stops one;
//! a roll-call is answered with `zhiban rollcall answer`.

use clap::Args;
use zhiban_api::{AlertList, AlertView, Grade, Resolution, UserId};

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
        context
            .out
            .emit(&serde_json::to_value(&answer)?, render(&answer, self.all))?;
        Ok(EXIT_OK)
    }
}

/// One line per alert: `ID  KIND  GRADE  TITLE  [STATUS]`.
fn render(answer: &AlertList, all: bool) -> String {
    if answer.alerts.is_empty() {
        return if all { "no alerts" } else { "no open alerts" }.into();
    }
    answer
        .alerts
        .iter()
        .map(|alert| {
            format!(
                "{}  {}  {}  {}  [{}]",
                alert.id,
                alert.kind.as_str(),
                alert.grade.map_or("-", Grade::as_str),
                alert.title,
                state(alert)
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where an alert stands: open (and when it is due), acknowledged, or how it ended.
fn state(alert: &AlertView) -> String {
    if let Some(at) = alert.acknowledged_at {
        let by = alert
            .acknowledged_by
            .as_ref()
            .map_or("somebody", UserId::as_str);
        return format!("acknowledged by {by} at {}", local_time(at));
    }
    if let Some(at) = alert.resolved_at {
        let resolution = alert.resolution.map_or("resolved", Resolution::as_str);
        return format!("{resolution} at {}", local_time(at));
    }
    match alert.due_at {
        Some(due) => format!("open, due {}", local_time(due)),
        None => "open".into(),
    }
}

#[cfg(test)]
mod tests {
    use zhiban_api::AlertKind;

    use super::*;

    fn alert(id: &str, kind: AlertKind, grade: Option<Grade>, title: &str) -> AlertView {
        AlertView {
            id: id.into(),
            kind,
            document_id: None,
            rollcall_id: None,
            unit_id: "unit".into(),
            classified: false,
            grade,
            title: title.into(),
            created_at: 0,
            due_at: None,
            step: 0,
            next_at: None,
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            resolution: None,
            targeted: true,
            timeline: None,
        }
    }

    #[test]
    fn each_alert_reads_as_one_line_with_its_state() {
        let none = AlertList { alerts: Vec::new() };
        assert_eq!(render(&none, false), "no open alerts");
        assert_eq!(render(&none, true), "no alerts");
        let human = render(
            &AlertList {
                alerts: vec![
                    alert("a1", AlertKind::Incident, Some(Grade::Red), "追尾 G4"),
                    AlertView {
                        resolved_at: Some(0),
                        resolution: Some(Resolution::Answered),
                        ..alert("a2", AlertKind::Rollcall, None, "Roll-call")
                    },
                    AlertView {
                        acknowledged_at: Some(0),
                        acknowledged_by: Some("u1".into()),
                        ..alert("a3", AlertKind::Instruction, Some(Grade::Yellow), "批示")
                    },
                ],
            },
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
