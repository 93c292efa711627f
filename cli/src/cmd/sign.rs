//! `zhiban sign ID --outgoing|--incoming` — signs a handover for one side. A side already
//! signed is not signed over.

use clap::{ArgGroup, Args};
use serde_json::{Value, json};
use zhiban_client_core::DocumentId;

use super::{explain, local_time, record_of_kind};
use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
#[group(skip)]
#[command(group(ArgGroup::new("side").required(true).args(["outgoing", "incoming"])))]
pub(crate) struct Sign {
    /// The handover's id, bare or as an `automerge:` URL.
    id: DocumentId,
    /// Sign as the officer handing over.
    #[arg(long)]
    outgoing: bool,
    /// Sign as the officer taking over.
    #[arg(long)]
    incoming: bool,
}

impl Sign {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let side = if self.incoming {
            "incoming"
        } else {
            "outgoing"
        };
        let device = context.device().await?;
        let handover = record_of_kind(&device, &self.id, "handover").await?;
        let signature = &handover["signatures"][side];
        if let Some(by) = signature.get("by").and_then(Value::as_str) {
            let at = signature.get("at").and_then(Value::as_i64);
            anyhow::bail!(
                "the {side} side of {} is already signed by {by}{}",
                self.id,
                at.map(|at| format!(" at {}", local_time(at)))
                    .unwrap_or_default()
            );
        }
        device
            .sign_handover(&self.id, self.incoming)
            .await
            .map_err(explain)?;
        context.out.emit(
            &json!({ "id": self.id, "side": side }),
            format_args!("signed {} as the {side} officer", self.id),
        )?;
        Ok(EXIT_OK)
    }
}
