//! The relay benchmark: the Zhiban server and a plain samod relay, each a child process on
//! 127.0.0.1, under the same workloads driven by the same raw automerge-repo clients
//! (`relay/client.rs`). Prints a markdown table.
//!
//! `cargo bench -p zhiban-tests --bench relay` (add `-- --quick` for a smoke run with small
//! sizes, `-- --only zhiban` or `-- --only samod` for one side, `-- --writers N` to change the
//! number of durable writers).
//!
//! Workloads, in this order on each server:
//! 1. RSS per idle connection: server RSS after a short warm-up, then after 1,000 websocket
//!    connections that completed the handshake and sat idle for a second. The Zhiban server is
//!    restarted after the logins so that no login's memory (Argon2) is reused by sockets.
//! 2. Fan-out: those 1,000 connections subscribe to one document; a writer adds one record;
//!    the time from sending it until the last subscriber has applied it. 1,000 peers first,
//!    then connections are closed down to 100, then to 1 (samod pushes every document to every
//!    connected peer, so only subscribers stay connected).
//! 3. Pull: a 10,000-record document (10,000 changes) is uploaded, then fresh devices (new
//!    device login, new socket) request it; time from connecting until all heads are applied.
//! 4. Durable writes: 100 writers, each on its own document: add a record, send it, wait until
//!    the server's sync message includes it, repeat. Zhiban answers only after the SQLite
//!    commit (WAL, synchronous=FULL); samod has no durable storage (see the notes printed).
// Test and measurement code: a failed expectation should panic, and casts of counts and
// durations for printing are fine.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

#[path = "relay/client.rs"]
mod client;
#[path = "relay/servers.rs"]
mod servers;

use std::ops::Range;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use automerge::{Automerge, ChangeHash};
use futures_util::{StreamExt as _, TryStreamExt as _};
use tokio::sync::watch;
use zhiban_protocol::{DocumentId, PeerId};

use client::{Activity, Client, DocView, add_record, new_document};
use servers::{Login, ServerProcess};

struct Config {
    idle: usize,
    /// (subscribers, rounds), largest first.
    fanout: Vec<(usize, usize)>,
    records: usize,
    pulls: usize,
    writers: usize,
    durable: Duration,
}

impl Config {
    fn full() -> Self {
        Config {
            idle: 1000,
            fanout: vec![(1000, 10), (100, 30), (1, 30)],
            records: 10_000,
            pulls: 5,
            writers: 100,
            durable: Duration::from_secs(5),
        }
    }

    fn quick() -> Self {
        Config {
            idle: 100,
            fanout: vec![(100, 5), (1, 5)],
            records: 2_000,
            pulls: 2,
            writers: 20,
            durable: Duration::from_secs(2),
        }
    }
}

const CONNECT_CONCURRENCY: usize = 32;
const LOGIN_CONCURRENCY: usize = 4;
const WARM_UP_CONNECTIONS: usize = 16;
const QUIET: Duration = Duration::from_millis(50);
const IDLE_WINDOW: Duration = Duration::from_millis(100);
const SETTLE_LIMIT: Duration = Duration::from_secs(60);
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);
const SYNC_TIMEOUT: Duration = Duration::from_secs(180);

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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Zhiban,
    Samod,
}

async fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = if args.iter().any(|a| a == "--quick") {
        Config::quick()
    } else {
        Config::full()
    };
    let only = match args.iter().position(|a| a == "--only") {
        Some(i) => match args.get(i + 1).map(String::as_str) {
            Some("zhiban") => Some(Side::Zhiban),
            Some("samod") => Some(Side::Samod),
            other => bail!("--only takes zhiban or samod, not {other:?}"),
        },
        None => None,
    };
    let mut config = config;
    if let Some(i) = args.iter().position(|a| a == "--writers") {
        config.writers = args
            .get(i + 1)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow!("--writers takes a number"))?;
    }
    servers::check_open_files(config.idle + config.writers + 256)?;

    eprintln!("building a {}-record document…", config.records);
    let build = Instant::now();
    let mut big = new_document()?;
    for _ in 0..config.records {
        add_record(&mut big)?;
    }
    let big_bytes = big.save();
    let big_heads = big.get_heads();
    eprintln!(
        "  {} changes in {:.1} s, {} KiB saved",
        config.records,
        build.elapsed().as_secs_f64(),
        big_bytes.len() / 1024
    );
    let work = tempfile::tempdir()?;

    let zhiban = if only != Some(Side::Samod) {
        eprintln!("== zhiban ==");
        Some(bench_zhiban(&config, work.path(), &big_bytes, &big_heads).await)
    } else {
        None
    };
    let samod = if only != Some(Side::Zhiban) {
        eprintln!("== samod ==");
        Some(bench_samod(&config, work.path(), &big_bytes, &big_heads).await)
    } else {
        None
    };
    print_table(&config, zhiban.as_ref(), samod.as_ref(), started.elapsed());
    let failed = [zhiban.as_ref(), samod.as_ref()]
        .into_iter()
        .flatten()
        .any(|r| !r.failures.is_empty());
    if failed {
        bail!("some workloads failed (see the notes above)");
    }
    Ok(())
}

#[derive(Default)]
struct Results {
    rss: Option<Rss>,
    fanout: Vec<(usize, Vec<Duration>)>,
    pull: Vec<Duration>,
    durable: Option<Durable>,
    /// samod only: the same durable workload on its in-memory storage.
    durable_in_memory: Option<Durable>,
    failures: Vec<String>,
    notes: Vec<String>,
}

struct Rss {
    before_kib: u64,
    after_kib: u64,
    connections: usize,
    connect_time: Duration,
}

impl Rss {
    fn per_connection_kib(&self) -> f64 {
        (self.after_kib as f64 - self.before_kib as f64) / self.connections as f64
    }
}

struct Durable {
    acked: usize,
    window: Duration,
    latencies: Vec<Duration>,
    /// Server CPU time (user + system) during the window.
    server_cpu: Duration,
}

impl Durable {
    fn rate(&self) -> f64 {
        self.acked as f64 / self.window.as_secs_f64()
    }

    /// Server CPU use during the window, in cores (the window ends a little before the last
    /// writers finish, so this slightly overstates it).
    fn cores(&self) -> f64 {
        self.server_cpu.as_secs_f64() / self.window.as_secs_f64()
    }
}

/// One server under test and how the benchmark's clients reach it.
struct Target {
    server: ServerProcess,
    /// Zhiban: one login (device) per client slot. samod: any peer id is accepted.
    logins: Option<Vec<Login>>,
    activity: Arc<Activity>,
}

impl Target {
    async fn connect(&self, slot: usize) -> anyhow::Result<Client> {
        let addr = self.server.addr;
        let (url, peer_id) = match &self.logins {
            Some(logins) => {
                let login = logins
                    .get(slot)
                    .ok_or_else(|| anyhow!("no login for client slot {slot}"))?;
                (
                    servers::sync_url(addr, login).await?,
                    PeerId::new(login.peer_id.clone()),
                )
            }
            None => (
                format!("ws://{addr}/sync"),
                PeerId::new(format!("bench-{slot}-{}", uuid::Uuid::new_v4())),
            ),
        };
        Client::connect(&url, peer_id, self.activity.clone())
            .await
            .with_context(|| format!("client {slot} connecting to {}", self.server.name))
    }

    async fn connect_many(&self, slots: Range<usize>) -> anyhow::Result<Vec<Client>> {
        futures_util::stream::iter(slots)
            .map(|slot| self.connect(slot))
            .buffered(CONNECT_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Waits until no client has received anything for a while and the server's CPU is idle,
    /// so that one round or phase does not pay for the previous one's leftovers.
    async fn settle(&self) -> anyhow::Result<()> {
        self.activity.settle(QUIET, SETTLE_LIMIT).await?;
        self.server.wait_idle(IDLE_WINDOW, SETTLE_LIMIT).await
    }
}

/// Client slots: 0..idle subscribers (and, later, durable writers), then the fan-out writer,
/// the uploader and one fresh device per pull.
struct Slots {
    writer: usize,
    uploader: usize,
    first_puller: usize,
    total: usize,
}

impl Slots {
    fn new(config: &Config) -> Self {
        let base = config.idle.max(config.writers).max(WARM_UP_CONNECTIONS);
        Slots {
            writer: base,
            uploader: base + 1,
            first_puller: base + 2,
            total: base + 2 + config.pulls,
        }
    }
}

async fn bench_zhiban(
    config: &Config,
    work: &std::path::Path,
    big_bytes: &[u8],
    big_heads: &[ChangeHash],
) -> Results {
    let mut results = Results::default();
    let log = work.join("zhiban.log");
    let target = match zhiban_target(config, work, &log).await {
        Ok(target) => target,
        Err(error) => {
            results.failures.push(format!("zhiban setup: {error:#}"));
            return results;
        }
    };
    let mut target = run_workloads(config, target, big_bytes, big_heads, &mut results).await;
    if let Some(target) = target.take() {
        record_log_problems(&target.server, &mut results);
        if let Err(error) = target.server.stop().await {
            results.failures.push(format!("stopping zhiban: {error:#}"));
        }
    }
    results.notes.push(
        "zhiban: SQLite (WAL, synchronous=FULL); a change is acknowledged after its commit"
            .to_owned(),
    );
    results
}

async fn zhiban_target(
    config: &Config,
    work: &std::path::Path,
    log: &std::path::Path,
) -> anyhow::Result<Target> {
    let setup = servers::ZhibanSetup::create(work.join("zhiban-data")).await?;
    let first = setup.start(log.to_owned()).await?;
    let slots = Slots::new(config);
    eprintln!("  logging in {} devices…", slots.total);
    let begun = Instant::now();
    let logins = servers::login_devices(first.addr, slots.total, LOGIN_CONCURRENCY).await?;
    eprintln!(
        "  {} logins in {:.1} s; restarting the server for a clean memory baseline",
        logins.len(),
        begun.elapsed().as_secs_f64()
    );
    first.stop().await?;
    let server = setup.start(log.to_owned()).await?;
    Ok(Target {
        server,
        logins: Some(logins),
        activity: Activity::new(),
    })
}

async fn bench_samod(
    config: &Config,
    work: &std::path::Path,
    big_bytes: &[u8],
    big_heads: &[ChangeHash],
) -> Results {
    let mut results = Results::default();
    match servers::start_samod(None, work.join("samod.log")).await {
        Ok(server) => {
            let target = Target {
                server,
                logins: None,
                activity: Activity::new(),
            };
            if let Some(target) =
                run_workloads(config, target, big_bytes, big_heads, &mut results).await
            {
                results.durable_in_memory = results.durable.take();
                let unsolicited = target
                    .activity
                    .unsolicited
                    .load(std::sync::atomic::Ordering::Relaxed);
                results.notes.push(format!(
                    "samod: pushed {unsolicited} sync/request messages for documents the receiving client never opened (ignored / answered doc-unavailable)"
                ));
                record_log_problems(&target.server, &mut results);
                if let Err(error) = target.server.stop().await {
                    results.failures.push(format!("stopping samod: {error:#}"));
                }
            }
        }
        Err(error) => results.failures.push(format!("samod start: {error:#}")),
    }
    // The durable row again on samod's filesystem storage, in a fresh process.
    eprintln!("== samod, filesystem storage ==");
    let data = work.join("samod-data");
    match servers::start_samod(Some(&data), work.join("samod-fs.log")).await {
        Ok(server) => {
            let mut target = Target {
                server,
                logins: None,
                activity: Activity::new(),
            };
            match durable_writes(config, &mut target).await {
                Ok(durable) => results.durable = Some(durable),
                Err(error) => results
                    .failures
                    .push(format!("samod (filesystem) durable writes: {error:#}")),
            }
            record_log_problems(&target.server, &mut results);
            if let Err(error) = target.server.stop().await {
                results.failures.push(format!("stopping samod: {error:#}"));
            }
        }
        Err(error) => results
            .failures
            .push(format!("samod (filesystem) start: {error:#}")),
    }
    results.notes.push(
        "samod: in-memory storage for RSS, fan-out and pull; durable row on samod's TokioFilesystemStorage (tokio::fs::write, no fsync; the ack does not wait for it), in-memory in brackets"
            .to_owned(),
    );
    results
}

fn record_log_problems(server: &ServerProcess, results: &mut Results) {
    let problems = server.log_problems();
    if !problems.is_empty() {
        results.notes.push(format!(
            "{}: {} warning/error lines in its log, first: {}",
            server.name,
            problems.len(),
            problems
                .iter()
                .take(3)
                .map(|line| line.as_str())
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
}

/// Runs the four workloads; returns the target unless its server died.
async fn run_workloads(
    config: &Config,
    mut target: Target,
    big_bytes: &[u8],
    big_heads: &[ChangeHash],
    results: &mut Results,
) -> Option<Target> {
    let name = target.server.name.clone();
    eprintln!("  idle connections…");
    match idle_connections(config, &target).await {
        Ok((rss, clients)) => {
            eprintln!("    {:.1} KiB per connection", rss.per_connection_kib());
            results.rss = Some(rss);
            eprintln!("  fan-out…");
            match fanout(config, &target, clients).await {
                Ok(fanout) => results.fanout = fanout,
                Err(error) => results.failures.push(format!("{name} fan-out: {error:#}")),
            }
        }
        Err(error) => results
            .failures
            .push(format!("{name} idle connections: {error:#}")),
    }
    if let Err(error) = target.server.check_alive() {
        results.failures.push(format!("{error:#}"));
        return None;
    }
    eprintln!("  pull…");
    match pull(config, &target, big_bytes, big_heads).await {
        Ok(pulls) => results.pull = pulls,
        Err(error) => results.failures.push(format!("{name} pull: {error:#}")),
    }
    eprintln!("  durable writes…");
    match durable_writes(config, &mut target).await {
        Ok(durable) => results.durable = Some(durable),
        Err(error) => results
            .failures
            .push(format!("{name} durable writes: {error:#}")),
    }
    if let Err(error) = target.server.check_alive() {
        results.failures.push(format!("{error:#}"));
        return None;
    }
    Some(target)
}

async fn close_all(clients: Vec<Client>) {
    futures_util::future::join_all(clients.into_iter().map(Client::close)).await;
}

async fn idle_connections(config: &Config, target: &Target) -> anyhow::Result<(Rss, Vec<Client>)> {
    // Warm-up: the first connections open database connections and other lazy state.
    let warm = target.connect_many(0..WARM_UP_CONNECTIONS).await?;
    close_all(warm).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    target.server.wait_idle(IDLE_WINDOW, SETTLE_LIMIT).await?;
    let before_kib = target.server.rss_kib()?;
    let begun = Instant::now();
    let clients = target.connect_many(0..config.idle).await?;
    let connect_time = begun.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after_kib = target.server.rss_kib()?;
    if let Some(ended) = clients.iter().find_map(Client::ended) {
        bail!("an idle connection ended: {ended}");
    }
    Ok((
        Rss {
            before_kib,
            after_kib,
            connections: clients.len(),
            connect_time,
        },
        clients,
    ))
}

/// Waits until `view` satisfies `done`, failing after `limit` or if the client is gone.
async fn wait_view(
    client: &Client,
    view: &mut watch::Receiver<DocView>,
    limit: Duration,
    what: &str,
    done: impl FnMut(&DocView) -> bool,
) -> anyhow::Result<()> {
    match tokio::time::timeout(limit, view.wait_for(done)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => bail!(
            "{what}: connection ended: {}",
            client.ended().unwrap_or_default()
        ),
        Err(_) => bail!("{what}: timed out after {limit:?}"),
    }
}

async fn fanout(
    config: &Config,
    target: &Target,
    mut clients: Vec<Client>,
) -> anyhow::Result<Vec<(usize, Vec<Duration>)>> {
    let writer = target.connect(Slots::new(config).writer).await?;
    let mut doc = new_document()?;
    add_record(&mut doc)?;
    let heads = doc.get_heads();
    let document_id = DocumentId::random();
    let mut writer_view = writer.open(document_id, doc, false)?;
    wait_view(
        &writer,
        &mut writer_view,
        SYNC_TIMEOUT,
        "fan-out document upload",
        |v| v.server_heads == heads,
    )
    .await?;

    let begun = Instant::now();
    let mut views = Vec::with_capacity(clients.len());
    for client in &clients {
        views.push(client.open(document_id, Automerge::new(), true)?);
    }
    for (client, view) in clients.iter().zip(views.iter_mut()) {
        wait_view(
            client,
            view,
            SYNC_TIMEOUT,
            "subscribing to the fan-out document",
            |v| v.heads == heads,
        )
        .await?;
    }
    eprintln!(
        "    {} subscribers synced in {:.2} s",
        clients.len(),
        begun.elapsed().as_secs_f64()
    );
    target.settle().await?;

    let mut results = Vec::new();
    for &(peers, rounds) in &config.fanout {
        let peers = peers.min(clients.len());
        if clients.len() > peers {
            let dropped = clients.split_off(peers);
            views.truncate(peers);
            close_all(dropped).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            target.settle().await?;
        }
        let mut latencies = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let (sent, hash) = writer.change(document_id).await?;
            let waited = tokio::time::timeout(ROUND_TIMEOUT, async {
                for (client, view) in clients.iter().zip(views.iter_mut()) {
                    if view.wait_for(|v| v.heads.contains(&hash)).await.is_err() {
                        bail!(
                            "subscriber connection ended: {}",
                            client.ended().unwrap_or_default()
                        );
                    }
                }
                Ok(())
            })
            .await;
            match waited {
                Ok(outcome) => outcome.with_context(|| format!("{peers} peers, round {round}"))?,
                Err(_) => {
                    let missing = views
                        .iter()
                        .filter(|v| !v.borrow().heads.contains(&hash))
                        .count();
                    bail!(
                        "{peers} peers, round {round}: {missing} subscribers still lack the change after {ROUND_TIMEOUT:?}"
                    );
                }
            }
            let last = views
                .iter()
                .map(|v| v.borrow().changed_at)
                .max()
                .unwrap_or(sent);
            latencies.push(last.saturating_duration_since(sent));
            target.settle().await?;
        }
        eprintln!(
            "    {peers} subscribers: p50 {} p99 {}",
            fmt_duration(percentile(&latencies, 0.50)),
            fmt_duration(percentile(&latencies, 0.99))
        );
        results.push((peers, latencies));
    }
    close_all(clients).await;
    writer.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    target.settle().await?;
    Ok(results)
}

async fn pull(
    config: &Config,
    target: &Target,
    big_bytes: &[u8],
    big_heads: &[ChangeHash],
) -> anyhow::Result<Vec<Duration>> {
    let slots = Slots::new(config);
    let uploader = target.connect(slots.uploader).await?;
    let doc = Automerge::load(big_bytes)?;
    let document_id = DocumentId::random();
    let begun = Instant::now();
    let mut view = uploader.open(document_id, doc, false)?;
    wait_view(
        &uploader,
        &mut view,
        SYNC_TIMEOUT,
        "uploading the big document",
        |v| v.server_heads == big_heads,
    )
    .await?;
    eprintln!(
        "    uploaded and acknowledged in {:.2} s",
        begun.elapsed().as_secs_f64()
    );
    uploader.close().await;
    target.settle().await?;

    let mut times = Vec::with_capacity(config.pulls);
    for i in 0..config.pulls {
        let begun = Instant::now();
        let client = target.connect(slots.first_puller + i).await?;
        let mut view = client.open(document_id, Automerge::new(), true)?;
        wait_view(
            &client,
            &mut view,
            SYNC_TIMEOUT,
            "pulling the big document",
            |v| v.heads == big_heads || v.unavailable,
        )
        .await?;
        let (unavailable, changed_at) = {
            let v = view.borrow();
            (v.unavailable, v.changed_at)
        };
        if unavailable {
            bail!("the server answered doc-unavailable for the uploaded document");
        }
        times.push(changed_at.saturating_duration_since(begun));
        client.close().await;
        target.settle().await?;
    }
    eprintln!("    median {}", fmt_duration(percentile(&times, 0.5)));
    Ok(times)
}

async fn durable_writes(config: &Config, target: &mut Target) -> anyhow::Result<Durable> {
    let clients = target.connect_many(0..config.writers).await?;
    let mut docs = Vec::with_capacity(clients.len());
    for client in &clients {
        let doc = new_document()?;
        let heads = doc.get_heads();
        let document_id = DocumentId::random();
        let view = client.open(document_id, doc, false)?;
        docs.push((document_id, view, heads));
    }
    for (client, (_, view, heads)) in clients.iter().zip(docs.iter_mut()) {
        let heads = heads.clone();
        wait_view(
            client,
            view,
            SYNC_TIMEOUT,
            "creating a writer's document",
            |v| v.server_heads == heads,
        )
        .await?;
    }
    target.settle().await?;

    let cpu_before = target.server.cpu_ticks()?;
    let begun = Instant::now();
    let deadline = begun + config.durable;
    let outcomes = futures_util::future::join_all(clients.iter().zip(docs.iter_mut()).map(
        |(client, (document_id, view, _))| async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let (sent, hash) = client.change(*document_id).await?;
                wait_view(
                    client,
                    view,
                    ROUND_TIMEOUT,
                    "waiting for an acknowledgement",
                    |v| v.server_heads.contains(&hash),
                )
                .await?;
                let acked = Instant::now();
                if acked <= deadline {
                    latencies.push(acked - sent);
                }
            }
            anyhow::Ok(latencies)
        },
    ))
    .await;
    let window = config.durable;
    let server_cpu = ticks_to_duration(target.server.cpu_ticks()?.saturating_sub(cpu_before));
    let mut latencies = Vec::new();
    for outcome in outcomes {
        latencies.extend(outcome?);
    }
    close_all(clients).await;
    target.server.check_alive()?;
    let durable = Durable {
        acked: latencies.len(),
        window,
        latencies,
        server_cpu,
    };
    eprintln!(
        "    {:.0} changes/s, ack p50 {} p99 {}, server CPU {:.2} cores",
        durable.rate(),
        fmt_duration(percentile(&durable.latencies, 0.5)),
        fmt_duration(percentile(&durable.latencies, 0.99)),
        durable.cores()
    );
    Ok(durable)
}

/// /proc reports CPU time in USER_HZ ticks, 100 per second on Linux.
fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 10)
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

fn fmt_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{cores} cores ({model}), {mem_gib:.1} GiB RAM, Linux {}; servers and clients share the cores",
        kernel.trim()
    )
}

fn print_table(
    config: &Config,
    zhiban: Option<&Results>,
    samod: Option<&Results>,
    elapsed: Duration,
) {
    let na = || "—".to_owned();
    let cell = |r: Option<&Results>, f: &dyn Fn(&Results) -> Option<String>| {
        r.and_then(f).unwrap_or_else(|| "n/a".to_owned())
    };
    let mut rows: Vec<[String; 5]> = Vec::new();

    let pull_cell = |r: &Results| {
        (!r.pull.is_empty()).then(|| {
            format!(
                "{} (min {}, max {})",
                fmt_duration(percentile(&r.pull, 0.5)),
                fmt_duration(*r.pull.iter().min().expect("non-empty")),
                fmt_duration(*r.pull.iter().max().expect("non-empty"))
            )
        })
    };
    let pull_met = zhiban
        .filter(|r| !r.pull.is_empty())
        .map(|r| yes_no(percentile(&r.pull, 0.5) <= Duration::from_millis(150)));
    rows.push([
        format!(
            "fresh device pulls a {}-record document (median of {})",
            thousands(config.records),
            config.pulls
        ),
        cell(zhiban, &pull_cell),
        cell(samod, &pull_cell),
        "≤ 150 ms".into(),
        pull_met.unwrap_or_else(na),
    ]);

    let largest = config.fanout.first().map_or(0, |&(peers, _)| peers);
    for &(peers, rounds) in config.fanout.iter().rev() {
        let fan_cell = |r: &Results| {
            r.fanout.iter().find(|(p, _)| *p == peers).map(|(_, l)| {
                format!(
                    "{} / {}",
                    fmt_duration(percentile(l, 0.5)),
                    fmt_duration(percentile(l, 0.99))
                )
            })
        };
        let (goal, met) = if peers == largest {
            let ratio = |p: f64| {
                let z = zhiban?.fanout.iter().find(|(n, _)| *n == peers)?;
                let s = samod?.fanout.iter().find(|(n, _)| *n == peers)?;
                Some(
                    percentile(&s.1, p).as_secs_f64() / percentile(&z.1, p).as_secs_f64().max(1e-9),
                )
            };
            let met = match (ratio(0.5), ratio(0.99)) {
                (Some(r50), Some(r99)) => format!(
                    "{} ({r50:.0}× / {r99:.0}×)",
                    yes_no(r50 >= 10.0 && r99 >= 10.0)
                ),
                _ => na(),
            };
            ("≥ 10× faster than samod".to_owned(), met)
        } else {
            (na(), na())
        };
        rows.push([
            format!(
                "one change to {} subscribed peer{}, p50 / p99 until the last has it ({rounds} rounds)",
                thousands(peers),
                if peers == 1 { "" } else { "s" }
            ),
            cell(zhiban, &fan_cell),
            cell(samod, &fan_cell),
            goal,
            met,
        ]);
    }

    let rss_cell = |r: &Results| {
        r.rss.as_ref().map(|rss| {
            format!(
                "{:.1} KiB ({} → {} MiB)",
                rss.per_connection_kib(),
                mib(rss.before_kib),
                mib(rss.after_kib)
            )
        })
    };
    rows.push([
        format!(
            "server RSS per idle connection ({} connections)",
            thousands(config.idle)
        ),
        cell(zhiban, &rss_cell),
        cell(samod, &rss_cell),
        "≤ 16 KiB".into(),
        zhiban
            .and_then(|r| r.rss.as_ref())
            .map(|rss| yes_no(rss.per_connection_kib() <= 16.0))
            .unwrap_or_else(na),
    ]);

    let durable_text = |d: &Durable| {
        format!(
            "{} changes/s (ack p50 {}, p99 {}; server CPU {:.1} cores)",
            thousands(d.rate().round() as usize),
            fmt_duration(percentile(&d.latencies, 0.5)),
            fmt_duration(percentile(&d.latencies, 0.99)),
            d.cores()
        )
    };
    let zhiban_durable = |r: &Results| r.durable.as_ref().map(durable_text);
    let samod_durable = |r: &Results| {
        let fs = r
            .durable
            .as_ref()
            .map(|d| format!("fs: {}", durable_text(d)));
        let mem = r.durable_in_memory.as_ref().map(|d| {
            format!(
                "[in-memory: {} changes/s]",
                thousands(d.rate().round() as usize)
            )
        });
        match (fs, mem) {
            (None, None) => None,
            (fs, mem) => Some(
                [fs, mem]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        }
    };
    rows.push([
        format!(
            "durable changes/s, {} concurrent writers ({} s)",
            config.writers,
            config.durable.as_secs()
        ),
        cell(zhiban, &zhiban_durable),
        cell(samod, &samod_durable),
        "≥ 5,000/s".into(),
        zhiban
            .and_then(|r| r.durable.as_ref())
            .map(|d| yes_no(d.rate() >= 5000.0))
            .unwrap_or_else(na),
    ]);

    println!();
    println!("| workload | zhiban | samod 0.16 | target | met |");
    println!("| --- | --- | --- | --- | --- |");
    for row in rows {
        println!("| {} |", row.join(" | "));
    }
    println!();
    for results in [zhiban, samod].into_iter().flatten() {
        if let Some(rss) = &results.rss {
            println!(
                "- {} idle connections opened in {:.1} s",
                rss.connections,
                rss.connect_time.as_secs_f64()
            );
        }
        for note in &results.notes {
            println!("- {note}");
        }
        for failure in &results.failures {
            println!("- FAILED: {failure}");
        }
    }
    println!(
        "- clients: raw automerge-repo peers (tokio-tungstenite + automerge 0.12) in the benchmark process; fan-out latency = writer sends → last subscriber has applied the change"
    );
    println!("- machine: {}", machine());
    println!("- benchmark took {:.0} s", elapsed.as_secs_f64());
}

fn yes_no(met: bool) -> String {
    if met { "yes".into() } else { "no".into() }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
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
