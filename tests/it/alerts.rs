//! Alerts end to end (D10–D16, D23): reports arrive through sync from real devices, pushes
//! reach a real push receiver that checks VAPID and decrypts them, and the injected clock is
//! advanced instead of sleeping.

use std::time::Duration;

use serde_json::{Value, json};
use zhiban_client_core::{Backoff, Device, DocumentId};
use zhiban_server::clock::Clock;

use crate::helpers::{PASSWORD, Session, TestApp, get, org, spawn_app_with, test_settings};
use crate::push_receiver_support::{Delivery, PushReceiver};

const FAST: Backoff = Backoff {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(300),
};
const MINUTE: Duration = Duration::from_secs(60);
const HOUR_MS: i64 = 3_600_000;
const WAIT: Duration = Duration::from_secs(10);

/// A unit on duty: Town A with a roster whose shift runs now (leader 李局长 = `cleared`,
/// officer 艾丽斯 = `alice`), its superior office, a push receiver, and a manual clock.
struct Scene {
    app: Option<TestApp>,
    clock: Clock,
    receiver: PushReceiver,
    org: crate::helpers::Org,
    _dirs: Vec<tempfile::TempDir>,
    data: Option<tempfile::TempDir>,
}

impl Scene {
    async fn new() -> Scene {
        let data = tempfile::tempdir().unwrap();
        let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
        let mut settings = test_settings(data.path());
        settings.clock = clock.clone();
        let app = spawn_app_with(settings).await;
        let org = org(&app).await;
        let receiver = PushReceiver::start().await.unwrap();
        let mut scene = Scene {
            app: Some(app),
            clock,
            receiver,
            org,
            _dirs: Vec::new(),
            data: Some(data),
        };
        let now = scene.clock.now_ms();
        let leader = scene.app().login("cleared", "desk").await.user_id;
        let alice = scene.app().login("alice", "desk").await.user_id;
        let (officer, sync) = scene.device("alice").await;
        let (roster, _) = officer
            .create_record(&json!({
                "type": "roster", "title": "十一月值班表",
                "shifts": [{"start": now - HOUR_MS, "end": now + 12 * HOUR_MS, "kind": "workday",
                    "leader": {"user_id": leader, "name": "李局长", "phone": "13800000001"},
                    "officers": [{"user_id": alice, "name": "艾丽斯", "phone": "13800000003"}]}],
            }))
            .await
            .unwrap();
        officer.wait_received(&roster, WAIT).await.unwrap();
        sync.stop().await;
        scene
    }

    /// A device logged in as `username`, syncing.
    async fn device(&mut self, username: &str) -> (Device, zhiban_client_core::SyncHandle) {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::open(dir.path()).await.unwrap();
        device
            .login(
                &format!("http://{}", self.app().address),
                username,
                PASSWORD,
                "phone",
            )
            .await
            .unwrap();
        self._dirs.push(dir);
        let sync = device.start_sync_with(FAST);
        (device, sync)
    }

    /// Logs `username` in on a browser that subscribes to push as `name` at the receiver.
    async fn subscribe(&self, username: &str, name: &str) -> Session {
        let session = self.app().login(username, name).await;
        let response = self
            .app()
            .http
            .post(self.app().url("/api/push/subscriptions"))
            .bearer_auth(&session.access_token)
            .json(&self.receiver.subscribe(name))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        session
    }

    async fn next(&self) -> Delivery {
        self.receiver
            .next_delivery(WAIT)
            .await
            .expect("a push arrives")
    }

    /// The next `n` pushes, by receiver name.
    async fn next_n(&self, n: usize) -> Vec<(String, Value)> {
        let mut got = Vec::new();
        for _ in 0..n {
            let delivery = self.next().await;
            got.push((delivery.name.clone(), delivery.json()));
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        got
    }

    async fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        let response = self
            .app()
            .http
            .post(self.app().url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn app(&self) -> &TestApp {
        self.app.as_ref().expect("server running")
    }

    /// A graceful restart on the same database and clock.
    async fn restart(&mut self) {
        let (settings, _) = self.app.take().unwrap().stop_keeping_data().await;
        self.app = Some(spawn_app_with(settings).await);
    }
}

async fn events(app: &TestApp, token: &str, incident: &DocumentId) -> Vec<String> {
    let detail = get(app, token, &format!("/api/incidents/{incident}")).await;
    detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["event"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_red_report_from_an_offline_phone_reaches_the_leader_repeats_and_escalates_until_acknowledged()
 {
    let mut scene = Scene::new().await;
    let leader = scene.subscribe("cleared", "leader").await;
    scene.subscribe("district", "district").await;
    scene.subscribe("alice", "officer").await;

    // The field worker's phone has no signal: the report waits on the phone.
    let dir = tempfile::tempdir().unwrap();
    let phone = Device::open(dir.path()).await.unwrap();
    phone
        .login(&format!("http://{}", scene.app().address), "anna", PASSWORD, "phone")
        .await
        .unwrap();
    let incident = phone
        .urgent_report("accident", "G4 高速 K123", "两车追尾，有人受伤")
        .await
        .unwrap();
    scene.receiver.expect_none(Duration::from_millis(300)).await;
    // Signal returns: the report syncs and the leader on duty's phone rings.
    let sync = phone.start_sync_with(FAST);
    let first = scene.next().await;
    assert_eq!(first.name, "leader");
    assert_eq!(first.urgency.as_deref(), Some("high"));
    assert_eq!(first.ttl, 180);
    let alert = first.json();
    assert_eq!(alert["kind"], "incident");
    assert_eq!(alert["grade"], "red");
    assert_eq!(alert["document_id"], incident.to_string());
    assert!(alert["title"].as_str().unwrap().contains("G4 高速 K123"));
    let alert_id = alert["alert_id"].as_str().unwrap().to_owned();
    scene.receiver.expect_none(Duration::from_millis(200)).await;

    // Unacknowledged, it repeats every 3 minutes to the leader on duty…
    scene.clock.advance(3 * MINUTE);
    let repeat = scene.next().await;
    assert_eq!((repeat.name.as_str(), repeat.json()["repeat"].clone()), ("leader", json!(1)));
    // …and after 10 minutes also reaches the superior office's duty post.
    scene.clock.advance(7 * MINUTE);
    let escalated = scene.next_n(2).await;
    assert_eq!(
        escalated.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(),
        ["district", "leader"]
    );
    assert!(escalated.iter().all(|(_, body)| body["step"] == 1));

    // The leader acknowledges: no more repeats, no further escalation.
    let (status, body) = scene
        .post(&leader.access_token, &format!("/api/alerts/{alert_id}/ack"), &json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["acknowledged_by"], leader.user_id.as_str());
    scene.clock.advance(30 * MINUTE);
    scene.receiver.expect_none(Duration::from_millis(500)).await;
    assert_eq!(scene.receiver.deliveries().len(), 4);

    let timeline = events(scene.app(), &leader.access_token, &incident).await;
    assert_eq!(timeline.first().map(String::as_str), Some("alert.raised"));
    assert_eq!(timeline.iter().filter(|e| *e == "push.delivered").count(), 4, "{timeline:?}");
    assert_eq!(timeline.last().map(String::as_str), Some("alert.acknowledged"), "{timeline:?}");
    let inbox = get(scene.app(), &leader.access_token, "/api/alerts?mine=true").await;
    assert_eq!(inbox["alerts"][0]["id"], alert_id.as_str());
    assert_eq!(inbox["alerts"][0]["acknowledged_by"], leader.user_id.as_str());
    sync.stop().await;
}
