//! A shift handover (D7): what was done, the pending items the incoming officer takes over
//! (open until somebody closes them), the equipment, and both officers' signatures.

use serde::{Deserialize, Serialize};

use crate::{Checked, time};

/// A pending item of a handover: open until somebody closes it (D7).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct PendingItem {
    pub text: String,
    #[serde(deserialize_with = "time::optional")]
    pub opened_at: Option<i64>,
    pub opened_by: Option<String>,
    #[serde(deserialize_with = "time::optional")]
    pub closed_at: Option<i64>,
    pub closed_by: Option<String>,
}

/// A signature: who signed, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub by: String,
    #[serde(default, deserialize_with = "time::optional")]
    pub at: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Signatures {
    pub outgoing: Option<Signature>,
    pub incoming: Option<Signature>,
}

/// A shift handover (D7).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Handover {
    #[serde(default = "crate::schema_one")]
    pub schema: i64,
    pub title: String,
    pub done: Vec<String>,
    pub pending: Vec<PendingItem>,
    pub equipment: Option<String>,
    /// The handover before this one, whose open items this one carries.
    pub previous: Option<String>,
    pub signatures: Signatures,
}

impl Handover {
    /// Pending items nobody has closed yet.
    pub fn open_items(&self) -> usize {
        self.pending
            .iter()
            .filter(|item| item.closed_at.is_none())
            .count()
    }
}

pub(crate) fn check(handover: &Handover, checked: &mut Checked) {
    if handover.signatures.outgoing.is_none() || handover.signatures.incoming.is_none() {
        checked
            .warnings
            .push("the handover is not yet signed by both officers".into());
    }
}
