//! Alerts end to end (D10–D16, D23): reports arrive through sync from real devices, pushes
//! reach a real push receiver that checks VAPID and decrypts them, and the injected clock is
//! advanced instead of sleeping.

use std::time::Duration;

use serde_json::{Value, json};
use zhiban_client_core::{Backoff, Device, DocumentId};
use zhiban_server::clock::Clock;

use crate::helpers::{
    PASSWORD, Session, TestApp, get, org, postgres_settings, spawn_app_with, test_settings,
};
use crate::push_receiver_support::{Delivery, PushReceiver};

pub(crate) const FAST: Backoff = Backoff {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(300),
};
pub(crate) const MINUTE: Duration = Duration::from_secs(60);
const HOUR_MS: i64 = 3_600_000;
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A unit on duty: Town A with a roster whose shift runs now (leader 李局长 = `cleared`,
/// officer 艾丽斯 = `alice`), its superior office, a push receiver, and a manual clock.
pub(crate) struct Scene {
    app: Option<TestApp>,
    pub(crate) clock: Clock,
    pub(crate) receiver: PushReceiver,
    pub(crate) org: crate::helpers::Org,
    _dirs: Vec<tempfile::TempDir>,
    /// After `app`: fields drop in order, and the database outlives the server.
    _database: Option<crate::helpers::TestDatabase>,
    _data: tempfile::TempDir,
}

impl Scene {
    pub(crate) async fn new() -> Scene {
        let data = tempfile::tempdir().unwrap();
        let settings = test_settings(data.path());
        Self::with(settings, None, data).await
    }

    pub(crate) async fn on_postgres() -> Scene {
        let data = tempfile::tempdir().unwrap();
        let (settings, database) = postgres_settings(data.path()).await;
        Self::with(settings, Some(database), data).await
    }

    async fn with(
        mut settings: zhiban_server::Settings,
        database: Option<crate::helpers::TestDatabase>,
        data: tempfile::TempDir,
    ) -> Scene {
        let clock = Clock::manual(chrono::Utc::now().timestamp_millis());
        settings.clock = clock.clone();
        let receiver = PushReceiver::start().await.unwrap();
        settings.push_allowed_origins = receiver.origin().to_owned();
        let app = spawn_app_with(settings).await;
        let org = org(&app).await;
        let mut scene = Scene {
            app: Some(app),
            clock,
            receiver,
            org,
            _dirs: Vec::new(),
            _database: database,
            _data: data,
        };
        let now = scene.clock.now_ms();
        let leader = scene.app().login("cleared", "desk").await.user_id;
        let alice = scene.app().login("alice", "desk").await.user_id;
        // Rosters are the leaders' to write (W7).
        let (planner, sync) = scene.device("cleared").await;
        let (roster, _) = planner
            .create_record(&json!({
                "type": "roster", "title": "十一月值班表",
                "shifts": [{"start": now - HOUR_MS, "end": now + 12 * HOUR_MS, "kind": "workday",
                    "leader": {"user_id": leader, "name": "李局长", "phone": "13800000001"},
                    "officers": [{"user_id": alice, "name": "艾丽斯", "phone": "13800000003"}]}],
            }))
            .await
            .unwrap();
        planner.wait_received(&roster, WAIT).await.unwrap();
        sync.stop().await;
        scene
    }

    /// A device logged in as `username`, syncing.
    pub(crate) async fn device(
        &mut self,
        username: &str,
    ) -> (Device, zhiban_client_core::SyncHandle) {
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
    pub(crate) async fn subscribe(&self, username: &str, name: &str) -> Session {
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

    pub(crate) async fn next(&self) -> Delivery {
        self.receiver
            .next_delivery(WAIT)
            .await
            .expect("a push arrives")
    }

    /// The next `n` pushes, by receiver name.
    pub(crate) async fn next_n(&self, n: usize) -> Vec<(String, Value)> {
        let mut got = Vec::new();
        for _ in 0..n {
            let delivery = self.next().await;
            got.push((delivery.name.clone(), delivery.json()));
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        got
    }

    pub(crate) async fn post(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
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

    /// How the (one) alert of `kind` ended, if it did.
    pub(crate) async fn resolution(&self, kind: &str) -> Option<String> {
        sqlx::query_scalar("SELECT resolution FROM alerts WHERE kind = $1")
            .bind(kind)
            .fetch_one(&self.app().pool)
            .await
            .unwrap()
    }

    pub(crate) fn app(&self) -> &TestApp {
        self.app.as_ref().expect("server running")
    }

    /// A graceful restart on the same database and clock.
    pub(crate) async fn restart(&mut self) {
        let (settings, _) = self.app.take().unwrap().stop_keeping_data().await;
        self.app = Some(spawn_app_with(settings).await);
    }
}

/// The receivers' names of some pushes, as `next_n` sorted them.
fn names(pushes: &[(String, Value)]) -> Vec<&str> {
    pushes.iter().map(|(name, _)| name.as_str()).collect()
}

pub(crate) async fn events(app: &TestApp, token: &str, incident: &DocumentId) -> Vec<String> {
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
    red_alert_escalates_until_acknowledged(Scene::new().await).await;
}

#[tokio::test]
async fn a_red_alert_escalates_until_acknowledged_on_postgres() {
    red_alert_escalates_until_acknowledged(Scene::on_postgres().await).await;
}

async fn red_alert_escalates_until_acknowledged(scene: Scene) {
    let leader = scene.subscribe("cleared", "leader").await;
    scene.subscribe("district", "district").await;
    scene.subscribe("alice", "officer").await;

    // The field worker's phone has no signal: the report waits on the phone.
    let dir = tempfile::tempdir().unwrap();
    let phone = Device::open(dir.path()).await.unwrap();
    phone
        .login(
            &format!("http://{}", scene.app().address),
            "anna",
            PASSWORD,
            "phone",
        )
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
    assert_eq!(
        (repeat.name.as_str(), repeat.json()["repeat"].clone()),
        ("leader", json!(1))
    );
    // …and after 10 minutes also reaches the superior office's duty post.
    scene.clock.advance(7 * MINUTE);
    let escalated = scene.next_n(2).await;
    assert_eq!(names(&escalated), ["district", "leader"]);
    assert!(escalated.iter().all(|(_, body)| body["step"] == 1));

    // The leader acknowledges: no more repeats, no further escalation.
    let (status, body) = scene
        .post(
            &leader.access_token,
            &format!("/api/alerts/{alert_id}/ack"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["acknowledged_by"], leader.user_id.as_str());
    scene.clock.advance(30 * MINUTE);
    scene.receiver.expect_none(Duration::from_millis(500)).await;
    assert_eq!(scene.receiver.deliveries().len(), 4);

    let timeline = events(scene.app(), &leader.access_token, &incident).await;
    assert_eq!(timeline.first().map(String::as_str), Some("alert.raised"));
    assert_eq!(
        timeline.iter().filter(|e| *e == "push.delivered").count(),
        4,
        "{timeline:?}"
    );
    let acknowledged = timeline.iter().position(|e| e == "alert.acknowledged");
    let last_step = timeline
        .iter()
        .rposition(|e| e.starts_with("alert.step") || e == "alert.repeat");
    assert!(acknowledged > last_step, "{timeline:?}");
    let inbox = get(scene.app(), &leader.access_token, "/api/alerts?mine=true").await;
    assert_eq!(inbox["alerts"][0]["id"], alert_id.as_str());
    assert_eq!(
        inbox["alerts"][0]["acknowledged_by"],
        leader.user_id.as_str()
    );
    // The key figures count it: acknowledged 10 minutes after it was raised (D17).
    let kpis = get(scene.app(), &leader.access_token, "/api/kpis").await;
    assert_eq!(kpis["acknowledgement"]["acknowledged"], 1, "{kpis}");
    assert_eq!(kpis["acknowledgement"]["median_secs"], 600, "{kpis}");
    sync.stop().await;
}

#[tokio::test]
async fn a_restart_in_the_middle_of_an_escalation_neither_loses_nor_repeats_a_step() {
    let mut scene = Scene::new().await;
    scene.subscribe("cleared", "leader").await;
    scene.subscribe("district", "district").await;
    let (phone, sync) = scene.device("anna").await;
    phone.urgent_report("fire", "化工园区", "").await.unwrap();
    assert_eq!(scene.next().await.name, "leader");
    sync.stop().await;

    // The push service is down when the first repeat goes out; the server restarts meanwhile.
    scene.receiver.respond_with("leader", &[503]);
    scene.clock.advance(3 * MINUTE);
    let deadline = std::time::Instant::now() + WAIT;
    while scene.receiver.attempts("leader") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the repeat is attempted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    scene.restart().await;
    scene.receiver.expect_none(Duration::from_millis(300)).await;
    // The retry is due 2 s after the failure: it goes out once, after the restart.
    scene.clock.advance(Duration::from_secs(2));
    let retried = scene.next().await;
    assert_eq!(
        (retried.name.as_str(), retried.json()["repeat"].clone()),
        ("leader", json!(1))
    );
    // The escalation step runs once, at its time.
    scene.clock.advance(7 * MINUTE);
    let escalated = scene.next_n(2).await;
    assert_eq!(names(&escalated), ["district", "leader"]);
    scene.receiver.expect_none(Duration::from_millis(300)).await;
    let steps: Vec<(i64, i64)> =
        sqlx::query_as("SELECT step, COUNT(*) FROM push_outbox GROUP BY step ORDER BY step")
            .fetch_all(&scene.app().pool)
            .await
            .unwrap();
    // Step 0: the first push and one repeat; step 1: leader and superior.
    assert_eq!(steps, [(0, 2), (1, 2)]);
}

#[tokio::test]
async fn reporting_deadlines_remind_the_reporter_then_escalate_and_settle_when_reports_arrive() {
    let mut scene = Scene::new().await;
    let officer = scene.subscribe("alice", "officer").await;
    scene.subscribe("cleared", "leader").await;
    let (device, sync) = scene.device("alice").await;
    // A call comes in: the incident is known now; the written first report is due in 1 h (D11).
    let known_at = scene.clock.now_ms();
    let (incident, _) = device
        .create_record(&json!({
            "type": "incident", "title": "山体滑坡", "category": "natural_disaster",
            "level": "III", "grade": "blue", "known_at": known_at, "location": "石门村",
        }))
        .await
        .unwrap();
    device.wait_received(&incident, WAIT).await.unwrap();
    scene.receiver.expect_none(Duration::from_millis(300)).await;

    scene.clock.advance(50 * MINUTE);
    let reminder = scene.next().await;
    assert_eq!(reminder.name, "officer");
    assert_eq!(reminder.json()["kind"], "first_report");
    assert_eq!(reminder.json()["due_at"], known_at + HOUR_MS);
    scene.receiver.expect_none(Duration::from_millis(200)).await;
    // Missed: the reporter again, and now the leader on duty.
    scene.clock.advance(10 * MINUTE);
    let missed = scene.next_n(2).await;
    assert_eq!(names(&missed), ["leader", "officer"]);
    let lateness = get(
        scene.app(),
        &officer.access_token,
        &format!("/api/incidents/{incident}"),
    )
    .await;
    assert_eq!(lateness["timeliness"]["first_report_minutes_late"], 0);

    // The first report arrives: that deadline is met and the first follow-up is due 2 h after it.
    device
        .add_report(
            &incident,
            zhiban_client_core::ReportKind::First,
            "已疏散 12 户",
        )
        .await
        .unwrap();
    device.wait_received(&incident, WAIT).await.unwrap();
    // The device writes its own (real) time, an hour behind the server's moved clock: the
    // report counts from when the server received it (`records::times`).
    let reported = get(
        scene.app(),
        &officer.access_token,
        &format!("/api/incidents/{incident}"),
    )
    .await;
    assert_eq!(
        reported["timeliness"]["first_report_at"],
        known_at + HOUR_MS,
        "{reported}"
    );
    // Reminded 10 minutes before the follow-up is due, 2 h after that.
    scene.clock.advance(109 * MINUTE);
    scene.receiver.expect_none(Duration::from_millis(300)).await;
    scene.clock.advance(MINUTE);
    let follow_up = scene.next().await;
    assert_eq!(follow_up.json()["due_at"], known_at + 3 * HOUR_MS);
    assert_eq!(follow_up.name, "officer");
    assert_eq!(follow_up.json()["kind"], "follow_up");
    device
        .add_report(&incident, zhiban_client_core::ReportKind::Final, "险情排除")
        .await
        .unwrap();
    device.wait_received(&incident, WAIT).await.unwrap();
    scene.clock.advance(3 * 60 * MINUTE);
    scene.receiver.expect_none(Duration::from_millis(300)).await;
    let resolutions: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT kind, resolution FROM alerts WHERE document_id = $1 ORDER BY created_at",
    )
    .bind(incident.to_string())
    .fetch_all(&scene.app().pool)
    .await
    .unwrap();
    assert_eq!(
        resolutions,
        [
            ("first_report".to_owned(), Some("met".to_owned())),
            ("follow_up".to_owned(), Some("closed".to_owned())),
        ]
    );
    sync.stop().await;
}

#[tokio::test]
async fn a_roll_call_reaches_the_duty_post_and_an_unanswered_one_counts_as_missed() {
    let scene = Scene::new().await;
    let officer = scene.subscribe("alice", "officer").await;
    scene.subscribe("cleared", "leader").await;
    let district = scene.subscribe("district", "district").await;
    let unit_a = scene.org.unit_a.clone();

    let (status, call) = scene
        .post(
            &district.access_token,
            "/api/rollcalls",
            &json!({"unit_id": unit_a, "window_secs": 120}),
        )
        .await;
    assert_eq!(status, 201, "{call}");
    let pushed = scene.next_n(2).await;
    assert_eq!(names(&pushed), ["leader", "officer"]);
    assert_eq!(pushed[0].1["kind"], "rollcall");
    scene.clock.advance(Duration::from_secs(45));
    let id = call["id"].as_str().unwrap();
    let (status, answer) = scene
        .post(
            &officer.access_token,
            &format!("/api/rollcalls/{id}/answer"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["delay_ms"], 45_000);
    scene.clock.advance(5 * MINUTE);
    scene.receiver.expect_none(Duration::from_millis(300)).await;

    // Nobody answers the second one: when the window closes, the caller hears of it.
    let (_, second) = scene
        .post(
            &district.access_token,
            "/api/rollcalls",
            &json!({"unit_id": unit_a, "window_secs": 120}),
        )
        .await;
    scene.next_n(2).await;
    scene.clock.advance(2 * MINUTE);
    let missed = scene.next().await;
    assert_eq!(missed.name, "district");
    assert_eq!(missed.json()["expired"], true);
    let late = format!("/api/rollcalls/{}/answer", second["id"].as_str().unwrap());
    let (status, _) = scene.post(&officer.access_token, &late, &json!({})).await;
    assert_eq!(status, 409);
    let list = get(
        scene.app(),
        &district.access_token,
        &format!("/api/rollcalls?unit={unit_a}"),
    )
    .await;
    let statuses: Vec<&str> = list["rollcalls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["missed", "answered"]);
    let kpis = get(
        scene.app(),
        &district.access_token,
        &format!("/api/kpis?unit={unit_a}"),
    )
    .await;
    assert_eq!(kpis["rollcalls"]["total"], 2, "{kpis}");
    assert_eq!(kpis["rollcalls"]["answered_in_time"], 1, "{kpis}");
    assert_eq!(kpis["rollcalls"]["answer_rate"], 0.5, "{kpis}");

    // Only a superior office calls a roll: not the unit itself, not a sibling.
    for (who, status) in [("alice", 403), ("bob", 404)] {
        let token = scene.app().login(who, "desk").await.access_token;
        let (got, _) = scene
            .post(&token, "/api/rollcalls", &json!({"unit_id": unit_a}))
            .await;
        assert_eq!(got, status, "{who}");
    }
    let (status, _) = scene
        .post(
            &district.access_token,
            "/api/rollcalls",
            &json!({"unit_id": unit_a, "window_secs": 5}),
        )
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn classified_alerts_carry_no_content_and_gone_subscriptions_are_removed() {
    let mut scene = Scene::new().await;
    let leader = scene.subscribe("cleared", "leader").await;
    // The leader's old browser is gone; the push service says so.
    let old = scene.app().login("cleared", "old browser").await;
    let response = scene
        .app()
        .http
        .post(scene.app().url("/api/push/subscriptions"))
        .bearer_auth(&old.access_token)
        .json(&scene.receiver.subscribe("old"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    scene.receiver.respond_with("old", &[410]);

    let (device, sync) = scene.device("cleared").await;
    let (incident, _) = device
        .create_record(&json!({
            "type": "incident", "title": "涉密：某单位人员失联", "classification": "classified",
            "category": "social_security", "level": "II", "grade": "red",
            "known_at": scene.clock.now_ms(), "reported_at": scene.clock.now_ms(),
        }))
        .await
        .unwrap();
    device.wait_received(&incident, WAIT).await.unwrap();
    let pushed = scene.next().await;
    assert_eq!(pushed.name, "leader");
    let body = pushed.json();
    assert_eq!(body["classified"], true);
    assert!(body.get("document_id").is_none(), "{body}");
    assert!(!body.to_string().contains("失联"), "{body}");

    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM push_subscriptions")
            .fetch_one(&scene.app().pool)
            .await
            .unwrap();
        if left == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the gone subscription is removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let timeline = events(scene.app(), &leader.access_token, &incident).await;
    assert!(timeline.contains(&"push.gone".to_owned()), "{timeline:?}");
    sync.stop().await;
}

#[tokio::test]
async fn an_instruction_and_a_raised_grade_alert_their_people_through_sync() {
    let mut scene = Scene::new().await;
    let officer = scene.subscribe("alice", "officer").await;
    scene.subscribe("cleared", "leader").await;
    let (reporter, reporter_sync) = scene.device("alice").await;
    let (incident, _) = reporter
        .create_record(&json!({
            "type": "incident", "title": "农民工讨薪", "category": "social_security",
            "level": "IV", "grade": "yellow", "known_at": scene.clock.now_ms(),
            "reported_at": scene.clock.now_ms(),
        }))
        .await
        .unwrap();
    reporter.wait_received(&incident, WAIT).await.unwrap();
    // Yellow: the work group (the officers on duty).
    let yellow = scene.next().await;
    assert_eq!(
        (yellow.name.as_str(), yellow.urgency.as_deref()),
        ("officer", Some("normal"))
    );

    // Raised to red on the officer's phone: now the leader on duty, loudly.
    reporter
        .set_field(&incident, &["grade"], &json!("red"))
        .await
        .unwrap();
    reporter.wait_received(&incident, WAIT).await.unwrap();
    let red = scene.next().await;
    assert_eq!(
        (red.name.as_str(), red.urgency.as_deref()),
        ("leader", Some("high"))
    );
    reporter_sync.stop().await;

    // The leader instructs the officer from his own phone: she is alerted until she acknowledges.
    let (leader, leader_sync) = scene.device("cleared").await;
    crate::helpers::until_held(&leader, &incident).await;
    leader
        .add_instruction_to(&incident, "立即联系劳动监察大队", Some(&officer.user_id))
        .await
        .unwrap();
    leader.wait_received(&incident, WAIT).await.unwrap();
    let instruction = scene.next().await;
    assert_eq!(instruction.name, "officer");
    let body = instruction.json();
    assert_eq!(body["kind"], "instruction");
    assert!(body["title"].as_str().unwrap().contains("劳动监察"));
    scene.clock.advance(3 * MINUTE);
    let instruction_repeat = scene.next_n(2).await;
    assert_eq!(
        names(&instruction_repeat),
        ["leader", "officer"],
        "the red alert and the instruction both repeat"
    );
    let alert_id = body["alert_id"].as_str().unwrap();
    let (status, _) = scene
        .post(
            &officer.access_token,
            &format!("/api/alerts/{alert_id}/ack"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 200);
    scene.clock.advance(3 * MINUTE);
    let after_ack = scene.next().await;
    assert_eq!(
        after_ack.name,
        "leader",
        "only the unacknowledged red alert repeats: {}",
        after_ack.json()
    );
    scene.receiver.expect_none(Duration::from_millis(300)).await;
    leader_sync.stop().await;
}

#[tokio::test]
async fn a_missing_holiday_daily_report_is_flagged_and_a_zero_report_settles_it() {
    let mut scene = Scene::new().await;
    scene.subscribe("alice", "officer").await;
    let alice = scene.app().login("alice", "desk").await.user_id;
    let leader = scene.app().login("cleared", "desk").await.user_id;
    let (device, sync) = scene.device("alice").await;
    let (planner, planner_sync) = scene.device("cleared").await;
    // A holiday shift of two days from tomorrow, local time (UTC+8); the daily report is
    // due at 16:00. (From tomorrow: a shift starting now would owe today's report at once
    // when the test runs after 16:00 local.)
    let now = scene.clock.now_ms();
    let offset = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    let local = chrono::TimeZone::timestamp_millis_opt(&offset, now).unwrap();
    let tomorrow = (local.date_naive() + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_local_timezone(offset)
        .unwrap()
        .timestamp_millis();
    let (roster, _) = planner
        .create_record(&json!({
            "type": "roster", "title": "国庆值班表", "holiday": true,
            "shifts": [{"start": tomorrow, "end": tomorrow + 48 * HOUR_MS, "kind": "holiday",
                "leader": {"user_id": leader, "name": "李局长"},
                "officers": [{"user_id": alice, "name": "艾丽斯"}]}],
        }))
        .await
        .unwrap();
    planner.wait_received(&roster, WAIT).await.unwrap();
    planner_sync.stop().await;
    // Move to 16:00 local time on the next day.
    let four_pm = (local.date_naive() + chrono::Days::new(1))
        .and_hms_opt(16, 0, 0)
        .unwrap()
        .and_local_timezone(offset)
        .unwrap();
    let until = four_pm.timestamp_millis() - scene.clock.now_ms();
    scene
        .clock
        .advance(Duration::from_millis(until as u64 - 60_000));
    scene.receiver.expect_none(Duration::from_millis(300)).await;
    scene.clock.advance(MINUTE);
    let flagged = scene.next().await;
    assert_eq!(flagged.name, "officer");
    assert_eq!(flagged.json()["kind"], "daily_report");
    let day = four_pm.format("%Y-%m-%d").to_string();
    let (report, _) = device
        .create_record(&json!({"type": "daily_report", "date": day, "zero": true,
                               "submitted_at": scene.clock.now_ms()}))
        .await
        .unwrap();
    device.wait_received(&report, WAIT).await.unwrap();
    scene.clock.advance(2 * 60 * MINUTE);
    scene.receiver.expect_none(Duration::from_millis(300)).await;
    assert_eq!(
        scene.resolution("daily_report").await.as_deref(),
        Some("submitted")
    );
    sync.stop().await;
}

#[tokio::test]
async fn a_holiday_roster_not_submitted_3_days_ahead_reaches_the_leader_then_the_superior() {
    let mut scene = Scene::new().await;
    scene.subscribe("cleared", "leader").await;
    scene.subscribe("district", "district").await;
    let (device, sync) = scene.device("cleared").await;
    // The holiday starts in 5 days: the roster is due in 2 days; a reminder comes a day before.
    let starts = scene.clock.now_ms() + 5 * 24 * HOUR_MS;
    let (roster, _) = device
        .create_record(&json!({
            "type": "roster", "title": "春节值班表", "holiday": true,
            "shifts": [{"start": starts, "end": starts + 24 * HOUR_MS, "kind": "holiday"}],
        }))
        .await
        .unwrap();
    device.wait_received(&roster, WAIT).await.unwrap();
    scene.clock.advance(23 * 60 * MINUTE);
    scene.receiver.expect_none(Duration::from_millis(300)).await;
    scene.clock.advance(60 * MINUTE);
    let reminder = scene.next().await;
    assert_eq!(reminder.name, "leader");
    assert_eq!(reminder.json()["kind"], "holiday_roster");
    assert_eq!(reminder.json()["due_at"], starts - 3 * 24 * HOUR_MS);
    scene.clock.advance(24 * 60 * MINUTE);
    let overdue = scene.next_n(2).await;
    assert_eq!(names(&overdue), ["district", "leader"]);
    // Submitted: nothing more.
    device
        .set_field(&roster, &["submitted_at"], &json!(scene.clock.now_ms()))
        .await
        .unwrap();
    device.wait_received(&roster, WAIT).await.unwrap();
    assert_eq!(
        scene.resolution("holiday_roster").await.as_deref(),
        Some("submitted")
    );
    sync.stop().await;
}

#[tokio::test]
async fn alert_and_policy_requests_out_of_bounds_get_clear_errors() {
    let scene = Scene::new().await;
    let unit_a = scene.org.unit_a.clone();
    let app = scene.app();
    let leader = app.login("cleared", "desk").await.access_token;
    let officer = app.login("alice", "desk").await.access_token;
    let bob = app.login("bob", "desk").await.access_token;
    let (status, body) = scene
        .post(&leader, "/api/alerts/nope/ack", &json!({}))
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (404, Some("no such alert"))
    );

    let policy = format!("/api/escalation-policies/{unit_a}/red");
    let put = |token: String, body: Value| {
        let url = scene.app().url(&policy);
        let http = scene.app().http.clone();
        async move {
            let response = http
                .put(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let good = json!({"steps": [{"after_secs": 0, "targets": ["leader_on_duty"], "repeat_every_secs": 120}]});
    let (status, _) = put(officer.clone(), good.clone()).await;
    assert_eq!(status, 403, "an officer does not set policy");
    let (status, _) = put(bob.clone(), good.clone()).await;
    assert_eq!(status, 404, "another unit's policy is not even visible");
    // A target that is not one is refused as the body is read; the rest by the checks.
    for (bad, code, message) in [
        (
            json!({"steps": [{"after_secs": 0, "targets": ["the_mayor"]}]}),
            422,
            "unknown target",
        ),
        (
            json!({"steps": [{"after_secs": 0, "targets": ["user:nobody-here"]}]}),
            400,
            "not a user of this unit",
        ),
        (
            json!({"steps": [{"after_secs": 0, "targets": []}]}),
            400,
            "no targets",
        ),
        (
            json!({"steps": [{"after_secs": 0, "targets": ["leader_on_duty"], "repeat_every_secs": 5}]}),
            400,
            "once a minute",
        ),
        (
            json!({"steps": [{"after_secs": 600, "targets": ["unit_leaders"]}, {"after_secs": 0, "targets": ["leader_on_duty"]}]}),
            400,
            "comes before",
        ),
        // D10: a red report that pages no leader is no policy.
        (
            json!({"steps": [{"after_secs": 0, "targets": ["officers_on_duty", "unit_admins"]}]}),
            400,
            "must reach a leader",
        ),
    ] {
        let (status, body) = put(leader.clone(), bad).await;
        assert_eq!(status, code, "{body}");
        assert!(body["error"].as_str().unwrap().contains(message), "{body}");
    }
    let (status, body) = put(leader.clone(), json!({"steps": "soon"})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = put(leader.clone(), good.clone()).await;
    assert_eq!(status, 200, "{body}");
    let stored = get(scene.app(), &officer, &policy).await;
    assert_eq!(stored["steps"], good["steps"]);
    assert!(scene.app().healthy().await);
}

/// A notification acknowledges with the token its push carried, as the device it was pushed
/// to and for that alert only; a guessed or borrowed token is refused alike.
#[tokio::test]
async fn a_push_token_acknowledges_its_own_alert_and_nothing_else() {
    let mut scene = Scene::new().await;
    scene.subscribe("cleared", "leader").await;
    let alice = scene.subscribe("alice", "officer").await;
    let (field, _sync) = scene.device("anna").await;
    field
        .urgent_report("火灾", "一号仓库", "浓烟")
        .await
        .unwrap();
    let first = scene.next().await.json();
    field
        .urgent_report("塌方", "二号隧道", "车辆被困")
        .await
        .unwrap();
    let second = scene.next().await.json();
    let (alert, token) = (
        first["alert_id"].as_str().unwrap(),
        first["push_token"].as_str().unwrap(),
    );
    assert_eq!(token.len(), 32, "{first}");
    let other_token = second["push_token"].as_str().unwrap();
    let app = scene.app();
    let push = |path: &str, token: &str| {
        let path = format!("/api/alerts/{alert}/{path}");
        let body = json!({ "token": token });
        async move {
            let response = app
                .http
                .post(app.url(&path))
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    for (what, token) in [
        ("another alert's token", other_token),
        ("a guessed token", "0123456789abcdef0123456789abcdef"),
        ("garbage", "'; DROP TABLE alerts; --"),
    ] {
        for path in ["push-ack", "push-receipt"] {
            let (status, answer) = push(path, token).await;
            assert_eq!(status, 404, "{what} on {path}: {answer}");
        }
    }
    // An access token is no push token, and a push token no access token.
    assert_eq!(push("push-ack", &alice.access_token).await.0, 404);
    let as_bearer = scene
        .app()
        .http
        .get(scene.app().url("/api/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(as_bearer.status(), 401);

    let (status, _) = push("push-receipt", token).await;
    assert_eq!(status, 204);
    let (status, acked) = push("push-ack", token).await;
    assert_eq!(status, 200, "{acked}");
    let leader = scene.app().login("cleared", "desk").await;
    assert_eq!(acked["acknowledged_by"], leader.user_id.as_str(), "{acked}");
    let detail = get(
        scene.app(),
        &leader.access_token,
        &format!("/api/alerts/{alert}"),
    )
    .await;
    let events = timeline_events(&detail);
    assert!(events.contains(&"push.received"), "{events:?}");
    assert!(events.contains(&"alert.acknowledged"), "{events:?}");
}

/// The events of an alert's timeline (`GET /api/alerts/{id}`), in order.
pub(crate) fn timeline_events(alert: &Value) -> Vec<&str> {
    alert["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["event"].as_str().unwrap())
        .collect()
}
