//! Zhiban's duty records as types: what an incident and a duty log hold (D6, D9–D14), and
//! the checks both the device and the server apply. Checks never block a report (D11: speed
//! first): structural faults are `errors` (the document is stored but flagged), missing core
//! elements and doubtful values are `warnings`.
//!
//! Records are read from the JSON view of an Automerge document ([`json::read`]), which
//! treats plain strings and collaborative text alike, so records written by the JavaScript
//! client check the same as ours.

pub mod json;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The newest record schema this code understands.
pub const SCHEMA: i64 = 1;

/// The four categories of D9.
pub const CATEGORIES: [&str; 4] = [
    "natural_disaster",
    "accident",
    "public_health",
    "social_security",
];

/// Urgency (D10).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Grade {
    /// Urgent: straight to the responsible leader's phone.
    Red,
    /// Important: to the work group.
    Yellow,
    /// Routine queue.
    Blue,
}

/// Severity (D9), I most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Level {
    I,
    II,
    III,
    IV,
}

/// One report in an incident's chain (D11–D12).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub kind: ReportKind,
    pub at: i64,
    pub by: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    First,
    FollowUp,
    Final,
}

/// A leader's instruction (批示) and the steps taken to complete it (D14).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instruction {
    pub by: Option<String>,
    /// The user the instruction is addressed to, who is alerted (D14, D23).
    #[serde(default)]
    pub to: Option<String>,
    pub at: i64,
    pub text: String,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default)]
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub at: i64,
    pub by: Option<String>,
    pub text: String,
}

/// What is known of an attachment; the bytes travel separately.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    pub sha256: String,
    pub size: u64,
    pub mime: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
}

/// An incident: one matter, one document, from the first report to the final one (D6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    #[serde(default = "schema_one")]
    pub schema: i64,
    #[serde(default)]
    pub title: String,
    pub category: Option<String>,
    pub level: Option<Level>,
    pub grade: Option<Grade>,
    pub status: Option<String>,
    /// When the event became known: the clock of D11 starts here.
    pub known_at: Option<i64>,
    pub location: Option<String>,
    pub casualties: Option<String>,
    pub measures: Option<String>,
    pub reported_by: Option<String>,
    pub reported_at: Option<i64>,
    #[serde(default)]
    pub reports: Vec<Report>,
    #[serde(default)]
    pub instructions: Vec<Instruction>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

/// One call or message in the duty log (D6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub received_at: i64,
    pub caller_unit: Option<String>,
    pub caller_name: Option<String>,
    pub phone: Option<String>,
    pub content: String,
    pub handling: Option<String>,
    pub handler: Option<String>,
    /// The incident this call belongs to ("one case, one file").
    pub incident: Option<String>,
}

/// A shift's duty log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DutyLog {
    #[serde(default = "schema_one")]
    pub schema: i64,
    #[serde(default)]
    pub title: String,
    /// The shift's start, milliseconds since the epoch.
    pub shift_start: Option<i64>,
    #[serde(default)]
    pub entries: Vec<LogEntry>,
}

/// Someone on a roster: who, and how to reach them (D5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Person {
    pub user_id: Option<String>,
    pub name: String,
    pub phone: Option<String>,
}

/// One shift of a roster (D2): one leader on duty and one or more officers, with optional
/// A/B backups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shift {
    pub start: i64,
    pub end: i64,
    /// `workday` or `holiday`.
    pub kind: Option<String>,
    pub leader: Option<Person>,
    #[serde(default)]
    pub officers: Vec<Person>,
    pub backup_leader: Option<Person>,
    #[serde(default)]
    pub backup_officers: Vec<Person>,
}

/// A swap or leave request (D4): it takes effect only once the leader approves it, and only
/// with a named substitute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShiftRequest {
    /// `swap` or `leave`.
    pub kind: String,
    /// Index into the roster's shifts.
    pub shift: usize,
    pub requester: String,
    pub substitute: Option<Person>,
    pub reason: Option<String>,
    /// `pending`, `approved` or `rejected`.
    #[serde(default = "pending")]
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
}

/// A unit's roster for a period (D2–D4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Roster {
    #[serde(default = "schema_one")]
    pub schema: i64,
    #[serde(default)]
    pub title: String,
    /// A holiday roster must reach the superior office 3 days ahead (D3).
    #[serde(default)]
    pub holiday: bool,
    pub due_at: Option<i64>,
    pub submitted_at: Option<i64>,
    #[serde(default)]
    pub shifts: Vec<Shift>,
    #[serde(default)]
    pub requests: Vec<ShiftRequest>,
}

/// A pending item of a handover: open until somebody closes it (D7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingItem {
    pub text: String,
    pub opened_at: Option<i64>,
    pub opened_by: Option<String>,
    pub closed_at: Option<i64>,
    pub closed_by: Option<String>,
}

/// A signature: who signed, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub by: String,
    pub at: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Signatures {
    pub outgoing: Option<Signature>,
    pub incoming: Option<Signature>,
}

/// A shift handover (D7).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Handover {
    #[serde(default = "schema_one")]
    pub schema: i64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub done: Vec<String>,
    #[serde(default)]
    pub pending: Vec<PendingItem>,
    pub equipment: Option<String>,
    /// The handover before this one, whose open items this one carries.
    pub previous: Option<String>,
    #[serde(default)]
    pub signatures: Signatures,
}

/// A daily report during holidays, or a zero report when nothing happened (D15).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DailyReport {
    #[serde(default = "schema_one")]
    pub schema: i64,
    /// The day reported, `YYYY-MM-DD`.
    pub date: String,
    /// A zero report: nothing to report (零报告).
    #[serde(default)]
    pub zero: bool,
    #[serde(default)]
    pub text: String,
    /// The last holiday day's report covers the whole holiday.
    #[serde(default)]
    pub holiday_summary: bool,
    pub submitted_at: Option<i64>,
}

/// One incoming document or notice (D8): registered, routed to the leader, tracked to done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisteredDocument {
    pub received_at: i64,
    pub from: String,
    pub title: String,
    pub routed_to: Option<String>,
    #[serde(default)]
    pub done: bool,
}

/// The register of incoming documents (D8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentRegister {
    #[serde(default = "schema_one")]
    pub schema: i64,
    #[serde(default)]
    pub entries: Vec<RegisteredDocument>,
}

fn pending() -> String {
    "pending".into()
}

fn schema_one() -> i64 {
    1
}

/// D11: the first report is due this long after the event became known.
pub const FIRST_REPORT_WITHIN_MS: i64 = 60 * 60 * 1000;
/// D12: follow-up reports are due this often until the final report.
pub const FOLLOW_UP_EVERY_MS: i64 = 2 * 60 * 60 * 1000;

/// An incident's reporting against its deadlines (D11–D13), as of `now`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeliness {
    pub known_at: Option<i64>,
    pub first_report_due_at: Option<i64>,
    pub first_report_at: Option<i64>,
    /// Minutes past the deadline (0 when on time); for a missing first report, so far.
    pub first_report_minutes_late: Option<i64>,
    pub follow_ups_made: usize,
    /// Follow-ups that should exist by now (or by the final report).
    pub follow_ups_due: usize,
    pub next_follow_up_due_at: Option<i64>,
    pub closed_at: Option<i64>,
}

impl Incident {
    /// The first report: the earliest `first` in the chain, else the report that created it.
    pub fn first_report_at(&self) -> Option<i64> {
        self.reports
            .iter()
            .filter(|report| report.kind == ReportKind::First)
            .map(|report| report.at)
            .min()
            .or(self.reported_at)
    }

    pub fn follow_up_times(&self) -> Vec<i64> {
        let mut times: Vec<i64> = self
            .reports
            .iter()
            .filter(|report| report.kind == ReportKind::FollowUp)
            .map(|report| report.at)
            .collect();
        times.sort_unstable();
        times
    }

    pub fn final_report_at(&self) -> Option<i64> {
        self.reports
            .iter()
            .filter(|report| report.kind == ReportKind::Final)
            .map(|report| report.at)
            .min()
    }
}

impl Timeliness {
    pub fn of(
        known_at: Option<i64>,
        first_report_at: Option<i64>,
        follow_ups: &[i64],
        closed_at: Option<i64>,
        now: i64,
    ) -> Timeliness {
        let first_report_due_at = known_at.map(|known| known + FIRST_REPORT_WITHIN_MS);
        let first_report_minutes_late = first_report_due_at.map(|due| {
            let reported = first_report_at.unwrap_or(now);
            (reported - due).max(0) / 60_000
        });
        let (follow_ups_due, next_follow_up_due_at) = match first_report_at {
            Some(first) => {
                let until = closed_at.unwrap_or(now);
                let due = usize::try_from((until - first).max(0) / FOLLOW_UP_EVERY_MS).unwrap_or(0);
                let next = closed_at
                    .is_none()
                    .then(|| first + (due as i64 + 1) * FOLLOW_UP_EVERY_MS);
                (due, next)
            }
            None => (0, None),
        };
        Timeliness {
            known_at,
            first_report_due_at,
            first_report_at,
            first_report_minutes_late,
            follow_ups_made: follow_ups.len(),
            follow_ups_due,
            next_follow_up_due_at,
            closed_at,
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
    let mut checked = Checked::default();
    let kind = document.get("type").and_then(Value::as_str);
    if let Some(schema) = document.get("schema").and_then(Value::as_i64)
        && schema > SCHEMA
    {
        checked.warnings.push(format!(
            "written with schema {schema}; this server knows {SCHEMA}"
        ));
    }
    match kind {
        Some("incident") => match serde_json::from_value::<Incident>(document.clone()) {
            Ok(incident) => {
                check_incident(&incident, &mut checked);
                checked.record = Some(Record::Incident(Box::new(incident)));
            }
            Err(error) => checked
                .errors
                .push(format!("not a well-formed incident: {error}")),
        },
        Some("roster") => match serde_json::from_value::<Roster>(document.clone()) {
            Ok(roster) => {
                check_roster(&roster, &mut checked);
                checked.record = Some(Record::Roster(roster));
            }
            Err(error) => checked
                .errors
                .push(format!("not a well-formed roster: {error}")),
        },
        Some("handover") => match serde_json::from_value::<Handover>(document.clone()) {
            Ok(handover) => {
                if handover.signatures.outgoing.is_none() || handover.signatures.incoming.is_none()
                {
                    checked
                        .warnings
                        .push("the handover is not yet signed by both officers".into());
                }
                checked.record = Some(Record::Handover(handover));
            }
            Err(error) => checked
                .errors
                .push(format!("not a well-formed handover: {error}")),
        },
        Some("daily_report") => match serde_json::from_value::<DailyReport>(document.clone()) {
            Ok(report) => {
                if chrono_like_date(&report.date).is_none() {
                    checked
                        .errors
                        .push(format!("`{}` is not a date (YYYY-MM-DD)", report.date));
                }
                if !report.zero && report.text.trim().is_empty() {
                    checked.warnings.push(
                        "an empty daily report: mark it a zero report if nothing happened".into(),
                    );
                }
                checked.record = Some(Record::DailyReport(report));
            }
            Err(error) => checked
                .errors
                .push(format!("not a well-formed daily report: {error}")),
        },
        Some("document_register") => {
            match serde_json::from_value::<DocumentRegister>(document.clone()) {
                Ok(register) => {
                    for (index, entry) in register.entries.iter().enumerate() {
                        if entry.routed_to.is_none() && !entry.done {
                            checked.warnings.push(format!(
                                "document {} is not yet routed to a leader",
                                index + 1
                            ));
                        }
                    }
                    checked.record = Some(Record::DocumentRegister(register));
                }
                Err(error) => checked
                    .errors
                    .push(format!("not a well-formed document register: {error}")),
            }
        }
        Some("duty_log") => match serde_json::from_value::<DutyLog>(document.clone()) {
            Ok(log) => {
                check_duty_log(&log, &mut checked);
                checked.record = Some(Record::DutyLog(log));
            }
            Err(error) => checked
                .errors
                .push(format!("not a well-formed duty log: {error}")),
        },
        _ => {}
    }
    checked
}

/// The core elements of a first report (D11) that `incident` lacks.
pub fn missing_core_elements(incident: &Incident) -> Vec<&'static str> {
    let filled = |value: &Option<String>| value.as_deref().is_some_and(|v| !v.trim().is_empty());
    let mut missing = Vec::new();
    if incident.known_at.is_none() {
        missing.push("time");
    }
    if !filled(&incident.location) {
        missing.push("place");
    }
    if !filled(&incident.category) {
        missing.push("nature");
    }
    if !filled(&incident.casualties) {
        missing.push("casualties and losses");
    }
    if !filled(&incident.measures) {
        missing.push("measures taken");
    }
    if !filled(&incident.reported_by) {
        missing.push("reporter");
    }
    missing
}

fn check_incident(incident: &Incident, checked: &mut Checked) {
    if incident.title.trim().is_empty() {
        checked.warnings.push("the incident has no title".into());
    }
    if incident.grade.is_none() {
        checked
            .warnings
            .push("no grade: it will be handled as routine (blue)".into());
    }
    if let Some(category) = &incident.category
        && !CATEGORIES.contains(&category.as_str())
    {
        checked.warnings.push(format!(
            "category `{category}` is none of natural_disaster, accident, public_health, social_security"
        ));
    }
    for element in missing_core_elements(incident) {
        checked
            .warnings
            .push(format!("missing core element: {element}"));
    }
    let finals = incident
        .reports
        .iter()
        .filter(|report| report.kind == ReportKind::Final)
        .count();
    if finals > 1 {
        checked.errors.push("more than one final report".into());
    }
    for attachment in &incident.attachments {
        if attachment.sha256.len() != 64
            || !attachment.sha256.bytes().all(|b| b.is_ascii_hexdigit())
        {
            checked.errors.push(format!(
                "attachment hash `{}` is not SHA-256 hex",
                attachment.sha256
            ));
        }
        if let (Some(lat), Some(lon)) = (attachment.lat, attachment.lon)
            && (!(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon))
        {
            checked
                .errors
                .push("attachment position is off the globe".into());
        }
    }
}

fn check_duty_log(log: &DutyLog, checked: &mut Checked) {
    for (index, entry) in log.entries.iter().enumerate() {
        let number = index + 1;
        if entry.content.trim().is_empty() {
            checked
                .warnings
                .push(format!("entry {number} has no content"));
        }
        if let Some(phone) = &entry.phone
            && !valid_phone(phone)
        {
            checked.warnings.push(format!(
                "entry {number}: `{phone}` does not look like a phone number"
            ));
        }
        if entry.handler.as_deref().is_none_or(|h| h.trim().is_empty()) {
            checked
                .warnings
                .push(format!("entry {number} names no handler"));
        }
    }
}

fn check_roster(roster: &Roster, checked: &mut Checked) {
    for (index, shift) in roster.shifts.iter().enumerate() {
        let number = index + 1;
        if shift.end <= shift.start {
            checked
                .errors
                .push(format!("shift {number} ends before it starts"));
        }
        if shift.leader.is_none() {
            checked
                .warnings
                .push(format!("shift {number} has no leader on duty"));
        }
        if shift.officers.is_empty() {
            checked
                .warnings
                .push(format!("shift {number} has no duty officer"));
        }
    }
    for (index, request) in roster.requests.iter().enumerate() {
        let number = index + 1;
        if request.shift >= roster.shifts.len() {
            checked.errors.push(format!(
                "request {number} names shift {} which does not exist",
                request.shift + 1
            ));
        }
        if request.substitute.is_none() {
            checked.errors.push(format!(
                "request {number} names no substitute: nobody leaves the post without one (D4)"
            ));
        }
        if !["pending", "approved", "rejected"].contains(&request.status.as_str()) {
            checked.errors.push(format!(
                "request {number} has unknown status `{}`",
                request.status
            ));
        }
    }
    if roster.holiday
        && let (Some(due), Some(submitted)) = (roster.due_at, roster.submitted_at)
        && submitted > due
    {
        checked
            .warnings
            .push("the holiday roster was submitted after its due date (D3)".into());
    }
}

/// `YYYY-MM-DD` with a plausible month and day.
fn chrono_like_date(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.split('-');
    let year: u32 = parts.next()?.parse().ok()?;
    let month: u32 = parts.next()?.parse().ok()?;
    let day: u32 = parts.next()?.parse().ok()?;
    (parts.next().is_none()
        && text.len() == 10
        && (1..=12).contains(&month)
        && (1..=31).contains(&day))
    .then_some((year, month, day))
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

    #[test]
    fn a_complete_incident_has_no_warnings() {
        let checked = check(&json!({
            "type": "incident", "title": "山体滑坡", "category": "natural_disaster",
            "grade": "red", "level": "II", "known_at": 1, "location": "G4 km 1032",
            "casualties": "none", "measures": "road closed", "reported_by": "wang",
            "reports": [{"kind": "first", "at": 2, "by": "wang", "text": "…"}],
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
            {"kind": "final", "at": 1, "text": "a"}, {"kind": "final", "at": 2, "text": "b"}]}));
        assert_eq!(two_finals.errors, vec!["more than one final report"]);
        let bad_hash = check(&json!({"type": "incident", "attachments": [
            {"sha256": "xyz", "size": 1, "mime": "image/jpeg"}]}));
        assert!(!bad_hash.is_valid());
    }

    #[test]
    fn duty_log_entries_are_checked() {
        let checked = check(&json!({"type": "duty_log", "entries": [
            {"received_at": 1, "content": "caller reports smoke", "phone": "0571-8888 1234", "handler": "li"},
            {"received_at": 2, "content": "", "phone": "call me"},
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
            {"start": 10, "end": 5, "leader": {"name": "li"}, "officers": [{"name": "wang"}]}],
            "requests": [{"kind": "leave", "shift": 0, "requester": "wang"}]}));
        assert_eq!(checked.errors.len(), 2, "{checked:?}");
        assert!(checked.errors[1].contains("substitute"));
    }

    #[test]
    fn timeliness_counts_lateness_and_follow_ups() {
        let hour = 3_600_000;
        let late = Timeliness::of(Some(0), Some(hour + 30 * 60_000), &[], None, 6 * hour);
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
        );
        assert_eq!(closed.first_report_minutes_late, Some(0));
        assert_eq!((closed.follow_ups_due, closed.follow_ups_made), (1, 1));
        assert_eq!(closed.next_follow_up_due_at, None);
        let missing = Timeliness::of(Some(0), None, &[], None, 3 * hour);
        assert_eq!(missing.first_report_minutes_late, Some(120));
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
            {"received_at": 1, "from": "市应急局", "title": "关于做好国庆值班的通知"}]}));
        assert_eq!(register.warnings.len(), 1);
    }

    #[test]
    fn other_documents_pass_unchecked() {
        let checked = check(&json!({"type": "catalog", "documents": {}}));
        assert_eq!(checked, Checked::default());
    }
}
