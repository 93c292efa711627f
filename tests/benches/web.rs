//! The phone app's numbers (issue 13), in Debian's chromium driven by playwright-core
//! (`tests/js/web/bench.mjs`) against the real server as a child process:
//! - a cold start offline (the app installed by an earlier visit, no network) under 4× CPU
//!   throttling, until the red button is on screen;
//! - a tap on 紧急报告 until the report is flushed to IndexedDB (the app's own measure);
//! - a field device's red report (`client-core`, handed to sync when `urgent_report`
//!   returns) until the notification is shown on the leader's page: the server's encrypted
//!   push goes to a stand-in push service on loopback (`support/push_receiver.rs`, which
//!   decrypts it), which hands it to the leader's service worker through the DevTools
//!   protocol, as a browser's push service would;
//! - the sizes of what the service worker caches, raw and gzipped.
//!
//! `cargo bench -p zhiban-tests --bench web` (`-- --rounds N`, default 20). Prints a markdown
//! table; not a timed test.
#![allow(clippy::unwrap_used, clippy::cast_precision_loss)]

#[path = "../support/push_receiver.rs"]
mod push_receiver;
#[allow(dead_code)]
#[path = "relay/servers.rs"]
mod servers;

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use zhiban_client_core::{Backoff, Device};

use push_receiver::PushReceiver;
use servers::BENCH_PASSWORD;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = match args.iter().position(|arg| arg == "--rounds") {
        Some(at) => args.get(at + 1).context("--rounds N")?.parse()?,
        None => 20,
    };
    let work = tempfile::tempdir()?;
    let data_dir = work.path().join("zhiban-data");
    let mut setup = servers::ZhibanSetup::create(data_dir.clone()).await?;
    let listing = servers::admin(&data_dir, &["list-units"]).await?;
    let unit: Value = serde_json::from_str(listing.lines().next().context("a unit")?)?;
    let unit = unit["id"].as_str().context("unit id")?;
    for (username, role) in [("leader", "leader"), ("field", "field")] {
        servers::admin(
            &data_dir,
            &[
                "create-user",
                "--username",
                username,
                "--unit",
                unit,
                "--role",
                role,
            ],
        )
        .await?;
    }
    let receiver = PushReceiver::start().await?;
    setup.push_allowed_origins = receiver.origin().to_owned();
    let server = setup.start(work.path().join("zhiban.log")).await?;
    let url = format!("http://{}", server.addr);

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("js/web/bench.mjs");
    let mut node = tokio::process::Command::new("node")
        .arg(&script)
        .env("ZHIBAN_SERVER", &url)
        .env("ZHIBAN_PASSWORD", BENCH_PASSWORD)
        .env("LEADER_USER", "leader")
        .env("FIELD_USER", "field")
        .env("ROUNDS", rounds.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("node runs")?;
    let mut stdin = node.stdin.take().unwrap();
    let mut lines = tokio::io::BufReader::new(node.stdout.take().unwrap()).lines();
    let mut read = async || -> anyhow::Result<Value> {
        let line = tokio::time::timeout(Duration::from_secs(300), lines.next_line())
            .await
            .context("the browser answers")??
            .ok_or_else(|| anyhow!("the browser script ended early"))?;
        Ok(serde_json::from_str(&line)?)
    };
    eprintln!("cold starts and taps in chromium…");
    let first = read().await?;
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{url}/api/push/subscriptions"))
        .bearer_auth(first["access_token"].as_str().context("token")?)
        .json(&receiver.subscribe("leader"))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("subscribing the leader's page: {}", response.status());
    }

    eprintln!("{rounds} red reports to the leader's notification…");
    let device_dir = tempfile::tempdir()?;
    let device = Device::open(device_dir.path()).await?;
    device.login(&url, "field", BENCH_PASSWORD, "phone").await?;
    let sync = device.start_sync_with(Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(500),
    });
    let mut pushed = Vec::new();
    for round in 0..rounds {
        let started = Instant::now();
        device
            .urgent_report("山体滑坡", &format!("K{round}"), "bench")
            .await?;
        let delivery = receiver
            .next_delivery(Duration::from_secs(30))
            .await
            .context("a push")?;
        let line = format!("{}\n", json!({"deliver": delivery.json()}));
        stdin.write_all(line.as_bytes()).await?;
        read().await?;
        pushed.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    stdin.write_all(b"{\"done\":true}\n").await?;
    read().await?;
    sync.stop().await;
    server.stop().await?;

    let numbers = |key: &str| -> Vec<f64> {
        first[key]
            .as_array()
            .map(|values| values.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "| measure ({rounds} rounds) | p50 | p99 |")?;
    writeln!(out, "| --- | --- | --- |")?;
    for (name, samples) in [
        (
            "cold start offline, 4× CPU throttling → red button on screen",
            numbers("cold_start_ms"),
        ),
        (
            "tap on 紧急报告 → report in IndexedDB",
            numbers("tap_to_saved_ms"),
        ),
        (
            "red report handed to sync → notification shown on the leader's page",
            pushed,
        ),
    ] {
        writeln!(
            out,
            "| {name} | {:.1} ms | {:.1} ms |",
            percentile(&samples, 0.5),
            percentile(&samples, 0.99)
        )?;
    }
    writeln!(out, "\n| cached by the service worker | bytes | gzipped |")?;
    writeln!(out, "| --- | --- | --- |")?;
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/dist");
    let (mut total, mut total_gz) = (0, 0);
    for name in [
        "app.js",
        "app.css",
        "index.html",
        "sw.js",
        "automerge.wasm",
        "manifest.webmanifest",
        "icon.svg",
    ] {
        let bytes = std::fs::read(dist.join(name))?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes)?;
        let gzipped = gz.finish()?.len();
        total += bytes.len();
        total_gz += gzipped;
        writeln!(out, "| {name} | {} | {gzipped} |", bytes.len())?;
    }
    writeln!(out, "| total | {total} | {total_gz} |")?;
    Ok(())
}

fn percentile(samples: &[f64], at: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let index = ((sorted.len() - 1) as f64 * at).round();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    sorted[index as usize]
}
