//! The `zhiban` command as a field tablet runs it: a child process per command, a data
//! directory per device. Covers `kill -9` right after a report returned, and a report read and
//! edited by the stock JavaScript client.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use automerge::Automerge;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use zhiban_protocol::DocumentId;

use crate::helpers::{PASSWORD, org, spawn_app_with, test_settings, text};
use crate::js_peer::JsPeer;

pub(crate) fn zhiban(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zhiban-under-test"));
    command
        .env("ZHIBAN_DATA_DIR", data_dir)
        .env(
            "ZHIBAN_LOG",
            if std::env::var_os("TEST_LOG").is_some() {
                "debug"
            } else {
                "warn"
            },
        )
        .arg("--json")
        .stdin(Stdio::null())
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    command
}

/// Runs one command to completion and returns its JSON output lines.
pub(crate) async fn run(data_dir: &Path, args: &[&str]) -> Vec<Value> {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        zhiban(data_dir).args(args).stdout(Stdio::piped()).output(),
    )
    .await
    .expect("command finishes")
    .expect("command runs");
    assert!(
        output.status.success(),
        "zhiban {args:?} failed: {output:?}"
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect()
}

/// `zhiban login`, the password piped in on stdin as a script would.
pub(crate) async fn login(data_dir: &Path, server: &str, username: &str) {
    use tokio::io::AsyncWriteExt;
    let mut child = zhiban(data_dir)
        .args(["login", "--server", server, "--username", username])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("command runs");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .await
        .unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("command finishes")
        .expect("command runs");
    assert!(output.status.success(), "zhiban login failed: {output:?}");
    let line = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Value> = line
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines[0]["device_id"].is_string(), "{lines:?}");
}

pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) lines: Lines<BufReader<ChildStdout>>,
}

pub(crate) fn spawn(data_dir: &Path, args: &[&str]) -> Running {
    let mut child = zhiban(data_dir)
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("zhiban starts");
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    Running { child, lines }
}

impl Running {
    pub(crate) async fn next(&mut self, limit: Duration) -> Value {
        let line = tokio::time::timeout(limit, self.lines.next_line())
            .await
            .expect("a line in time")
            .expect("readable")
            .expect("not closed");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }

    /// Reads lines until one satisfies `wanted`.
    pub(crate) async fn until(
        &mut self,
        limit: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let line = self.next(left).await;
            if wanted(&line) {
                return line;
            }
        }
    }
}

#[tokio::test]
async fn a_report_killed_right_after_it_returned_survives_and_is_sent() {
    let server_dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(server_dir.path())).await;
    org(&app).await;
    let address = app.address;
    let server = format!("http://{address}");
    let phone = tempfile::tempdir().unwrap();
    login(phone.path(), &server, "alice").await;
    app.stop().await.unwrap();

    // The server is down, so the report cannot have left the phone before the kill.
    let mut report = spawn(
        phone.path(),
        &[
            "report",
            "--urgent",
            "--category",
            "fire",
            "--location",
            "fuel depot",
            "--note",
            "smoke",
            "--wait",
            "30",
        ],
    );
    let saved = report.next(Duration::from_secs(30)).await;
    report.child.start_kill().unwrap();
    report.child.wait().await.unwrap();
    assert_eq!(saved["status"], "saved_on_device");
    let id = saved["id"].as_str().unwrap().to_owned();

    let shown = run(phone.path(), &["show", &id]).await;
    assert_eq!(shown[0]["document"]["location"], "fuel depot");
    assert_eq!(shown[0]["status"], "saved_on_device");

    let mut settings = test_settings(server_dir.path());
    settings.listen = address;
    let app = spawn_app_with(settings).await;
    let mut background = spawn(phone.path(), &["run", "--for", "60"]);
    background
        .until(Duration::from_secs(30), |line| {
            line["event"] == "received" && line["id"] == id.as_str()
        })
        .await;
    background.child.start_kill().unwrap();

    let status = run(phone.path(), &["status"]).await;
    assert!(
        !status[0]["pending"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == id.as_str()),
        "{status:?}"
    );
    let mut copy = Automerge::new();
    let document_id: DocumentId = id.parse().unwrap();
    assert!(
        app.peer("anna")
            .await
            .sync(document_id, &mut copy)
            .await
            .unwrap()
    );
    assert_eq!(text(&copy, "location").as_deref(), Some("fuel depot"));
    assert_eq!(text(&copy, "grade").as_deref(), Some("red"));

    // The shift ends: the officer logs out of the shared phone.
    let out = run(phone.path(), &["logout"]).await;
    assert_eq!(out[0]["logged_out"], true, "{out:?}");
    assert_eq!(
        run(phone.path(), &["status"]).await[0]["session"],
        "logged_out"
    );
}

#[tokio::test]
async fn the_stock_js_client_reads_and_edits_a_cli_report() {
    let server_dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(server_dir.path())).await;
    org(&app).await;
    let server = format!("http://{}", app.address);
    let tablet = tempfile::tempdir().unwrap();
    login(tablet.path(), &server, "alice").await;
    let lines = run(
        tablet.path(),
        &[
            "report",
            "--urgent",
            "--category",
            "flood",
            "--location",
            "north underpass",
            "--wait",
            "20",
        ],
    )
    .await;
    assert_eq!(lines[1]["status"], "received_by_server", "{lines:?}");
    let id = lines[0]["id"].as_str().unwrap().to_owned();
    let url = format!("automerge:{id}");

    let mut browser = JsPeer::start(&server, "anna", PASSWORD, "duty room browser")
        .await
        .unwrap();
    let found = browser
        .call(json!({"cmd": "find", "url": url}))
        .await
        .unwrap();
    assert_eq!(found["ok"], true, "{found}");
    assert_eq!(found["doc"]["location"], "north underpass");
    assert_eq!(found["doc"]["grade"], "red");
    let set = browser
        .call(json!({"cmd": "set", "url": url, "path": ["acknowledged_by"], "value": "duty room"}))
        .await
        .unwrap();
    assert_eq!(set["ok"], true, "{set}");

    let mut background = spawn(tablet.path(), &["run", "--for", "60"]);
    background.next(Duration::from_secs(10)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let shown = run(tablet.path(), &["show", &id]).await;
        if shown[0]["document"]["acknowledged_by"] == "duty room" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the JS edit never reached the CLI"
        );
        // Woken by the background run's next event (or a second at most), then look again.
        let _ = tokio::time::timeout(Duration::from_secs(1), background.lines.next_line()).await;
    }
    background.child.start_kill().unwrap();
    browser.close().await.unwrap();
}
