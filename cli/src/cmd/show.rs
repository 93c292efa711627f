//! `zhiban show ID` — one document, from this device's store.

use clap::Args;
use serde_json::json;
use zhiban_client_core::DocumentId;

use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct Show {
    /// The document's id, bare or as an `automerge:` URL.
    id: DocumentId,
}

impl Show {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        let document = device.get(&self.id).await?;
        let status = device.status(&self.id).await?;
        context.out.emit(
            &json!({ "id": self.id, "status": status, "document": document }),
            serde_json::to_string_pretty(&document)?,
        )?;
        Ok(EXIT_OK)
    }
}
