//! A plain samod (=0.16.0) relay in its own process, the benchmark's anchor: the benchmark runs
//! it as a child next to the Zhiban server so that each server's memory and CPU are its own.
//!
//! `samod-relay` serves the in-memory relay of `tests/support/samod_relay.rs` (the same code the
//! interop tests use). `samod-relay DATA_DIR` serves the same relay on samod's
//! `TokioFilesystemStorage` in DATA_DIR (the automerge-repo-storage-nodefs layout; it writes
//! with `tokio::fs::write` and never calls fsync). Either way it prints
//! `samod-relay listening on ADDR` on stdout, serves `ws://ADDR/sync` on 127.0.0.1 and runs
//! until SIGINT or SIGTERM.

#[path = "../../support/samod_relay.rs"]
mod samod_relay;

use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use axum::{
    Router,
    extract::{State, WebSocketUpgrade},
    response::Response,
    routing::get,
    serve::ListenerExt as _,
};
use samod::{AcceptorHandle, Repo, storage::TokioFilesystemStorage};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match std::env::args_os().nth(1).map(PathBuf::from) {
        None => {
            let (addr, relay) = samod_relay::spawn_samod_relay().await?;
            println!("samod-relay listening on {addr}");
            eprintln!("samod-relay: in-memory storage");
            shutdown_signal().await;
            relay.stop().await;
            Ok(())
        }
        Some(data_dir) => {
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            eprintln!(
                "samod-relay: filesystem storage in {} (no fsync)",
                data_dir.display()
            );
            let repo = Repo::build_tokio()
                .with_storage(TokioFilesystemStorage::new(&data_dir))
                .load()
                .await;
            serve(repo).await
        }
    }
}

/// The same routing as `spawn_samod_relay`, for a repo with another storage.
async fn serve(repo: Repo) -> anyhow::Result<()> {
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
    println!("samod-relay listening on {addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    acceptor.close();
    repo.stop().await;
    Ok(())
}

async fn ws_handler(ws: WebSocketUpgrade, State(acceptor): State<AcceptorHandle>) -> Response {
    ws.on_upgrade(move |socket| async move {
        if let Err(e) = acceptor.accept_axum(socket, None) {
            eprintln!("samod-relay refused a connection: {e:?}");
        }
    })
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
