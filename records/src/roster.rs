//! A unit's roster for a period (D2–D5): its shifts, each with one leader on duty and one or
//! more officers (A/B backups optional), and the swap and leave requests a leader approves.

use serde::{Deserialize, Serialize};

use crate::{Checked, time};

/// Someone on a roster: who, and how to reach them (D5).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Person {
    pub user_id: Option<String>,
    pub name: String,
    pub phone: Option<String>,
}

/// One shift of a roster (D2). Requests name shifts by position, so a malformed shift keeps
/// its place.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Shift {
    #[serde(deserialize_with = "time::optional")]
    pub start: Option<i64>,
    #[serde(deserialize_with = "time::optional")]
    pub end: Option<i64>,
    /// `workday` or `holiday`.
    pub kind: Option<String>,
    pub leader: Option<Person>,
    pub officers: Vec<Person>,
    pub backup_leader: Option<Person>,
    pub backup_officers: Vec<Person>,
}

/// A swap or leave request (D4): it takes effect only once the leader approves it, and only
/// with a named substitute. Who decided is looked up by position, so a malformed request
/// keeps its place.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ShiftRequest {
    /// `swap` or `leave`.
    pub kind: String,
    /// Index into the roster's shifts.
    pub shift: Option<usize>,
    pub requester: String,
    pub substitute: Option<Person>,
    pub reason: Option<String>,
    /// `pending`, `approved` or `rejected`.
    #[serde(default = "pending")]
    pub status: String,
    pub decided_by: Option<String>,
    #[serde(deserialize_with = "time::optional")]
    pub decided_at: Option<i64>,
}

/// A unit's roster for a period (D2–D4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Roster {
    #[serde(default = "crate::schema_one")]
    pub schema: i64,
    pub title: String,
    /// A holiday roster must reach the superior office 3 days ahead (D3).
    pub holiday: bool,
    #[serde(deserialize_with = "time::optional")]
    pub due_at: Option<i64>,
    #[serde(deserialize_with = "time::optional")]
    pub submitted_at: Option<i64>,
    pub shifts: Vec<Shift>,
    pub requests: Vec<ShiftRequest>,
}

impl Roster {
    /// When the earliest shift starts.
    pub fn starts_at(&self) -> Option<i64> {
        self.shifts.iter().filter_map(|shift| shift.start).min()
    }
}

fn pending() -> String {
    "pending".into()
}

pub(crate) fn check(roster: &Roster, checked: &mut Checked) {
    for (index, shift) in roster.shifts.iter().enumerate() {
        let number = index + 1;
        match (shift.start, shift.end) {
            (Some(start), Some(end)) if end <= start => checked
                .errors
                .push(format!("shift {number} ends before it starts")),
            (Some(_), Some(_)) => {}
            _ => checked
                .errors
                .push(format!("shift {number} needs a start and an end")),
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
        match request.shift {
            Some(shift) if shift < roster.shifts.len() => {}
            Some(shift) => checked.errors.push(format!(
                "request {number} names shift {} which does not exist",
                shift.saturating_add(1)
            )),
            None => checked
                .errors
                .push(format!("request {number} names no shift")),
        }
        if request.requester.trim().is_empty() {
            checked
                .errors
                .push(format!("request {number} names no requester"));
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
