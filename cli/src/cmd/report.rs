//! `zhiban report --urgent --category C --location L [--note N] [--wait SECS]`
//!
//! The one-tap urgent report (D22). The report is on this device's disk before anything is
//! printed, and the first line says so at once; then, for up to `--wait` seconds, the
//! command tries to hand it to the server and prints a second line with the outcome. Not
//! reaching the server is no failure: the report goes out with the next sync.

use std::time::Duration;

use clap::Args;
use serde_json::json;
use tokio::sync::broadcast::{self, error::RecvError};
use zhiban_client_core::{DeliveryStatus, Error, Event};

use crate::{Context, EXIT_OK, Usage};

#[derive(Args, Debug)]
pub(crate) struct Report {
    /// An urgent (red) report; the only kind for now.
    #[arg(long)]
    urgent: bool,
    /// What happened: accident, fire, flood…
    #[arg(long)]
    category: String,
    /// Where it happened.
    #[arg(long)]
    location: String,
    /// A first note, e.g. what is seen.
    #[arg(long)]
    note: Option<String>,
    /// How long to try to deliver the report to the server; 0 to only save it.
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = super::parse_seconds)]
    wait: Duration,
}

/// The longest a closing connection may hold the command up once the outcome is printed;
/// the report is on disk either way.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

impl Report {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        if !self.urgent {
            return Err(Usage(
                "only urgent reports for now; add --urgent to make an urgent (red) report".into(),
            )
            .into());
        }
        let device = context.device().await?;
        let id = device
            .urgent_report(
                &self.category,
                &self.location,
                self.note.as_deref().unwrap_or_default(),
            )
            .await
            .map_err(|error| match error {
                Error::NotLoggedIn => anyhow::anyhow!("not logged in; run `zhiban login` first"),
                error => error.into(),
            })?;
        context.out.emit(
            &json!({
                "id": id,
                "url": id.url(),
                "status": DeliveryStatus::SavedOnDevice,
            }),
            format_args!("saved on this device: {}", id.url()),
        )?;
        if self.wait.is_zero() {
            return Ok(EXIT_OK);
        }

        // Deliver for up to --wait: sync until the server holds the report (or revokes us).
        let mut events = device.subscribe();
        let sync = device.start_sync();
        let (status, revoked) = tokio::select! {
            status = device.wait_received(&id, self.wait) => (status?, false),
            () = revoked(&mut events) => (device.status(&id).await?, true),
        };
        let human = match status {
            DeliveryStatus::ReceivedByServer => "received by the server",
            DeliveryStatus::SavedOnDevice => {
                "saved on this device; it will be sent when a network is available"
            }
        };
        // Printed before closing the connection, which may take a moment.
        let printed = context
            .out
            .emit(&json!({ "id": id, "status": status }), human);
        if revoked {
            eprintln!(
                "zhiban: this device has been revoked; the report stays on it until someone logs in again"
            );
        }
        if tokio::time::timeout(STOP_TIMEOUT, sync.stop())
            .await
            .is_err()
        {
            tracing::warn!("the sync connection did not close in time; leaving it");
        }
        printed?;
        Ok(EXIT_OK)
    }
}

/// Returns once the server says this device is revoked.
async fn revoked(events: &mut broadcast::Receiver<Event>) {
    loop {
        match events.recv().await {
            Ok(Event::Revoked) => return,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}
