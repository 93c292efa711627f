//! A plain samod (=0.16.0) relay in its own process, the benchmark's anchor: the benchmark runs
//! it as a child next to the Zhiban server so that each server's memory and CPU are its own.
//!
//! `samod-relay` serves the in-memory relay of `tests/support/samod_relay.rs` (the same code the
//! interop tests use). `samod-relay DATA_DIR` serves the same relay on samod's
//! `TokioFilesystemStorage` in DATA_DIR (the automerge-repo-storage-nodefs layout; it writes
//! with `tokio::fs::write` and never calls fsync). Either way it prints
//! `samod-relay listening on ADDR` on stdout, serves `ws://ADDR/sync` on 127.0.0.1 and runs
//! until SIGINT or SIGTERM.
// Test and measurement code: a failed expectation should panic, and casts of counts and
// durations for printing are fine.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

#[path = "../../support/samod_relay.rs"]
mod samod_relay;

use std::path::PathBuf;

use anyhow::Context as _;
use samod::{Repo, storage::TokioFilesystemStorage};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let repo = match std::env::args_os().nth(1).map(PathBuf::from) {
        None => {
            eprintln!("samod-relay: in-memory storage");
            Repo::build_tokio().load().await
        }
        Some(data_dir) => {
            std::fs::create_dir_all(&data_dir)
                .with_context(|| format!("creating {}", data_dir.display()))?;
            eprintln!(
                "samod-relay: filesystem storage in {} (no fsync)",
                data_dir.display()
            );
            Repo::build_tokio()
                .with_storage(TokioFilesystemStorage::new(&data_dir))
                .load()
                .await
        }
    };
    let (addr, relay) = samod_relay::spawn_samod_relay_with(repo).await?;
    println!("samod-relay listening on {addr}");
    shutdown_signal().await;
    relay.stop().await;
    Ok(())
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
