//! The alerts benchmark: how long a red urgent report takes from the reporting phone to the
//! leader's browser, while the server holds 1,000 idle devices. The real server runs as a
//! child process (`relay/servers.rs`); the benchmark process holds the idle websockets
//! (`relay/client.rs`), the reporting `client-core` device and a real Web Push receiver
//! (`support/push_receiver.rs`) that checks the VAPID token and decrypts the aes128gcm
//! payload, so a delivery means the alert was readable. Prints a markdown table; not a timed
//! test (the targets are printed, not asserted).
//!
//! `cargo bench -p zhiban-tests --bench alerts` (add `-- --quick` for a smoke run with small
//! sizes, `-- --reports N` or `-- --idle N` to change them).
//!
//! Setup: one unit with a leader, a field user and the idle devices' officer. The leader
//! registers the receiver's subscription; with nobody on the roster a red alert falls back to
//! the unit's leaders. The idle devices log in first, then the server is restarted so that
//! their logins' memory (Argon2) is not counted; the reporting device logs in after the
//! restart (one Argon2 verification, shown in the notes).
//!
//! Each report: `urgent_report` (returns after the device's local commit), the device's sync
//! task sends it, the server commits it with its alert and outbox row, the push worker
//! encrypts and POSTs it; the latency ends when the receiver has decrypted it. Reports go one
//! at a time: the next starts once the previous one's push arrived and the server
//! acknowledged the document to the device.
// Test and measurement code: a failed expectation should panic, and casts of counts and
// durations for printing are fine.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

#[allow(dead_code)]
#[path = "relay/client.rs"]
mod client;
#[path = "../support/push_receiver.rs"]
mod push_receiver;
#[allow(dead_code)]
#[path = "relay/servers.rs"]
mod servers;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::sync::{broadcast, watch};
use zhiban_client_core::{Backoff, Device, DocumentId, Event};
use zhiban_protocol::PeerId;

use client::{Activity, Client};
use push_receiver::PushReceiver;
use servers::Login;

const LEADER: &str = "leader-user";
const FIELD: &str = "field-user";
/// Only for the server's own count of connections and loaded documents (`/api/sync/stats`).
const ADMIN: &str = "admin-user";
const PASSWORD: &str = servers::BENCH_PASSWORD;

const LOGIN_CONCURRENCY: usize = 4;
const CONNECT_CONCURRENCY: usize = 32;
/// From `urgent_report` being called until the push must have been decrypted.
const PUSH_TIMEOUT: Duration = Duration::from_secs(5);
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const IDLE_WINDOW: Duration = Duration::from_millis(100);
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

const TARGET_P50_MS: f64 = 5.0;
const TARGET_P99_MS: f64 = 20.0;
const TARGET_RSS_MIB: f64 = 64.0;

struct Config {
    idle: usize,
    warm_up: usize,
    reports: usize,
}

impl Config {
    fn full() -> Self {
        Config {
            idle: 1000,
            warm_up: 10,
            reports: 200,
        }
    }

    fn quick() -> Self {
        Config {
            idle: 100,
            warm_up: 3,
            reports: 20,
        }
    }
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start tokio: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("benchmark failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    // `cargo bench` adds `--bench`; unknown arguments are ignored.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut config = if args.iter().any(|a| a == "--quick") {
        Config::quick()
    } else {
        Config::full()
    };
    if let Some(reports) = number_after(&args, "--reports")? {
        config.reports = reports;
    }
    if let Some(idle) = number_after(&args, "--idle")? {
        config.idle = idle;
    }
    if config.reports == 0 {
        bail!("--reports must be at least 1");
    }
    servers::check_open_files(config.idle + 256)?;

    let work = tempfile::tempdir()?;
    let log = work.path().join("zhiban.log");
    let data_dir = work.path().join("zhiban-data");
    let mut setup = servers::ZhibanSetup::create(data_dir.clone()).await?;
    let unit = bench_unit(&data_dir).await?;
    for (username, role) in [(LEADER, "leader"), (FIELD, "field"), (ADMIN, "admin")] {
        servers::admin(
            &data_dir,
            &[
                "create-user",
                "--username",
                username,
                "--unit",
                &unit,
                "--role",
                role,
            ],
        )
        .await?;
    }
    let receiver = PushReceiver::start().await?;
    setup.push_allowed_origins = receiver.origin().to_owned();

    // Logins and the subscription on a first server process, then a fresh one.
    let first = setup.start(log.clone()).await?;
    eprintln!("logging in {} idle devices…", config.idle);
    let begun = Instant::now();
    let logins = servers::login_devices(first.addr, config.idle, LOGIN_CONCURRENCY).await?;
    eprintln!("  {:.1} s", begun.elapsed().as_secs_f64());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let leader_token = login(&http, first.addr, LEADER, "leader's browser").await?;
    let admin_token = login(&http, first.addr, ADMIN, "operator").await?;
    let response = http
        .post(format!("http://{}/api/push/subscriptions", first.addr))
        .bearer_auth(&leader_token)
        .json(&receiver.subscribe("leader"))
        .send()
        .await?;
    if response.status() != reqwest::StatusCode::CREATED {
        bail!(
            "registering the leader's push subscription: {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    first.stop().await?;
    let mut server = setup.start(log.clone()).await?;
    let url = format!("http://{}", server.addr);

    // The reporting device, connected and warmed up (database connections, the push sender's
    // HTTP connection and VAPID signature) before the memory baseline.
    let device_dir = tempfile::tempdir()?;
    let device = Device::open(device_dir.path()).await?;
    let rss_before_login = server.rss_kib()?;
    device.login(&url, FIELD, PASSWORD, "phone").await?;
    let rss_after_login = server.rss_kib()?;
    let acks = Acks::follow(&device);
    let sync = device.start_sync_with(Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(500),
    });
    acks.wait_connected(CONNECT_TIMEOUT).await?;
    report(&device, &receiver, &acks, "first").await?;
    server.wait_idle(IDLE_WINDOW, SETTLE_LIMIT).await?;
    let rss_baseline = server.rss_kib()?;

    eprintln!("connecting {} idle devices…", config.idle);
    let activity = Activity::new();
    let begun = Instant::now();
    let clients = connect_idle(server.addr, &logins, activity.clone()).await?;
    let connect_time = begun.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    server.wait_idle(IDLE_WINDOW, SETTLE_LIMIT).await?;
    let rss_connected = server.rss_kib()?;
    if let Some(ended) = clients.iter().find_map(Client::ended) {
        bail!("an idle connection ended before the reports: {ended}");
    }

    eprintln!(
        "{} warm-up reports, then {} measured…",
        config.warm_up, config.reports
    );
    for i in 0..config.warm_up {
        report(&device, &receiver, &acks, &format!("W{i}")).await?;
    }
    let frames_before = activity.frames.load(Ordering::Relaxed);
    let measured_begun = Instant::now();
    let mut samples = Vec::with_capacity(config.reports);
    for i in 0..config.reports {
        samples.push(report(&device, &receiver, &acks, &format!("K{i}")).await?);
    }
    let measured_time = measured_begun.elapsed();
    server.check_alive()?;
    let rss_after = server.rss_kib()?;
    let frames_to_idle = activity.frames.load(Ordering::Relaxed) - frames_before;
    let held = clients.iter().filter(|c| c.ended().is_none()).count();
    let server_stats = sync_stats(&http, server.addr, &admin_token).await?;

    let results = Results {
        samples,
        measured_time,
        rss_before_login,
        rss_after_login,
        rss_baseline,
        rss_connected,
        rss_after,
        held,
        connect_time,
        frames_to_idle,
        server_stats,
        log_problems: server.log_problems(),
    };

    sync.stop().await;
    futures_util::future::join_all(clients.into_iter().map(Client::close)).await;
    server.stop().await?;
    receiver.stop();
    print_table(&config, &results, started.elapsed());
    if held < config.idle {
        bail!(
            "only {held} of {} idle connections were still open after the reports",
            config.idle
        );
    }
    Ok(())
}

struct Sample {
    /// `urgent_report` returned: the report is durable on the device.
    stored: Duration,
    /// The device saw the server acknowledge the document.
    acked: Duration,
    /// The receiver decrypted the push.
    pushed: Duration,
    /// Deliveries for other (earlier) reports skipped while waiting for this one.
    stale: usize,
}

struct Results {
    samples: Vec<Sample>,
    measured_time: Duration,
    rss_before_login: u64,
    rss_after_login: u64,
    rss_baseline: u64,
    rss_connected: u64,
    rss_after: u64,
    held: usize,
    connect_time: Duration,
    frames_to_idle: u64,
    server_stats: SyncStats,
    log_problems: Vec<String>,
}

/// One urgent report, timed until its push is decrypted and the server has acknowledged it.
async fn report(
    device: &Device,
    receiver: &PushReceiver,
    acks: &Acks,
    location: &str,
) -> anyhow::Result<Sample> {
    let start = Instant::now();
    let id = device
        .urgent_report("accident", location, "bench")
        .await
        .with_context(|| format!("urgent report {location}"))?;
    let stored = start.elapsed();
    let wanted = id.to_string();
    let deadline = start + PUSH_TIMEOUT;
    let mut stale = 0;
    let delivery = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(delivery) = receiver.next_delivery(left).await else {
            bail!(
                "the push for report {location} ({id}) was not decrypted within {PUSH_TIMEOUT:?} \
                 ({stale} other deliveries seen meanwhile)"
            );
        };
        let payload = delivery.json();
        if payload["document_id"].as_str() == Some(wanted.as_str()) {
            break delivery;
        }
        stale += 1;
    };
    let pushed = delivery.received_at.duration_since(start);
    let acked_at = acks
        .wait_received(id, ACK_TIMEOUT)
        .await
        .with_context(|| format!("report {location} ({id})"))?;
    Ok(Sample {
        stored,
        acked: acked_at.saturating_duration_since(start),
        pushed,
        stale,
    })
}

/// What the device's sync task reported, with when the benchmark saw it.
#[derive(Default)]
struct SyncSeen {
    connected: usize,
    received: HashMap<DocumentId, Instant>,
}

/// Follows a device's events in a task of its own, so that each acknowledgement is stamped
/// when it happens rather than when the benchmark gets round to looking.
struct Acks {
    seen: watch::Receiver<SyncSeen>,
}

impl Acks {
    /// Call before starting the sync, so that `Connected` is not missed.
    fn follow(device: &Device) -> Acks {
        let mut events = device.subscribe();
        let (sender, seen) = watch::channel(SyncSeen::default());
        tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(Event::Connected) => sender.send_modify(|seen| seen.connected += 1),
                    Ok(Event::Received(id)) => {
                        let now = Instant::now();
                        sender.send_modify(|seen| {
                            seen.received.entry(id).or_insert(now);
                        });
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Acks { seen }
    }

    async fn wait_connected(&self, limit: Duration) -> anyhow::Result<()> {
        let mut seen = self.seen.clone();
        match tokio::time::timeout(limit, seen.wait_for(|seen| seen.connected > 0)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!("the device's events ended before it connected"),
            Err(_) => bail!("the device did not connect within {limit:?}"),
        }
    }

    async fn wait_received(&self, id: DocumentId, limit: Duration) -> anyhow::Result<Instant> {
        let mut seen = self.seen.clone();
        let waited =
            tokio::time::timeout(limit, seen.wait_for(|seen| seen.received.contains_key(&id)))
                .await;
        match waited {
            Ok(Ok(seen)) => Ok(seen.received[&id]),
            Ok(Err(_)) => bail!("the device's events ended"),
            Err(_) => bail!("the server did not acknowledge it within {limit:?}"),
        }
    }
}

async fn connect_idle(
    addr: SocketAddr,
    logins: &[Login],
    activity: Arc<Activity>,
) -> anyhow::Result<Vec<Client>> {
    futures_util::stream::iter(logins.iter().enumerate())
        .map(|(slot, login)| {
            let peer_id = PeerId::new(login.peer_id.clone());
            let activity = activity.clone();
            async move {
                let url = servers::sync_url(addr, login).await?;
                Client::connect(&url, peer_id, activity)
                    .await
                    .with_context(|| format!("idle device {slot} connecting"))
            }
        })
        .buffered(CONNECT_CONCURRENCY)
        .try_collect()
        .await
}

/// Logs `username` in over HTTP; returns the access token.
async fn login(
    http: &reqwest::Client,
    addr: SocketAddr,
    username: &str,
    device_name: &str,
) -> anyhow::Result<String> {
    let response = http
        .post(format!("http://{addr}/api/auth/login"))
        .json(&serde_json::json!({
            "username": username,
            "password": PASSWORD,
            "device_name": device_name,
        }))
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "login as {username}: {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    let body: serde_json::Value = response.json().await?;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("login as {username}: no access_token in {body}"))
}

/// The server's own view (`GET /api/sync/stats`, admins only).
#[derive(serde::Deserialize)]
struct SyncStats {
    connections: usize,
    documents_loaded: usize,
}

async fn sync_stats(
    http: &reqwest::Client,
    addr: SocketAddr,
    admin_token: &str,
) -> anyhow::Result<SyncStats> {
    let response = http
        .get(format!("http://{addr}/api/sync/stats"))
        .bearer_auth(admin_token)
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "GET /api/sync/stats: {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    Ok(response.json().await?)
}

/// The id of the unit `ZhibanSetup::create` made.
async fn bench_unit(data_dir: &Path) -> anyhow::Result<String> {
    let listing = servers::admin(data_dir, &["list-units"]).await?;
    listing
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|unit| unit["name"] == "Bench")
        .and_then(|unit| unit["id"].as_str().map(str::to_owned))
        .ok_or_else(|| anyhow!("no unit named Bench in: {listing}"))
}

fn print_table(config: &Config, results: &Results, elapsed: Duration) {
    let pushed: Vec<Duration> = results.samples.iter().map(|s| s.pushed).collect();
    let stored: Vec<Duration> = results.samples.iter().map(|s| s.stored).collect();
    let acked: Vec<Duration> = results.samples.iter().map(|s| s.acked).collect();
    let p50 = percentile(&pushed, 0.5);
    let p99 = percentile(&pushed, 0.99);
    let rss_mib = results.rss_after as f64 / 1024.0;
    let reports = results.samples.len();
    let idle = thousands(config.idle);

    let rows: Vec<[String; 4]> = vec![
        [
            format!("red urgent report → push decrypted, p50 ({reports} reports, {idle} idle)"),
            fmt_ms(p50),
            format!("≤ {TARGET_P50_MS} ms"),
            yes_no(ms(p50) <= TARGET_P50_MS),
        ],
        [
            "… p90".into(),
            fmt_ms(percentile(&pushed, 0.9)),
            "—".into(),
            "—".into(),
        ],
        [
            "… p99".into(),
            fmt_ms(p99),
            format!("≤ {TARGET_P99_MS} ms"),
            yes_no(ms(p99) <= TARGET_P99_MS),
        ],
        [
            "… max".into(),
            fmt_ms(percentile(&pushed, 1.0)),
            "—".into(),
            "—".into(),
        ],
        [
            "of which: report durable on the device (`urgent_report` returned), p50 / p99".into(),
            format!(
                "{} / {}",
                fmt_ms(percentile(&stored, 0.5)),
                fmt_ms(percentile(&stored, 0.99))
            ),
            "—".into(),
            "—".into(),
        ],
        [
            "for comparison: report → server's acknowledgement seen by the device, p50 / p99"
                .into(),
            format!(
                "{} / {}",
                fmt_ms(percentile(&acked, 0.5)),
                fmt_ms(percentile(&acked, 0.99))
            ),
            "—".into(),
            "—".into(),
        ],
        [
            format!("server RSS with {idle} idle connections, after the reports"),
            format!(
                "{} KiB ({rss_mib:.1} MiB)",
                thousands(results.rss_after as usize)
            ),
            format!("≤ {TARGET_RSS_MIB} MiB"),
            yes_no(rss_mib <= TARGET_RSS_MIB),
        ],
        [
            "idle connections held (handshake done, still open after the reports; the server's count in brackets)".into(),
            format!(
                "{} / {idle} (server: {}, with the reporting device)",
                thousands(results.held),
                thousands(results.server_stats.connections)
            ),
            idle.clone(),
            yes_no(results.held >= config.idle),
        ],
    ];

    println!();
    println!("| alerts | measured | target | met |");
    println!("| --- | --- | --- | --- |");
    for row in rows {
        println!("| {} |", row.join(" | "));
    }
    println!();
    let per_connection =
        (results.rss_connected as f64 - results.rss_baseline as f64) / config.idle.max(1) as f64;
    println!(
        "- server RSS: {} MiB after the reporting device's login ({} MiB before it: one Argon2 verification), {} MiB before the idle connections, {} MiB with them ({per_connection:.1} KiB each), {} MiB after the reports",
        mib(results.rss_after_login),
        mib(results.rss_before_login),
        mib(results.rss_baseline),
        mib(results.rss_connected),
        mib(results.rss_after),
    );
    println!(
        "- {idle} idle connections opened in {:.1} s; they received {} frames during the measured reports",
        results.connect_time.as_secs_f64(),
        results.frames_to_idle
    );
    println!(
        "- the server holds {} documents loaded after the reports: the reporting device keeps every report it made live while connected, so each stays in server memory (part of the RSS growth during the reports)",
        results.server_stats.documents_loaded
    );
    let stale: usize = results.samples.iter().map(|s| s.stale).sum();
    if stale > 0 {
        println!("- {stale} deliveries for earlier reports were skipped while waiting");
    }
    println!(
        "- {reports} reports one after another in {:.1} s ({} warm-up reports before); the leader is reached through the no-roster fallback to the unit's leaders",
        results.measured_time.as_secs_f64(),
        config.warm_up
    );
    if !results.log_problems.is_empty() {
        println!(
            "- server log: {} warning/error lines, first: {}",
            results.log_problems.len(),
            results
                .log_problems
                .iter()
                .take(3)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    println!(
        "- server: SQLite (WAL, synchronous=FULL), a child process; the device (its own SQLite store), the idle clients and the push receiver share the benchmark process"
    );
    println!("- machine: {}", machine());
    println!("- benchmark took {:.0} s", elapsed.as_secs_f64());
}

fn number_after(args: &[String], flag: &str) -> anyhow::Result<Option<usize>> {
    match args.iter().position(|a| a == flag) {
        None => Ok(None),
        Some(i) => args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .map(Some)
            .ok_or_else(|| anyhow!("{flag} takes a number")),
    }
}

/// Nearest-rank percentile.
fn percentile(values: &[Duration], p: f64) -> Duration {
    if values.is_empty() {
        return Duration::ZERO;
    }
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

fn fmt_ms(duration: Duration) -> String {
    format!("{:.2} ms", ms(duration))
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn yes_no(met: bool) -> String {
    if met { "yes".into() } else { "no".into() }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    // Other work on the machine shows in the latencies; the load average says how much.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?");
    format!("{model}, {cores} cores; 1-minute load average {load} at the end")
}
