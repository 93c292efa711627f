//! Who may write what (D4, D7, D10, D11–D14): the write policy, one rule per id, checked on
//! what a change actually does to a record — its value before and after — and on who wrote
//! it (the server knows the writer from the Automerge actors of the change, never from a
//! name in a field). The server refuses a change that breaks a rule as a whole;
//! `docs/write-policy.md` is the same table for people.
//!
//! Lists whose elements stay (the report chain, instructions, their steps, requests) are
//! compared as subsequences: a concurrent append from another device may land between
//! existing elements, but nothing existing may go or change, except where a rule says so.

use std::fmt;

use automerge::{ReadDoc, Value as AmValue};

use crate::handover::{Handover, Signature};
use crate::incident::{Grade, Incident, Instruction};
use crate::roster::{Roster, ShiftRequest};
use crate::{Record, RecordKind};

/// Who wrote a change, as the server knows them.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub user_id: &'a str,
    pub leader: bool,
    pub admin: bool,
    /// A member of an office above the record's unit, which may only instruct (D14).
    pub superior: bool,
}

/// A broken rule: its id (see `docs/write-policy.md`) and what the change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: &'static str,
    pub reason: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule {}: {}", self.rule, self.reason)
    }
}

fn refuse(rule: &'static str, reason: impl Into<String>) -> Result<(), Violation> {
    Err(Violation {
        rule,
        reason: reason.into(),
    })
}

/// What the policy needs of a document: its type, and the record for the types with rules
/// beyond "members of the unit" (read whole, so only those: a duty log grows all shift).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    pub kind: Option<RecordKind>,
    pub record: Option<Record>,
}

impl Seen {
    pub fn of<R: ReadDoc>(doc: &R) -> Seen {
        let kind = kind_of(doc);
        let record = kind.filter(|kind| has_rules(*kind)).and_then(|kind| {
            crate::read_record(kind, crate::json::read(doc, &automerge::ROOT)).record
        });
        Seen { kind, record }
    }
}

/// The record type a document's `type` names (a plain or a collaborative string).
pub fn kind_of<R: ReadDoc>(doc: &R) -> Option<RecordKind> {
    match doc.get(automerge::ROOT, "type").ok()?? {
        (AmValue::Scalar(value), _) => value.as_str().and_then(RecordKind::of_name),
        (AmValue::Object(automerge::ObjType::Text), id) => {
            RecordKind::of_name(&doc.text(&id).ok()?)
        }
        _ => None,
    }
}

/// Record types with rules on their fields.
pub fn has_rules(kind: RecordKind) -> bool {
    match kind {
        RecordKind::Incident | RecordKind::Roster | RecordKind::Handover => true,
        RecordKind::DutyLog | RecordKind::DailyReport | RecordKind::DocumentRegister => false,
    }
}

/// Checks one writer's change of a document from `before` to `after`.
pub fn check(before: &Seen, after: &Seen, writer: &Writer) -> Result<(), Violation> {
    if let Some(kind) = before.kind
        && after.kind != Some(kind)
    {
        return refuse("W1", format!("a {} stays a {}", kind.name(), kind.name()));
    }
    if after.kind.is_some_and(has_rules) && before.kind.is_some() && after.record.is_none() {
        return refuse("W1", "the record would no longer be readable");
    }
    if writer.superior && !matches!(after.record, Some(Record::Incident(_))) {
        return refuse("W2", "an office above the unit may only give instructions");
    }
    // A new record (or one that was not of this type) is judged against an empty one.
    match (before.record.as_ref(), after.record.as_ref()) {
        (Some(Record::Incident(before)), Some(Record::Incident(after))) => {
            incident(before, after, writer)
        }
        (_, Some(Record::Incident(after))) => incident(&Incident::default(), after, writer),
        (Some(Record::Roster(before)), Some(Record::Roster(after))) => {
            roster(before, after, writer)
        }
        (_, Some(Record::Roster(after))) => roster(&Roster::default(), after, writer),
        (Some(Record::Handover(before)), Some(Record::Handover(after))) => {
            handover(before, after, writer)
        }
        (_, Some(Record::Handover(after))) => handover(&Handover::default(), after, writer),
        _ => Ok(()),
    }
}

fn incident(before: &Incident, after: &Incident, writer: &Writer) -> Result<(), Violation> {
    if writer.superior {
        let strip = |incident: &Incident| Incident {
            instructions: Vec::new(),
            ..incident.clone()
        };
        if strip(before) != strip(after) {
            return refuse("W2", "an office above the unit may only give instructions");
        }
    }
    if before.grade == Some(Grade::Red) && after.grade != Some(Grade::Red) && !writer.leader {
        return refuse("W3", "only a leader lowers a red report's grade");
    }
    if pair(&before.reports, &after.reports, |a, b| a == b).is_none() {
        return refuse(
            "W4",
            "the report chain is append-only: correct it with a new report",
        );
    }
    instructions(&before.instructions, &after.instructions, writer)
}

fn instructions(
    before: &[Instruction],
    after: &[Instruction],
    writer: &Writer,
) -> Result<(), Violation> {
    let same = |a: &Instruction, b: &Instruction| {
        (&a.by, &a.to, a.at, &a.text) == (&b.by, &b.to, b.at, &b.text)
    };
    let pairs = pair(before, after, same).ok_or_else(|| Violation {
        rule: "W5",
        reason: "an instruction, once written, is not changed or removed".into(),
    })?;
    for (old, new) in pairs {
        match old {
            None => {
                if !writer.leader {
                    return refuse("W5", "only a leader gives instructions");
                }
                if new.by.as_deref() != Some(writer.user_id) {
                    return refuse("W5", "an instruction is given in its writer's own name");
                }
                if !new.steps.is_empty() || new.done {
                    return refuse("W6", "a new instruction has no steps yet");
                }
            }
            Some(old) if old == new => {}
            Some(old) => {
                let may = new.to.as_deref() == Some(writer.user_id)
                    || new.by.as_deref() == Some(writer.user_id)
                    || (writer.leader && !writer.superior);
                if !may {
                    return refuse(
                        "W6",
                        "only the addressee, the instruction's author or a leader of the unit records its steps",
                    );
                }
                if pair(&old.steps, &new.steps, |a, b| a == b).is_none() {
                    return refuse("W6", "an instruction's steps are append-only");
                }
            }
        }
    }
    Ok(())
}

fn roster(before: &Roster, after: &Roster, writer: &Writer) -> Result<(), Violation> {
    let plan = |roster: &Roster| Roster {
        requests: Vec::new(),
        ..roster.clone()
    };
    if plan(before) != plan(after) && !(writer.leader || writer.admin) {
        return refuse(
            "W7",
            "only the unit's leaders and admins write its shifts and holiday flags",
        );
    }
    let same = |a: &ShiftRequest, b: &ShiftRequest| {
        (&a.kind, a.shift, &a.requester, &a.substitute, &a.reason)
            == (&b.kind, b.shift, &b.requester, &b.substitute, &b.reason)
    };
    let pairs = pair(&before.requests, &after.requests, same).ok_or_else(|| Violation {
        rule: "W8",
        reason: "a swap or leave request is not changed or removed, only decided".into(),
    })?;
    for (old, new) in pairs {
        let decision = |request: &ShiftRequest| {
            (
                request.status.clone(),
                request.decided_by.clone(),
                request.decided_at,
            )
        };
        match old {
            None => {
                if new.requester != writer.user_id {
                    return refuse("W8", "a request is made by its requester");
                }
                if decision(new) != ("pending".into(), None, None) {
                    return refuse("W8", "a new request is pending");
                }
            }
            Some(old) if decision(old) == decision(new) => {}
            Some(old) => {
                if old.status != "pending" {
                    return refuse("W9", "a decided request stays as decided");
                }
                if !writer.leader {
                    return refuse("W9", "only a leader of the unit decides a request");
                }
                if new.decided_by.as_deref() != Some(writer.user_id) {
                    return refuse("W9", "a request is decided in the leader's own name");
                }
            }
        }
    }
    Ok(())
}

fn handover(before: &Handover, after: &Handover, writer: &Writer) -> Result<(), Violation> {
    let sides = [
        (&before.signatures.outgoing, &after.signatures.outgoing),
        (&before.signatures.incoming, &after.signatures.incoming),
    ];
    let mut signed = false;
    for (old, new) in sides {
        if old == new {
            continue;
        }
        signed = true;
        let named = |signature: &Option<Signature>| {
            signature
                .as_ref()
                .is_none_or(|signature| signature.by == writer.user_id)
        };
        if !named(old) || !named(new) {
            return refuse(
                "W10",
                "a handover is signed only by the user the signature names",
            );
        }
    }
    if signed
        && let (Some(outgoing), Some(incoming)) =
            (&after.signatures.outgoing, &after.signatures.incoming)
        && outgoing.by == incoming.by
    {
        return refuse("W10", "one person does not sign both sides of a handover");
    }
    Ok(())
}

/// Pairs each element of `after` with the element of `before` it continues, if any, when
/// `before` is a subsequence of `after` under `same`; None if an element of `before` went.
fn pair<'a, T>(
    before: &'a [T],
    after: &'a [T],
    same: impl Fn(&T, &T) -> bool,
) -> Option<Vec<(Option<&'a T>, &'a T)>> {
    let mut old = before.iter().peekable();
    let pairs: Vec<_> = after
        .iter()
        .map(|new| match old.peek() {
            Some(candidate) if same(candidate, new) => (old.next(), new),
            _ => (None, new),
        })
        .collect();
    old.peek().is_none().then_some(pairs)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::read_record;

    fn seen(value: serde_json::Value) -> Seen {
        let kind = value["type"].as_str().and_then(RecordKind::of_name);
        Seen {
            kind,
            record: kind.and_then(|kind| read_record(kind, value).record),
        }
    }

    const FIELD: Writer = Writer {
        user_id: "f1",
        leader: false,
        admin: false,
        superior: false,
    };
    const LEADER: Writer = Writer {
        user_id: "l1",
        leader: true,
        admin: false,
        superior: false,
    };
    const SUPERIOR_LEADER: Writer = Writer {
        user_id: "s1",
        leader: true,
        admin: false,
        superior: true,
    };

    fn incident(grade: &str, reports: serde_json::Value, instructions: serde_json::Value) -> Seen {
        seen(
            json!({"type": "incident", "title": "bridge", "grade": grade,
            "reports": reports, "instructions": instructions}),
        )
    }

    fn rule(result: Result<(), Violation>) -> &'static str {
        result.err().map_or("ok", |violation| violation.rule)
    }

    #[test]
    fn grade_is_lowered_from_red_only_by_a_leader() {
        let red = incident("red", json!([]), json!([]));
        let blue = incident("blue", json!([]), json!([]));
        let broken = incident("RED!", json!([]), json!([]));
        assert_eq!(rule(check(&red, &blue, &FIELD)), "W3");
        assert_eq!(rule(check(&red, &broken, &FIELD)), "W3");
        assert_eq!(rule(check(&red, &blue, &LEADER)), "ok");
        assert_eq!(rule(check(&blue, &red, &FIELD)), "ok");
    }

    #[test]
    fn the_report_chain_grows_only() {
        let one = json!([{"kind": "first", "at": 1_700_000_000_000_i64, "by": "f1", "text": "a"}]);
        let two = json!([{"kind": "first", "at": 1_700_000_000_000_i64, "by": "f1", "text": "a"},
                         {"kind": "follow_up", "at": 1_700_000_100_000_i64, "by": "f1", "text": "b"}]);
        let edited =
            json!([{"kind": "first", "at": 1_700_000_000_000_i64, "by": "f1", "text": "x"}]);
        let in_front = json!([{"kind": "follow_up", "by": "f1", "text": "c"},
                              {"kind": "first", "at": 1_700_000_000_000_i64, "by": "f1", "text": "a"}]);
        let s = |reports| incident("yellow", reports, json!([]));
        assert_eq!(rule(check(&s(one.clone()), &s(two.clone()), &FIELD)), "ok");
        assert_eq!(rule(check(&s(one.clone()), &s(in_front), &FIELD)), "ok");
        assert_eq!(rule(check(&s(two), &s(one.clone()), &FIELD)), "W4");
        assert_eq!(rule(check(&s(one.clone()), &s(edited), &FIELD)), "W4");
    }

    #[test]
    fn instructions_are_given_by_leaders_and_then_only_followed() {
        let none = incident("red", json!([]), json!([]));
        let given = |by: &str| {
            incident(
                "red",
                json!([]),
                json!([{"by": by, "to": "f1", "at": 1_700_000_000_000_i64,
                "text": "Evacuate the valley now", "steps": [], "done": false}]),
            )
        };
        assert_eq!(rule(check(&none, &given("l1"), &LEADER)), "ok");
        assert_eq!(rule(check(&none, &given("s1"), &SUPERIOR_LEADER)), "ok");
        assert_eq!(rule(check(&none, &given("l1"), &FIELD)), "W5");
        assert_eq!(rule(check(&none, &given("l1"), &SUPERIOR_LEADER)), "W5");
        let rewritten = incident(
            "red",
            json!([]),
            json!([{"by": "l1", "to": "f1",
            "at": 1_700_000_000_000_i64, "text": "Stand down", "steps": [], "done": false}]),
        );
        assert_eq!(rule(check(&given("l1"), &rewritten, &FIELD)), "W5");
        let step = |by: &str| {
            incident(
                "red",
                json!([]),
                json!([{"by": "l1", "to": "f1", "at": 1_700_000_000_000_i64,
                "text": "Evacuate the valley now",
                "steps": [{"by": by, "text": "buses sent"}], "done": true}]),
            )
        };
        assert_eq!(rule(check(&given("l1"), &step("f1"), &FIELD)), "ok");
        let other = Writer {
            user_id: "f2",
            ..FIELD
        };
        assert_eq!(rule(check(&given("l1"), &step("f2"), &other)), "W6");
        assert_eq!(rule(check(&step("f1"), &given("l1"), &FIELD)), "W6");
        let lowered = incident("blue", json!([]), json!([]));
        assert_eq!(rule(check(&none, &lowered, &SUPERIOR_LEADER)), "W2");
    }

    fn roster(requests: serde_json::Value, leader: &str) -> Seen {
        seen(json!({"type": "roster", "title": "May", "holiday": false,
            "shifts": [{"start": 1_700_000_000_000_i64, "end": 1_700_086_400_000_i64,
                "leader": {"user_id": leader, "name": leader}, "officers": []}],
            "requests": requests}))
    }

    fn request(requester: &str, status: &str, decided_by: Option<&str>) -> serde_json::Value {
        json!({"kind": "swap", "shift": 0, "requester": requester,
            "substitute": {"user_id": "l2", "name": "l2"}, "status": status,
            "decided_by": decided_by, "decided_at": decided_by.map(|_| 1_700_000_000_000_i64)})
    }

    #[test]
    fn rosters_are_leaders_and_requests_are_decided_once() {
        let plain = roster(json!([]), "l1");
        assert_eq!(rule(check(&plain, &roster(json!([]), "f1"), &FIELD)), "W7");
        assert_eq!(rule(check(&plain, &roster(json!([]), "l2"), &LEADER)), "ok");
        let asked = roster(json!([request("l1", "pending", None)]), "l1");
        assert_eq!(rule(check(&plain, &asked, &LEADER)), "ok");
        assert_eq!(rule(check(&plain, &asked, &FIELD)), "W8");
        let approved = roster(json!([request("l1", "approved", Some("l1"))]), "l1");
        assert_eq!(rule(check(&asked, &approved, &LEADER)), "ok");
        assert_eq!(rule(check(&asked, &approved, &FIELD)), "W9");
        let hijacked = roster(json!([request("f1", "approved", Some("l1"))]), "l1");
        assert_eq!(rule(check(&approved, &hijacked, &FIELD)), "W8");
        let reversed = roster(json!([request("l1", "rejected", Some("l1"))]), "l1");
        assert_eq!(rule(check(&approved, &reversed, &LEADER)), "W9");
    }

    #[test]
    fn each_signs_only_their_own_side() {
        let handover = |outgoing: Option<&str>, incoming: Option<&str>| {
            seen(json!({"type": "handover", "title": "night", "signatures": {
                "outgoing": outgoing.map(|by| json!({"by": by, "at": 1_700_000_000_000_i64})),
                "incoming": incoming.map(|by| json!({"by": by, "at": 1_700_000_000_000_i64}))}}))
        };
        let blank = handover(None, None);
        assert_eq!(
            rule(check(&blank, &handover(Some("f1"), None), &FIELD)),
            "ok"
        );
        assert_eq!(
            rule(check(&blank, &handover(Some("l1"), None), &FIELD)),
            "W10"
        );
        assert_eq!(
            rule(check(
                &Seen::default(),
                &handover(Some("l1"), Some("o1")),
                &FIELD
            )),
            "W10"
        );
        let once = handover(Some("f1"), None);
        assert_eq!(
            rule(check(&once, &handover(Some("f1"), Some("f1")), &FIELD)),
            "W10"
        );
        assert_eq!(rule(check(&once, &handover(None, None), &LEADER)), "W10");
    }

    #[test]
    fn a_record_keeps_its_type() {
        let red = incident("red", json!([]), json!([]));
        let log = seen(json!({"type": "duty_log", "title": "x", "entries": []}));
        assert_eq!(rule(check(&red, &log, &LEADER)), "W1");
        assert_eq!(rule(check(&red, &Seen::default(), &LEADER)), "W1");
        assert_eq!(rule(check(&Seen::default(), &log, &FIELD)), "ok");
    }
}
