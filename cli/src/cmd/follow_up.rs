//! `zhiban follow-up ID --text T [--final]` — a follow-up report on an incident (due every
//! two hours, D12), or with `--final` the final report, which closes it.

use clap::Args;
use serde_json::json;
use zhiban_client_core::{DocumentId, ReportKind};

use super::{explain, non_empty, record_of_kind};
use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct FollowUp {
    /// The incident's id, bare or as an `automerge:` URL.
    id: DocumentId,
    /// What the report says.
    #[arg(long)]
    text: String,
    /// The final report: the incident is closed with it.
    #[arg(long = "final")]
    last: bool,
}

impl FollowUp {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        non_empty(&self.text, "a report's text")?;
        let device = context.device().await?;
        record_of_kind(&device, &self.id, "incident").await?;
        let (kind, name) = if self.last {
            (ReportKind::Final, "final")
        } else {
            (ReportKind::FollowUp, "follow_up")
        };
        device
            .add_report(&self.id, kind, &self.text)
            .await
            .map_err(explain)?;
        let human = if self.last {
            format!("final report added to {}; the incident is closed", self.id)
        } else {
            format!("follow-up report added to {}", self.id)
        };
        context
            .out
            .emit(&json!({ "id": self.id, "kind": name }), human)?;
        Ok(EXIT_OK)
    }
}
