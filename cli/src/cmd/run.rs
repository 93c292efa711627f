//! `zhiban run [--for SECS]` — keeps the device synced and prints one line per event until
//! ctrl-c, SIGTERM or `--for` elapses. Exit code 3 when the server revokes the device.

use std::time::Duration;

use clap::Args;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use zhiban_client_core::{Event, SessionState};

use crate::{Context, EXIT_OK, EXIT_REVOKED};

#[derive(Args, Debug)]
pub(crate) struct Run {
    /// Stop after this many seconds instead of running until ctrl-c or SIGTERM.
    #[arg(long = "for", value_name = "SECS", value_parser = super::parse_seconds)]
    duration: Option<Duration>,
}

/// The longest a closing connection may hold the command up.
const STOP_TIMEOUT: Duration = Duration::from_secs(2);

impl Run {
    pub async fn apply(self, context: &Context) -> anyhow::Result<i32> {
        let device = context.device().await?;
        if device.session_state().await == SessionState::LoggedOut {
            anyhow::bail!("not logged in; run `zhiban login` first");
        }
        // Listening before anything can happen, so no signal and no event is missed.
        let mut shutdown = Shutdown::listen()?;
        let mut events = device.subscribe();
        let deadline = self
            .duration
            .map(|duration| tokio::time::Instant::now() + duration);
        let sync = device.start_sync();
        context.out.emit(
            &json!({ "event": "started" }),
            "started; syncing whenever the server can be reached (ctrl-c to stop)",
        )?;

        let mut code = EXIT_OK;
        loop {
            let event = tokio::select! {
                () = shutdown.requested() => break,
                () = until(deadline) => break,
                event = events.recv() => event,
            };
            let event = match event {
                Ok(event) => event,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "events came faster than they could be printed");
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            let (json, human) = match &event {
                Event::Connected => (json!({ "event": "connected" }), "connected".to_owned()),
                Event::Disconnected => (
                    json!({ "event": "disconnected" }),
                    "disconnected; will reconnect".to_owned(),
                ),
                Event::DocumentChanged(id) => (
                    json!({ "event": "changed", "id": id }),
                    format!("changed {id}"),
                ),
                Event::Received(id) => (
                    json!({ "event": "received", "id": id }),
                    format!("received by the server: {id}"),
                ),
                Event::Refused(id, reason) => (
                    json!({ "event": "refused", "id": id, "reason": reason }),
                    format!("refused by the server: {id}: {reason} (kept on this device)"),
                ),
                Event::Revoked => (
                    json!({ "event": "revoked" }),
                    "revoked: this device has been revoked; log in again from a trusted device"
                        .to_owned(),
                ),
            };
            context.out.emit(&json, human)?;
            if event == Event::Revoked {
                code = EXIT_REVOKED;
                break;
            }
        }
        if tokio::time::timeout(STOP_TIMEOUT, sync.stop())
            .await
            .is_err()
        {
            tracing::warn!("the sync connection did not close in time");
        }
        Ok(code)
    }
}

async fn until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Ctrl-c and SIGTERM, registered up front.
struct Shutdown {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Shutdown {
    #[cfg(unix)]
    fn listen() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn listen() -> anyhow::Result<Self> {
        Ok(Self {})
    }

    #[cfg(unix)]
    async fn requested(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        tracing::info!("stop requested");
    }

    #[cfg(not(unix))]
    async fn requested(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("stop requested");
    }
}
