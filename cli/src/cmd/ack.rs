//! `zhiban ack ALERT_ID` — acknowledges an alert on the server (D23): its repeats and
//! escalation stop; a roll-call's alert is answered (D16). An alert already acknowledged or
//! ended is left as it is, and said so.

use clap::Args;
use serde_json::Value;

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
        context.out.emit(&answer, render(&self.id, &answer))?;
        Ok(EXIT_OK)
    }
}

fn render(id: &str, answer: &Value) -> String {
    let time = |key: &str| answer[key].as_i64().map_or_else(|| "?".into(), local_time);
    if answer["status"] == "answered" {
        return format!("answered roll-call {}", answer["id"].as_str().unwrap_or(id));
    }
    if answer["already"] != true {
        return format!("acknowledged {id}");
    }
    if !answer["acknowledged_at"].is_null() {
        let by = answer["acknowledged_by"].as_str().unwrap_or("somebody");
        return format!(
            "{id} was already acknowledged by {by} at {}",
            time("acknowledged_at")
        );
    }
    let resolution = answer["resolution"].as_str().unwrap_or("resolved");
    format!(
        "{id} had already ended ({resolution}) at {}",
        time("resolved_at")
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_second_acknowledgement_says_who_was_first() {
        assert_eq!(
            render(
                "a1",
                &json!({"id": "a1", "already": false, "acknowledged_by": "u1"})
            ),
            "acknowledged a1"
        );
        let again = render(
            "a1",
            &json!({"id": "a1", "already": true, "acknowledged_at": 0, "acknowledged_by": "u1"}),
        );
        assert!(
            again.starts_with("a1 was already acknowledged by u1 at "),
            "{again}"
        );
        let ended = render(
            "a1",
            &json!({"id": "a1", "already": true, "acknowledged_at": null,
                    "resolved_at": 0, "resolution": "regraded"}),
        );
        assert!(
            ended.starts_with("a1 had already ended (regraded) at "),
            "{ended}"
        );
    }
}
