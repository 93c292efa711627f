//! What is derived from a change never holds the change hostage (issue 9). Each test is one
//! of the failures found in review, done the way a hostile or careless device would: a roster
//! naming people who do not exist, rows the database refuses, text with NUL in it on
//! PostgreSQL, times far outside the calendar. Each ends with the change stored and
//! acknowledged, the problem visible, and every other unit's alerts going on.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT};
use serde_json::{Value, json};
use zhiban_client_core::{Device, DocumentId};
use zhiban_server::access::Role;

use crate::alerts::{MINUTE, Scene, WAIT, events};
use crate::helpers::{PASSWORD, get, org, postgres_settings, spawn_app_with};

const HOUR_MS: i64 = 3_600_000;

/// The `alert.step` entries of an incident's timeline.
async fn steps(scene: &Scene, token: &str, incident: &DocumentId) -> Vec<Value> {
    let detail = get(scene.app(), token, &format!("/api/incidents/{incident}")).await;
    detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["event"] == "alert.step")
        .cloned()
        .collect()
}

async fn sql(scene: &Scene, statement: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_owned()))
        .execute(&scene.app().pool)
        .await
        .unwrap();
}

/// A roster that names a user who does not exist (and one of another unit) used to make the
/// alert's insert fail its foreign key: the red report was never stored, its device stalled,
/// and the timer worker retried its batch for ever, so another unit's red alert stopped
/// repeating. Now the names are ignored and noted, and everything goes on.
#[tokio::test]
async fn a_roster_naming_nobody_real_stalls_neither_the_report_nor_other_units_alerts() {
    let mut scene = Scene::new().await;
    let leader = scene.subscribe("cleared", "leader").await;
    let alice = scene.app().login("alice", "desk").await;
    let unit_b = scene.org.unit_b.clone();
    scene
        .app()
        .create_user("bella", &unit_b, Role::Leader, false)
        .await;
    scene.subscribe("bella", "bella").await;
    let now = scene.clock.now_ms();
    let (bob, bob_sync) = scene.device("bob").await;
    // Rosters are their unit's leaders' to write (W7).
    let (bella, bella_sync) = scene.device("bella").await;
    let (roster, _) = bella
        .create_record(&json!({
            "type": "roster", "title": "乙镇值班表",
            "shifts": [
                {"start": now - HOUR_MS, "end": now + 12 * HOUR_MS, "kind": "workday",
                 "leader": {"user_id": "00000000-0000-7000-8000-000000000000", "name": "查无此人"}},
                {"start": now - HOUR_MS, "end": now + 12 * HOUR_MS, "kind": "workday",
                 "leader": {"user_id": alice.user_id, "name": "外镇的人"}}],
        }))
        .await
        .unwrap();
    bella.wait_received(&roster, WAIT).await.unwrap();
    bella_sync.stop().await;

    // Town A's red report reaches its leader.
    let (officer, officer_sync) = scene.device("alice").await;
    let in_a = officer
        .urgent_report("accident", "甲镇 G4 K12", "两车追尾")
        .await
        .unwrap();
    officer.wait_received(&in_a, WAIT).await.unwrap();
    assert_eq!(scene.next().await.name, "leader");

    // Town B's red report is stored and acknowledged to Bob's phone all the same.
    let in_b = bob
        .urgent_report("accident", "乙镇 S9 K3", "货车侧翻")
        .await
        .unwrap();
    bob.wait_received(&in_b, WAIT).await.unwrap();
    let token = scene.app().login("district", "desk").await.access_token;
    let step = &steps(&scene, &token, &in_b).await[0]["detail"];
    let ignored = step["ignored"].as_array().unwrap();
    assert!(
        ignored
            .iter()
            .any(|i| i["user_id"] == "00000000-0000-7000-8000-000000000000"
                && i["reason"] == "no such user"),
        "{step}"
    );
    assert!(
        ignored
            .iter()
            .any(|i| i["user_id"] == alice.user_id.as_str()
                && i["reason"] == "not of the roster's unit"),
        "{step}"
    );
    // Nobody real on the roster: the unit's leaders instead, said so.
    assert_eq!(
        step["targets"],
        json!([scene.app().login("bella", "x").await.user_id])
    );
    assert!(
        step["fallbacks"][0].as_str().unwrap().contains("nobody"),
        "{step}"
    );
    assert_eq!(scene.next().await.name, "bella");

    // The worker is not stuck: Town A's alert repeats, and so does Town B's.
    scene.clock.advance(3 * MINUTE);
    let mut repeats: Vec<String> = Vec::new();
    for _ in 0..2 {
        repeats.push(scene.next().await.name);
    }
    repeats.sort();
    assert_eq!(repeats, ["bella", "leader"]);
    assert!(
        events(scene.app(), &leader.access_token, &in_a)
            .await
            .contains(&"alert.repeat".into())
    );
    officer_sync.stop().await;
    bob_sync.stop().await;
}

/// Rows the database refuses (here a trigger standing for any constraint a record can
/// break) cost the record its rows, never its change: the change is stored and acknowledged,
/// the record is flagged, the unit's admins are alerted, other records go on, and the next
/// edit, once the rows can be written, mends it.
#[tokio::test]
async fn a_record_whose_rows_cannot_be_written_is_stored_flagged_and_reported() {
    let mut scene = Scene::new().await;
    let unit_a = scene.org.unit_a.clone();
    scene
        .app()
        .create_user("admin_a", &unit_a, Role::Admin, true)
        .await;
    scene.subscribe("admin_a", "admin").await;
    let leader = scene.subscribe("cleared", "leader").await;
    sql(
        &scene,
        "CREATE TRIGGER poison BEFORE INSERT ON incidents WHEN NEW.title LIKE '%毒%' \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .await;

    let (officer, sync) = scene.device("alice").await;
    let (poisoned, _) = officer
        .create_record(&json!({"type": "incident", "title": "毒气泄漏", "grade": "red"}))
        .await
        .unwrap();
    officer.wait_received(&poisoned, WAIT).await.unwrap();
    assert!(
        scene.app().chunk_rows(poisoned).await > 0,
        "the change is stored"
    );
    let record = get(
        scene.app(),
        &leader.access_token,
        &format!("/api/records/{poisoned}"),
    )
    .await;
    assert!(
        record["flag"]
            .as_str()
            .unwrap()
            .contains("refused by the test"),
        "{record}"
    );
    let problem = scene.next().await;
    assert_eq!(problem.name, "admin");
    assert_eq!(problem.json()["kind"], "problem");
    let flagged = get(
        scene.app(),
        &leader.access_token,
        "/api/records?flagged=true",
    )
    .await;
    assert_eq!(flagged["records"][0]["document_id"], poisoned.to_string());

    // The same phone's next report is stored and projected as usual.
    let (next, _) = officer
        .create_record(&json!({"type": "incident", "title": "道路积水", "grade": "yellow"}))
        .await
        .unwrap();
    officer.wait_received(&next, WAIT).await.unwrap();
    let row = get(
        scene.app(),
        &leader.access_token,
        &format!("/api/incidents/{next}"),
    )
    .await;
    assert_eq!(row["title"], "道路积水");

    // Once the rows can be written, the next edit reads the record whole again.
    sql(&scene, "DROP TRIGGER poison").await;
    officer
        .set_field(&poisoned, &["title"], &json!("毒气泄漏（已控制）"))
        .await
        .unwrap();
    officer.wait_received(&poisoned, WAIT).await.unwrap();
    let record = get(
        scene.app(),
        &leader.access_token,
        &format!("/api/records/{poisoned}"),
    )
    .await;
    assert_eq!(record["flag"], Value::Null, "{record}");
    let red = scene.next().await;
    assert_eq!(
        (red.name.as_str(), red.json()["grade"].clone()),
        ("leader", json!("red"))
    );
    sync.stop().await;
}

/// One alert whose step fails for good is put off and reported; the worker's batch goes on,
/// and other units' alerts keep repeating.
#[tokio::test]
async fn a_failing_alert_step_is_put_off_and_reported_while_the_others_go_on() {
    let mut scene = Scene::new().await;
    let unit_b = scene.org.unit_b.clone();
    scene
        .app()
        .create_user("bella", &unit_b, Role::Leader, false)
        .await;
    let district: String = sqlx::query_scalar("SELECT parent_id FROM units WHERE id = $1")
        .bind(&unit_b)
        .fetch_one(&scene.app().pool)
        .await
        .unwrap();
    scene
        .app()
        .create_user("root", &district, Role::Admin, true)
        .await;
    scene.subscribe("cleared", "leader").await;
    let bella = scene.subscribe("bella", "bella").await;
    scene.subscribe("root", "root").await;

    let (officer, officer_sync) = scene.device("alice").await;
    let in_a = officer
        .urgent_report("accident", "甲镇", "追尾")
        .await
        .unwrap();
    officer.wait_received(&in_a, WAIT).await.unwrap();
    let (bob, bob_sync) = scene.device("bob").await;
    let in_b = bob.urgent_report("accident", "乙镇", "侧翻").await.unwrap();
    bob.wait_received(&in_b, WAIT).await.unwrap();
    let mut first = vec![scene.next().await.name, scene.next().await.name];
    first.sort();
    assert_eq!(first, ["bella", "leader"]);

    // From now on, any push to Bella fails to be queued.
    sql(
        &scene,
        &format!(
            "CREATE TRIGGER no_bella BEFORE INSERT ON push_outbox WHEN NEW.user_id = '{}' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
            bella.user_id
        ),
    )
    .await;
    scene.clock.advance(3 * MINUTE);
    let mut round = [scene.next().await, scene.next().await];
    round.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(round[0].name, "leader");
    assert_eq!(round[0].json()["repeat"], 1);
    assert_eq!(round[1].name, "root");
    assert_eq!(round[1].json()["kind"], "problem");
    let token = scene.app().login("district", "desk").await.access_token;
    let timeline = events(scene.app(), &token, &in_b).await;
    assert!(
        timeline.contains(&"alert.step_failed".into()),
        "{timeline:?}"
    );

    // Three minutes later Town A's alert repeats again: nothing is stuck.
    scene.clock.advance(3 * MINUTE);
    let again = scene.next().await;
    assert_eq!(
        (again.name.as_str(), again.json()["repeat"].clone()),
        ("leader", json!(2))
    );
    scene.receiver.expect_none(Duration::from_millis(300)).await;
    officer_sync.stop().await;
    bob_sync.stop().await;
}

/// PostgreSQL refuses NUL in text. A report carrying one used to fail its commit for ever,
/// and colleagues' later edits of it were never stored. Text is cleaned where it is read.
#[tokio::test]
async fn a_nul_in_any_text_is_stripped_before_it_reaches_postgresql() {
    let data = tempfile::tempdir().unwrap();
    let (settings, _database) = postgres_settings(data.path()).await;
    let app = spawn_app_with(settings).await;
    org(&app).await;
    let device = |username: &'static str| {
        let url = format!("http://{}", app.address);
        async move {
            let dir = tempfile::tempdir().unwrap();
            let device = Device::open(dir.path()).await.unwrap();
            device
                .login(&url, username, PASSWORD, "phone")
                .await
                .unwrap();
            (device, dir)
        }
    };
    let (alice, _alice_dir) = device("alice").await;
    let alice_sync = alice.start_sync_with(crate::alerts::FAST);
    // Written unchecked, as a hostile client would.
    let incident = alice
        .create(&json!({
            "type": "incident", "title": "泄漏\u{0}事故", "grade": "yellow",
            "location": "化工\u{0}园区\u{7}", "reports": [{"kind": "first", "at": 1_795_348_800_000i64,
            "text": "\u{0}已疏散"}], "notes\u{0}": "x\u{0}y",
        }))
        .await
        .unwrap();
    alice.wait_received(&incident, WAIT).await.unwrap();
    let log = alice
        .create(&json!({"type": "duty_log", "title": "夜\u{0}班", "entries": [
            {"received_at": 1_795_348_800_000i64, "content": "来电\u{0}求助", "handler": "alice"}]}))
        .await
        .unwrap();
    alice.wait_received(&log, WAIT).await.unwrap();
    let token = app.login("cleared", "desk").await.access_token;
    let row = get(&app, &token, &format!("/api/incidents/{incident}")).await;
    assert_eq!(row["title"], "泄漏事故");
    assert_eq!(row["location"], "化工园区");
    assert_eq!(row["flag"], Value::Null, "{row}");
    let calls = get(&app, &token, "/api/log").await;
    assert_eq!(calls[0]["content"], "来电求助");
    let hits = get(&app, &token, "/api/search?q=%E5%B7%B2%E7%96%8F%E6%95%A3").await;
    assert_eq!(hits["hits"][0]["document_id"], incident.to_string());

    // A colleague's later edit is stored and projected.
    let (leader, _leader_dir) = device("cleared").await;
    let leader_sync = leader.start_sync_with(crate::alerts::FAST);
    crate::helpers::until_held(&leader, &incident).await;
    leader
        .set_field(&incident, &["status"], &json!("handled"))
        .await
        .unwrap();
    leader.wait_received(&incident, WAIT).await.unwrap();
    let row = get(&app, &token, &format!("/api/incidents/{incident}")).await;
    assert_eq!(row["status"], "handled");
    alice_sync.stop().await;
    leader_sync.stop().await;
}

/// A time like `known_at: 1e19` overflowed the deadline arithmetic: on a debug build the
/// writer panicked and every later write failed until restart. A time outside 2000–2100 is
/// now flagged and never used for deadlines, and the server carries on.
#[tokio::test]
async fn a_time_far_outside_the_calendar_is_flagged_and_never_used_for_a_deadline() {
    let app = crate::helpers::spawn_app().await;
    org(&app).await;
    let mut peer = app.peer("alice").await;
    let id = DocumentId::random();
    let mut doc = Automerge::new();
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.put(ROOT, "type", "incident")?;
        tx.put(ROOT, "title", "时间错乱")?;
        tx.put(ROOT, "grade", "red")?;
        tx.put(ROOT, "known_at", 1e19)?;
        tx.put(ROOT, "reported_at", i64::MAX)?;
        let reports = tx.put_object(ROOT, "reports", ObjType::List)?;
        let first = tx.insert_object(&reports, 0, ObjType::Map)?;
        tx.put(&first, "kind", "follow_up")?;
        tx.put(&first, "at", i64::MIN)?;
        Ok(())
    })
    .unwrap();
    assert!(
        peer.sync(id, &mut doc).await.unwrap(),
        "stored, not refused"
    );

    let token = app.login("cleared", "desk").await.access_token;
    let row = get(&app, &token, &format!("/api/incidents/{id}")).await;
    let problems = row["problems"].to_string();
    for field in ["known_at", "reported_at", "reports[0].at"] {
        assert!(problems.contains(field), "{field}: {problems}");
    }
    assert_eq!(row["known_at"], Value::Null);
    assert_eq!(row["timeliness"]["first_report_due_at"], Value::Null);
    let deadlines: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM alerts WHERE kind IN ('first_report', 'follow_up')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(deadlines, 0, "no deadline from a time that is not one");
    let red: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alerts WHERE kind = 'incident'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(red, 1, "the red report still alerts");

    // Writes go on: another report, a login.
    let other = DocumentId::random();
    let mut fine = crate::helpers::new_document(&[("type", "incident"), ("title", "正常")]);
    assert!(peer.sync(other, &mut fine).await.unwrap());
    app.login("anna", "phone").await;
    assert!(app.healthy().await);
}

/// An API action and its audit row commit together or not at all: when the audit row cannot
/// be written, the acknowledgement does not happen either, and the alert goes on.
#[tokio::test]
async fn an_action_whose_audit_row_fails_does_not_happen() {
    let mut scene = Scene::new().await;
    let leader = scene.subscribe("cleared", "leader").await;
    let (officer, sync) = scene.device("alice").await;
    let incident = officer
        .urgent_report("accident", "甲镇", "追尾")
        .await
        .unwrap();
    officer.wait_received(&incident, WAIT).await.unwrap();
    let alert = scene.next().await.json()["alert_id"]
        .as_str()
        .unwrap()
        .to_owned();
    sql(
        &scene,
        "CREATE TRIGGER no_ack_audit BEFORE INSERT ON audit_log \
         WHEN NEW.action = 'alert.acknowledge' \
         BEGIN SELECT RAISE(ABORT, 'refused by the test'); END;",
    )
    .await;
    let (status, _) = scene
        .post(
            &leader.access_token,
            &format!("/api/alerts/{alert}/ack"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 500);
    let view = get(
        scene.app(),
        &leader.access_token,
        &format!("/api/alerts/{alert}"),
    )
    .await;
    assert_eq!(view["acknowledged_at"], Value::Null, "{view}");
    scene.clock.advance(3 * MINUTE);
    assert_eq!(scene.next().await.json()["repeat"], 1, "the alert goes on");

    sql(&scene, "DROP TRIGGER no_ack_audit").await;
    let (status, body) = scene
        .post(
            &leader.access_token,
            &format!("/api/alerts/{alert}/ack"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'alert.acknowledge'")
            .fetch_one(&scene.app().pool)
            .await
            .unwrap();
    assert_eq!(audited, 1);
    sync.stop().await;
}
