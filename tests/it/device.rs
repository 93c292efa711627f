//! The device library against the real server: offline reports, concurrent offline edits,
//! a flaky network, revocation, and a new device catching up (D21, D22, D24).

use std::time::Duration;

use serde_json::json;
use zhiban_client_core::{Backoff, DeliveryStatus, Device, Event, SessionState};

use crate::flaky_proxy::{Faults, FlakyProxy};
use crate::helpers::{PASSWORD, TestApp, org, spawn_app_with, test_settings};

/// Quick reconnects, so tests do not wait on production backoff.
const FAST: Backoff = Backoff {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(300),
};

async fn device(dir: &std::path::Path, server: &str, username: &str) -> Device {
    let device = Device::open(dir).await.expect("device store opens");
    device
        .login(server, username, PASSWORD, &format!("{username}'s tablet"))
        .await
        .expect("login");
    device
}

/// Waits, event-driven, until `check` holds on `device`; fails after `limit`.
async fn until<F, Fut>(device: &Device, limit: Duration, what: &str, check: F)
where
    F: Fn(Device) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut events = device.subscribe();
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check(device.clone()).await {
            return;
        }
        // Events wake us early; the short timeout covers state no event announces.
        let wait = (deadline - tokio::time::Instant::now()).min(Duration::from_millis(100));
        let _ = tokio::time::timeout(wait, events.recv()).await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
    }
}

async fn holds(device: &Device, id: &zhiban_client_core::DocumentId, field: &str) -> bool {
    device
        .get(id)
        .await
        .is_ok_and(|doc| doc.get(field).is_some())
}

#[tokio::test]
async fn an_urgent_report_made_offline_arrives_when_the_server_comes_up() {
    let server_dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(server_dir.path())).await;
    org(&app).await;
    let address = app.address;
    let url = format!("http://{address}");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = device(dir_a.path(), &url, "alice").await;
    let b = device(dir_b.path(), &url, "anna").await;
    app.stop().await.unwrap();

    // The server is down: the report is saved on the phone, nothing more.
    let sync_a = a.start_sync_with(FAST);
    let sync_b = b.start_sync_with(FAST);
    let report = a
        .urgent_report("accident", "G4 km 1032", "two lorries, road blocked")
        .await
        .unwrap();
    assert_eq!(
        a.status(&report).await.unwrap(),
        DeliveryStatus::SavedOnDevice
    );
    assert_eq!(a.get(&report).await.unwrap()["grade"], "red");

    // The server comes back on the same address; nobody presses anything.
    let mut settings = test_settings(server_dir.path());
    settings.listen = address;
    let app = spawn_app_with(settings).await;
    until(
        &a,
        Duration::from_secs(20),
        "A's report received",
        |a| async move { a.status(&report).await.unwrap() == DeliveryStatus::ReceivedByServer },
    )
    .await;
    until(
        &b,
        Duration::from_secs(20),
        "B holds the report",
        |b| async move { holds(&b, &report, "location").await },
    )
    .await;
    assert_eq!(b.get(&report).await.unwrap()["location"], "G4 km 1032");
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM documents WHERE id = $1")
        .bind(report.to_string())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 1);
    sync_a.stop().await;
    sync_b.stop().await;
}

#[tokio::test]
async fn concurrent_offline_edits_merge_identically() {
    let server_dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(server_dir.path())).await;
    org(&app).await;
    let url = format!("http://{}", app.address);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = device(dir_a.path(), &url, "alice").await;
    let b = device(dir_b.path(), &url, "anna").await;
    let sync_a = a.start_sync_with(FAST);
    let sync_b = b.start_sync_with(FAST);
    let incident = a
        .create(&json!({"type": "incident", "title": "Flooded underpass", "status": "open", "notes": []}))
        .await
        .unwrap();
    until(
        &b,
        Duration::from_secs(20),
        "B holds the incident",
        |b| async move { holds(&b, &incident, "title").await },
    )
    .await;
    sync_a.stop().await;
    sync_b.stop().await;

    // Both offline: different fields, appends to the same list, and the same field.
    a.set_field(&incident, &["casualties"], &json!(0))
        .await
        .unwrap();
    b.set_field(&incident, &["measures"], &json!("road closed"))
        .await
        .unwrap();
    for i in 0..3 {
        a.add_note(&incident, &format!("A note {i}")).await.unwrap();
        b.add_note(&incident, &format!("B note {i}")).await.unwrap();
    }
    a.set_field(&incident, &["status"], &json!("evacuating"))
        .await
        .unwrap();
    b.set_field(&incident, &["status"], &json!("contained"))
        .await
        .unwrap();

    let sync_a = a.start_sync_with(FAST);
    let sync_b = b.start_sync_with(FAST);
    until(&a, Duration::from_secs(20), "both converge", |a| {
        let b = b.clone();
        async move { a.heads(&incident).await.unwrap() == b.heads(&incident).await.unwrap() }
    })
    .await;
    let (doc_a, doc_b) = (
        a.get(&incident).await.unwrap(),
        b.get(&incident).await.unwrap(),
    );
    assert_eq!(doc_a, doc_b, "identical content on both devices");
    assert_eq!(doc_a["casualties"], 0);
    assert_eq!(doc_a["measures"], "road closed");
    assert_eq!(
        doc_a["notes"].as_array().unwrap().len(),
        6,
        "no append lost"
    );
    assert!(["evacuating", "contained"].contains(&doc_a["status"].as_str().unwrap()));
    sync_a.stop().await;
    sync_b.stop().await;
}

#[tokio::test]
async fn two_hundred_edits_through_a_flaky_network_all_arrive() {
    let server_dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(server_dir.path())).await;
    org(&app).await;
    let proxy = FlakyProxy::start(
        app.address,
        Faults {
            refuse: 0.2,
            lifetime: Duration::from_millis(150)..Duration::from_millis(600),
            delay: Duration::ZERO..Duration::from_millis(15),
        },
    )
    .await
    .unwrap();
    let url = format!("http://{}", proxy.address());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let login = |dir: std::path::PathBuf, username: &'static str| {
        let url = url.clone();
        async move {
            let device = Device::open(&dir).await.unwrap();
            // Logging in crosses the flaky network too: try until it goes through.
            for _ in 0..50 {
                if device
                    .login(&url, username, PASSWORD, "tablet")
                    .await
                    .is_ok()
                {
                    return device;
                }
            }
            panic!("{username} could not log in through the proxy");
        }
    };
    let a = login(dir_a.path().to_owned(), "alice").await;
    let b = login(dir_b.path().to_owned(), "anna").await;
    let sync_a = a.start_sync_with(FAST);
    let sync_b = b.start_sync_with(FAST);
    let log = a
        .create(&json!({"type": "duty_log", "title": "Night shift", "entries": []}))
        .await
        .unwrap();
    until(
        &b,
        Duration::from_secs(60),
        "B holds the log",
        |b| async move { holds(&b, &log, "entries").await },
    )
    .await;

    let writer = |device: Device, name: &'static str| async move {
        for i in 0..100 {
            device
                .append(&log, &["entries"], &json!(format!("{name} {i}")))
                .await
                .unwrap();
            if i % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
    };
    tokio::join!(writer(a.clone(), "A"), writer(b.clone(), "B"));
    let count = |device: Device| async move {
        device.get(&log).await.unwrap()["entries"]
            .as_array()
            .map_or(0, Vec::len)
    };
    until(
        &a,
        Duration::from_secs(90),
        "A has all 200",
        |a| async move { count(a).await == 200 },
    )
    .await;
    until(
        &b,
        Duration::from_secs(90),
        "B has all 200",
        |b| async move { count(b).await == 200 },
    )
    .await;
    assert_eq!(a.get(&log).await.unwrap(), b.get(&log).await.unwrap());
    assert!(
        proxy.cuts() + proxy.refused() > 0,
        "the network was not actually flaky"
    );
    sync_a.stop().await;
    sync_b.stop().await;
}

#[tokio::test]
async fn a_revoked_device_stops_syncing_and_keeps_its_data_readable() {
    let server_dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(server_dir.path())).await;
    org(&app).await;
    let url = format!("http://{}", app.address);
    let dir = tempfile::tempdir().unwrap();
    let phone = device(dir.path(), &url, "alice").await;
    let mut events = phone.subscribe();
    let sync = phone.start_sync_with(FAST);
    let report = phone
        .urgent_report("fire", "market", "smoke")
        .await
        .unwrap();
    phone
        .wait_received(&report, Duration::from_secs(20))
        .await
        .unwrap();

    let desk = app.login("alice", "desk").await;
    let device_id = phone.identity().await.unwrap().device_id;
    let response = app
        .http
        .post(app.url(&format!("/api/devices/{device_id}/revoke")))
        .bearer_auth(&desk.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let revoked = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(Event::Revoked) = events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(revoked.is_ok(), "the device never learned it was revoked");
    assert_eq!(phone.session_state().await, SessionState::Revoked);
    assert_eq!(phone.get(&report).await.unwrap()["location"], "market");
    sync.stop().await;

    // Reopened later, it still knows, and still reads.
    drop(phone);
    let reopened = Device::open(dir.path()).await.unwrap();
    assert_eq!(reopened.session_state().await, SessionState::Revoked);
    assert_eq!(
        reopened.list().await.unwrap().len(),
        2,
        "the report and the unit catalog"
    );
}

#[tokio::test]
async fn a_new_device_pulls_what_its_unit_already_has() {
    let server_dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(server_dir.path())).await;
    org(&app).await;
    let url = format!("http://{}", app.address);
    let dir_a = tempfile::tempdir().unwrap();
    let a = device(dir_a.path(), &url, "alice").await;
    let sync_a = a.start_sync_with(FAST);
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(
            a.create(&json!({"type": "log_entry", "title": format!("call {i}")}))
                .await
                .unwrap(),
        );
    }
    for id in &ids {
        a.wait_received(id, Duration::from_secs(20)).await.unwrap();
    }
    sync_a.stop().await;

    let dir_b = tempfile::tempdir().unwrap();
    let b = device(dir_b.path(), &url, "anna").await;
    let sync_b = b.start_sync_with(FAST);
    let ids_ref = &ids;
    until(
        &b,
        Duration::from_secs(30),
        "B holds all 20",
        |b| async move {
            let mut all = true;
            for id in ids_ref {
                all &= holds(&b, id, "title").await;
            }
            all
        },
    )
    .await;
    sync_b.stop().await;
    // Another unit's device sees none of it.
    let dir_c = tempfile::tempdir().unwrap();
    let c = device(dir_c.path(), &url, "bob").await;
    let sync_c = c.start_sync_with(FAST);
    until(&c, Duration::from_secs(10), "C connected", |c| async move {
        c.list()
            .await
            .unwrap()
            .iter()
            .any(|d| d.kind.as_deref() == Some("catalog"))
    })
    .await;
    assert!(c.list().await.unwrap().iter().all(|d| !ids.contains(&d.id)));
    sync_c.stop().await;
    let _ = TestApp::url;
}

#[tokio::test]
async fn a_second_user_on_a_shared_tablet_writes_in_their_own_name() {
    let server_dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(test_settings(server_dir.path())).await;
    org(&app).await;
    let server = format!("http://{}", app.address);
    let tablet = tempfile::tempdir().unwrap();

    let first = device(tablet.path(), &server, "alice").await;
    let sync = first.start_sync_with(FAST);
    let id = first
        .create(&json!({"title": "水管爆裂", "status": "open"}))
        .await
        .unwrap();
    first
        .wait_received(&id, Duration::from_secs(20))
        .await
        .unwrap();
    sync.stop().await;
    drop(first);

    // Anna takes over the tablet; her edit is hers, not refused as a change in Alice's name.
    let second = device(tablet.path(), &server, "anna").await;
    let sync = second.start_sync_with(FAST);
    second
        .set_field(&id, &["status"], &json!("repaired"))
        .await
        .unwrap();
    second
        .wait_received(&id, Duration::from_secs(20))
        .await
        .unwrap();
    sync.stop().await;
    let writers: Vec<String> = sqlx::query_scalar(
        "SELECT u.username FROM actors a JOIN users u ON u.id = a.user_id ORDER BY u.username",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(writers, ["alice", "anna"]);
}

/// A shared tablet (D21): what one user made offline is delivered only in that user's own
/// session, never in the next user's (the server would bind it to them, or refuse it for
/// ever), and the next user cannot read it; logging out removes what the server holds, so
/// the next user reads only what the server gives them.
#[tokio::test]
async fn a_shared_tablet_delivers_each_users_changes_only_in_their_own_session() {
    let app = crate::helpers::spawn_app().await;
    org(&app).await;
    let server = format!("http://{}", app.address);
    let dir = tempfile::tempdir().unwrap();
    let wait = Duration::from_secs(20);
    let stored = |id: zhiban_client_core::DocumentId| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT user_id FROM audit_log WHERE action = 'sync.change' AND document_id = $1",
            )
            .bind(id.to_string())
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };

    // Alice, offline, reports on the tablet and logs out.
    let tablet = device(dir.path(), &server, "alice").await;
    let alice_id = tablet.identity().await.unwrap().user_id;
    let (hers, _) = tablet
        .create_record(&json!({"type": "incident", "title": "艾丽斯的报告", "grade": "yellow"}))
        .await
        .unwrap();
    assert_eq!(tablet.logout().await.unwrap(), 0);
    assert_eq!(tablet.session_state().await, SessionState::LoggedOut);
    // The server was told: her refresh token is spent, and the logout audited.
    let (tokens, logouts): (i64, i64) = (
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM refresh_tokens r JOIN devices d ON d.id = r.device_id \
             WHERE d.user_id = $1",
        )
        .bind(&alice_id)
        .fetch_one(&app.pool)
        .await
        .unwrap(),
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.logout' AND user_id = $1",
        )
        .bind(&alice_id)
        .fetch_one(&app.pool)
        .await
        .unwrap(),
    );
    assert_eq!((tokens, logouts), (0, 1));

    // Anna on the same tablet: her report goes, Alice's waits.
    tablet
        .login(&server, "anna", PASSWORD, "tablet")
        .await
        .unwrap();
    let (own, _) = tablet
        .create_record(&json!({"type": "incident", "title": "安娜的报告", "grade": "yellow"}))
        .await
        .unwrap();
    let sync = tablet.start_sync_with(FAST);
    assert_eq!(
        tablet.wait_received(&own, wait).await.unwrap(),
        DeliveryStatus::ReceivedByServer
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(stored(hers).await.is_empty(), "delivered in anna's session");
    // Nor can Anna read or edit it.
    assert!(tablet.get(&hers).await.is_err());
    assert!(
        tablet
            .set_field(&hers, &["title"], &json!("x"))
            .await
            .is_err()
    );
    assert!(tablet.list().await.unwrap().iter().all(|d| d.id != hers));
    sync.stop().await;
    tablet.logout().await.unwrap();

    // Alice again: her report goes, as hers.
    tablet
        .login(&server, "alice", PASSWORD, "tablet")
        .await
        .unwrap();
    let sync = tablet.start_sync_with(FAST);
    assert_eq!(
        tablet.wait_received(&hers, wait).await.unwrap(),
        DeliveryStatus::ReceivedByServer
    );
    assert_eq!(stored(hers).await, vec![alice_id]);
    sync.stop().await;
    tablet.logout().await.unwrap();

    // A cleared leader's classified record leaves the tablet with him.
    tablet
        .login(&server, "cleared", PASSWORD, "tablet")
        .await
        .unwrap();
    let (secret, _) = tablet
        .create_record(
            &json!({"type": "incident", "title": "涉密线索", "grade": "yellow",
            "classification": "classified"}),
        )
        .await
        .unwrap();
    let sync = tablet.start_sync_with(FAST);
    assert_eq!(
        tablet.wait_received(&secret, wait).await.unwrap(),
        DeliveryStatus::ReceivedByServer
    );
    sync.stop().await;
    // Everything the server holds leaves the tablet with him: the classified record, the
    // unit's reports he synced, the catalogs. The next user starts from what the server
    // gives them.
    assert!(tablet.logout().await.unwrap() >= 4);
    assert!(tablet.get(&secret).await.is_err());
    let reopened = Device::open(dir.path()).await.unwrap();
    assert_eq!(reopened.list().await.unwrap().len(), 0);
    tablet
        .login(&server, "anna", PASSWORD, "tablet")
        .await
        .unwrap();
    let sync = tablet.start_sync_with(FAST);
    // Anna's own report comes back from the server.
    crate::helpers::wait_holds(&tablet, &own).await;
    sync.stop().await;
    assert!(tablet.get(&secret).await.is_err(), "never anna's to read");
}
