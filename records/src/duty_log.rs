//! A shift's duty log (D6): every call or message, one entry each. A log grows all shift
//! long, so the server projects it entry by entry ([`ITEMS`]) rather than as a whole.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Checked, read, time, valid_phone};

/// The list whose elements are projected one by one.
pub const ITEMS: &str = "entries";

/// One call or message in the duty log (D6). Every field has a default so that a malformed
/// entry keeps its place (entries are stored by position).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogEntry {
    #[serde(deserialize_with = "time::optional")]
    pub received_at: Option<i64>,
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DutyLog {
    #[serde(default = "crate::schema_one")]
    pub schema: i64,
    pub title: String,
    /// The shift's start.
    #[serde(deserialize_with = "time::optional")]
    pub shift_start: Option<i64>,
    pub entries: Vec<LogEntry>,
}

/// One entry read from its JSON view, with what is wrong with it (`errors`) and what a duty
/// officer should look at (`warnings`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    pub entry: LogEntry,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Reads the entry at `position` (zero-based).
pub fn read_entry(position: usize, view: Value) -> Entry {
    let mut errors = Vec::new();
    let at = format!("{ITEMS}[{position}]");
    let entry = read::lenient::<LogEntry>(view, &at, &mut errors).unwrap_or_default();
    let number = position + 1;
    let mut warnings = Vec::new();
    if entry.received_at.is_none() {
        errors.push(format!("entry {number} has no time received"));
    }
    if entry.content.trim().is_empty() {
        warnings.push(format!("entry {number} has no content"));
    }
    if let Some(phone) = &entry.phone
        && !valid_phone(phone)
    {
        warnings.push(format!(
            "entry {number}: `{phone}` does not look like a phone number"
        ));
    }
    if entry.handler.as_deref().is_none_or(|h| h.trim().is_empty()) {
        warnings.push(format!("entry {number} names no handler"));
    }
    Entry {
        entry,
        errors,
        warnings,
    }
}

/// Reads a whole log: the header, then each entry in its place.
pub(crate) fn read(mut view: Value, checked: &mut Checked) -> Option<DutyLog> {
    let entries = read::take_items(&mut view, ITEMS, &mut checked.errors);
    let mut log: DutyLog = read::lenient(view, "", &mut checked.errors)?;
    for (position, view) in entries.into_iter().enumerate() {
        let entry = read_entry(position, view);
        checked.errors.extend(entry.errors);
        checked.warnings.extend(entry.warnings);
        log.entries.push(entry.entry);
    }
    Some(log)
}
