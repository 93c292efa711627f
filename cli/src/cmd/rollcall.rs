//! `zhiban rollcall call|answer|list` — roll-calls (D16), on the server: a superior office
//! calls a unit's duty post, which answers within the window; the delay is kept, and a call
//! left unanswered counts as missed.
//!
//! ```text
//! zhiban rollcall call UNIT_ID [--window-secs N]
//! zhiban rollcall answer ID        (the roll-call's id, or its alert's from `zhiban alerts`)
//! zhiban rollcall list [--unit UNIT_ID]
//! ```

use clap::{Args, Subcommand};
use zhiban_api::{RollcallList, RollcallStatus, UserId};

use super::{explain_online, local_time};
use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct Rollcall {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
enum Action {
    /// Call a roll-call on a unit below yours (a superior office's duty post).
    Call(Call),
    /// Answer a roll-call on your unit.
    Answer(Answer),
    /// List a unit's roll-calls, newest first, with how long each answer took.
    List(List),
}

#[derive(Args, Debug)]
struct Call {
    /// The unit whose duty post is called.
    #[arg(value_name = "UNIT_ID")]
    unit: String,
    /// How long the duty post has to answer, 30 to 3600 seconds; 5 minutes if not given.
    #[arg(long, value_name = "N")]
    window_secs: Option<i64>,
}

#[derive(Args, Debug)]
struct Answer {
    /// The roll-call's id, or the id of its alert as `zhiban alerts` shows it.
    #[arg(value_name = "ID")]
    id: String,
}

#[derive(Args, Debug)]
struct List {
    /// The unit's id; your own unit if not given.
    #[arg(long, value_name = "UNIT_ID")]
    unit: Option<String>,
}

impl Rollcall {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        let online = |error| explain_online(error, "a roll-call");
        match self.action {
            Action::Call(call) => {
                let answer = device
                    .call_rollcall(&call.unit, call.window_secs)
                    .await
                    .map_err(online)?;
                context.out.emit(
                    &serde_json::to_value(&answer)?,
                    format_args!(
                        "roll-call {} called on {}: the duty post must answer by {}",
                        answer.id,
                        call.unit,
                        local_time(answer.due_at)
                    ),
                )?;
            }
            Action::Answer(answer) => {
                let id = &answer.id;
                let answer = device.answer_rollcall(id).await.map_err(online)?;
                context.out.emit(
                    &serde_json::to_value(&answer)?,
                    format_args!("answered roll-call {id} after {}", delay(answer.delay_ms)),
                )?;
            }
            Action::List(list) => {
                let answer = device
                    .rollcalls(list.unit.as_deref())
                    .await
                    .map_err(online)?;
                context
                    .out
                    .emit(&serde_json::to_value(&answer)?, render(&answer))?;
            }
        }
        Ok(EXIT_OK)
    }
}

/// One line per roll-call: `ID  called TIME by USER  STATUS`.
fn render(answer: &RollcallList) -> String {
    if answer.rollcalls.is_empty() {
        return format!("no roll-calls for unit {}", answer.unit_id);
    }
    answer
        .rollcalls
        .iter()
        .map(|rollcall| {
            let status = match rollcall.status {
                RollcallStatus::Answered => format!(
                    "answered after {} by {}",
                    delay(rollcall.delay_ms.unwrap_or_default()),
                    rollcall.answered_by.as_ref().map_or("?", UserId::as_str)
                ),
                RollcallStatus::Open => format!(
                    "open until {}",
                    local_time(rollcall.called_at.saturating_add(rollcall.window_ms))
                ),
                RollcallStatus::Missed => "missed".into(),
            };
            format!(
                "{}  called {} by {}  {status}",
                rollcall.id,
                local_time(rollcall.called_at),
                rollcall.called_by,
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A delay as people say it: `850 ms`, `12 s`, `4 min 5 s`.
fn delay(millis: i64) -> String {
    match millis {
        ..1_000 => format!("{millis} ms"),
        1_000..60_000 => format!("{} s", millis / 1_000),
        _ => match (millis / 60_000, millis % 60_000 / 1_000) {
            (minutes, 0) => format!("{minutes} min"),
            (minutes, seconds) => format!("{minutes} min {seconds} s"),
        },
    }
}

#[cfg(test)]
mod tests {
    use zhiban_api::RollcallView;

    use super::*;

    #[test]
    fn delays_read_in_the_largest_fitting_unit() {
        assert_eq!(delay(850), "850 ms");
        assert_eq!(delay(12_400), "12 s");
        assert_eq!(delay(120_000), "2 min");
        assert_eq!(delay(245_000), "4 min 5 s");
    }

    fn rollcall(id: &str, status: RollcallStatus) -> RollcallView {
        RollcallView {
            id: id.into(),
            called_by: "d".into(),
            called_at: 0,
            window_ms: 300_000,
            status,
            answered_at: None,
            answered_by: None,
            delay_ms: None,
            alert_id: "a".into(),
        }
    }

    #[test]
    fn each_rollcall_reads_as_one_line_with_its_outcome() {
        let list = |rollcalls| RollcallList {
            unit_id: "u".into(),
            rollcalls,
        };
        assert_eq!(render(&list(Vec::new())), "no roll-calls for unit u");
        let human = render(&list(vec![
            RollcallView {
                answered_at: Some(3_000),
                answered_by: Some("a".into()),
                delay_ms: Some(3_000),
                ..rollcall("r2", RollcallStatus::Answered)
            },
            rollcall("r1", RollcallStatus::Missed),
        ]));
        let lines: Vec<&str> = human.lines().collect();
        assert!(lines[0].starts_with("r2  called "), "{human}");
        assert!(
            lines[0].ends_with(" by d  answered after 3 s by a"),
            "{human}"
        );
        assert!(lines[1].ends_with(" by d  missed"), "{human}");
    }
}
