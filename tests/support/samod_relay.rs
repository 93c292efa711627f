//! A plain `samod` (=0.16.0) repo acting as a sync server, the benchmark anchor.
//!
//! Included via `#[path = "../support/samod_relay.rs"] mod samod_relay;` (no submodules here).
//! In-memory storage, samod's default share policy (every peer read-write, announce everything), any
//! peer id accepted (no `with_expected_peer_id`), websocket route `/sync` (the query string, e.g.
//! `?ticket=...`, is ignored), TCP_NODELAY on accepted sockets.
#![allow(dead_code)]

use std::{net::SocketAddr, time::Duration};

use anyhow::{Context as _, anyhow};
use axum::{
    Router,
    extract::{State, WebSocketUpgrade},
    response::Response,
    routing::get,
    serve::ListenerExt as _,
};
use samod::{AcceptorHandle, Repo};

const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// A running samod relay. Stop it with [`SamodRelay::stop`]; dropping it stops it in the background.
pub struct SamodRelay {
    addr: SocketAddr,
    repo: Repo,
    acceptor: AcceptorHandle,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// Start a samod repo acting as a sync server behind an axum websocket route `/sync` on a listener bound
/// to 127.0.0.1:0. Returns the bound address and a handle that stops it.
pub async fn spawn_samod_relay() -> anyhow::Result<(SocketAddr, SamodRelay)> {
    spawn_samod_relay_with(Repo::build_tokio().load().await).await
}

/// [`spawn_samod_relay`] for a repo built elsewhere (e.g. with filesystem storage).
pub async fn spawn_samod_relay_with(repo: Repo) -> anyhow::Result<(SocketAddr, SamodRelay)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let acceptor = repo
        .make_acceptor(samod::Url::parse(&format!("ws://{addr}/sync"))?)
        .map_err(|_| anyhow!("samod repo stopped"))?;

    let app = Router::new()
        .route("/sync", get(ws_handler))
        .with_state(acceptor.clone());
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = shutdown_rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!("samod relay server ended with error: {e}");
        }
    });

    Ok((
        addr,
        SamodRelay {
            addr,
            repo,
            acceptor,
            shutdown: Some(shutdown_tx),
            server: Some(server),
        },
    ))
}

async fn ws_handler(ws: WebSocketUpgrade, State(acceptor): State<AcceptorHandle>) -> Response {
    ws.on_upgrade(move |socket| async move {
        // samod's io loop drives the socket from here on; `None` = trust the peer id in `join`.
        if let Err(e) = acceptor.accept_axum(socket, None) {
            tracing::warn!("samod relay refused a connection: {e:?}");
        }
    })
}

impl SamodRelay {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/sync`
    pub fn ws_url(&self) -> String {
        format!("ws://{}/sync", self.addr)
    }

    /// The relay's samod repo (e.g. for `peer_id()` or `connected_peers()`).
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// Number of websocket connections that completed the handshake and are still open.
    pub fn connection_count(&self) -> usize {
        self.acceptor.connection_count()
    }

    /// Stop accepting, close all connections, stop the repo and the HTTP server.
    pub async fn stop(mut self) {
        self.acceptor.close();
        if tokio::time::timeout(STOP_TIMEOUT, self.repo.stop())
            .await
            .is_err()
        {
            tracing::warn!("samod relay repo did not stop within {STOP_TIMEOUT:?}");
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut server) = self.server.take()
            && tokio::time::timeout(STOP_TIMEOUT, &mut server)
                .await
                .is_err()
        {
            server.abort();
        }
    }
}

impl Drop for SamodRelay {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.acceptor.close();
            drop(self.repo.stop());
            server.abort();
        }
    }
}
