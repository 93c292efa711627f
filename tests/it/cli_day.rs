//! A duty officer's day on the `zhiban` command line: calls logged into the duty log,
//! follow-up and final reports, handovers signed by both officers with their pending items,
//! a leave approved by the leader changing who is on duty, and search. Each command is a
//! child process; a running `zhiban run` delivers what the commands wrote.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use zhiban_client_core::Device;

use crate::cli::{login, run, spawn, zhiban};
use crate::helpers::{get, org, spawn_app};

/// Runs one command to completion: its exit code and its JSON output lines.
async fn outcome(data_dir: &Path, args: &[&str]) -> (i32, Vec<Value>) {
    let mut command = zhiban(data_dir);
    command.args(args);
    outcome_of(command).await
}

/// [`outcome`] of a command set up by the caller (its environment, say).
pub(crate) async fn outcome_of(mut command: tokio::process::Command) -> (i32, Vec<Value>) {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        command.stdout(Stdio::piped()).output(),
    )
    .await
    .expect("command finishes")
    .expect("command runs");
    let lines = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    (output.status.code().expect("exited"), lines)
}

/// Runs a command that must fail: its exit code and the message of its `{"error"}` line.
pub(crate) async fn fails(data_dir: &Path, args: &[&str]) -> (i32, String) {
    let (code, lines) = outcome(data_dir, args).await;
    assert_ne!(code, 0, "zhiban {args:?} succeeded: {lines:?}");
    let message = lines
        .last()
        .and_then(|line| line["error"].as_str())
        .unwrap_or_else(|| panic!("zhiban {args:?}: no error line in {lines:?}"));
    (code, message.to_owned())
}

/// Runs a command without `--json` and returns what a person reads.
pub(crate) async fn human(data_dir: &Path, args: &[&str]) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_zhiban-under-test"))
            .env("ZHIBAN_DATA_DIR", data_dir)
            .env("ZHIBAN_LOG", "warn")
            .args(args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("command finishes")
    .expect("command runs");
    assert!(
        output.status.success(),
        "zhiban {args:?} failed: {output:?}"
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// Delivers what the commands wrote: a `zhiban run` until the server has received `id`.
pub(crate) async fn deliver(data_dir: &Path, id: &str) {
    let mut background = spawn(data_dir, &["run", "--for", "40"]);
    background
        .until(Duration::from_secs(30), |line| {
            line["event"] == "received" && line["id"] == id
        })
        .await;
    background.child.start_kill().unwrap();
    background.child.wait().await.unwrap();
}

/// Syncs with a `zhiban run` until this device's copy of `id` satisfies `wanted`.
async fn fetch_until(data_dir: &Path, id: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    let mut background = spawn(data_dir, &["run", "--for", "40"]);
    assert_eq!(
        background.next(Duration::from_secs(10)).await["event"],
        "started"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (code, lines) = outcome(data_dir, &["show", id]).await;
        if code == 0 && wanted(&lines[0]["document"]) {
            background.child.start_kill().unwrap();
            background.child.wait().await.unwrap();
            return lines[0]["document"].clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never arrived as wanted: {lines:?}"
        );
        // Woken by the run's next event (or a second at most), then look again.
        if let Ok(line) =
            tokio::time::timeout(Duration::from_secs(1), background.lines.next_line()).await
        {
            assert!(line.unwrap().is_some(), "the background run ended early");
        }
    }
}

fn texts(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|item| item[key].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn cli_day_calls_reach_the_duty_log_and_are_found_by_search() {
    let app = spawn_app().await;
    org(&app).await;
    let server = format!("http://{}", app.address);
    let desk = tempfile::tempdir().unwrap();
    let desk = desk.path();

    let (code, message) = fails(desk, &["log-call", "--content", "停电"]).await;
    assert_eq!(code, 1);
    assert!(message.contains("zhiban login"), "{message}");

    login(desk, &server, "alice").await;
    let first = run(
        desk,
        &[
            "log-call",
            "--content",
            "高速追尾，两车受损",
            "--caller-unit",
            "交警大队",
            "--caller-name",
            "王警官",
            "--phone",
            "0571-110",
            "--handling",
            "转报带班领导",
        ],
    )
    .await;
    let log = first[0]["log"].as_str().unwrap().to_owned();
    let second = run(
        desk,
        &[
            "log-call",
            "--content",
            "群众来电询问道路情况",
            "--phone",
            "138 0000 0000",
        ],
    )
    .await;
    assert_eq!(second, vec![json!({ "log": log })], "one duty log a day");

    // Refused with the reason, and nothing written.
    let (code, message) = fails(desk, &["log-call", "--content", "  "]).await;
    assert_eq!(code, 1);
    assert!(message.contains("content"), "{message}");
    let (code, message) = fails(
        desk,
        &["log-call", "--content", "回电", "--phone", "call me"],
    )
    .await;
    assert_eq!(code, 1);
    assert!(message.contains("not a phone number"), "{message}");
    let (code, message) = fails(desk, &["log-call", "--content", "回电", "--incident", &log]).await;
    assert_eq!(code, 1);
    assert!(message.contains("not an incident"), "{message}");

    deliver(desk, &log).await;
    let token = app.login("alice", "desk").await.access_token;
    let entries = get(&app, &token, "/api/log").await;
    let mut contents = texts(&entries, "content");
    contents.sort();
    assert_eq!(contents, vec!["群众来电询问道路情况", "高速追尾，两车受损"]);
    let call = entries
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["content"] == "高速追尾，两车受损")
        .unwrap();
    assert_eq!(call["caller_name"], "王警官");
    assert_eq!(call["handling"], "转报带班领导");
    assert_eq!(call["document_id"], log.as_str());

    let found = run(desk, &["search", "追尾"]).await;
    assert_eq!(texts(&found[0]["hits"], "document_id"), vec![log.clone()]);
    let lines = human(desk, &["search", "追尾"]).await;
    assert!(
        lines.starts_with(&format!("{log}  Duty log ")),
        "the device's title for a duty log: {lines}"
    );
    let nothing = human(desk, &["search", "山体滑坡"]).await;
    assert_eq!(nothing.trim(), "nothing found for `山体滑坡`");
}

#[tokio::test]
async fn cli_day_follow_up_and_final_reports_are_counted_and_close_the_incident() {
    let app = spawn_app().await;
    org(&app).await;
    let server = format!("http://{}", app.address);
    let tablet = tempfile::tempdir().unwrap();
    let tablet = tablet.path();
    login(tablet, &server, "alice").await;
    let lines = run(
        tablet,
        &[
            "report",
            "--urgent",
            "--category",
            "fire",
            "--location",
            "化工厂",
            "--wait",
            "20",
        ],
    )
    .await;
    assert_eq!(lines[1]["status"], "received_by_server", "{lines:?}");
    let id = lines[0]["id"].as_str().unwrap().to_owned();

    let follow_up = run(tablet, &["follow-up", &id, "--text", "火势已控制"]).await;
    assert_eq!(follow_up, vec![json!({"id": id, "kind": "follow_up"})]);
    // An officer's "instruction" is not one (W5): refused on the tablet already.
    let (code, message) = fails(tablet, &["instruct", &id, "--text", "全力救援，注意安全"]).await;
    assert_eq!(code, 1);
    assert!(message.contains("only a leader"), "{message}");
    let (code, message) = fails(tablet, &["instruct", &id, "--text", " "]).await;
    assert_eq!(code, 1);
    assert!(message.contains("cannot be empty"), "{message}");
    let last = run(
        tablet,
        &["follow-up", &id, "--text", "明火已扑灭", "--final"],
    )
    .await;
    assert_eq!(last, vec![json!({"id": id, "kind": "final"})]);

    let (code, message) = fails(tablet, &["follow-up", &id, "--text", "又一次", "--final"]).await;
    assert_eq!(code, 1);
    assert!(
        message.contains("already has its final report"),
        "{message}"
    );
    let log = run(tablet, &["log-call", "--content", "化工厂附近群众来电"]).await;
    let log = log[0]["log"].as_str().unwrap();
    let (code, message) = fails(tablet, &["follow-up", log, "--text", "已处置"]).await;
    assert_eq!(code, 1);
    assert!(
        message.contains("is a duty log, not an incident"),
        "{message}"
    );
    let (code, _) = fails(tablet, &["follow-up", "not-an-id", "--text", "x"]).await;
    assert_eq!(code, 2, "a malformed id is a usage error");

    deliver(tablet, &id).await;
    let token = app.login("alice", "desk").await.access_token;
    let incident = get(&app, &token, &format!("/api/incidents/{id}")).await;
    assert_eq!(incident["timeliness"]["follow_ups_made"], 1, "{incident}");
    assert!(incident["timeliness"]["closed_at"].is_i64(), "{incident}");
    assert_eq!(incident["status"], "closed");
    let shown = run(tablet, &["show", &id]).await;
    let document = &shown[0]["document"];
    assert_eq!(
        texts(&document["reports"], "kind"),
        vec!["follow_up", "final"]
    );
    assert!(
        document["instructions"]
            .as_array()
            .is_none_or(Vec::is_empty)
    );
}

#[tokio::test]
async fn cli_day_a_handover_is_signed_by_both_officers_and_carries_its_open_items() {
    let app = spawn_app().await;
    org(&app).await;
    let server = format!("http://{}", app.address);
    let (alice_dir, anna_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (outgoing, incoming) = (alice_dir.path(), anna_dir.path());
    login(outgoing, &server, "alice").await;
    login(incoming, &server, "anna").await;

    let created = run(
        outgoing,
        &[
            "handover",
            "--done",
            "巡查辖区",
            "--done",
            "处理来电三起",
            "--pending",
            "回电县应急局",
            "补报伤亡人数",
            "--equipment",
            "电台、车辆正常",
        ],
    )
    .await;
    let first = created[0]["id"].as_str().unwrap().to_owned();
    let shown = run(outgoing, &["show", &first]).await;
    let document = &shown[0]["document"];
    assert_eq!(
        texts(&document["pending"], "text"),
        vec!["回电县应急局", "补报伤亡人数"]
    );
    assert_eq!(document["done"], json!(["巡查辖区", "处理来电三起"]));
    assert_eq!(document["equipment"], "电台、车辆正常");

    let signed = run(outgoing, &["sign", &first, "--outgoing"]).await;
    assert_eq!(signed, vec![json!({"id": first, "side": "outgoing"})]);
    let (code, message) = fails(outgoing, &["sign", &first, "--outgoing"]).await;
    assert_eq!(code, 1);
    assert!(message.contains("already signed"), "{message}");
    let closed = run(outgoing, &["close-pending", &first, "--item", "1"]).await;
    assert_eq!(closed, vec![json!({"id": first, "item": 1})]);
    let (code, message) = fails(outgoing, &["close-pending", &first, "--item", "1"]).await;
    assert_eq!(code, 1);
    assert!(message.contains("already closed"), "{message}");
    let (code, message) = fails(outgoing, &["close-pending", &first, "--item", "3"]).await;
    assert_eq!(code, 1);
    assert!(message.contains("no item 3"), "{message}");
    let (code, _) = fails(outgoing, &["close-pending", &first, "--item", "0"]).await;
    assert_eq!(code, 2, "items count from 1");
    let (code, _) = fails(outgoing, &["sign", &first]).await;
    assert_eq!(code, 2, "a side is needed");
    let (code, _) = fails(outgoing, &["sign", &first, "--outgoing", "--incoming"]).await;
    assert_eq!(code, 2, "one side at a time");
    deliver(outgoing, &first).await;

    // The incoming officer signs on her own tablet, once the handover has reached it.
    fetch_until(incoming, &first, |document| {
        document["signatures"]["outgoing"]["by"].is_string()
            && !document["pending"][0]["closed_at"].is_null()
    })
    .await;
    let signed = run(incoming, &["sign", &first, "--incoming"]).await;
    assert_eq!(signed, vec![json!({"id": first, "side": "incoming"})]);
    deliver(incoming, &first).await;

    let token = app.login("alice", "desk").await.access_token;
    let (alice, anna) = (
        app.login("alice", "desk").await.user_id,
        app.login("anna", "desk").await.user_id,
    );
    let handovers = get(&app, &token, "/api/handovers").await;
    let row = handovers
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["document_id"] == first.as_str())
        .unwrap_or_else(|| panic!("{handovers}"));
    assert_eq!(row["outgoing_by"], alice.as_str(), "{row}");
    assert_eq!(row["incoming_by"], anna.as_str(), "{row}");
    assert_eq!(row["open_items"], 1, "{row}");

    // The next handover carries the item still open.
    let next = run(
        incoming,
        &[
            "handover",
            "--pending",
            "检查备用电源",
            "--previous",
            &first,
        ],
    )
    .await;
    let next = next[0]["id"].as_str().unwrap().to_owned();
    let shown = run(incoming, &["show", &next]).await;
    assert_eq!(
        texts(&shown[0]["document"]["pending"], "text"),
        vec!["补报伤亡人数", "检查备用电源"]
    );
    assert_eq!(shown[0]["document"]["previous"], first.as_str());
}

#[tokio::test]
async fn cli_day_a_leave_approved_by_the_leader_changes_who_is_on_duty() {
    let app = spawn_app().await;
    let org = org(&app).await;
    app.create_user(
        "zhao",
        &org.unit_a,
        zhiban_server::access::Role::Officer,
        false,
    )
    .await;
    let server = format!("http://{}", app.address);
    let (alice_dir, leader_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (officer, leader) = (alice_dir.path(), leader_dir.path());
    login(officer, &server, "alice").await;
    login(leader, &server, "cleared").await;
    let user = |name: &'static str| {
        let app = &app;
        async move { app.login(name, "desk").await.user_id }
    };
    let person = |user_id: &str, name: &str, phone: &str| json!({"user_id": user_id, "name": name, "phone": phone});
    let (cleared, alice, anna, zhao) = (
        user("cleared").await,
        user("alice").await,
        user("anna").await,
        user("zhao").await,
    );
    let hour = 3_600_000i64;
    let now = chrono::Utc::now().timestamp_millis();

    // No command creates rosters yet: the library does, on the leader's data directory (a
    // roster is the leaders' to write, W7), while no `zhiban` process runs.
    let roster = {
        let device = Device::open(leader).await.unwrap();
        let (roster, warnings) = device
            .create_record(&json!({
                "type": "roster", "title": "本周值班表",
                "shifts": [
                    {"start": now - hour, "end": now + 11 * hour, "kind": "workday",
                     "leader": person(&cleared, "李局长", "13800000001"),
                     "officers": [person(&alice, "艾丽斯", "13800000003")]},
                    {"start": now + 11 * hour, "end": now + 23 * hour, "kind": "holiday",
                     "leader": person(&cleared, "李局长", "13800000001"),
                     "officers": [person(&zhao, "赵", "13800000004")]},
                ],
            }))
            .await
            .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        roster.to_string()
    };
    deliver(leader, &roster).await;
    fetch_until(officer, &roster, |document| {
        document["shifts"]
            .as_array()
            .is_some_and(|shifts| shifts.len() == 2)
    })
    .await;

    let shown = run(officer, &["roster", &roster]).await;
    assert_eq!(shown[0]["document"]["title"], "本周值班表");
    let text = human(officer, &["roster", &roster]).await;
    assert!(text.contains("shift 2: "), "{text}");
    assert!(text.contains("leader: 李局长 (13800000001)"), "{text}");

    let (code, message) = fails(
        officer,
        &[
            "swap",
            &roster,
            "--shift",
            "2",
            "--substitute-name",
            "安娜",
            "--reason",
            "发烧",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(message.contains("not on duty in shift 2"), "{message}");
    let (code, message) = fails(
        officer,
        &[
            "swap",
            &roster,
            "--shift",
            "5",
            "--substitute-name",
            "安娜",
            "--reason",
            "发烧",
        ],
    )
    .await;
    assert_eq!(code, 1);
    assert!(message.contains("no shift 5"), "{message}");
    let requested = run(
        officer,
        &[
            "swap",
            &roster,
            "--shift",
            "1",
            "--leave",
            "--substitute-name",
            "安娜",
            "--substitute-id",
            &anna,
            "--substitute-phone",
            "13800000002",
            "--reason",
            "发烧",
        ],
    )
    .await;
    assert_eq!(requested, vec![json!({"roster": roster, "request": 1})]);
    let (code, message) = fails(officer, &["decide", &roster, "--request", "1", "--approve"]).await;
    assert_eq!(code, 1);
    assert!(message.contains("only a leader"), "{message}");
    deliver(officer, &roster).await;

    let officers = |answer: &Value| texts(&answer["shifts"][0]["officers"], "name");
    let pending = run(officer, &["on-duty"]).await;
    assert_eq!(pending[0]["unit_id"], org.unit_a.as_str());
    assert_eq!(
        officers(&pending[0]),
        vec!["艾丽斯"],
        "a pending leave changes nothing"
    );

    // The leader decides on his own tablet, once the request has reached it.
    fetch_until(leader, &roster, |document| {
        document["requests"]
            .as_array()
            .is_some_and(|requests| requests.len() == 1)
    })
    .await;
    let (code, message) = fails(leader, &["decide", &roster, "--request", "2", "--approve"]).await;
    assert_eq!(code, 1);
    assert!(message.contains("no request 2"), "{message}");
    let decided = run(leader, &["decide", &roster, "--request", "1", "--approve"]).await;
    assert_eq!(
        decided,
        vec![json!({"roster": roster, "request": 1, "status": "approved"})]
    );
    deliver(leader, &roster).await;

    let approved = run(officer, &["on-duty"]).await;
    assert_eq!(officers(&approved[0]), vec!["安娜"], "{approved:?}");
    assert_eq!(approved[0]["shifts"][0]["leader"]["name"], "李局长");
    let text = human(officer, &["on-duty"]).await;
    assert!(text.contains("\nleader: 李局长 (13800000001)\n"), "{text}");
    assert!(text.contains("\nofficers: 安娜 (13800000002)"), "{text}");

    let tomorrow = chrono::DateTime::from_timestamp_millis(now + 12 * hour)
        .unwrap()
        .to_rfc3339();
    let later = run(
        leader,
        &["on-duty", "--unit", &org.unit_a, "--at", &tomorrow],
    )
    .await;
    assert_eq!(officers(&later[0]), vec!["赵"]);
    assert_eq!(later[0]["shifts"][0]["kind"], "holiday");
    let empty = human(
        officer,
        &["on-duty", "--at", &(now + 48 * hour).to_string()],
    )
    .await;
    assert_eq!(empty.trim(), "nobody on duty in the roster");
    let (code, message) = fails(officer, &["on-duty", "--unit", &org.unit_b]).await;
    assert_eq!(code, 1, "another unit's roster is not the officer's to see");
    assert!(message.contains("404"), "{message}");
}

#[tokio::test]
async fn cli_day_without_the_server_search_and_on_duty_say_so_while_calls_are_still_logged() {
    let app = spawn_app().await;
    org(&app).await;
    let server = format!("http://{}", app.address);
    let tablet = tempfile::tempdir().unwrap();
    let tablet = tablet.path();
    let (code, message) = fails(tablet, &["search", "追尾"]).await;
    assert_eq!(code, 1);
    assert!(message.contains("zhiban login"), "{message}");
    login(tablet, &server, "alice").await;
    let (code, message) = fails(tablet, &["search", "  "]).await;
    assert_eq!(code, 1);
    assert!(message.contains("1 to 100 characters"), "{message}");
    app.stop().await.unwrap();

    for args in [&["search", "追尾"][..], &["on-duty"]] {
        let (code, message) = fails(tablet, args).await;
        assert_eq!(code, 1);
        assert!(message.contains("cannot reach the server"), "{message}");
    }
    let logged = run(tablet, &["log-call", "--content", "网络中断期间来电"]).await;
    let log = logged[0]["log"].as_str().unwrap();
    let shown = run(tablet, &["show", log]).await;
    assert_eq!(shown[0]["status"], "saved_on_device");
    assert_eq!(
        texts(&shown[0]["document"]["entries"], "content"),
        vec!["网络中断期间来电"]
    );
}
