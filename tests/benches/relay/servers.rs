//! The two servers as child processes of the benchmark, so that their memory and CPU are their
//! own: the real Zhiban server binary and the `samod-relay` binary. Both listen on 127.0.0.1.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures_util::StreamExt as _;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

pub const ZHIBAN_BIN: &str = env!("CARGO_BIN_EXE_zhiban-server-under-test");
pub const SAMOD_BIN: &str = env!("CARGO_BIN_EXE_samod-relay");

const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

pub struct ServerProcess {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `command` (stderr to `log`) and reads `<prefix><address>` from its stdout.
    async fn start(
        name: &str,
        mut command: Command,
        prefix: &str,
        log: PathBuf,
    ) -> anyhow::Result<ServerProcess> {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        command
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file))
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| anyhow!("{name} printed no address within {START_TIMEOUT:?}"))?
            .with_context(|| format!("reading {name}'s stdout"))?
            .ok_or_else(|| anyhow!("{name} exited at start; see {}", log.display()))?;
        let addr = line
            .strip_prefix(prefix)
            .ok_or_else(|| anyhow!("unexpected first line from {name}: {line:?}"))?
            .trim()
            .parse()
            .with_context(|| format!("address in {line:?}"))?;
        // Keep draining stdout so that a later print never blocks or fails.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ServerProcess {
            name: name.to_owned(),
            addr,
            child,
            log,
        })
    }

    pub fn pid(&self) -> anyhow::Result<u32> {
        self.child
            .id()
            .ok_or_else(|| anyhow!("{} has exited", self.name))
    }

    /// The server's resident set size in KiB (`VmRSS`).
    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmRSS in /proc status of {}", self.name))
    }

    /// User plus system CPU time used so far, in clock ticks.
    pub fn cpu_ticks(&self) -> anyhow::Result<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()?))?;
        // Fields after the command name (which may hold spaces) start at field 3 (state);
        // utime and stime are fields 14 and 15.
        let rest = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .ok_or_else(|| anyhow!("malformed /proc stat"))?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> anyhow::Result<u64> {
            Ok(fields
                .get(n - 3)
                .ok_or_else(|| anyhow!("short /proc stat"))?
                .parse()?)
        };
        Ok(field(14)? + field(15)?)
    }

    /// Waits until the server uses at most one clock tick of CPU in `window`.
    pub async fn wait_idle(&self, window: Duration, limit: Duration) -> anyhow::Result<()> {
        let begun = std::time::Instant::now();
        loop {
            let before = self.cpu_ticks()?;
            tokio::time::sleep(window).await;
            if self.cpu_ticks()? <= before + 1 {
                return Ok(());
            }
            if begun.elapsed() > limit {
                bail!("{} still busy after {limit:?}", self.name);
            }
        }
    }

    /// Fails if the process has exited (e.g. crashed under load).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited with {status}; its log: {}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it does not stop in time.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(pid.to_string())
                .status()
                .await;
            if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
                .await
                .is_err()
            {
                eprintln!(
                    "{} did not stop within {STOP_TIMEOUT:?}; killing it",
                    self.name
                );
                self.child.kill().await?;
            }
        }
        Ok(())
    }

    /// Lines of the server's stderr that are warnings or errors.
    pub fn log_problems(&self) -> Vec<String> {
        log_problems(&self.log)
    }
}

pub fn log_problems(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("WARN") || line.contains("ERROR") || line.contains("panick"))
        .map(str::to_owned)
        .collect()
}

/// A Zhiban server's data directory with one unit and one officer, `u1` / [`BENCH_PASSWORD`].
/// Every benchmark user's password (strong enough for the server's check).
pub const BENCH_PASSWORD: &str = "longer bench passphrase";

pub struct ZhibanSetup {
    pub data_dir: PathBuf,
    /// `push_allowed_origins` for the server (a push receiver on loopback).
    pub push_allowed_origins: String,
}

fn zhiban_command(data_dir: &Path) -> Command {
    let mut command = Command::new(ZHIBAN_BIN);
    command
        .env("ZHIBAN_LISTEN", "127.0.0.1:0")
        .env("ZHIBAN_DATA_DIR", data_dir)
        .env("ZHIBAN_LOG", "warn")
        // The benchmark's thousand devices all belong to one account, `u1`, which creates
        // every document: a real account would be refused long before.
        .env("ZHIBAN_LIMITS__MAX_CONNECTIONS_PER_USER", "100000")
        .env("ZHIBAN_LIMITS__MAX_NEW_DOCUMENTS_PER_HOUR", "100000000");
    command
}

impl ZhibanSetup {
    pub async fn create(data_dir: PathBuf) -> anyhow::Result<ZhibanSetup> {
        let unit = admin(&data_dir, &["create-unit", "--name", "Bench"]).await?;
        admin(
            &data_dir,
            &[
                "create-user",
                "--username",
                "u1",
                "--unit",
                &unit,
                "--role",
                "officer",
            ],
        )
        .await?;
        Ok(ZhibanSetup {
            data_dir,
            push_allowed_origins: String::new(),
        })
    }

    pub async fn start(&self, log: PathBuf) -> anyhow::Result<ServerProcess> {
        let mut command = zhiban_command(&self.data_dir);
        command.env("ZHIBAN_PUSH_ALLOWED_ORIGINS", &self.push_allowed_origins);
        ServerProcess::start(
            "zhiban-server",
            command,
            "zhiban-server listening on http://",
            log,
        )
        .await
    }
}

/// `zhiban-server admin …` on the data directory.
pub async fn admin(data_dir: &Path, args: &[&str]) -> anyhow::Result<String> {
    let output = zhiban_command(data_dir)
        .env_remove("RUST_LOG")
        .env("ZHIBAN_NEW_PASSWORD", BENCH_PASSWORD)
        .arg("admin")
        .args(args)
        .output()
        .await
        .context("running zhiban-server admin")?;
    if !output.status.success() {
        bail!(
            "zhiban-server admin {} failed: {}",
            args[0],
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?.trim().to_owned())
}

/// `samod-relay [DATA_DIR]`: in-memory storage, or samod's filesystem storage in DATA_DIR.
pub async fn start_samod(data_dir: Option<&Path>, log: PathBuf) -> anyhow::Result<ServerProcess> {
    let mut command = Command::new(SAMOD_BIN);
    if let Some(dir) = data_dir {
        command.arg(dir);
    }
    let name = if data_dir.is_some() {
        "samod-relay (filesystem)"
    } else {
        "samod-relay"
    };
    ServerProcess::start(name, command, "samod-relay listening on ", log).await
}

#[derive(Deserialize, Clone)]
pub struct Login {
    pub access_token: String,
    pub peer_id: String,
}

/// `/sync` for `login`'s device, opened with a fresh ticket (tickets live two minutes, less
/// than logging in a thousand devices takes, so each is fetched as its device connects).
pub async fn sync_url(addr: SocketAddr, login: &Login) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/api/sync/ticket"))
        .bearer_auth(&login.access_token)
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "sync ticket: {status}: {}",
            response.text().await.unwrap_or_default()
        );
    }
    let ticket: serde_json::Value = response.json().await?;
    let ticket = ticket["ticket"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("no ticket in the answer"))?;
    Ok(format!("ws://{addr}/sync?ticket={ticket}"))
}

/// Logs `u1` in `count` times, `concurrency` at a time: one new device each.
pub async fn login_devices(
    addr: SocketAddr,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Login>> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = format!("http://{addr}/api/auth/login");
    let logins: Vec<anyhow::Result<Login>> = futures_util::stream::iter(0..count)
        .map(|i| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let response = http
                    .post(&url)
                    .json(&serde_json::json!({
                        "username": "u1",
                        "password": BENCH_PASSWORD,
                        "device_name": format!("bench device {i}"),
                    }))
                    .send()
                    .await?;
                let status = response.status();
                if !status.is_success() {
                    bail!(
                        "login {i}: {status}: {}",
                        response.text().await.unwrap_or_default()
                    );
                }
                Ok(response.json::<Login>().await?)
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    logins.into_iter().collect()
}

/// Fails early, with what to do, when the benchmark would run out of file descriptors.
pub fn check_open_files(needed: usize) -> anyhow::Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))
        .and_then(|line| line.split_whitespace().nth(3))
        .and_then(|soft| soft.parse::<usize>().ok());
    match soft {
        Some(soft) if soft < needed => bail!(
            "the open-files limit is {soft}, the benchmark needs about {needed}: run `ulimit -n 4096` first"
        ),
        _ => Ok(()),
    }
}
