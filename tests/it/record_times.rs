//! Server time is the record's time (D11–D13): a device's times count only between its last
//! contact and the server's receipt; online, the receipt counts; a backdated time is a
//! problem on the incident and counted in the KPIs. Driven through the real sync path with a
//! manual server clock, as a device that lies about its times would.

use std::time::Duration;

use serde_json::{Value, json};
use zhiban_client_core::{Backoff, DocumentId, SyncHandle};
use zhiban_server::clock::Clock;

use crate::helpers::{Tablet, TestApp, get, org, spawn_app_on};

const FAST: Backoff = Backoff {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(300),
};
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const WAIT: Duration = Duration::from_secs(20);

/// Creates an incident on `tablet` (not yet sent) with the times its device writes.
async fn incident(tablet: &Tablet, title: &str, known_at: i64, first_report_at: i64) -> DocumentId {
    let (id, _) = tablet
        .device
        .create_record(&json!({
            "type": "incident", "title": title, "grade": "blue", "category": "accident",
            "known_at": known_at, "reported_at": first_report_at,
            "reports": [{"kind": "first", "at": first_report_at, "by": "alice", "text": "首报"}],
        }))
        .await
        .unwrap();
    id
}

async fn view(app: &TestApp, token: &str, id: &DocumentId) -> Value {
    get(app, token, &format!("/api/incidents/{id}")).await
}

fn backdated(view: &Value) -> Vec<String> {
    view["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|problem| problem.contains("backdated"))
        .map(str::to_owned)
        .collect()
}

/// Waits until the server has noted the end of the device's connection.
async fn last_seen(app: &TestApp, device_id: &str) -> i64 {
    for _ in 0..200 {
        let seen: Option<i64> =
            sqlx::query_scalar("SELECT last_seen_at FROM devices WHERE id = $1")
                .bind(device_id)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if let Some(seen) = seen {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the server never noted the device's last contact");
}

#[tokio::test]
async fn a_devices_times_count_between_its_last_contact_and_receipt_and_backdating_is_flagged() {
    let start = chrono::Utc::now().timestamp_millis() - 24 * HOUR;
    let clock = Clock::manual(start);
    let app = spawn_app_on(clock.clone()).await;
    let org = org(&app).await;
    let alice = Tablet::login(&app, "alice").await;
    let token = app.login("alice", "desk").await.access_token;

    // Offline since its login, six hours ago: what it made in between counts as written.
    clock.advance(Duration::from_millis(6 * HOUR as u64));
    let offline = incident(
        &alice,
        "山体滑坡",
        start + 2 * HOUR,
        start + 2 * HOUR + 30 * MINUTE,
    )
    .await;
    let sync: SyncHandle = alice.device.start_sync_with(FAST);
    alice.device.wait_received(&offline, WAIT).await.unwrap();
    let seen = view(&app, &token, &offline).await;
    assert_eq!(seen["timeliness"]["known_at"], start + 2 * HOUR, "{seen}");
    assert_eq!(
        seen["timeliness"]["first_report_at"],
        start + 2 * HOUR + 30 * MINUTE
    );
    assert_eq!(seen["timeliness"]["first_report_minutes_late"], 0);
    assert!(backdated(&seen).is_empty(), "{seen}");

    // Online (past catching up): the server's receipt counts. Half an hour back is a lie, and
    // is flagged; two minutes back is a clock's honest drift, and is not.
    clock.advance(Duration::from_millis(3 * MINUTE as u64));
    let now_online = clock.now_ms();
    let lie = incident(
        &alice,
        "道路塌陷",
        now_online - 30 * MINUTE,
        now_online - 30 * MINUTE,
    )
    .await;
    let drift = incident(
        &alice,
        "居民楼火情",
        now_online - 2 * MINUTE,
        now_online - 2 * MINUTE,
    )
    .await;
    for id in [&lie, &drift] {
        alice.device.wait_received(id, WAIT).await.unwrap();
    }
    let lied = view(&app, &token, &lie).await;
    assert_eq!(
        lied["known_at"],
        now_online - 30 * MINUTE,
        "shown as written"
    );
    assert_eq!(lied["timeliness"]["known_at"], now_online, "{lied}");
    assert_eq!(lied["timeliness"]["first_report_at"], now_online);
    assert_eq!(lied["timeliness"]["first_report_due_at"], now_online + HOUR);
    let problems = backdated(&lied);
    assert_eq!(problems.len(), 3, "known_at, reported_at, report 1: {lied}");
    assert!(
        problems[0].starts_with("known_at backdated"),
        "{problems:?}"
    );
    let drifted = view(&app, &token, &drift).await;
    assert_eq!(drifted["timeliness"]["known_at"], now_online);
    assert!(backdated(&drifted).is_empty(), "{drifted}");

    // The backdated time sent first in a document of no type, which becomes an incident
    // later: its receipt was kept all the same.
    let disguised = alice
        .device
        .create(&json!({"title": "草稿", "known_at": now_online - 90 * MINUTE}))
        .await
        .unwrap();
    alice.device.wait_received(&disguised, WAIT).await.unwrap();
    clock.advance(Duration::from_millis(MINUTE as u64));
    alice
        .device
        .set_field(&disguised, &["type"], &json!("incident"))
        .await
        .unwrap();
    alice.device.wait_received(&disguised, WAIT).await.unwrap();
    let unmasked = view(&app, &token, &disguised).await;
    assert_eq!(unmasked["timeliness"]["known_at"], now_online, "{unmasked}");
    assert_eq!(backdated(&unmasked).len(), 1, "{unmasked}");

    // A device that was in touch cannot later say it learned of something before then.
    sync.stop().await;
    let device_id = alice.device.identity().await.unwrap().device_id;
    let contact = last_seen(&app, &device_id).await;
    assert_eq!(contact, clock.now_ms(), "when the connection ended");
    clock.advance(Duration::from_millis(HOUR as u64));
    let before_contact = incident(&alice, "旧事", contact - 2 * HOUR, contact - 2 * HOUR).await;
    let sync = alice.device.start_sync_with(FAST);
    alice
        .device
        .wait_received(&before_contact, WAIT)
        .await
        .unwrap();
    sync.stop().await;
    let late = view(&app, &token, &before_contact).await;
    assert_eq!(late["timeliness"]["known_at"], contact, "{late}");
    assert_eq!(backdated(&late).len(), 3, "{late}");

    // The KPIs count the incidents with a time that could not be true, and their deadlines by
    // the times that count.
    let kpis = get(
        &app,
        &token,
        &format!(
            "/api/kpis?unit={}&from={}&to={}",
            org.unit_a,
            start,
            clock.now_ms() + 1
        ),
    )
    .await;
    assert_eq!(kpis["reporting"]["known"], 5, "{kpis}");
    assert_eq!(kpis["reporting"]["backdated"], 3, "{kpis}");
    assert_eq!(kpis["reporting"]["incidents"], 5, "{kpis}");
    assert_eq!(
        kpis["reporting"]["first_report_on_time"], 4,
        "the disguised one has no first report, past its hour"
    );
}

/// A device that keeps every connection under the catch-up time, delivering as it goes, gains
/// nothing: each connection that delivered moves its last contact, so a later report cannot
/// claim a time before it.
#[tokio::test]
async fn short_connections_do_not_stretch_what_a_device_may_backdate() {
    let start = chrono::Utc::now().timestamp_millis() - 24 * HOUR;
    let clock = Clock::manual(start);
    let app = spawn_app_on(clock.clone()).await;
    org(&app).await;
    let token = app.login("alice", "desk").await.access_token;
    let alice = Tablet::login(&app, "alice").await;
    clock.advance(Duration::from_millis(6 * HOUR as u64));
    let delivered_at = clock.now_ms();
    let first = incident(&alice, "早报", delivered_at, delivered_at).await;
    let sync = alice.device.start_sync_with(FAST);
    alice.device.wait_received(&first, WAIT).await.unwrap();
    sync.stop().await;
    let device_id = alice.device.identity().await.unwrap().device_id;
    assert_eq!(last_seen(&app, &device_id).await, delivered_at);

    clock.advance(Duration::from_millis(HOUR as u64));
    let lie = incident(&alice, "补报", start + HOUR, start + HOUR).await;
    let sync = alice.device.start_sync_with(FAST);
    alice.device.wait_received(&lie, WAIT).await.unwrap();
    sync.stop().await;
    let seen = view(&app, &token, &lie).await;
    assert_eq!(seen["timeliness"]["known_at"], delivered_at, "{seen}");
    assert_eq!(backdated(&seen).len(), 3, "{seen}");
}
