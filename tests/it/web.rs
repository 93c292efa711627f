//! The phone app: how the server serves it, and scenarios in a real browser (Debian's
//! chromium driven by playwright-core, `tests/js/web/*.mjs`) against the real server on port
//! 0, each checked again through the server's API.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::Command;

use crate::helpers::{PASSWORD, TestApp, get, org, spawn_app};

#[tokio::test]
async fn the_app_is_served_without_shadowing_the_api() {
    let app = spawn_app().await;
    let fetch = |path: &'static str| {
        let app = &app;
        async move { app.http.get(app.url(path)).send().await.unwrap() }
    };

    let index = fetch("/").await;
    assert_eq!(index.status(), 200);
    assert_eq!(index.headers()["content-type"], "text/html; charset=utf-8");
    let csp = index.headers()["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval'"),
        "{csp}"
    );
    assert!(
        index
            .text()
            .await
            .unwrap()
            .contains("<html lang=\"zh-CN\">")
    );

    for (path, content_type) in [
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/sw.js", "text/javascript; charset=utf-8"),
        ("/automerge.wasm", "application/wasm"),
        ("/manifest.webmanifest", "application/manifest+json"),
    ] {
        let answer = fetch(path).await;
        assert_eq!(answer.status(), 200, "{path}");
        assert_eq!(answer.headers()["content-type"], content_type, "{path}");
        assert_eq!(answer.headers()["cache-control"], "no-cache", "{path}");
    }
    let wasm = fetch("/automerge.wasm").await.bytes().await.unwrap();
    assert_eq!(&wasm[..4], b"\0asm");

    // A page path the app routes itself gets the app; the API and /sync never do.
    let deep = fetch("/incident/abc").await;
    assert_eq!(deep.status(), 200);
    assert_eq!(deep.headers()["content-type"], "text/html; charset=utf-8");
    for path in ["/api/no-such-route", "/api", "/favicon.ico"] {
        let answer = fetch(path).await;
        assert_eq!(answer.status(), 404, "{path}");
        let body: Value = answer.json().await.unwrap();
        assert_eq!(body["error"], "no such route", "{path}");
    }
    let sync = fetch("/sync").await;
    assert_ne!(sync.headers()["content-type"], "text/html; charset=utf-8");
}

/// Runs the browser scenario `name` against `app`; its JSON result.
async fn scenario(app: &TestApp, name: &str, env: &[(&str, &str)]) -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "run `npm ci --prefix tests/js` before these tests"
    );
    assert!(
        Path::new("/usr/bin/chromium").exists(),
        "install Debian's chromium (apt-get install chromium fonts-noto-cjk)"
    );
    let node = std::env::var("NODE_BIN").unwrap_or_else(|_| "node".to_owned());
    let output = tokio::time::timeout(
        Duration::from_secs(180),
        Command::new(node)
            .arg(dir.join("web").join(format!("{name}.mjs")))
            .env("ZHIBAN_SERVER", app.url(""))
            .env("ZHIBAN_PASSWORD", PASSWORD)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the scenario finishes")
    .expect("node runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{name} failed:\n{stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("{name} said nothing:\n{stderr}"));
    serde_json::from_str(last).unwrap_or_else(|_| panic!("{name}: not JSON: {last}"))
}

#[tokio::test]
async fn a_red_report_made_offline_reaches_the_server_and_a_colleagues_page() {
    let app = spawn_app().await;
    org(&app).await;
    let result = scenario(
        &app,
        "offline_report",
        &[("FIELD_USER", "anna"), ("COLLEAGUE_USER", "alice")],
    )
    .await;
    let id = result["document_id"].as_str().expect("a document id");
    assert_eq!(
        result["colleague_title"],
        "紧急：山体滑坡 G4 京港澳高速 1032 公里"
    );

    // The server holds it as anna's red report, with what she added offline.
    let token = app.login("alice", "desk").await.access_token;
    let incident = get(&app, &token, &format!("/api/incidents/{id}")).await;
    assert_eq!(incident["grade"], "red", "{incident}");
    assert_eq!(incident["category"], "山体滑坡");
    assert_eq!(incident["location"], "G4 京港澳高速 1032 公里");
}

/// A browser scenario that talks with the test line by line (JSON both ways).
struct Interactive {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Interactive {
    fn start(app: &TestApp, name: &str, env: &[(&str, &str)]) -> Interactive {
        use tokio::io::AsyncBufReadExt;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("js");
        let node = std::env::var("NODE_BIN").unwrap_or_else(|_| "node".to_owned());
        let mut child = Command::new(node)
            .arg(dir.join("web").join(format!("{name}.mjs")))
            .env("ZHIBAN_SERVER", app.url(""))
            .env("ZHIBAN_PASSWORD", PASSWORD)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().unwrap();
        let lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Interactive {
            child,
            stdin,
            lines,
        }
    }

    async fn read(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(90), self.lines.next_line())
            .await
            .expect("the scenario answers in time")
            .unwrap()
            .expect("the scenario ended early (see its stderr above)");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }

    async fn write(&mut self, value: &Value) {
        use tokio::io::AsyncWriteExt;
        let line = format!("{value}\n");
        self.stdin.write_all(line.as_bytes()).await.unwrap();
    }

    async fn finish(mut self) -> Value {
        let last = self.read().await;
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the scenario exits")
            .unwrap();
        assert!(
            status.success(),
            "the scenario failed (see its stderr above)"
        );
        last
    }
}

#[tokio::test]
async fn the_leaders_phone_shows_a_red_alert_and_acknowledges_it_from_the_notification() {
    let mut scene = crate::alerts::Scene::new().await;
    // The leader's own desk, for a classified report later.
    let (desk, desk_sync) = scene.device("cleared").await;
    let app = scene.app();
    let mut leader = Interactive::start(app, "leader_push", &[("LEADER_USER", "cleared")]);
    let page = leader.read().await;
    // The page's own device subscribes at the stand-in push service.
    let token = page["access_token"].as_str().unwrap();
    let response = app
        .http
        .post(app.url("/api/push/subscriptions"))
        .bearer_auth(token)
        .json(&scene.receiver.subscribe("leader-phone"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);

    // A field officer's red report: the server pushes to the leader on duty.
    let dir = tempfile::tempdir().unwrap();
    let field = zhiban_client_core::Device::open(dir.path()).await.unwrap();
    field
        .login(&app.url(""), "anna", PASSWORD, "phone")
        .await
        .unwrap();
    let incident = field
        .urgent_report("山体滑坡", "G4 高速 K123", "两车被埋")
        .await
        .unwrap();
    let sync = field.start_sync_with(zhiban_client_core::Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(300),
    });
    let push = scene.next().await;
    assert_eq!(push.name, "leader-phone");
    let payload = push.json();
    let alert_id = payload["alert_id"].as_str().unwrap().to_owned();

    leader
        .write(&serde_json::json!({"deliver": payload, "tap": "ack"}))
        .await;
    let shown = leader.read().await["shown"].clone();
    assert!(
        shown["title"].as_str().unwrap().contains("G4 高速 K123"),
        "{shown}"
    );
    assert_eq!(shown["tag"], format!("alert-{alert_id}"));
    assert_eq!(shown["requireInteraction"], true, "red stays until handled");
    assert_eq!(shown["actions"][0]["action"], "ack");
    assert_eq!(shown["actions"][0]["title"], "确认 / Acknowledge");
    assert_eq!(shown["data"]["document_id"], incident.to_string());

    // The tap acknowledged it on the server: the leader's ack, and no repeats.
    let leader_id = app.login("cleared", "desk").await.user_id;
    let mut acknowledged = Value::Null;
    for _ in 0..100 {
        let alert = get(app, token, &format!("/api/alerts/{alert_id}")).await;
        if !alert["acknowledged_at"].is_null() {
            acknowledged = alert;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        acknowledged["acknowledged_by"],
        leader_id.as_str(),
        "{acknowledged}"
    );
    // The service worker reported the notification shown (with the push's own token).
    let events = crate::alerts::timeline_events(&acknowledged);
    assert!(events.contains(&"push.received"), "{events:?}");
    scene.clock.advance(Duration::from_secs(10 * 60));
    scene
        .receiver
        .expect_none(Duration::from_millis(1500))
        .await;

    // A classified red report: the phone says only that something needs the leader (D18).
    let now = scene.clock.now_ms();
    let (secret, _) = desk
        .create_record(&serde_json::json!({
            "type": "incident", "schema": 1, "grade": "red", "title": "绝密：水库大坝出现裂缝",
            "category": "水利", "location": "一号水库", "known_at": now, "reported_at": now,
            "reported_by": leader_id, "classification": "classified",
        }))
        .await
        .unwrap();
    let push = scene.next().await;
    assert_eq!(push.name, "leader-phone");
    let payload = push.json();
    assert_eq!(payload["classified"], true, "{payload}");
    leader.write(&serde_json::json!({"deliver": payload})).await;
    let shown = leader.read().await["shown"].clone();
    assert_eq!(shown["title"], "涉密事项 / Classified matter", "{shown}");
    let text = shown.to_string();
    for secret_word in ["水库", "裂缝", "一号", &secret.to_string()] {
        assert!(!text.contains(secret_word), "{secret_word} in {text}");
    }

    leader.write(&serde_json::json!({"done": true})).await;
    leader.finish().await;
    sync.stop().await;
    desk_sync.stop().await;
}

/// A field officer's red report, made on `client-core` and received by the server.
async fn red_report(
    scene: &mut crate::alerts::Scene,
    category: &str,
    location: &str,
) -> zhiban_client_core::DocumentId {
    let (field, sync) = scene.device("anna").await;
    let incident = field
        .urgent_report(category, location, "现场情况不明")
        .await
        .unwrap();
    field
        .wait_received(&incident, Duration::from_secs(20))
        .await
        .unwrap();
    sync.stop().await;
    incident
}

#[tokio::test]
async fn a_leaders_instruction_reaches_the_officers_page_and_alerts_them() {
    let mut scene = crate::alerts::Scene::new().await;
    let incident = red_report(&mut scene, "山体滑坡", "G4 高速 K123").await;

    let app = scene.app();
    let incident = incident.to_string();
    let result = scenario(
        app,
        "instruction",
        &[
            ("LEADER_USER", "cleared"),
            ("OFFICER_USER", "alice"),
            ("INCIDENT", &incident),
        ],
    )
    .await;
    assert_eq!(
        result["addressee"], "艾丽斯",
        "the officer on duty, by name"
    );

    // On the server: the leader's instruction to alice, and alice's alert.
    let token = app.login("alice", "desk").await.access_token;
    let view = get(app, &token, &format!("/api/incidents/{incident}")).await;
    let instruction = &view["instructions"][0];
    assert_eq!(
        instruction["text"], "立即组织群众疏散，30 分钟内续报",
        "{view}"
    );
    let alice = app.login("alice", "desk").await.user_id;
    assert_eq!(instruction["to"], alice.as_str(), "{view}");
    let alerts = get(app, &token, "/api/alerts?open=true&mine=true").await;
    assert!(
        alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|alert| alert["kind"] == "instruction"),
        "{alerts}"
    );
}

#[tokio::test]
async fn every_main_screen_renders_in_chinese_on_a_phone() {
    let scene = crate::alerts::Scene::new().await;
    let out = tempfile::tempdir().unwrap();
    // `ZHIBAN_SCREENSHOTS=docs/screenshots` refreshes the README's pictures.
    let dir = match std::env::var("ZHIBAN_SCREENSHOTS") {
        Ok(dir) => Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir),
        Err(_) => out.path().to_owned(),
    };
    let result = scenario(
        scene.app(),
        "screens",
        &[
            ("FIELD_USER", "anna"),
            ("LEADER_USER", "cleared"),
            ("SCREENSHOT_DIR", dir.to_str().unwrap()),
        ],
    )
    .await;
    for screen in result["screens"].as_array().unwrap() {
        let png = std::fs::read(dir.join(format!("{}.png", screen.as_str().unwrap()))).unwrap();
        assert_eq!(&png[1..4], b"PNG");
    }
}

#[tokio::test]
async fn the_duty_room_logs_a_call_to_a_case_and_hands_over_with_both_signatures() {
    let mut scene = crate::alerts::Scene::new().await;
    let incident = red_report(&mut scene, "洪水", "河堤三号段").await;
    // Alice asks for leave from today's shift, with 王五 to stand in.
    let (officer, officer_sync) = scene.device("alice").await;
    let token = scene.app().login("alice", "desk").await.access_token;
    let unit = scene.org.unit_a.clone();
    let oncall = get(scene.app(), &token, &format!("/api/oncall?unit={unit}")).await;
    let roster: zhiban_client_core::DocumentId = oncall["shifts"][0]["roster"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    crate::helpers::until_held(&officer, &roster).await;
    officer
        .request_swap(
            &roster,
            0,
            true,
            &serde_json::json!({"name": "王五"}),
            "家中有事",
        )
        .await
        .unwrap();
    officer
        .wait_received(&roster, Duration::from_secs(20))
        .await
        .unwrap();
    officer_sync.stop().await;
    let app = scene.app();
    let incident = incident.to_string();
    let result = scenario(
        app,
        "duty_room",
        &[
            ("OUTGOING_USER", "alice"),
            ("INCOMING_USER", "cleared"),
            ("INCIDENT", &incident),
        ],
    )
    .await;
    let handover = result["handover"].as_str().unwrap();

    let log = get(app, &token, &format!("/api/log?unit={unit}")).await;
    let entries = log.as_array().expect("entries");
    let call = entries
        .iter()
        .find(|entry| entry["content"] == "河水上涨，请求增派人员")
        .unwrap_or_else(|| panic!("{log}"));
    assert_eq!(call["incident"], incident.as_str(), "{call}");
    assert_eq!(call["phone"], "0571-88001234");

    let handovers = get(app, &token, &format!("/api/handovers?unit={unit}")).await;
    let signed = handovers
        .as_array()
        .expect("handovers")
        .iter()
        .find(|row| row["document_id"] == handover)
        .unwrap_or_else(|| panic!("{handovers}"));
    let alice = app.login("alice", "desk").await.user_id;
    let leader = app.login("cleared", "desk").await.user_id;
    assert_eq!(signed["outgoing_by"], alice.as_str(), "{signed}");
    assert_eq!(signed["incoming_by"], leader.as_str(), "{signed}");
    assert_eq!(signed["open_items"], 2, "{signed}");

    // The leave approved on the leader's phone: 王五 is on duty instead of alice.
    let oncall = get(app, &token, &format!("/api/oncall?unit={unit}")).await;
    let officers: Vec<&str> = oncall["shifts"][0]["officers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|person| person["name"].as_str().unwrap())
        .collect();
    assert_eq!(officers, ["王五"], "{oncall}");
}

#[tokio::test]
async fn an_admin_manages_users_units_and_the_roster_from_the_phone() {
    let app = spawn_app().await;
    let org = org(&app).await;
    app.create_user("admin_a", &org.unit_a, zhiban_api::Role::Admin, false)
        .await;
    let leader = app.login("cleared", "desk").await.user_id;
    let officer = app.login("alice", "desk").await.user_id;
    let temporary = "kettle orbit saffron 42";
    let result = scenario(
        &app,
        "admin",
        &[
            ("ADMIN_USER", "admin_a"),
            ("TEMPORARY_PASSWORD", temporary),
            ("LEADER_ID", &leader),
            ("OFFICER_ID", &officer),
            ("BACKUP_ID", &leader),
        ],
    )
    .await;
    assert!(
        result["duty"].as_str().unwrap().contains("cleared"),
        "{result}"
    );

    let token = app.login("admin_a", "desk").await.access_token;
    let users = get(&app, &token, "/api/users").await;
    let user = |name: &str| {
        users
            .as_array()
            .unwrap()
            .iter()
            .find(|user| user["username"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {users}"))
    };
    assert_eq!(user("zhou")["must_change_password"], true);
    assert_eq!(user("zhou")["display_name"], "周敏");
    assert!(user("anna")["disabled_at"].is_i64());
    let units = get(&app, &token, "/api/units").await;
    assert!(units.to_string().contains("三号村值班点"), "{units}");
    let oncall = get(&app, &token, &format!("/api/oncall?unit={}", org.unit_a)).await;
    let shift = &oncall["shifts"][0];
    assert_eq!(shift["leader"]["user_id"], leader.as_str(), "{oncall}");
    assert_eq!(
        shift["officers"][0]["user_id"],
        officer.as_str(),
        "{oncall}"
    );
    assert_eq!(
        shift["backup_leader"]["user_id"],
        leader.as_str(),
        "{oncall}"
    );
    let red = get(
        &app,
        &token,
        &format!("/api/escalation-policies/{}/red", org.unit_a),
    )
    .await;
    assert_eq!(red["steps"][0]["repeat_every_secs"], 120, "{red}");
}
