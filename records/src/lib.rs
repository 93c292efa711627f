//! Zhiban's duty records as types: what an incident, a duty log, a roster, a handover, a
//! daily report and the document register hold (D2–D15), and the checks both the device and
//! the server apply. Checks never block a report (D11: speed first): structural faults are
//! `errors` (the document is stored but flagged), missing core elements and doubtful values
//! are `warnings`.
//!
//! Records are read from the JSON view of an Automerge document ([`json::read`]), which
//! treats plain strings and collaborative text alike, so records written by the JavaScript
//! client check the same as ours. Reading is lenient ([`read::lenient`]): a field that does
//! not fit is dropped and reported, never the whole record. That is why the record types'
//! fields all have defaults (`#[serde(default)]` on the struct).
//!
//! One module per record type; [`RecordKind`] is the registry, and every `match` on it is
//! exhaustive, so a new type cannot be forgotten silently.

pub mod daily_report;
pub mod duty_log;
pub mod handover;
pub mod incident;
pub mod json;
pub mod policy;
pub mod read;
pub mod register;
pub mod roster;
pub mod time;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use strum::IntoEnumIterator;

pub use daily_report::DailyReport;
pub use duty_log::{DutyLog, LogEntry};
pub use handover::{Handover, PendingItem, Signature, Signatures};
pub use incident::{
    Attachment, CATEGORIES, Grade, Incident, Instruction, Intervals, Level, Report, ReportKind,
    Step, Timeliness, missing_core_elements,
};
pub use register::{DocumentRegister, RegisteredDocument};
pub use roster::{Person, Roster, Shift, ShiftRequest};

/// The newest record schema this code understands.
pub const SCHEMA: i64 = 1;

fn schema_one() -> i64 {
    1
}

/// The types of duty record, by the `type` field of their documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::EnumIter)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Incident,
    DutyLog,
    Roster,
    Handover,
    DailyReport,
    DocumentRegister,
}

impl RecordKind {
    /// The document's `type`.
    pub fn name(self) -> &'static str {
        match self {
            RecordKind::Incident => "incident",
            RecordKind::DutyLog => "duty_log",
            RecordKind::Roster => "roster",
            RecordKind::Handover => "handover",
            RecordKind::DailyReport => "daily_report",
            RecordKind::DocumentRegister => "document_register",
        }
    }

    pub fn of_name(name: &str) -> Option<RecordKind> {
        RecordKind::iter().find(|kind| kind.name() == name)
    }

    pub fn all() -> impl Iterator<Item = RecordKind> {
        RecordKind::iter()
    }

    /// The list a long record grows by, read and stored item by item.
    pub fn items(self) -> Option<&'static str> {
        match self {
            RecordKind::DutyLog => Some(duty_log::ITEMS),
            RecordKind::DocumentRegister => Some(register::ITEMS),
            RecordKind::Incident
            | RecordKind::Roster
            | RecordKind::Handover
            | RecordKind::DailyReport => None,
        }
    }
}

/// A record this code knows, read from a document's JSON view.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Incident(Box<Incident>),
    DutyLog(DutyLog),
    Roster(Roster),
    Handover(Handover),
    DailyReport(DailyReport),
    DocumentRegister(DocumentRegister),
}

impl Record {
    /// What the duty room calls it.
    pub fn title(&self) -> &str {
        match self {
            Record::Incident(incident) => &incident.title,
            Record::DutyLog(log) => &log.title,
            Record::Roster(roster) => &roster.title,
            Record::Handover(handover) => &handover.title,
            Record::DailyReport(report) => &report.date,
            Record::DocumentRegister(_) => "",
        }
    }
}

/// The outcome of checking a document.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checked {
    pub record: Option<Record>,
    /// Structural faults: the document is kept but flagged.
    pub errors: Vec<String>,
    /// What a duty officer should fill in or look at; never blocks.
    pub warnings: Vec<String>,
}

impl Checked {
    pub fn is_valid(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks a document's JSON view. Documents of a type this code does not know pass
/// unchecked (`record` is None, no errors).
pub fn check(document: &Value) -> Checked {
    match document
        .get("type")
        .and_then(Value::as_str)
        .and_then(RecordKind::of_name)
    {
        Some(kind) => read_record(kind, document.clone()),
        None => Checked::default(),
    }
}

/// Reads a record of `kind` from its JSON view: cleaned of control characters, read
/// leniently, then checked.
pub fn read_record(kind: RecordKind, mut view: Value) -> Checked {
    let mut checked = Checked::default();
    read::clean(&mut view);
    if let Some(schema) = view.get("schema").and_then(Value::as_i64)
        && schema > SCHEMA
    {
        checked.warnings.push(format!(
            "written with schema {schema}; this code knows {SCHEMA}"
        ));
    }
    let errors = &mut checked.errors;
    let record = match kind {
        RecordKind::Incident => read::lenient::<Incident>(view, "", errors)
            .map(|incident| Record::Incident(Box::new(incident))),
        RecordKind::Roster => read::lenient(view, "", errors).map(Record::Roster),
        RecordKind::Handover => read::lenient(view, "", errors).map(Record::Handover),
        RecordKind::DailyReport => read::lenient(view, "", errors).map(Record::DailyReport),
        RecordKind::DutyLog => duty_log::read(view, &mut checked).map(Record::DutyLog),
        RecordKind::DocumentRegister => {
            register::read(view, &mut checked).map(Record::DocumentRegister)
        }
    };
    match &record {
        Some(Record::Incident(incident)) => incident::check(incident, &mut checked),
        Some(Record::Roster(roster)) => roster::check(roster, &mut checked),
        Some(Record::Handover(handover)) => handover::check(handover, &mut checked),
        Some(Record::DailyReport(report)) => daily_report::check(report, &mut checked),
        // Read item by item, checked as they were read.
        Some(Record::DutyLog(_) | Record::DocumentRegister(_)) | None => {}
    }
    checked.record = record;
    if checked.record.is_none() && checked.errors.is_empty() {
        checked
            .errors
            .push(format!("not a well-formed {}", kind.name()));
    }
    checked
}

/// Digits with optional `+`, spaces and dashes, 3 to 20 digits: duty numbers, mobiles and
/// short codes such as 110.
pub fn valid_phone(phone: &str) -> bool {
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    (3..=20).contains(&digits)
        && phone
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_digit() || c == ' ' || c == '-' || (c == '+' && i == 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// 2025-11-24, a time records may carry.
    const T0: i64 = 1_764_000_000_000;

    #[test]
    fn a_complete_incident_has_no_warnings() {
        let checked = check(&json!({
            "type": "incident", "title": "山体滑坡", "category": "natural_disaster",
            "grade": "red", "level": "II", "known_at": T0, "location": "G4 km 1032",
            "casualties": "none", "measures": "road closed", "reported_by": "wang",
            "reports": [{"kind": "first", "at": T0 + 2, "by": "wang", "text": "…"}],
        }));
        assert!(checked.is_valid(), "{checked:?}");
        assert!(checked.warnings.is_empty(), "{checked:?}");
        assert!(matches!(checked.record, Some(Record::Incident(_))));
    }

    #[test]
    fn missing_core_elements_warn_but_do_not_fail() {
        let checked = check(&json!({"type": "incident", "title": "fire", "grade": "red"}));
        assert!(checked.is_valid());
        assert!(checked.warnings.iter().any(|w| w.contains("casualties")));
        assert!(checked.warnings.iter().any(|w| w.contains("time")));
    }

    #[test]
    fn structural_faults_are_errors() {
        let bad_grade = check(&json!({"type": "incident", "grade": "purple"}));
        assert!(!bad_grade.is_valid());
        let two_finals = check(&json!({"type": "incident", "grade": "red", "reports": [
            {"kind": "final", "at": T0 + 1, "text": "a"}, {"kind": "final", "at": T0 + 2, "text": "b"}]}));
        assert_eq!(two_finals.errors, vec!["more than one final report"]);
        let bad_hash = check(&json!({"type": "incident", "attachments": [
            {"sha256": "xyz", "size": 1, "mime": "image/jpeg"}]}));
        assert!(!bad_hash.is_valid());
    }

    #[test]
    fn duty_log_entries_are_checked() {
        let checked = check(&json!({"type": "duty_log", "entries": [
            {"received_at": T0, "content": "caller reports smoke", "phone": "0571-8888 1234", "handler": "li"},
            {"received_at": T0 + 1, "content": "", "phone": "call me"},
        ]}));
        assert!(checked.is_valid());
        assert_eq!(checked.warnings.len(), 3, "{checked:?}");
        assert!(valid_phone("110"));
        assert!(valid_phone("+86 138-0000-0000"));
        assert!(!valid_phone("12"));
        assert!(!valid_phone("1+1234"));
    }

    #[test]
    fn rosters_need_substitutes_and_sane_shifts() {
        let checked = check(&json!({"type": "roster", "shifts": [
            {"start": T0 + 10, "end": T0 + 5, "leader": {"name": "li"}, "officers": [{"name": "wang"}]}],
            "requests": [{"kind": "leave", "shift": 0, "requester": "wang"}]}));
        assert_eq!(checked.errors.len(), 2, "{checked:?}");
        assert!(checked.errors[1].contains("substitute"));
    }

    #[test]
    fn timeliness_counts_lateness_and_follow_ups() {
        let hour = 3_600_000;
        let late = Timeliness::of(
            Some(0),
            Some(hour + 30 * 60_000),
            &[],
            None,
            6 * hour,
            Intervals::default(),
        );
        assert_eq!(late.first_report_minutes_late, Some(30));
        // First report at 1.5 h, now 6 h: two follow-ups due (3.5 h, 5.5 h), none made.
        assert_eq!(late.follow_ups_due, 2);
        assert_eq!(
            late.next_follow_up_due_at,
            Some(hour + 30 * 60_000 + 3 * 2 * hour)
        );
        let closed = Timeliness::of(
            Some(0),
            Some(hour / 2),
            &[3 * hour],
            Some(4 * hour),
            99 * hour,
            Intervals::default(),
        );
        assert_eq!(closed.first_report_minutes_late, Some(0));
        assert_eq!((closed.follow_ups_due, closed.follow_ups_made), (1, 1));
        assert_eq!(closed.next_follow_up_due_at, None);
        let missing = Timeliness::of(Some(0), None, &[], None, 3 * hour, Intervals::default());
        assert_eq!(missing.first_report_minutes_late, Some(120));
        // A unit that wants its first reports within 30 minutes and follow-ups hourly.
        let strict = Intervals::default().with(Some(30), Some(60));
        let tight = Timeliness::of(Some(0), Some(hour), &[], None, 3 * hour, strict);
        assert_eq!(tight.first_report_minutes_late, Some(30));
        assert_eq!(tight.follow_ups_due, 2);
        assert_eq!(tight.next_follow_up_due_at, Some(4 * hour));
    }

    #[test]
    fn handovers_daily_reports_and_registers_are_checked() {
        let unsigned =
            check(&json!({"type": "handover", "pending": [{"text": "call back the county"}]}));
        assert!(unsigned.is_valid());
        assert_eq!(unsigned.warnings.len(), 1);
        assert!(!check(&json!({"type": "daily_report", "date": "2026-13-01"})).is_valid());
        let zero = check(&json!({"type": "daily_report", "date": "2026-10-01", "zero": true}));
        assert!(zero.is_valid() && zero.warnings.is_empty(), "{zero:?}");
        let register = check(&json!({"type": "document_register", "entries": [
            {"received_at": T0, "from": "市应急局", "title": "关于做好国庆值班的通知"}]}));
        assert_eq!(register.warnings.len(), 1);
    }

    #[test]
    fn other_documents_pass_unchecked() {
        let checked = check(&json!({"type": "catalog", "documents": {}}));
        assert_eq!(checked, Checked::default());
    }
}
