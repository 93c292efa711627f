//! `zhiban ack ALERT_ID` — acknowledges an alert on the server (D23): its repeats and
//! escalation stop; a roll-call's alert is answered (D16). An alert already acknowledged or
//! ended is left as it is, and said so.

use clap::Args;
use zhiban_api::{Acknowledged, Resolution, UserId};

use super::{explain_online, local_time};
use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct Ack {
    /// The alert's id, as `zhiban alerts` shows it.
    #[arg(value_name = "ALERT_ID")]
    id: String,
}

impl Ack {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        let answer = device
            .acknowledge(&self.id)
            .await
            .map_err(|error| explain_online(error, "acknowledging an alert"))?;
        // A roll-call's alert stands for the roll-call: scripts read its `id`, `status` and
        // `delay_ms` as `zhiban rollcall answer` gives them.
        let json = match &answer.rollcall {
            Some(rollcall) => serde_json::to_value(rollcall)?,
            None => serde_json::to_value(&answer)?,
        };
        context.out.emit(&json, render(&answer))?;
        Ok(EXIT_OK)
    }
}

fn render(answer: &Acknowledged) -> String {
    let id = &answer.id;
    if let Some(rollcall) = &answer.rollcall {
        return format!("answered roll-call {}", rollcall.id);
    }
    if !answer.already {
        return format!("acknowledged {id}");
    }
    let time = |at: Option<i64>| at.map_or_else(|| "?".into(), local_time);
    if answer.acknowledged_at.is_some() {
        let by = answer
            .acknowledged_by
            .as_ref()
            .map_or("somebody", UserId::as_str);
        return format!(
            "{id} was already acknowledged by {by} at {}",
            time(answer.acknowledged_at)
        );
    }
    let resolution = answer.resolution.map_or("resolved", Resolution::as_str);
    format!(
        "{id} had already ended ({resolution}) at {}",
        time(answer.resolved_at)
    )
}

#[cfg(test)]
mod tests {
    use zhiban_api::{RollcallAnswered, RollcallStatus};

    use super::*;

    fn acknowledged(already: bool) -> Acknowledged {
        Acknowledged {
            id: "a1".into(),
            already,
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            resolution: None,
            rollcall: None,
        }
    }

    #[test]
    fn a_second_acknowledgement_says_who_was_first() {
        let first = Acknowledged {
            acknowledged_by: Some("u1".into()),
            ..acknowledged(false)
        };
        assert_eq!(render(&first), "acknowledged a1");
        let again = render(&Acknowledged {
            acknowledged_at: Some(0),
            acknowledged_by: Some("u1".into()),
            ..acknowledged(true)
        });
        assert!(
            again.starts_with("a1 was already acknowledged by u1 at "),
            "{again}"
        );
        let ended = render(&Acknowledged {
            resolved_at: Some(0),
            resolution: Some(Resolution::Regraded),
            ..acknowledged(true)
        });
        assert!(
            ended.starts_with("a1 had already ended (regraded) at "),
            "{ended}"
        );
    }

    #[test]
    fn a_rollcalls_alert_reads_as_the_rollcall_answered() {
        let answered = Acknowledged {
            resolution: Some(Resolution::Answered),
            rollcall: Some(RollcallAnswered {
                id: "r1".into(),
                status: RollcallStatus::Answered,
                answered_at: 0,
                delay_ms: 3_000,
            }),
            ..acknowledged(false)
        };
        assert_eq!(render(&answered), "answered roll-call r1");
    }
}
