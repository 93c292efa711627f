//! Drives `tests/js/peer.mjs`: the stock automerge-repo JS client (automerge-repo 2.5.6 with the
//! websocket network adapter) as a child process speaking JSON lines.
//!
//! Included from test binaries with `#[path = "../support/js_peer.rs"] mod js_peer;`.
//!
//! Needs `node` (v20+) on PATH (or `NODE_BIN`) and `npm ci --prefix tests/js` to have been run.
//! Set `TEST_LOG` to see the peer's stderr (add `DEBUG=automerge-repo:*` for the library's own
//! logs).
//!
//! Commands (one JSON object each; every reply is one JSON object, `"ok":false` replies are
//! returned, not turned into errors): `create {doc, wait_synced?}`, `find {url, timeout_ms?}`,
//! `set {url, path, value, wait_synced?}`, `push {url, path, value, wait_synced?}`, `get {url}`,
//! `wait {url, path, equals, timeout_ms?}`, `wait_len {url, path, len, timeout_ms?}`,
//! `synced {url, timeout_ms?}`, `ping`, `close`. See the header of `peer.mjs`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(20);
const CALL_TIMEOUT_SLACK: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Prefix of the ids this wrapper puts on commands that carry none of their own.
const AUTO_ID_PREFIX: &str = "__js_peer_";

/// One running `peer.mjs` process, logged in and connected to the server.
pub struct JsPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    next_id: u64,
    device: String,
    /// The ready line: `{"ok":true,"ready":true,"peer_id","user_id","device_id","server_peer_id"}`.
    pub ready: Value,
    /// Our peer id, as the login response gave it.
    pub peer_id: String,
    /// As the login response gave it (`""` if it was missing).
    pub user_id: String,
    /// As the login response gave it (`""` if it was missing).
    pub device_id: String,
}

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("js")
}

fn str_field(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

impl JsPeer {
    /// Spawns node with peer.mjs, which logs in at `server` (e.g. `http://127.0.0.1:PORT`) and
    /// connects to `/sync`; waits (up to 30 s) for its ready line.
    pub async fn start(
        server: &str,
        username: &str,
        password: &str,
        device: &str,
    ) -> anyhow::Result<JsPeer> {
        let dir = js_dir();
        let script = dir.join("peer.mjs");
        if !script.is_file() {
            bail!("{} is missing", script.display());
        }
        if !dir.join("node_modules/@automerge/automerge-repo").is_dir()
            || !dir
                .join("node_modules/@automerge/automerge-repo-network-websocket")
                .is_dir()
        {
            bail!(
                "{}/node_modules is missing: run `npm ci --prefix tests/js` (Node 20+) before these tests",
                dir.display()
            );
        }

        let node = std::env::var("NODE_BIN").unwrap_or_else(|_| "node".to_owned());
        let stderr = if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        let mut child = Command::new(&node)
            .arg(&script)
            .args([
                "--server",
                server,
                "--username",
                username,
                "--password",
                password,
                "--device",
                device,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!("spawning `{node}` (Node 20+ must be on PATH, or set NODE_BIN)")
            })?;
        let stdin = child.stdin.take().context("child stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("child stdout")?).lines();

        let mut peer = JsPeer {
            child,
            stdin,
            stdout,
            next_id: 0,
            device: device.to_owned(),
            ready: Value::Null,
            peer_id: String::new(),
            user_id: String::new(),
            device_id: String::new(),
        };
        let line = match tokio::time::timeout(READY_TIMEOUT, peer.read_json_line()).await {
            Ok(r) => r.with_context(|| format!("js peer {device}: waiting for the ready line"))?,
            Err(_) => bail!("js peer {device}: no ready line within {READY_TIMEOUT:?}"),
        };
        if line.get("ok") != Some(&Value::Bool(true))
            || line.get("ready") != Some(&Value::Bool(true))
        {
            let error = line
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| line.to_string());
            let status = tokio::time::timeout(Duration::from_secs(5), peer.child.wait()).await;
            bail!("js peer {device} failed to start: {error} (exit: {status:?})");
        }
        peer.peer_id = str_field(&line, "peer_id");
        peer.user_id = str_field(&line, "user_id");
        peer.device_id = str_field(&line, "device_id");
        peer.ready = line;
        Ok(peer)
    }

    /// Sends one command object and returns its reply (`"ok":false` replies included). Times out
    /// after the command's `timeout_ms` + 10 s, or 20 s without one.
    pub async fn call(&mut self, command: Value) -> anyhow::Result<Value> {
        let Value::Object(mut map) = command else {
            bail!("a js peer command must be a JSON object, got {command}");
        };
        let cmd_name = map.get("cmd").map(Value::to_string).unwrap_or_default();
        let timeout = match map.get("timeout_ms").and_then(Value::as_u64) {
            Some(ms) => Duration::from_millis(ms) + CALL_TIMEOUT_SLACK,
            None => DEFAULT_CALL_TIMEOUT,
        };
        // Every command carries an id so that a reply that arrives after its call timed out is
        // never taken for the reply to a later command.
        let auto_id = !map.contains_key("id");
        if auto_id {
            self.next_id += 1;
            map.insert(
                "id".to_owned(),
                Value::String(format!("{AUTO_ID_PREFIX}{}", self.next_id)),
            );
        }
        let id = map["id"].clone();
        let mut line = serde_json::to_string(&Value::Object(map))?;
        line.push('\n');
        let device = self.device.clone();

        let exchange = async {
            self.stdin
                .write_all(line.as_bytes())
                .await
                .with_context(|| format!("js peer {device}: writing command {cmd_name}"))?;
            self.stdin.flush().await?;
            loop {
                let reply = self.read_json_line().await?;
                if reply.get("id") == Some(&id) {
                    return anyhow::Ok(reply);
                }
                eprintln!("js peer {device}: skipping a stale reply: {reply}");
            }
        };
        let mut reply = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r.with_context(|| format!("js peer {device}: command {cmd_name}"))?,
            Err(_) => bail!("js peer {device}: no reply to {cmd_name} within {timeout:?}"),
        };
        if auto_id && let Value::Object(m) = &mut reply {
            m.remove("id");
        }
        Ok(reply)
    }

    /// Asks the peer to shut its repo down and waits for the process to exit (killing it if it
    /// does not within 10 s).
    pub async fn close(mut self) -> anyhow::Result<()> {
        let device = self.device.clone();
        let reply = self
            .call(serde_json::json!({"cmd": "close", "timeout_ms": 0}))
            .await;
        drop(self.stdin);
        let status = match tokio::time::timeout(CLOSE_TIMEOUT, self.child.wait()).await {
            Ok(status) => status.with_context(|| format!("js peer {device}: waiting for exit"))?,
            Err(_) => {
                let _ = self.child.kill().await;
                bail!("js peer {device}: did not exit within {CLOSE_TIMEOUT:?} of close");
            }
        };
        let reply = reply?;
        if reply.get("ok") != Some(&Value::Bool(true)) {
            bail!("js peer {device}: close failed: {reply}");
        }
        if !status.success() {
            bail!("js peer {device}: exited with {status}");
        }
        Ok(())
    }

    /// Next JSON line from the peer's stdout; an error if stdout closes.
    async fn read_json_line(&mut self) -> anyhow::Result<Value> {
        loop {
            let Some(line) = self.stdout.next_line().await? else {
                let status = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
                return Err(anyhow!(
                    "peer.mjs closed its stdout (exit: {status:?}; set TEST_LOG=1 to see its stderr)"
                ));
            };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(v) => return Ok(v),
                Err(_) => eprintln!(
                    "js peer {}: ignoring a non-JSON line on stdout: {line}",
                    self.device
                ),
            }
        }
    }
}
