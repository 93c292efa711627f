//! A shift handover (D7): what was done, the pending items the incoming officer takes over
//! (open until somebody closes them), the equipment, and both officers' signatures.

use serde::{Deserialize, Serialize};

use crate::{Checked, time};

/// A pending item of a handover: open until somebody closes it (D7).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PendingItem {
    #[serde(default)]
    pub text: String,
    #[serde(default, deserialize_with = "time::optional")]
    pub opened_at: Option<i64>,
    #[serde(default)]
    pub opened_by: Option<String>,
    #[serde(default, deserialize_with = "time::optional")]
    pub closed_at: Option<i64>,
    #[serde(default)]
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
pub struct Signatures {
    #[serde(default)]
    pub outgoing: Option<Signature>,
    #[serde(default)]
    pub incoming: Option<Signature>,
}

/// A shift handover (D7).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Handover {
    #[serde(default = "crate::schema_one")]
    pub schema: i64,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub done: Vec<String>,
    #[serde(default)]
    pub pending: Vec<PendingItem>,
    #[serde(default)]
    pub equipment: Option<String>,
    /// The handover before this one, whose open items this one carries.
    #[serde(default)]
    pub previous: Option<String>,
    #[serde(default)]
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
