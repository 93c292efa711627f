//! The register of incoming documents and notices (D8): each registered, routed to a
//! leader, tracked until done. Projected entry by entry, like a duty log.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Checked, read, time};

/// The list whose elements are projected one by one.
pub const ITEMS: &str = "entries";

/// One incoming document or notice (D8).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegisteredDocument {
    #[serde(deserialize_with = "time::optional")]
    pub received_at: Option<i64>,
    pub from: String,
    pub title: String,
    pub routed_to: Option<String>,
    pub done: bool,
}

/// The register of incoming documents (D8).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DocumentRegister {
    #[serde(default = "crate::schema_one")]
    pub schema: i64,
    pub entries: Vec<RegisteredDocument>,
}

/// One entry read from its JSON view, with its errors and warnings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entry {
    pub entry: RegisteredDocument,
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Reads the entry at `position` (zero-based).
pub fn read_entry(position: usize, view: Value) -> Entry {
    let mut errors = Vec::new();
    let at = format!("{ITEMS}[{position}]");
    let entry = read::lenient::<RegisteredDocument>(view, &at, &mut errors).unwrap_or_default();
    let number = position + 1;
    if entry.received_at.is_none() || entry.title.trim().is_empty() {
        errors.push(format!(
            "document {number} needs a time received and a title"
        ));
    }
    let mut warnings = Vec::new();
    if entry.routed_to.is_none() && !entry.done {
        warnings.push(format!("document {number} is not yet routed to a leader"));
    }
    Entry {
        entry,
        errors,
        warnings,
    }
}

pub(crate) fn read(mut view: Value, checked: &mut Checked) -> Option<DocumentRegister> {
    let entries = read::take_items(&mut view, ITEMS, &mut checked.errors);
    let mut register: DocumentRegister = read::lenient(view, "", &mut checked.errors)?;
    for (position, view) in entries.into_iter().enumerate() {
        let entry = read_entry(position, view);
        checked.errors.extend(entry.errors);
        checked.warnings.extend(entry.warnings);
        register.entries.push(entry.entry);
    }
    Some(register)
}
