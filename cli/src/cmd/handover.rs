//! `zhiban handover --done X... --pending Y... [--equipment E] [--previous ID]`
//!
//! Opens the handover for the end of this shift (D7). Every item still open in `--previous`
//! is carried over: it stays open until somebody closes it (`zhiban close-pending`).

use clap::{ArgGroup, Args};
use serde_json::{Value, json};
use zhiban_client_core::DocumentId;

use super::{explain, non_empty, record_of_kind};
use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
#[group(skip)]
#[command(group(ArgGroup::new("items").required(true).multiple(true).args(["done", "pending", "previous"])))]
pub(crate) struct Handover {
    /// What was done this shift (repeat the flag, or give several values).
    #[arg(long, value_name = "TEXT", num_args = 1..)]
    done: Vec<String>,
    /// What is left for the next shift (repeat the flag, or give several values).
    #[arg(long, value_name = "TEXT", num_args = 1..)]
    pending: Vec<String>,
    /// The state of the equipment (radios, vehicles, phones).
    #[arg(long, value_name = "TEXT")]
    equipment: Option<String>,
    /// The previous handover, whose open items this one carries over.
    #[arg(long, value_name = "ID")]
    previous: Option<DocumentId>,
}

impl Handover {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        for text in self.done.iter().chain(&self.pending) {
            non_empty(text, "a handover item")?;
        }
        let device = context.device().await?;
        if let Some(previous) = &self.previous {
            record_of_kind(&device, previous, "handover").await?;
        }
        let id = device
            .create_handover(
                &self.done,
                &self.pending,
                self.equipment.as_deref().unwrap_or_default(),
                self.previous.as_ref(),
            )
            .await
            .map_err(explain)?;
        let document = device.get(&id).await.map_err(explain)?;
        let pending = document["pending"].as_array().map_or(0, Vec::len);
        let carried = pending.saturating_sub(self.pending.len());
        let mut human = format!("handover {id}: {pending} pending item(s)");
        if carried > 0 {
            human.push_str(&format!(", {carried} carried over"));
        }
        for (number, item) in (1..).zip(document["pending"].as_array().into_iter().flatten()) {
            human.push_str(&format!(
                "\n  {number}. {}",
                item.get("text").and_then(Value::as_str).unwrap_or("-")
            ));
        }
        context.out.emit(&json!({ "id": id }), human)?;
        Ok(EXIT_OK)
    }
}
