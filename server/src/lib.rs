//! The Zhiban relay server: HTTP API and the `/sync` websocket on one axum router, storage
//! through sqlx. [`launch`] is the one entry point; `main` only reads settings, binds and
//! passes a shutdown signal. `docs/ARCHITECTURE.md` is the map of the modules below and of
//! what each may not know.

pub mod access;
pub mod accounts;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod catalog;
mod cli;
pub mod clock;
pub mod commit;
pub mod db;
pub mod documents;
pub mod error;
pub mod keys;
mod kpis;
pub mod listener;
pub mod openapi;
pub mod outbox;
pub mod push;
pub mod records;
pub mod settings;
pub mod sync;
pub mod timeline;
pub mod units;
pub mod web;

use std::future::Future;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;
use zhiban_protocol::PeerId;

pub use cli::main;
pub use settings::Settings;

use crate::error::AppError;

/// Everything a request or a connection needs, cheap to clone. Only handlers, `sync` and
/// `launch` see it; domain modules take the narrow handles they need.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub pool: db::Pool,
    pub backend: db::Backend,
    pub keys: auth::TokenKeys,
    /// What catalog ids are keyed with.
    pub catalog_key: catalog::CatalogKey,
    /// What the audit trail's chain is keyed with.
    pub audit_key: audit::AuditKey,
    /// Password checks at once, and lockouts after failed logins.
    pub logins: auth::throttle::LoginThrottle,
    /// The unit of work documents commit through.
    pub committer: commit::Committer,
    pub documents: sync::Documents,
    pub connections: sync::Connections,
    /// Which user each Automerge actor belongs to.
    pub authors: sync::Authors,
    /// The time rules run on (`settings.clock`).
    pub clock: clock::Clock,
    /// Pushes committed to the outbox, to send now.
    pub outbox: outbox::Queue,
    /// Wakes the alert worker when a new alert has a step to schedule.
    pub alerts_wake: alerts::Wake,
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

impl AppState {
    /// Hands what an API action raised to delivery and the worker, after its commit.
    pub fn hand_over(&self, raised: alerts::Raised) {
        for push in raised.pushes {
            let _ = self.outbox.send(push);
        }
        if raised.wake {
            self.alerts_wake.notify_one();
        }
    }
}

pub fn router(state: AppState) -> Router {
    use axum::http::{HeaderValue, header};
    use tower_http::set_header::SetResponseHeaderLayer;

    let serves_tls = matches!(state.settings.tls_files(), Ok(Some(_)));
    let body_limit = state.settings.max_api_body_bytes;
    let request_timeout =
        Duration::from_secs(state.settings.limits.http_request_timeout_secs.max(1));
    let router = Router::new()
        .route("/healthz", get(healthz))
        .route("/api/openapi.json", get(openapi::serve))
        .merge(auth::routes())
        .merge(units::routes())
        .merge(accounts::routes())
        .merge(records::routes())
        .merge(kpis::routes())
        .merge(push::routes())
        .merge(alerts::routes())
        .merge(sync::routes())
        .merge(web::routes())
        .fallback(web::fallback)
        .layer(DefaultBodyLimit::max(body_limit))
        // Record data must not linger in a shared browser's or a proxy's cache, nor be
        // sniffed into something executable or framed by another site.
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        // A client that trickles its body holds a task; after this, it gets 408. (A websocket
        // lives on after its upgrade answer, which is immediate.)
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        // Spans carry the path only: `/sync?token=…` must not put tokens in the logs.
        .layer(TraceLayer::new_for_http().make_span_with(
            |request: &axum::http::Request<axum::body::Body>| {
                tracing::info_span!("http", method = %request.method(), path = %request.uri().path())
            },
        ))
        .with_state(state);
    if serves_tls {
        // Outermost, so that every answer carries it (a timeout's 408 too): a browser that
        // once reached us over https never tries plain http again (a downgrade to strip).
        // Only when we speak TLS ourselves: behind a proxy, the proxy says it.
        router.layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ))
    } else {
        router
    }
}

/// Answers when the database does.
#[utoipa::path(get, path = "/healthz", tag = "operators",
    responses((status = 200, body = String, description = "ok"), (status = 500, body = zhiban_api::ErrorBody)))]
pub(crate) async fn healthz(State(state): State<AppState>) -> Result<&'static str, AppError> {
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
    // Before anything else: a half-given or unreadable certificate stops the start.
    let tls = match settings.tls_files().map_err(anyhow::Error::msg)? {
        Some((cert, key)) => Some(listener::tls_acceptor(cert, key)?),
        None => None,
    };
    let (state, writer) = start(settings).await?;
    let address = listener.local_addr()?;
    if tls.is_some() {
        tracing::info!(%address, "serving https and wss (TLS on)");
    } else {
        tracing::info!(%address, "serving plain http and ws (TLS off: a proxy in front must terminate it)");
    }
    let token = state.shutdown.clone();
    let limits = state.settings.limits.clone();
    listener::serve(listener, router(state.clone()), &limits, tls, async move {
        shutdown.await;
        token.cancel();
    })
    .await;
    state.shutdown.cancel();
    state.tasks.close();
    if tokio::time::timeout(Duration::from_secs(10), state.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections or documents did not stop within 10 s");
    }
    state.committer.stop().await;
    drop(state);
    writer.await?;
    tracing::info!("stopped");
    Ok(())
}

/// Signs the audit trail's head into the checkpoint file every `audit_checkpoint_secs`, and
/// once more at shutdown: dropping the newest rows then shows in `verify-audit`.
async fn audit_checkpoints(state: AppState) {
    let path = state.settings.audit_checkpoint_file();
    let mut every = tokio::time::interval(Duration::from_secs(
        state.settings.audit_checkpoint_secs.max(1),
    ));
    loop {
        let stopping = tokio::select! {
            _ = every.tick() => false,
            () = state.shutdown.cancelled() => true,
        };
        let now = clock::system_ms();
        if let Err(error) = audit::checkpoint(&state.pool, &state.audit_key, &path, now).await {
            tracing::error!(%error, path = %path.display(), "cannot write an audit checkpoint");
        }
        if stopping {
            return;
        }
    }
}

/// Opens the database and starts what runs beside the requests (the commit writer, push
/// delivery, the alert worker); returns the state and the writer to await on shutdown.
async fn start(settings: Settings) -> anyhow::Result<(AppState, tokio::task::JoinHandle<()>)> {
    let pool = db::connect(&settings.database_url()).await?;
    let backend = db::Backend::of_url(&settings.database_url());
    let keys = keys::Keys::load(&settings, &pool).await?;
    let secret = keys.jwt.clone();
    let catalog_key = keys.catalog.clone();
    catalog::create_missing(&pool, &catalog_key, clock::system_ms()).await?;
    let origins =
        push::PushOrigins::parse(&settings.push_allowed_origins).map_err(anyhow::Error::msg)?;
    let push = push::Sender::new(
        &push::VapidKey::from_bytes(&keys.vapid)?,
        &settings.push_contact,
        origins,
    )?;
    let (outbox, queued) = tokio::sync::mpsc::unbounded_channel();
    let alerts_wake = alerts::Wake::default();
    let clock = settings.clock.clone();
    let handoff = commit::Handoff {
        outbox: outbox.clone(),
        wake: alerts_wake.clone(),
    };
    let (committer, writer) = commit::Committer::spawn(
        pool.clone(),
        backend,
        clock.clone(),
        (settings.intervals(), keys.audit.clone()),
        handoff,
    );
    let worker = alerts::worker::Worker {
        pool: pool.clone(),
        backend,
        clock: clock.clone(),
        queue: outbox.clone(),
        wake: alerts_wake.clone(),
        daily_report_hour: settings.daily_report_hour,
        utc_offset_hours: settings.utc_offset_hours,
    };
    let delivery = outbox::Delivery::new(pool.clone(), clock.clone(), push.clone());
    let state = AppState(Arc::new(Inner {
        keys: auth::TokenKeys::new(&secret, settings.access_token_ttl()),
        logins: auth::throttle::LoginThrottle::new(&settings.limits),
        catalog_key,
        audit_key: keys.audit.clone(),
        settings,
        pool,
        backend,
        committer,
        documents: sync::Documents::default(),
        connections: sync::Connections::default(),
        authors: sync::Authors::default(),
        clock,
        outbox,
        alerts_wake,
        push,
        server_peer_id: PeerId::new(format!("zhiban-server-{}", uuid::Uuid::now_v7())),
        shutdown: CancellationToken::new(),
        tasks: TaskTracker::new(),
    }));
    state
        .tasks
        .spawn(delivery.run(queued, state.tasks.clone(), state.shutdown.clone()));
    state.tasks.spawn(worker.run(state.shutdown.clone()));
    state.tasks.spawn(audit_checkpoints(state.clone()));
    Ok((state, writer))
}
