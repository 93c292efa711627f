//! The Zhiban relay server: HTTP API and the `/sync` websocket on one axum router, storage
//! through sqlx. [`launch`] is the one entry point; `main` only reads settings, binds and
//! passes a shutdown signal.

pub mod alerts;
pub mod audit;
pub mod auth;
mod cli;
pub mod clock;
pub mod db;
pub mod error;
mod handover;
mod incident;
mod kpis;
mod log;
pub mod projection;
pub mod push;
pub mod roster;
mod search;
pub mod settings;
pub mod storage;
pub mod sync;
pub mod units;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::get;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;
use zhiban_protocol::PeerId;

pub use cli::main;
pub use settings::Settings;

use crate::error::AppError;

/// Everything a request or a background task needs, cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub pool: db::Pool,
    pub keys: auth::TokenKeys,
    pub storage: storage::Storage,
    pub documents: sync::Documents,
    pub connections: sync::Connections,
    /// Which user each Automerge actor belongs to.
    pub authors: sync::Authors,
    /// The time rules run on (`settings.clock`).
    pub clock: clock::Clock,
    /// Pushes committed to the outbox, to send now.
    pub alert_queue: tokio::sync::mpsc::UnboundedSender<alerts::Queued>,
    /// Wakes the alert worker when a new alert has a step to schedule.
    pub alerts_wake: Arc<tokio::sync::Notify>,
    /// Pushes being sent by this node.
    pub sending: alerts::InFlight,
    /// Web Push: the VAPID key and the one shared HTTP client.
    pub push: push::Sender,
    /// This node's peer id in `peer` handshakes and `sync` messages.
    pub server_peer_id: PeerId,
    /// Cancelled on shutdown; every connection's token is a child of it.
    pub shutdown: CancellationToken,
    /// Connection and document tasks, awaited on shutdown.
    pub tasks: TaskTracker,
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub fn router(state: AppState) -> Router {
    let body_limit = state.settings.max_api_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .merge(auth::routes())
        .merge(units::routes())
        .merge(incident::routes())
        .merge(log::routes())
        .merge(handover::routes())
        .merge(roster::routes())
        .merge(kpis::routes())
        .merge(search::routes())
        .merge(push::routes())
        .merge(alerts::routes())
        .merge(sync::routes())
        .fallback(|| async { AppError::NotFound("no such route") })
        .layer(DefaultBodyLimit::max(body_limit))
        // Spans carry the path only: `/sync?token=…` must not put tokens in the logs.
        .layer(TraceLayer::new_for_http().make_span_with(
            |request: &axum::http::Request<axum::body::Body>| {
                tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
            },
        ))
        .with_state(state)
}

async fn healthz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    sqlx::query("SELECT 1").execute(&state.pool).await?;
    Ok("ok")
}

/// Runs the server on `listener` until `shutdown` resolves, then closes every connection,
/// lets documents save their peers' sync states and waits for pending writes.
pub async fn launch(
    settings: Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pool = db::connect(&settings.database_url()).await?;
    let secret = auth::load_signing_secret(&pool, settings.jwt_secret.as_deref()).await?;
    let backend = storage::Backend {
        sqlite: settings.database_url().starts_with("sqlite"),
    };
    let push = push::Sender::new(&push::load_vapid_key(&pool).await?, &settings.push_contact)?;
    let (alert_queue, queued) = tokio::sync::mpsc::unbounded_channel();
    let alerts_wake = Arc::new(tokio::sync::Notify::new());
    let clock = settings.clock.clone();
    let hooks = storage::AlertHooks {
        clock: clock.clone(),
        queue: alert_queue.clone(),
        wake: alerts_wake.clone(),
    };
    let (storage, writer) = storage::Storage::spawn(pool.clone(), backend, hooks);
    let state = AppState(Arc::new(Inner {
        keys: auth::TokenKeys::new(&secret, settings.access_token_ttl()),
        settings,
        pool,
        storage,
        documents: sync::Documents::default(),
        connections: sync::Connections::default(),
        authors: sync::Authors::default(),
        clock,
        alert_queue,
        alerts_wake,
        sending: alerts::InFlight::default(),
        push,
        server_peer_id: PeerId::new(format!("zhiban-server-{}", uuid::Uuid::now_v7())),
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
    }));
    alerts::spawn(&state, queued);
    tracing::info!(address = %listener.local_addr()?, "serving");
    let token = state.shutdown.clone();
    // Sync frames are small and latency matters more than packet count: no Nagle delay.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(async move {
            shutdown.await;
            token.cancel();
        })
        .await?;
    state.shutdown.cancel();
    state.tasks.close();
    if tokio::time::timeout(Duration::from_secs(10), state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections or documents did not stop within 10 s");
    }
    state.storage.stop().await;
    drop(state);
    writer.await?;
    tracing::info!("stopped");
    Ok(())
}
