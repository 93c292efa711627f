//! `zhiban log-call --content TEXT [--caller-unit U] [--caller-name N] [--phone P]
//! [--handling H] [--incident ID]`
//!
//! Logs a call or message in today's duty log on this device (created on first use); a
//! running `zhiban run` of the same device sends it on.

use clap::Args;
use serde_json::json;
use zhiban_client_core::{Call, DocumentId};

use super::explain;
use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct LogCall {
    /// What was said.
    #[arg(long)]
    content: String,
    /// The caller's unit.
    #[arg(long)]
    caller_unit: Option<String>,
    /// The caller's name.
    #[arg(long)]
    caller_name: Option<String>,
    /// The caller's phone number.
    #[arg(long)]
    phone: Option<String>,
    /// How the call was handled.
    #[arg(long)]
    handling: Option<String>,
    /// The incident the call belongs to, bare or as an `automerge:` URL.
    #[arg(long, value_name = "ID")]
    incident: Option<DocumentId>,
}

impl LogCall {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        if let Some(incident) = &self.incident {
            super::record_of_kind(&device, incident, "incident").await?;
        }
        let log = device
            .log_call(Call {
                caller_unit: self.caller_unit,
                caller_name: self.caller_name,
                phone: self.phone,
                content: self.content,
                handling: self.handling,
                incident: self.incident,
            })
            .await
            .map_err(explain)?;
        context.out.emit(
            &json!({ "log": log }),
            format_args!("logged in the duty log {log}"),
        )?;
        Ok(EXIT_OK)
    }
}
