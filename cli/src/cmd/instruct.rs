//! `zhiban instruct ID --text T` — records a leader's instruction (批示) on an incident (D14).

use clap::Args;
use serde_json::json;
use zhiban_client_core::DocumentId;

use super::{explain, non_empty, record_of_kind};
use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct Instruct {
    /// The incident's id, bare or as an `automerge:` URL.
    id: DocumentId,
    /// The instruction.
    #[arg(long)]
    text: String,
}

impl Instruct {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        non_empty(&self.text, "an instruction")?;
        let device = context.device().await?;
        record_of_kind(&device, &self.id, "incident").await?;
        device
            .add_instruction(&self.id, &self.text)
            .await
            .map_err(explain)?;
        context.out.emit(
            &json!({ "id": self.id }),
            format_args!("instruction added to {}", self.id),
        )?;
        Ok(EXIT_OK)
    }
}
