//! Records as the duty room queries them: the projection of incidents, search in Chinese,
//! the same visibility rules as sync (D18, D20), and a rebuild equal to the incremental rows.

use std::time::Duration;

use serde_json::{Value, json};
use zhiban_client_core::{Backoff, DeliveryStatus, Device, DocumentId};

use zhiban_server::clock::Clock;

use crate::helpers::{Org, PASSWORD, TestApp, get, org, spawn_app, spawn_app_on};

const FAST: Backoff = Backoff {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(300),
};

/// A device with its own store in `dir`, logged in as `username`.
async fn logged_in(app: &TestApp, dir: &std::path::Path, username: &str) -> Device {
    let device = Device::open(dir).await.unwrap();
    device
        .login(
            &format!("http://{}", app.address),
            username,
            PASSWORD,
            "tablet",
        )
        .await
        .unwrap();
    device
}

async fn report(
    app: &TestApp,
    dir: &std::path::Path,
    username: &str,
    incident: &Value,
) -> DocumentId {
    let device = logged_in(app, dir, username).await;
    let sync = device.start_sync_with(FAST);
    let id = device.create(incident).await.unwrap();
    assert_eq!(
        device
            .wait_received(&id, Duration::from_secs(20))
            .await
            .unwrap(),
        DeliveryStatus::ReceivedByServer
    );
    sync.stop().await;
    id
}

/// A server whose clock stands at `since` (a minute before), with alice's device in `dir`
/// logged in then; the clock is then moved to `now`. The device was offline in between, so
/// what it writes about that time counts as written (`records::times`).
async fn offline_since(since: i64, dir: &std::path::Path, now: i64) -> (TestApp, Org) {
    let clock = Clock::manual(since - 60_000);
    let app = spawn_app_on(clock.clone()).await;
    let org = org(&app).await;
    logged_in(&app, dir, "alice").await;
    clock.advance(Duration::from_millis((now - clock.now_ms()) as u64));
    (app, org)
}

fn ids(hits: &Value, list: &str) -> Vec<String> {
    hits[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["document_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn incidents_are_projected_and_searchable_in_chinese_within_what_each_user_may_see() {
    let app = spawn_app().await;
    org(&app).await;
    // Times a few minutes back: within what the server accepts from a device that just
    // logged in (`records::times`).
    let base = chrono::Utc::now().timestamp_millis() - 3 * 60_000;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let wages = report(
        &app,
        dirs[0].path(),
        "alice",
        &json!({
            "type": "incident", "title": "农民工讨薪事件", "category": "social_security",
            "grade": "yellow", "level": "IV", "status": "open", "location": "建设路工地",
            "known_at": base, "reported_at": base + 60_000,
            "reported_by": "alice", "notes": [{"text": "约三十人聚集在工地门口"}],
        }),
    )
    .await;
    let secret = report(
        &app,
        dirs[1].path(),
        "cleared",
        &json!({
            "type": "incident", "title": "讨薪人员涉密线索", "classification": "classified",
            "grade": "red", "reported_at": base + 70_000,
        }),
    )
    .await;
    let landslide = report(
        &app,
        dirs[2].path(),
        "bob",
        &json!({"type": "incident", "title": "山体滑坡", "grade": "red", "reported_at": base + 80_000}),
    )
    .await;
    let (wages, secret, landslide) = (wages.to_string(), secret.to_string(), landslide.to_string());

    let alice = app.login("alice", "desk").await.access_token;
    let district = app.login("district", "desk").await.access_token;
    let bob = app.login("bob", "desk").await.access_token;
    let search = |token: String, q: &str| {
        let app = &app;
        let path = format!("/api/search?q={}", urlencode(q));
        async move { ids(&get(app, &token, &path).await, "hits") }
    };

    // 讨薪 inside 农民工讨薪事件, and a two-character word inside a note.
    assert_eq!(search(alice.clone(), "讨薪").await, vec![wages.clone()]);
    assert_eq!(search(alice.clone(), "聚集").await, vec![wages.clone()]);
    assert_eq!(
        search(alice.clone(), "建设路工地").await,
        vec![wages.clone()]
    );
    assert!(
        search(alice.clone(), "滑坡").await.is_empty(),
        "another unit's record"
    );
    let mut seen = search(district.clone(), "讨薪").await;
    seen.sort();
    let mut expected = vec![wages.clone(), secret.clone()];
    expected.sort();
    assert_eq!(seen, expected, "a cleared superior sees both");
    assert!(search(bob.clone(), "讨薪").await.is_empty());
    assert_eq!(search(bob.clone(), "滑坡").await, vec![landslide.clone()]);
    // Wildcards are taken literally.
    assert!(search(alice.clone(), "%").await.is_empty());

    let list = get(&app, &alice, "/api/incidents").await;
    assert_eq!(ids(&list, "incidents"), vec![wages.clone()]);
    assert_eq!(list["total"], 1);
    let row = &list["incidents"][0];
    assert_eq!(row["title"], "农民工讨薪事件");
    assert_eq!(row["grade"], "yellow");
    assert_eq!(
        row["warnings"],
        json!([
            "missing core element: casualties and losses",
            "missing core element: measures taken"
        ]),
        "missing core elements are called out"
    );
    assert_eq!(row["problems"], json!([]));
    let all = get(&app, &district, "/api/incidents").await;
    assert_eq!(all["total"], 3);
    let red = get(&app, &district, "/api/incidents?grade=red&limit=1").await;
    assert_eq!(red["total"], 2);
    assert_eq!(
        ids(&red, "incidents"),
        vec![landslide.clone()],
        "newest first, one per page"
    );
    let page_two = get(&app, &district, "/api/incidents?grade=red&limit=1&offset=1").await;
    assert_eq!(ids(&page_two, "incidents"), vec![secret.clone()]);
    let window = get(
        &app,
        &district,
        &format!("/api/incidents?from={}&to={}", base + 65_000, base + 75_000),
    )
    .await;
    assert_eq!(ids(&window, "incidents"), vec![secret.clone()]);
    let response = app
        .http
        .get(app.url("/api/incidents?limit=100000"))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);

    // An edit through sync updates the rows in the same commit.
    let device = Device::open(dirs[0].path()).await.unwrap();
    let sync = device.start_sync_with(FAST);
    let id: DocumentId = wages.parse().unwrap();
    device
        .set_field(&id, &["status"], &json!("closed"))
        .await
        .unwrap();
    device
        .wait_received(&id, Duration::from_secs(20))
        .await
        .unwrap();
    sync.stop().await;
    let closed = get(&app, &alice, "/api/incidents?status=closed").await;
    assert_eq!(ids(&closed, "incidents"), vec![wages.clone()]);

    // Rebuilding from the documents gives exactly the rows kept incrementally.
    let before = projection_rows(&app).await;
    assert_eq!(before.len(), 3);
    wipe(
        &app,
        &["incidents", "records", "search_index", "search_parts"],
    )
    .await;
    assert!(projection_rows(&app).await.is_empty());
    assert_eq!(reproject(&app).await, 3);
    assert_eq!(projection_rows(&app).await, before);
}

/// Empties projection tables, to show that `reproject` rebuilds them.
async fn wipe(app: &TestApp, tables: &[&str]) {
    for table in tables {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}")))
            .execute(&app.pool)
            .await
            .unwrap();
    }
}

/// `admin reproject` on the test's SQLite database; how many records it rebuilt.
async fn reproject(app: &TestApp) -> usize {
    zhiban_server::commit::reproject(
        &app.pool,
        zhiban_server::clock::system_ms(),
        (
            zhiban_records::Intervals::default(),
            &app.keys().await.audit,
        ),
    )
    .await
    .unwrap()
}

/// Every projected row, without the time it was written.
async fn projection_rows(app: &TestApp) -> Vec<(String, String, String, String)> {
    sqlx::query_as(
        "SELECT i.document_id, i.title || '|' || COALESCE(i.status, '') || '|' || r.warnings, \
         i.unit_id, s.body FROM incidents i \
         JOIN records r ON r.document_id = i.document_id \
         JOIN search_parts p ON p.document_id = i.document_id AND p.list = '' \
         JOIN search_index s ON s.rowid = p.id ORDER BY i.document_id",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Relation {
    Same,
    Superior,
    Subordinate,
    Sibling,
}

/// Role × unit relation × clearance × classification × endpoint: every endpoint must give the
/// answer the policy gives (D18), and all four must agree.
#[tokio::test]
async fn the_authorization_matrix_holds_for_sync_list_get_and_search() {
    use zhiban_server::access::Role;
    let app = spawn_app().await;
    let root = app.create_unit("Province office", None).await;
    let home = app.create_unit("County office", Some(&root)).await;
    let below = app.create_unit("Town office", Some(&home)).await;
    let beside = app.create_unit("Other county", Some(&root)).await;
    app.create_user("author", &home, Role::Leader, true).await;
    let unit_of = |relation| match relation {
        Relation::Same => home.clone(),
        Relation::Superior => root.clone(),
        Relation::Subordinate => below.clone(),
        Relation::Sibling => beside.clone(),
    };

    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let plain = report(
        &app,
        dirs[0].path(),
        "author",
        &json!({"type": "incident", "title": "矩阵测试 plain", "reported_at": 1i64}),
    )
    .await;
    let classified = report(
        &app,
        dirs[1].path(),
        "author",
        &json!({"type": "incident", "title": "矩阵测试 classified",
                "classification": "classified", "reported_at": 2i64}),
    )
    .await;

    let roles = [Role::Admin, Role::Leader, Role::Officer, Role::Field];
    let relations = [
        Relation::Same,
        Relation::Superior,
        Relation::Subordinate,
        Relation::Sibling,
    ];
    let mut cases = 0;
    for (r, role) in roles.iter().enumerate() {
        for (u, relation) in relations.iter().enumerate() {
            for cleared in [false, true] {
                let username = format!("u{r}{u}{}", u8::from(cleared));
                app.create_user(&username, &unit_of(*relation), *role, cleared)
                    .await;
                let session = app.login(&username, "desk").await;
                let token = &session.access_token;
                let listed = ids(&get(&app, token, "/api/incidents").await, "incidents");
                let found = ids(
                    &get(
                        &app,
                        token,
                        &format!("/api/search?q={}", urlencode("矩阵测试")),
                    )
                    .await,
                    "hits",
                );
                let mut peer =
                    crate::helpers::RawPeer::connect(&app.sync_url(token).await, &session.peer_id)
                        .await
                        .unwrap();
                for (document, is_classified) in [(plain, false), (classified, true)] {
                    let expected = matches!(relation, Relation::Same | Relation::Superior)
                        && (!is_classified || cleared);
                    let id = document.to_string();
                    let got = app
                        .http
                        .get(app.url(&format!("/api/incidents/{id}")))
                        .bearer_auth(token)
                        .send()
                        .await
                        .unwrap()
                        .status();
                    let synced = peer
                        .sync(document, &mut automerge::Automerge::new())
                        .await
                        .unwrap();
                    let case = format!(
                        "{role:?} in {relation:?} unit, cleared={cleared}, classified={is_classified}"
                    );
                    assert_eq!(synced, expected, "sync: {case}");
                    assert_eq!(listed.contains(&id), expected, "list: {case}");
                    assert_eq!(got == 200, expected, "get: {case}");
                    assert_eq!(got == 404, !expected, "get answers 404 when hidden: {case}");
                    assert_eq!(found.contains(&id), expected, "search: {case}");
                    cases += 4;
                }
            }
        }
    }
    assert_eq!(cases, 256);

    // Editing the fields does not declassify the document.
    let author = Device::open(dirs[1].path()).await.unwrap();
    let sync = author.start_sync_with(FAST);
    author
        .set_field(&classified, &["classification"], &json!("plain"))
        .await
        .unwrap();
    author
        .wait_received(&classified, Duration::from_secs(20))
        .await
        .unwrap();
    sync.stop().await;
    let uncleared = app.login("u200", "desk").await.access_token;
    let listed = ids(&get(&app, &uncleared, "/api/incidents").await, "incidents");
    assert_eq!(listed, vec![plain.to_string()]);
}

#[tokio::test]
async fn a_malformed_record_is_stored_but_flagged() {
    let app = spawn_app().await;
    org(&app).await;
    // A peer that skips the device's checks (here a raw automerge peer) sends a bad grade.
    let mut peer = app.peer("alice").await;
    let id = DocumentId::random();
    let mut doc = crate::helpers::new_document(&[
        ("type", "incident"),
        ("title", "odd report"),
        ("grade", "purple"),
    ]);
    assert!(
        peer.sync(id, &mut doc).await.unwrap(),
        "stored, not refused"
    );
    let token = app.login("alice", "desk").await.access_token;
    let row = get(&app, &token, &format!("/api/incidents/{id}")).await;
    assert_eq!(row["title"], "odd report");
    let problems = row["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{row}");
    assert!(problems[0].as_str().unwrap().contains("purple"), "{row}");

    // The device library refuses to create it in the first place, with the reason.
    let dir = tempfile::tempdir().unwrap();
    let device = Device::open(dir.path()).await.unwrap();
    let refused = device
        .create_record(&json!({"type": "incident", "title": "odd", "grade": "purple"}))
        .await;
    assert!(
        matches!(&refused, Err(zhiban_client_core::Error::Invalid(reason)) if reason.contains("purple")),
        "{refused:?}"
    );
    let (_, warnings) = device
        .create_record(&json!({"type": "incident", "title": "fire", "grade": "red"}))
        .await
        .unwrap();
    assert!(
        warnings.iter().any(|w| w.contains("casualties")),
        "{warnings:?}"
    );
}

/// 2026-11-22 20:00 +08:00: a night shift's start.
const NIGHT: i64 = 1_795_348_800_000;

#[tokio::test]
async fn duty_log_entries_are_listed_searched_and_rebuilt() {
    let app = spawn_app().await;
    org(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let device = logged_in(&app, dir.path(), "alice").await;
    let sync = device.start_sync_with(FAST);
    let (log, warnings) = device
        .create_record(&json!({
            "type": "duty_log", "title": "夜班 2026-11-22", "shift_start": NIGHT,
            "entries": [{
                "received_at": NIGHT + 2_000, "caller_unit": "交警大队", "caller_name": "王警官",
                "phone": "0571-110", "content": "高速追尾，两车受损", "handling": "转报带班领导",
                "handler": "alice", "incident": "INCIDENT-1",
            }],
        }))
        .await
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    device
        .append(
            &log,
            &["entries"],
            &json!({"received_at": NIGHT + 3_000, "content": "群众来电询问道路情况", "phone": "138 0000 0000", "handler": "alice"}),
        )
        .await
        .unwrap();
    device
        .wait_received(&log, Duration::from_secs(20))
        .await
        .unwrap();
    sync.stop().await;

    let alice = app.login("alice", "desk").await.access_token;
    let entries = get(&app, &alice, "/api/log").await;
    let contents: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        contents,
        vec!["群众来电询问道路情况", "高速追尾，两车受损"],
        "newest first"
    );
    let of_incident = get(&app, &alice, "/api/log?incident=INCIDENT-1").await;
    assert_eq!(of_incident.as_array().unwrap().len(), 1);
    assert_eq!(of_incident[0]["caller_name"], "王警官");
    let window = get(&app, &alice, &format!("/api/log?from={}", NIGHT + 2_500)).await;
    assert_eq!(window.as_array().unwrap().len(), 1);
    let hits = get(
        &app,
        &alice,
        &format!("/api/search?q={}", urlencode("追尾")),
    )
    .await;
    assert_eq!(ids(&hits, "hits"), vec![log.to_string()]);
    let bob = app.login("bob", "desk").await.access_token;
    assert!(
        get(&app, &bob, "/api/log")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );

    let rows = || async {
        sqlx::query_as::<_, (String, i64, String)>(
            "SELECT document_id, position, content FROM log_entries ORDER BY document_id, position",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap()
    };
    let before = rows().await;
    wipe(&app, &["log_entries"]).await;
    reproject(&app).await;
    assert_eq!(rows().await, before);
}

#[tokio::test]
async fn who_is_on_duty_follows_the_roster_across_midnight_and_leader_approved_swaps() {
    use automerge::ReadDoc;
    use automerge::transaction::Transactable;
    let app = spawn_app().await;
    let org = org(&app).await;
    app.create_user(
        "zhao",
        &org.unit_a,
        zhiban_server::access::Role::Officer,
        false,
    )
    .await;
    let leader = app.login("cleared", "desk").await;
    let anna = app.login("anna", "desk").await;
    let zhao = app.login("zhao", "desk").await;
    let alice = app.login("alice", "desk").await;
    let person = |session: &crate::helpers::Session, name: &str, phone: &str| json!({"user_id": session.user_id, "name": name, "phone": phone});
    // 2026-11-28 20:00 to 2026-11-29 08:00 (UTC+8), then the holiday day shift.
    let night_start = 1_795_867_200_000i64;
    let night_end = night_start + 12 * 3_600_000;
    let day_end = night_end + 12 * 3_600_000;

    // The leader writes the roster (W7); the officer on it asks for leave herself (W8).
    let planner_dir = tempfile::tempdir().unwrap();
    let planner = logged_in(&app, planner_dir.path(), "cleared").await;
    let planner_sync = planner.start_sync_with(FAST);
    let (roster, warnings) = planner
        .create_record(&json!({
            "type": "roster", "title": "元旦值班表", "holiday": true,
            "shifts": [
                {"start": night_start, "end": night_end, "kind": "workday",
                 "leader": person(&leader, "李局长", "13800000001"),
                 "officers": [person(&anna, "安娜", "13800000002")],
                 "backup_officers": [person(&alice, "艾丽斯", "13800000003")]},
                {"start": night_end, "end": day_end, "kind": "holiday",
                 "leader": person(&leader, "李局长", "13800000001"),
                 "officers": [person(&alice, "艾丽斯", "13800000003")]},
            ],
            "requests": [],
        }))
        .await
        .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    planner
        .wait_received(&roster, Duration::from_secs(20))
        .await
        .unwrap();
    planner_sync.stop().await;
    let anna_dir = tempfile::tempdir().unwrap();
    let anna_device = logged_in(&app, anna_dir.path(), "anna").await;
    let anna_sync = anna_device.start_sync_with(FAST);
    crate::helpers::until_held(&anna_device, &roster).await;
    anna_device
        .request_swap(&roster, 0, true, &person(&zhao, "赵", "13800000004"), "ill")
        .await
        .unwrap();
    anna_device
        .wait_received(&roster, Duration::from_secs(20))
        .await
        .unwrap();
    anna_sync.stop().await;

    let token = alice.access_token.clone();
    let on_duty = |at: i64| {
        let app = &app;
        let token = token.clone();
        let unit = org.unit_a.clone();
        async move { get(app, &token, &format!("/api/oncall?unit={unit}&at={at}")).await }
    };
    let officers = |answer: &Value| -> Vec<String> {
        answer["shifts"][0]["officers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let before_midnight = on_duty(night_start + 3 * 3_600_000 + 1_800_000).await;
    let after_midnight = on_duty(night_start + 7 * 3_600_000).await;
    assert_eq!(before_midnight["shifts"][0]["leader"]["name"], "李局长");
    assert_eq!(
        before_midnight["shifts"][0]["leader"]["phone"],
        "13800000001"
    );
    assert_eq!(
        before_midnight["shifts"], after_midnight["shifts"],
        "one shift across midnight"
    );
    assert_eq!(
        officers(&after_midnight),
        vec!["安娜"],
        "a pending leave changes nothing"
    );
    let holiday = on_duty(night_end + 2 * 3_600_000).await;
    assert_eq!(holiday["shifts"][0]["kind"], "holiday");
    assert_eq!(officers(&holiday), vec!["艾丽斯"]);
    assert!(
        on_duty(day_end + 1).await["shifts"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // An officer writing "approved", in her name or in the leader's, is refused (W9): the
    // server knows whose device wrote it.
    let dir = tempfile::tempdir().unwrap();
    let device = logged_in(&app, dir.path(), "alice").await;
    let sync = device.start_sync_with(FAST);
    crate::helpers::until_held(&device, &roster).await;
    while device.get(&roster).await.unwrap()["requests"]
        .as_array()
        .is_none_or(Vec::is_empty)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for by in [alice.user_id.clone(), leader.user_id.clone()] {
        device
            .change(&roster, move |tx| {
                let requests = tx.get(automerge::ROOT, "requests")?.unwrap().1;
                let request = tx.get(&requests, 0)?.unwrap().1;
                tx.put(&request, "status", "approved")?;
                tx.put(&request, "decided_by", by.as_str())?;
                Ok(())
            })
            .await
            .unwrap();
        let refused = crate::helpers::refusal(&device, &roster).await;
        assert!(refused.contains("rule W9"), "{refused}");
        assert_eq!(officers(&on_duty(night_start + 1).await), vec!["安娜"]);
    }
    sync.stop().await;
    // The leader's approval from his own tablet is: the substitute is on duty.
    let leader_dir = tempfile::tempdir().unwrap();
    let leader_device = logged_in(&app, leader_dir.path(), "cleared").await;
    let leader_sync = leader_device.start_sync_with(FAST);
    crate::helpers::until_held(&leader_device, &roster).await;
    leader_device
        .decide_request(&roster, 0, true)
        .await
        .unwrap();
    leader_device
        .wait_received(&roster, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(officers(&on_duty(night_start + 1).await), vec!["赵"]);
    leader_sync.stop().await;

    // The superior office may ask; a sibling unit may not.
    let district = app.login("district", "desk").await.access_token;
    let answer = get(
        &app,
        &district,
        &format!("/api/oncall?unit={}&at={}", org.unit_a, night_start + 1),
    )
    .await;
    assert_eq!(answer["shifts"][0]["leader"]["name"], "李局长");
    let bob = app.login("bob", "desk").await.access_token;
    let response = app
        .http
        .get(app.url(&format!("/api/oncall?unit={}", org.unit_a)))
        .bearer_auth(bob)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn each_incident_shows_its_reporting_against_the_deadlines() {
    let hour = 3_600_000i64;
    let now = chrono::Utc::now().timestamp_millis();
    let known = now - 6 * hour;
    let first = known + 90 * 60_000;
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = offline_since(known, dir.path(), now).await;
    let id = report(
        &app,
        dir.path(),
        "alice",
        &json!({
            "type": "incident", "title": "化工厂泄漏", "grade": "red", "known_at": known,
            "reports": [
                {"kind": "first", "at": first, "by": "alice", "text": "泄漏，已疏散"},
                {"kind": "follow_up", "at": now - 2 * hour, "by": "alice", "text": "已控制"},
            ],
        }),
    )
    .await;
    let token = app.login("alice", "desk").await.access_token;
    let row = get(&app, &token, &format!("/api/incidents/{id}")).await;
    let timeliness = &row["timeliness"];
    assert_eq!(timeliness["first_report_minutes_late"], 30, "{row}");
    assert_eq!(timeliness["first_report_at"], first);
    assert_eq!(timeliness["follow_ups_made"], 1);
    assert_eq!(
        timeliness["follow_ups_due"], 2,
        "4.5 h since the first report"
    );
    assert_eq!(timeliness["next_follow_up_due_at"], first + 6 * hour);
    assert_eq!(timeliness["closed_at"], Value::Null);
}

#[tokio::test]
async fn a_unit_sets_its_own_reporting_intervals_and_its_deadlines_follow() {
    let minute = 60_000i64;
    let now = chrono::Utc::now().timestamp_millis();
    let known = now - 45 * minute;
    let dir = tempfile::tempdir().unwrap();
    let (app, org) = offline_since(known, dir.path(), now).await;
    let put = |username: &'static str, body: Value| {
        let app = &app;
        let unit = org.unit_a.clone();
        async move {
            let token = app.login(username, "desk").await.access_token;
            app.http
                .put(app.url(&format!("/api/units/{unit}/intervals")))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
        }
    };
    let strict = json!({"first_report_minutes": 30, "follow_up_minutes": 60});
    assert_eq!(put("alice", strict.clone()).await.status(), 403);
    let refused = put(
        "cleared",
        json!({"first_report_minutes": 0, "follow_up_minutes": null}),
    )
    .await;
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("first_report_minutes")
    );
    let set = put("cleared", strict).await;
    assert_eq!(set.status(), 200);
    let set: Value = set.json().await.unwrap();
    assert_eq!(
        (
            set["first_report_minutes"].as_i64(),
            set["follow_up_minutes"].as_i64()
        ),
        (Some(30), Some(60))
    );

    let id = report(
        &app,
        dir.path(),
        "alice",
        &json!({"type": "incident", "title": "河道漫堤", "grade": "yellow", "known_at": known}),
    )
    .await;
    let token = app.login("alice", "desk").await.access_token;
    let row = get(&app, &token, &format!("/api/incidents/{id}")).await;
    assert_eq!(
        row["timeliness"]["first_report_due_at"],
        known + 30 * minute,
        "{row}"
    );
    assert_eq!(row["timeliness"]["first_report_minutes_late"], 15, "{row}");
    let due: i64 = sqlx::query_scalar(
        "SELECT due_at FROM alerts WHERE kind = 'first_report' AND document_id = $1",
    )
    .bind(id.to_string())
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        due,
        known + 30 * minute,
        "the deadline alert follows the unit's interval"
    );
}

#[tokio::test]
async fn handovers_are_signed_by_both_sides_and_pending_items_carry_over_until_closed() {
    let app = spawn_app().await;
    org(&app).await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let outgoing = logged_in(&app, dir_a.path(), "alice").await;
    let incoming = logged_in(&app, dir_b.path(), "anna").await;
    let (sync_a, sync_b) = (
        outgoing.start_sync_with(FAST),
        incoming.start_sync_with(FAST),
    );

    let first = outgoing
        .create_handover(
            &["logged 14 calls".into()],
            &[
                "call back the county office".into(),
                "radio 2 needs a battery".into(),
            ],
            "radio 1 fine, radio 2 weak",
            None,
        )
        .await
        .unwrap();
    outgoing.sign_handover(&first, false).await.unwrap();
    outgoing
        .wait_received(&first, Duration::from_secs(20))
        .await
        .unwrap();
    // The incoming officer's device has it through the unit catalog.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while incoming
        .get(&first)
        .await
        .map_or(true, |doc| doc["signatures"]["outgoing"].is_null())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "handover never reached the incoming device"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    incoming.sign_handover(&first, true).await.unwrap();
    incoming.close_pending(&first, 0).await.unwrap();
    let second = incoming
        .create_handover(
            &[],
            &["water pump report due".into()],
            "all radios fine",
            Some(&first),
        )
        .await
        .unwrap();
    incoming
        .wait_received(&first, Duration::from_secs(20))
        .await
        .unwrap();
    incoming
        .wait_received(&second, Duration::from_secs(20))
        .await
        .unwrap();
    sync_a.stop().await;
    sync_b.stop().await;

    let token = app.login("alice", "desk2").await.access_token;
    let all = get(&app, &token, "/api/handovers").await;
    let by_id = |id: &DocumentId| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|h| h["document_id"] == id.to_string().as_str())
            .cloned()
            .unwrap()
    };
    let (first_row, second_row) = (by_id(&first), by_id(&second));
    assert!(first_row["outgoing_by"].is_string() && first_row["incoming_by"].is_string());
    assert_eq!(
        first_row["open_items"], 1,
        "one item closed, one still open"
    );
    assert_eq!(
        second_row["open_items"], 2,
        "the open item carried over, plus a new one"
    );
    let carried: Vec<&str> = second_row["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        carried,
        vec!["radio 2 needs a battery", "water pump report due"]
    );
    let bob = app.login("bob", "desk").await.access_token;
    assert!(
        get(&app, &bob, "/api/handovers")
            .await
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn records_queries_search_and_audit_work_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _database) = crate::helpers::postgres_settings(dir.path()).await;
    let app = crate::helpers::spawn_app_with(settings).await;
    org(&app).await;
    let device_dir = tempfile::tempdir().unwrap();
    let incident = report(
        &app,
        device_dir.path(),
        "alice",
        &json!({"type": "incident", "title": "农民工讨薪事件", "grade": "yellow", "reported_at": 5i64}),
    )
    .await;
    let device = Device::open(device_dir.path()).await.unwrap();
    let sync = device.start_sync_with(FAST);
    let log = device
        .log_call(zhiban_client_core::Call {
            content: "来电反映工地欠薪".into(),
            phone: Some("12345".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    device
        .wait_received(&log, Duration::from_secs(20))
        .await
        .unwrap();
    sync.stop().await;

    let alice = app.login("alice", "desk").await.access_token;
    let hits = get(
        &app,
        &alice,
        &format!("/api/search?q={}", urlencode("讨薪")),
    )
    .await;
    assert_eq!(ids(&hits, "hits"), vec![incident.to_string()]);
    let listed = get(&app, &alice, "/api/incidents?grade=yellow").await;
    assert_eq!(listed["total"], 1);
    assert_eq!(
        get(&app, &alice, &format!("/api/incidents/{incident}")).await["title"],
        "农民工讨薪事件"
    );
    let entries = get(&app, &alice, "/api/log").await;
    assert_eq!(entries[0]["content"], "来电反映工地欠薪");
    let bob = app.login("bob", "desk").await.access_token;
    assert!(
        ids(
            &get(&app, &bob, &format!("/api/search?q={}", urlencode("讨薪"))).await,
            "hits"
        )
        .is_empty()
    );
    assert_eq!(
        zhiban_server::commit::reproject(
            &app.pool,
            zhiban_server::clock::system_ms(),
            (
                zhiban_records::Intervals::default(),
                &app.keys().await.audit
            ),
        )
        .await
        .unwrap(),
        2
    );
    assert!(matches!(
        app.verify_audit().await,
        zhiban_server::audit::Verdict::Intact { .. }
    ));
}

#[tokio::test]
async fn instructions_daily_reports_and_the_register_are_projected_and_rebuilt_alike() {
    let app = spawn_app().await;
    org(&app).await;
    let leader_dir = tempfile::tempdir().unwrap();
    let leader = logged_in(&app, leader_dir.path(), "cleared").await;
    let leader_sync = leader.start_sync_with(FAST);
    let (incident, _) = leader
        .create_record(&json!({
            "type": "incident", "title": "化工厂泄漏", "category": "accident", "level": "II",
            "grade": "red", "known_at": 1_700_000_000_000i64, "location": "开发区",
            "casualties": "none", "measures": "evacuated", "reported_by": "alice",
            "reported_at": 1_700_000_100_000i64,
        }))
        .await
        .unwrap();
    leader
        .add_instruction(&incident, "立即组织疏散，每小时报告")
        .await
        .unwrap();
    leader
        .wait_received(&incident, Duration::from_secs(20))
        .await
        .unwrap();
    leader_sync.stop().await;

    // An officer types an "instruction" in the leader's name: refused (W5), the rest stands.
    let officer_dir = tempfile::tempdir().unwrap();
    let officer = logged_in(&app, officer_dir.path(), "alice").await;
    let officer_sync = officer.start_sync_with(FAST);
    crate::helpers::until_held(&officer, &incident).await;
    let leader_id = app.login("cleared", "desk").await.user_id;
    officer
        .append(
            &incident,
            &["instructions"],
            &json!({"by": leader_id, "at": 1_700_000_200_000i64, "text": "可以撤离了", "steps": [], "done": false}),
        )
        .await
        .unwrap();
    let (report, _) = officer
        .create_record(&json!({
            "type": "daily_report", "date": "2026-10-03", "zero": true, "submitted_at": 1_700_000_300_000i64,
        }))
        .await
        .unwrap();
    let (register, warnings) = officer
        .create_record(&json!({
            "type": "document_register",
            "entries": [
                {"received_at": 1_700_000_400_000i64, "from": "市应急局", "title": "关于做好国庆值班工作的通知", "routed_to": leader_id},
                {"received_at": 1_700_000_500_000i64, "from": "区政府办", "title": "防汛通知"},
            ],
        }))
        .await
        .unwrap();
    assert_eq!(warnings, vec!["document 2 is not yet routed to a leader"]);
    for id in [&report, &register] {
        officer
            .wait_received(id, Duration::from_secs(20))
            .await
            .unwrap();
    }
    let refused = crate::helpers::refusal(&officer, &incident).await;
    assert!(refused.contains("rule W5"), "{refused}");
    officer_sync.stop().await;

    let token = app.login("alice", "desk").await.access_token;
    let detail = get(&app, &token, &format!("/api/incidents/{incident}")).await;
    let instructions = detail["instructions"].as_array().unwrap();
    assert_eq!(instructions.len(), 1, "{detail}");
    assert_eq!(instructions[0]["text"], "立即组织疏散，每小时报告");
    assert_eq!(instructions[0]["by"], leader_id.as_str());
    assert_eq!(instructions[0]["verified"], true);

    let rows = || async {
        let mut rows: Vec<String> = Vec::new();
        for query in [
            "SELECT document_id || '|' || position || '|' || COALESCE(by_user, '') || '|' || \
             COALESCE(by_actor, '') || '|' || text || '|' || steps || '|' || done FROM instructions",
            "SELECT document_id || '|' || unit_id || '|' || day || '|' || zero || '|' || \
             COALESCE(submitted_at, 0) FROM daily_reports",
            "SELECT document_id || '|' || position || '|' || sender || '|' || title || '|' || \
             COALESCE(routed_to, '') || '|' || done FROM register_entries",
        ] {
            let mut found: Vec<String> = sqlx::query_scalar(query)
                .fetch_all(&app.pool)
                .await
                .unwrap();
            found.sort();
            rows.append(&mut found);
        }
        rows
    };
    let before = rows().await;
    assert_eq!(before.len(), 1 + 1 + 2, "{before:#?}");
    assert!(
        before
            .iter()
            .any(|row| row.ends_with("|2026-10-03|1|1700000300000"))
    );
    wipe(&app, &["instructions", "daily_reports", "register_entries"]).await;
    reproject(&app).await;
    assert_eq!(rows().await, before);
}

/// Who opened a classified record, on which device, is in the audit trail (D18, D19): read
/// through the API or synced to a device. Plain records are not (their every change is).
#[tokio::test]
async fn reads_of_classified_records_are_audited() {
    let app = spawn_app().await;
    org(&app).await;
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let secret = report(
        &app,
        dirs[0].path(),
        "cleared",
        &json!({"type": "incident", "title": "涉密线索", "classification": "classified",
            "grade": "yellow"}),
    )
    .await;
    let plain = report(
        &app,
        dirs[1].path(),
        "alice",
        &json!({"type": "incident", "title": "路灯损坏", "grade": "blue"}),
    )
    .await;
    let reads = |action: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_as::<_, (Option<String>, Option<String>)>(
                "SELECT user_id, document_id FROM audit_log WHERE action = $1 ORDER BY seq",
            )
            .bind(action)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let district = app.login("district", "desk").await;
    for id in [&secret, &plain] {
        get(
            &app,
            &district.access_token,
            &format!("/api/incidents/{id}"),
        )
        .await;
        get(&app, &district.access_token, &format!("/api/records/{id}")).await;
    }
    let expected = (Some(district.user_id.clone()), Some(secret.to_string()));
    assert_eq!(
        reads("record.read_classified").await,
        vec![expected.clone(), expected]
    );

    // The district leader's phone syncs it.
    let dir = tempfile::tempdir().unwrap();
    let phone = logged_in(&app, dir.path(), "district").await;
    let sync = phone.start_sync_with(FAST);
    crate::helpers::wait_holds(&phone, &secret).await;
    sync.stop().await;
    let synced = reads("sync.read_classified").await;
    assert!(
        synced.contains(&(Some(district.user_id.clone()), Some(secret.to_string()))),
        "{synced:?}"
    );
    assert!(
        synced
            .iter()
            .all(|(_, document)| document.as_deref() != Some(&plain.to_string())),
        "{synced:?}"
    );
}
