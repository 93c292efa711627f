//! `zhiban close-pending ID --item N` — closes the N-th pending item of a handover (counted
//! from 1, as `zhiban handover` and `zhiban show` list them).

use clap::Args;
use serde_json::{Value, json};
use zhiban_client_core::DocumentId;

use super::{explain, record_of_kind};
use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct ClosePending {
    /// The handover's id, bare or as an `automerge:` URL.
    id: DocumentId,
    /// Which pending item, counted from 1.
    #[arg(long, value_name = "N", value_parser = super::parse_position)]
    item: usize,
}

impl ClosePending {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        let handover = record_of_kind(&device, &self.id, "handover").await?;
        let items = handover["pending"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        let Some(item) = items.get(self.item - 1) else {
            anyhow::bail!(
                "{} has {} pending item(s); there is no item {}",
                self.id,
                items.len(),
                self.item
            );
        };
        if !item["closed_at"].is_null() {
            anyhow::bail!(
                "item {} of {} is already closed{}",
                self.item,
                self.id,
                item.get("closed_by")
                    .and_then(Value::as_str)
                    .map(|by| format!(" by {by}"))
                    .unwrap_or_default()
            );
        }
        let text = item.get("text").and_then(Value::as_str).unwrap_or("-");
        let human = format!("closed item {} of {}: {text}", self.item, self.id);
        device
            .close_pending(&self.id, self.item - 1)
            .await
            .map_err(explain)?;
        context
            .out
            .emit(&json!({ "id": self.id, "item": self.item }), human)?;
        Ok(EXIT_OK)
    }
}
