//! Device benchmark: the real server (in process) and real `client-core` devices with their
//! own stores, on loopback. Prints a table; not a timed test.
//!
//! - urgent report → readable on a colleague's device: from `urgent_report` returning on an
//!   online device A to device B holding the document's content (100 reports);
//! - a new device pulling 1,000 existing documents of its unit.
//!
//! Run: `cargo bench -p zhiban-tests --bench device`
// Test and measurement code: a failed expectation should panic, and casts of counts and
// durations for printing are fine.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::time::{Duration, Instant};

use serde_json::json;
use zhiban_client_core::{Backoff, DeliveryStatus, Device, DocumentId, Event};

use zhiban_server::access::Role;
use zhiban_server::units::NewUser;
use zhiban_server::{Settings, accounts, db};

const PASSWORD: &str = "longer bench passphrase";
const REPORTS: usize = 100;
const PULL_DOCUMENTS: usize = 1_000;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let server_dir = tempfile::tempdir()?;
    let settings = Settings {
        listen: "127.0.0.1:0".parse()?,
        data_dir: server_dir.path().to_owned(),
        log: "warn".into(),
        ..Settings::default()
    };
    let pool = db::connect(&settings.database_url()).await?;
    let key = zhiban_server::keys::Keys::load(&settings, &pool).await?;
    let unit = accounts::create_unit(
        &pool,
        &key,
        "Bench unit",
        None,
        zhiban_server::clock::system_ms(),
    )
    .await?;
    for username in ["reporter", "colleague", "newcomer"] {
        accounts::create_user(
            &pool,
            &key,
            NewUser {
                username,
                display_name: None,
                password: PASSWORD,
                unit_id: &unit,
                role: Role::Officer,
                cleared: false,
            },
            zhiban_server::clock::system_ms(),
        )
        .await?;
    }
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(zhiban_server::launch(settings, listener, async move {
        let _ = stopped.await;
    }));

    let backoff = Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(500),
    };
    let dirs = [
        tempfile::tempdir()?,
        tempfile::tempdir()?,
        tempfile::tempdir()?,
    ];
    let a = Device::open(dirs[0].path()).await?;
    a.login(&url, "reporter", PASSWORD, "A").await?;
    let b = Device::open(dirs[1].path()).await?;
    b.login(&url, "colleague", PASSWORD, "B").await?;
    let sync_a = a.start_sync_with(backoff);
    let sync_b = b.start_sync_with(backoff);
    // Warm-up: both connected and following the unit catalog.
    let warm = a.urgent_report("warm-up", "here", "").await?;
    wait_readable(&b, &warm, Duration::from_secs(30)).await?;

    let mut latencies = Vec::with_capacity(REPORTS);
    for i in 0..REPORTS {
        let mut events = b.subscribe();
        let id = a
            .urgent_report("accident", &format!("km {i}"), "road blocked")
            .await?;
        let returned = Instant::now();
        loop {
            if b.get(&id)
                .await
                .is_ok_and(|doc| doc.get("location").is_some())
            {
                break;
            }
            match tokio::time::timeout(Duration::from_secs(30), events.recv()).await {
                Ok(_) => {}
                Err(_) => anyhow::bail!("report {i} never reached B"),
            }
        }
        latencies.push(returned.elapsed());
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    let p99 = latencies[(latencies.len() * 99).div_ceil(100) - 1];

    // A new device of the unit catches up on 1,000 documents.
    let mut ids = Vec::with_capacity(PULL_DOCUMENTS);
    for i in 0..PULL_DOCUMENTS {
        ids.push(
            a.create(
                &json!({"type": "log_entry", "title": format!("call {i}"), "caller": "bench"}),
            )
            .await?,
        );
    }
    for id in &ids {
        if a.wait_received(id, Duration::from_secs(60)).await? != DeliveryStatus::ReceivedByServer {
            anyhow::bail!("document {id} never reached the server");
        }
    }
    let c = Device::open(dirs[2].path()).await?;
    c.login(&url, "newcomer", PASSWORD, "C").await?;
    let started = Instant::now();
    let sync_c = c.start_sync_with(backoff);
    let mut events = c.subscribe();
    let mut pending: std::collections::HashSet<DocumentId> = ids.iter().copied().collect();
    sweep(&c, &mut pending).await;
    while !pending.is_empty() {
        match tokio::time::timeout(Duration::from_secs(60), events.recv()).await {
            Err(_) => anyhow::bail!("the new device stalled with {} missing", pending.len()),
            Ok(Ok(Event::DocumentChanged(id))) => {
                if pending.contains(&id) && has_content(&c, &id).await {
                    pending.remove(&id);
                }
            }
            // Missed events: look at everything still missing.
            Ok(Err(_)) => sweep(&c, &mut pending).await,
            Ok(Ok(_)) => {}
        }
    }
    let pull = started.elapsed();

    println!("| workload | result |");
    println!("| --- | --- |");
    println!(
        "| urgent report returned on A → readable on B ({REPORTS} reports) | median {:.1} ms, p99 {:.1} ms |",
        ms(median),
        ms(p99)
    );
    println!(
        "| new device pulls {PULL_DOCUMENTS} existing documents (login excluded) | {:.0} ms |",
        ms(pull)
    );
    println!(
        "machine: {} cores; server, devices and their SQLite stores (synchronous=FULL) share them",
        std::thread::available_parallelism().map_or(0, usize::from)
    );

    sync_a.stop().await;
    sync_b.stop().await;
    sync_c.stop().await;
    let _ = stop.send(());
    server.await??;
    Ok(())
}

async fn wait_readable(device: &Device, id: &DocumentId, limit: Duration) -> anyhow::Result<()> {
    let mut events = device.subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    while !device
        .get(id)
        .await
        .is_ok_and(|doc| doc.get("location").is_some())
    {
        if tokio::time::timeout_at(deadline, events.recv())
            .await
            .is_err()
        {
            anyhow::bail!("{id} never became readable");
        }
    }
    Ok(())
}

async fn has_content(device: &Device, id: &DocumentId) -> bool {
    device
        .get(id)
        .await
        .is_ok_and(|doc| doc.get("title").is_some())
}

async fn sweep(device: &Device, pending: &mut std::collections::HashSet<DocumentId>) {
    let mut done = Vec::new();
    for id in pending.iter() {
        if has_content(device, id).await {
            done.push(*id);
        }
    }
    for id in done {
        pending.remove(&id);
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
