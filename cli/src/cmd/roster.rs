//! `zhiban roster ID` — a roster from this device's store, like `zhiban show`; as text, its
//! shifts and requests numbered from 1, as `zhiban swap` and `zhiban decide` take them.

use std::fmt::Write as _;

use clap::Args;
use serde_json::{Value, json};
use zhiban_client_core::DocumentId;
use zhiban_records::Shift;

use super::{describe_shift, explain, person, record_of_kind};
use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct Roster {
    /// The roster's id, bare or as an `automerge:` URL.
    id: DocumentId,
}

impl Roster {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        let document = record_of_kind(&device, &self.id, "roster").await?;
        let status = device.status(&self.id).await.map_err(explain)?;
        context.out.emit(
            &json!({ "id": self.id, "status": status, "document": document }),
            render(&document),
        )?;
        Ok(EXIT_OK)
    }
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

fn render(roster: &Value) -> String {
    let mut human = String::new();
    let _ = write!(human, "{}", text(roster, "title").unwrap_or("roster"));
    if roster["holiday"] == true {
        human.push_str(" (holiday)");
    }
    let shifts = roster["shifts"].as_array().map_or(&[][..], Vec::as_slice);
    if shifts.is_empty() {
        human.push_str("\nno shifts");
    }
    for (number, shift) in (1..).zip(shifts) {
        // Read as the server reads it: a field that does not fit shows as missing, and the
        // shift keeps its number.
        let shift: Shift =
            zhiban_records::read::lenient(shift.clone(), "", &mut Vec::new()).unwrap_or_default();
        human.push('\n');
        describe_shift(&mut human, &format!("shift {number}:"), &shift, "  ");
    }
    for (number, request) in (1..).zip(roster["requests"].as_array().into_iter().flatten()) {
        let shift = request["shift"]
            .as_u64()
            .map_or_else(|| "?".into(), |shift| (shift + 1).to_string());
        let _ = write!(
            human,
            "\nrequest {number}: {} of shift {shift} by {}, substitute {}, reason: {} — {}",
            text(request, "kind").unwrap_or("swap"),
            text(request, "requester").unwrap_or("?"),
            person(&request["substitute"]),
            text(request, "reason").unwrap_or("-"),
            text(request, "status").unwrap_or("pending"),
        );
    }
    human
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_and_requests_are_numbered_from_one() {
        let roster = json!({
            "type": "roster", "title": "元旦值班表", "holiday": true,
            "shifts": [{"start": 0, "end": 1, "kind": "holiday",
                        "leader": {"name": "李局长", "phone": "13800000001"},
                        "officers": [{"name": "安娜"}]}],
            "requests": [{"kind": "leave", "shift": 0, "requester": "u1",
                          "substitute": {"name": "赵"}, "reason": "ill", "status": "pending"}],
        });
        let human = render(&roster);
        assert!(
            human.starts_with("元旦值班表 (holiday)\nshift 1: "),
            "{human}"
        );
        assert!(human.contains("  leader: 李局长 (13800000001)"), "{human}");
        assert!(human.contains("  officers: 安娜"), "{human}");
        assert!(
            human.contains(
                "request 1: leave of shift 1 by u1, substitute 赵, reason: ill — pending"
            ),
            "{human}"
        );
    }
}
