//! `zhiban status` — the session, and which documents are only on this device so far (and,
//! for those the server refused, why).

use std::fmt::Write as _;

use clap::Args;
use serde_json::json;
use zhiban_client_core::{DeliveryStatus, SessionState};

use crate::{Context, EXIT_OK};

#[derive(Args, Debug)]
pub(crate) struct Status {}

impl Status {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        let session = device.session_state().await;
        let identity = device.identity().await;
        let mut pending = Vec::new();
        let mut received = 0usize;
        for summary in device.list().await? {
            match summary.status {
                DeliveryStatus::ReceivedByServer => received += 1,
                // A document known only by id (listed in a catalog, its content not fetched
                // yet) has nothing of this device's to deliver: it is not pending.
                DeliveryStatus::SavedOnDevice => {
                    if !device.heads(&summary.id).await?.is_empty() {
                        pending.push(summary);
                    }
                }
            }
        }

        let mut human = String::new();
        match (session, &identity) {
            (SessionState::Active, Some(identity)) => writeln!(
                human,
                "logged in to {} (user {}, {} in unit {}; device {})",
                identity.server_url,
                identity.user_id,
                identity.role,
                identity.unit_id,
                identity.device_id
            )?,
            (SessionState::Revoked, _) => writeln!(
                human,
                "this device has been revoked; log in again from a trusted device \
                 (its documents stay readable here)"
            )?,
            _ => writeln!(human, "not logged in")?,
        }
        let clock_skew_ms = device.clock_skew().await?;
        if let Some(skew) = clock_skew_ms {
            writeln!(
                human,
                "this device's clock is {} minutes {} the server's: set it right, or the \
                 times in its reports are doubtful",
                skew.unsigned_abs() / 60_000,
                if skew > 0 { "ahead of" } else { "behind" }
            )?;
        }
        writeln!(human, "received by the server: {received}")?;
        if pending.is_empty() {
            write!(human, "only saved on this device: none")?;
        } else {
            write!(human, "only saved on this device: {}", pending.len())?;
            for summary in &pending {
                write!(
                    human,
                    "\n  {}  {}",
                    summary.id,
                    summary.title.as_deref().unwrap_or("-")
                )?;
                if let Some(reason) = &summary.refused {
                    write!(human, "\n      refused by the server: {reason}")?;
                }
            }
        }

        let refused: Vec<_> = pending
            .iter()
            .filter_map(|summary| {
                Some(json!({"id": summary.id, "reason": summary.refused.as_ref()?}))
            })
            .collect();
        let pending: Vec<_> = pending.iter().map(|summary| summary.id).collect();
        context.out.emit(
            &json!({
                "session": session,
                "pending": pending,
                "refused": refused,
                "clock_skew_ms": clock_skew_ms,
                "received": received,
                "identity": identity,
            }),
            human,
        )?;
        Ok(EXIT_OK)
    }
}
