//! Who may write what (`docs/write-policy.md`), tried through the real sync path as an
//! ordinary account would: each forbidden change is refused as a whole (the server's copy
//! unchanged, a `sync.refused` audit row naming the rule, the device told and keeping its
//! change), and each honest path beside it still works.

use std::time::Duration;

use serde_json::{Value, json};
use zhiban_client_core::{Backoff, DeliveryStatus, Device, DocumentId};

use crate::helpers::{PASSWORD, TestApp, get, org, spawn_app};
use crate::js_peer::JsPeer;

const FAST: Backoff = Backoff {
    initial: Duration::from_millis(20),
    max: Duration::from_millis(300),
};
const WAIT: Duration = Duration::from_secs(20);

/// A logged-in device with its sync running; the directory lives as long as it does.
struct Phone {
    device: Device,
    user_id: String,
    _sync: zhiban_client_core::SyncHandle,
    _dir: tempfile::TempDir,
}

async fn phone(app: &TestApp, username: &str) -> Phone {
    let dir = tempfile::tempdir().unwrap();
    let device = Device::open(dir.path()).await.unwrap();
    device
        .login(
            &format!("http://{}", app.address),
            username,
            PASSWORD,
            "phone",
        )
        .await
        .unwrap();
    let user_id = device.identity().await.unwrap().user_id;
    let sync = device.start_sync_with(FAST);
    Phone {
        device,
        user_id,
        _sync: sync,
        _dir: dir,
    }
}

impl Phone {
    async fn received(&self, id: &DocumentId) {
        assert_eq!(
            self.device.wait_received(id, WAIT).await.unwrap(),
            DeliveryStatus::ReceivedByServer
        );
    }

    async fn holds(&self, id: &DocumentId) {
        crate::helpers::until_held(&self.device, id).await;
    }

    /// Waits until this device's copy of `id` is as `wanted`.
    async fn until(&self, id: &DocumentId, wanted: impl Fn(&Value) -> bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while !self.device.get(id).await.is_ok_and(|doc| wanted(&doc)) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id} never got there"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn refused(&self, id: &DocumentId) -> String {
        crate::helpers::refusal(&self.device, id).await
    }
}

/// Writes `value` at `path` from the root: map keys, or list positions as numbers; a last
/// step of `"+"` appends to the list.
async fn write(device: &Device, id: &DocumentId, path: &[Value], value: Value) {
    use automerge::ReadDoc;
    device
        .change(id, move |tx| {
            let (last, parents) = path.split_last().unwrap();
            let mut object = automerge::ROOT;
            for step in parents {
                object = match step {
                    Value::Number(n) => tx.get(&object, n.as_u64().unwrap() as usize)?,
                    step => tx.get(&object, step.as_str().unwrap())?,
                }
                .unwrap()
                .1;
            }
            match last {
                Value::String(key) if key == "+" => {
                    let length = tx.length(&object);
                    zhiban_records::json::insert(tx, &object, length, &value)
                }
                Value::String(key) => zhiban_records::json::put(tx, &object, key, &value),
                _ => panic!("the last step is a key or +"),
            }
        })
        .await
        .unwrap();
}

/// The reasons of the `sync.refused` audit rows so far.
async fn refusals(app: &TestApp) -> Vec<String> {
    let details: Vec<String> =
        sqlx::query_scalar("SELECT detail FROM audit_log WHERE action = 'sync.refused'")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    details
        .iter()
        .map(|detail| {
            serde_json::from_str::<Value>(detail).unwrap()["reason"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

async fn incident(app: &TestApp, token: &str, id: &DocumentId) -> Value {
    get(app, token, &format!("/api/incidents/{id}")).await
}

/// The red alerts of an incident: (id, open?, resolution).
async fn red_alerts(app: &TestApp, id: &DocumentId) -> Vec<(String, bool, Option<String>)> {
    sqlx::query_as::<_, (String, i64, Option<String>)>(
        "SELECT id, CASE WHEN resolved_at IS NULL AND acknowledged_at IS NULL THEN 1 ELSE 0 END, \
         resolution FROM alerts WHERE kind = 'incident' AND grade = 'red' AND document_id = $1 \
         ORDER BY created_at, id",
    )
    .bind(id.to_string())
    .fetch_all(&app.pool)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, open, resolution)| (id, open == 1, resolution))
    .collect()
}

#[tokio::test]
async fn a_field_user_cannot_silence_a_red_report_and_a_leaders_downgrade_ends_one_episode() {
    let app = spawn_app().await;
    org(&app).await;
    let anna = phone(&app, "anna").await;
    let leader = phone(&app, "cleared").await;
    let id = anna
        .device
        .urgent_report("accident", "road 3", "bridge down")
        .await
        .unwrap();
    anna.received(&id).await;
    let first = red_alerts(&app, &id).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(first[0].1, "the red alert is open");

    // The field user lowers the grade, then breaks it: both refused, the alert runs on.
    anna.device
        .set_field(&id, &["grade"], &json!("blue"))
        .await
        .unwrap();
    let reason = anna.refused(&id).await;
    assert!(reason.contains("rule W3"), "{reason}");
    let token = app.login("cleared", "desk").await.access_token;
    assert_eq!(incident(&app, &token, &id).await["grade"], "red");
    assert_eq!(red_alerts(&app, &id).await, first);
    assert!(refusals(&app).await.iter().any(|r| r.contains("rule W3")));

    // A leader lowers it: the alert ends as regraded; raised again, a new episode pages anew.
    leader.holds(&id).await;
    leader
        .device
        .set_field(&id, &["grade"], &json!("yellow"))
        .await
        .unwrap();
    leader.received(&id).await;
    let after = red_alerts(&app, &id).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].2.as_deref(), Some("regraded"), "{after:?}");
    leader
        .device
        .set_field(&id, &["grade"], &json!("red"))
        .await
        .unwrap();
    leader.received(&id).await;
    let episodes = red_alerts(&app, &id).await;
    assert_eq!(episodes.len(), 2, "{episodes:?}");
    assert!(episodes[1].1, "the second episode's alert is open");
    assert_ne!(episodes[0].0, episodes[1].0);
}

#[tokio::test]
async fn instructions_are_given_by_leaders_even_from_above_and_then_only_followed() {
    let app = spawn_app().await;
    org(&app).await;
    let leader = phone(&app, "cleared").await;
    let alice = phone(&app, "alice").await;
    let district = phone(&app, "district").await;
    let (id, _) = alice
        .device
        .create_record(&json!({"type": "incident", "title": "化工厂泄漏", "grade": "yellow",
            "category": "accident", "location": "开发区", "known_at": chrono::Utc::now().timestamp_millis()}))
        .await
        .unwrap();
    alice.received(&id).await;
    leader.holds(&id).await;
    leader
        .device
        .add_instruction_to(&id, "立即组织疏散", Some(&alice.user_id))
        .await
        .unwrap();
    leader.received(&id).await;

    // The addressee records a step and marks it done: allowed.
    alice.holds(&id).await;
    alice
        .until(&id, |doc| {
            doc["instructions"]
                .as_array()
                .is_some_and(|list| !list.is_empty())
        })
        .await;
    write(
        &alice.device,
        &id,
        &[json!("instructions"), json!(0), json!("steps"), json!("+")],
        json!({"by": alice.user_id, "at": chrono::Utc::now().timestamp_millis(), "text": "已疏散"}),
    )
    .await;
    alice.received(&id).await;

    // A superior office's leader instructs on the subordinate's report: allowed (D14).
    district.holds(&id).await;
    district
        .device
        .add_instruction(&id, "注意次生灾害")
        .await
        .unwrap();
    district.received(&id).await;
    let token = app.login("cleared", "desk").await.access_token;
    let view = incident(&app, &token, &id).await;
    let instructions = view["instructions"].as_array().unwrap();
    assert_eq!(instructions.len(), 2, "{view}");
    assert!(instructions.iter().all(|i| i["verified"] == true), "{view}");
    assert_eq!(instructions[0]["steps"], 1, "the addressee's step");

    // …but nothing else of it.
    district
        .device
        .set_field(&id, &["title"], &json!("无事"))
        .await
        .unwrap();
    assert!(district.refused(&id).await.contains("rule W2"));

    // The officer rewrites the leader's instruction: refused, and the text stands.
    write(
        &alice.device,
        &id,
        &[json!("instructions"), json!(0), json!("text")],
        json!("原地待命"),
    )
    .await;
    assert!(alice.refused(&id).await.contains("rule W5"));
    let view = incident(&app, &token, &id).await;
    assert_eq!(view["instructions"][0]["text"], "立即组织疏散");
    assert_eq!(view["title"], "化工厂泄漏");
    let audited = refusals(&app).await;
    assert!(audited.iter().any(|r| r.contains("rule W2")), "{audited:?}");
    assert!(audited.iter().any(|r| r.contains("rule W5")), "{audited:?}");

    // An addressee outside the unit (here the office above) is not paged with the unit's
    // matter; the alert's step says so.
    leader
        .device
        .add_instruction_to(&id, "请区里协调", Some(&district.user_id))
        .await
        .unwrap();
    leader.received(&id).await;
    let step = instruction_step(&app, &token, &id, "请区里协调").await;
    assert_eq!(
        step["ignored"][0]["user_id"],
        district.user_id.as_str(),
        "{step}"
    );
    assert_eq!(step["ignored"][0]["reason"], "not of this unit", "{step}");
    assert_eq!(step["targets"], json!([]), "{step}");
    let step = instruction_step(&app, &token, &id, "立即组织疏散").await;
    assert_eq!(step["targets"], json!([alice.user_id]), "{step}");
}

/// The first step of the instruction alert whose title holds `text`.
async fn instruction_step(app: &TestApp, token: &str, id: &DocumentId, text: &str) -> Value {
    let alert: String = sqlx::query_scalar(
        "SELECT id FROM alerts WHERE kind = 'instruction' AND document_id = $1 AND title LIKE $2",
    )
    .bind(id.to_string())
    .bind(format!("%{text}%"))
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let view = get(app, token, &format!("/api/alerts/{alert}")).await;
    view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["event"] == "alert.step")
        .unwrap()["detail"]
        .clone()
}

#[tokio::test]
async fn rosters_requests_and_signatures_are_written_only_by_their_people() {
    let app = spawn_app().await;
    let org = org(&app).await;
    let leader = phone(&app, "cleared").await;
    let alice = phone(&app, "alice").await;
    let anna = phone(&app, "anna").await;
    let now = chrono::Utc::now().timestamp_millis();
    let (roster, _) = leader
        .device
        .create_record(
            &json!({"type": "roster", "title": "五月值班表", "holiday": false,
            "shifts": [{"start": now, "end": now + 86_400_000, "kind": "workday",
                "leader": {"user_id": leader.user_id, "name": "李局长"},
                "officers": [{"user_id": alice.user_id, "name": "艾丽斯"}]}],
            "requests": []}),
        )
        .await
        .unwrap();
    leader.received(&roster).await;

    // A field user puts herself on as leader on duty: refused (W7).
    anna.holds(&roster).await;
    write(
        &anna.device,
        &roster,
        &[json!("shifts"), json!(0), json!("leader")],
        json!({"user_id": anna.user_id, "name": "安娜"}),
    )
    .await;
    assert!(anna.refused(&roster).await.contains("rule W7"));

    // The officer asks for a swap (her own request), another officer's approval is refused,
    // the leader's counts.
    alice.holds(&roster).await;
    alice
        .device
        .request_swap(
            &roster,
            0,
            false,
            &json!({"user_id": anna.user_id, "name": "安娜"}),
            "家中有事",
        )
        .await
        .unwrap();
    alice.received(&roster).await;
    leader.holds(&roster).await;
    leader
        .until(&roster, |doc| {
            doc["requests"]
                .as_array()
                .is_some_and(|list| !list.is_empty())
        })
        .await;
    leader
        .device
        .decide_request(&roster, 0, true)
        .await
        .unwrap();
    leader.received(&roster).await;
    let token = app.login("cleared", "desk").await.access_token;
    let on_duty = get(
        &app,
        &token,
        &format!("/api/oncall?unit={}&at={}", org.unit_a, now + 1),
    )
    .await;
    assert_eq!(
        on_duty["shifts"][0]["officers"][0]["name"], "安娜",
        "{on_duty}"
    );

    // Once decided, the request is fixed: the requester rewriting it is refused (W8).
    alice
        .until(&roster, |doc| doc["requests"][0]["status"] == "approved")
        .await;
    write(
        &alice.device,
        &roster,
        &[json!("requests"), json!(0), json!("substitute")],
        json!({"user_id": alice.user_id, "name": "艾丽斯"}),
    )
    .await;
    assert!(alice.refused(&roster).await.contains("rule W8"));

    // A handover "signed" by others is refused and never stored; one person signing both
    // sides is refused; each signing their own side works.
    let (forged, _) = anna
        .device
        .create_record(
            &json!({"type": "handover", "title": "夜班交接", "done": [], "pending": [],
            "signatures": {"outgoing": {"by": leader.user_id, "at": now},
                           "incoming": {"by": alice.user_id, "at": now}}}),
        )
        .await
        .unwrap();
    assert!(anna.refused(&forged).await.contains("rule W10"));
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM documents WHERE id = $1")
        .bind(forged.to_string())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
    let handover = alice
        .device
        .create_handover(&["14 calls".into()], &[], "radios fine", None)
        .await
        .unwrap();
    alice.device.sign_handover(&handover, false).await.unwrap();
    alice.received(&handover).await;
    alice
        .device
        .set_field(
            &handover,
            &["signatures", "incoming"],
            &json!({"by": alice.user_id, "at": now}),
        )
        .await
        .unwrap();
    assert!(alice.refused(&handover).await.contains("rule W10"));
    let signing = phone(&app, "anna").await;
    signing.holds(&handover).await;
    signing.device.sign_handover(&handover, true).await.unwrap();
    signing.received(&handover).await;
}

#[tokio::test]
async fn the_stock_js_client_is_held_to_the_same_rules() {
    let app = spawn_app().await;
    org(&app).await;
    let url = format!("http://{}", app.address);
    let leader_id = app.login("cleared", "desk").await.user_id;
    let mut leader = JsPeer::start(&url, "cleared", PASSWORD, "leader-browser")
        .await
        .unwrap();
    let mut anna = JsPeer::start(&url, "anna", PASSWORD, "anna-browser")
        .await
        .unwrap();
    let created = leader
        .call(
            json!({"cmd": "create", "doc": {"type": "incident", "title": "山体滑坡",
            "grade": "red", "category": "natural_disaster", "reports": [], "instructions": []}}),
        )
        .await
        .unwrap();
    assert_eq!(created["ok"], true, "{created}");
    let doc_url = created["url"].as_str().unwrap().to_owned();
    let id: DocumentId = created["document_id"].as_str().unwrap().parse().unwrap();
    let found = anna
        .call(json!({"cmd": "find", "url": doc_url}))
        .await
        .unwrap();
    assert_eq!(found["ok"], true, "{found}");

    // The field user's downgrade and forged instruction never reach the server.
    let lowered = anna
        .call(
            json!({"cmd": "set", "url": doc_url, "path": ["grade"], "value": "blue",
            "wait_synced": true, "timeout_ms": 2000}),
        )
        .await
        .unwrap();
    assert_eq!(lowered["ok"], false, "{lowered}");
    let token = app.login("cleared", "desk").await.access_token;
    assert_eq!(incident(&app, &token, &id).await["grade"], "red");
    let forged = anna
        .call(
            json!({"cmd": "push", "url": doc_url, "path": ["instructions"],
            "value": {"by": leader_id, "to": null, "at": chrono::Utc::now().timestamp_millis(),
                "text": "撤离取消", "steps": [], "done": false},
            "wait_synced": true, "timeout_ms": 2000}),
        )
        .await
        .unwrap();
    assert_eq!(forged["ok"], false, "{forged}");
    let audited = refusals(&app).await;
    assert!(audited.iter().any(|r| r.contains("rule W3")), "{audited:?}");

    // The leader's own instruction from the stock client goes through.
    let given = leader
        .call(
            json!({"cmd": "push", "url": doc_url, "path": ["instructions"],
            "value": {"by": leader_id, "to": null, "at": chrono::Utc::now().timestamp_millis(),
                "text": "全力搜救", "steps": [], "done": false},
            "wait_synced": true}),
        )
        .await
        .unwrap();
    assert_eq!(given["ok"], true, "{given}");
    let view = incident(&app, &token, &id).await;
    let instructions = view["instructions"].as_array().unwrap();
    assert_eq!(instructions.len(), 1, "{view}");
    assert_eq!(instructions[0]["text"], "全力搜救");
    assert_eq!(instructions[0]["verified"], true);
    assert_eq!(view["grade"], "red");
    for peer in [leader, anna] {
        peer.close().await.unwrap();
    }
}

#[tokio::test]
async fn an_alert_is_acknowledged_by_its_people_and_taken_over_from_above() {
    let app = spawn_app().await;
    org(&app).await;
    let anna = phone(&app, "anna").await;
    let id = anna
        .device
        .urgent_report("accident", "road 3", "bridge down")
        .await
        .unwrap();
    anna.received(&id).await;
    let alert = red_alerts(&app, &id).await.remove(0).0;
    let post = |username: &'static str, path: String| {
        let app = &app;
        async move {
            let token = app.login(username, "desk").await.access_token;
            let response = app
                .http
                .post(app.url(&path))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    // Not a target, not the unit's leader: an officer at the desk, the superior office.
    let (status, body) = post("alice", format!("/api/alerts/{alert}/ack")).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post("district", format!("/api/alerts/{alert}/ack")).await;
    assert_eq!(
        (status, body.contains("takes it over")),
        (403, true),
        "{body}"
    );
    // The target (the unit's leader, paged as the fallback) may not post a receipt from a
    // device the alert never reached.
    let (status, body) = post("cleared", format!("/api/alerts/{alert}/receipt")).await;
    assert_eq!(status, 403, "{body}");
    // A unit officer cannot "take over"; the superior leader can, and the timeline says so.
    let (status, _) = post("alice", format!("/api/alerts/{alert}/take-over")).await;
    assert_eq!(status, 403);
    let (status, body) = post("district", format!("/api/alerts/{alert}/take-over")).await;
    assert_eq!(status, 200, "{body}");
    let token = app.login("cleared", "desk").await.access_token;
    let view = get(&app, &token, &format!("/api/alerts/{alert}")).await;
    let events: Vec<&str> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["event"].as_str().unwrap())
        .collect();
    assert!(events.contains(&"alert.taken_over"), "{events:?}");
    assert!(!events.contains(&"alert.acknowledged"), "{events:?}");
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'alert.take_over'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(audited, 1);
}

/// A device keeps what was refused and offers it again on every connection (a hostile one
/// in a loop): each time it is refused again, but the audit trail grows by one row only.
#[tokio::test]
async fn a_refused_change_offered_again_is_refused_again_without_a_new_audit_row() {
    use automerge::transaction::Transactable;
    let app = spawn_app().await;
    org(&app).await;
    let anna = phone(&app, "anna").await;
    let id = anna
        .device
        .urgent_report("accident", "road 3", "bridge down")
        .await
        .unwrap();
    anna.received(&id).await;
    let mut raw = app.peer("anna").await;
    let mut doc = automerge::Automerge::new();
    assert!(raw.sync(id, &mut doc).await.unwrap());
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.put(automerge::ROOT, "grade", "blue")?;
        Ok(())
    })
    .unwrap();
    for _ in 0..3 {
        let mut state = automerge::sync::State::new();
        let error = raw
            .sync_with(id, &mut doc, &mut state)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("rule W3"), "{error}");
    }
    let token = app.login("cleared", "desk").await.access_token;
    assert_eq!(incident(&app, &token, &id).await["grade"], "red");
    let rows = refusals(&app).await;
    assert_eq!(
        rows.iter().filter(|r| r.contains("rule W3")).count(),
        1,
        "{rows:?}"
    );
}

/// A roster names people by user id; only users of the roster's unit are paged from it. The
/// superior office's leader written in as the leader on duty is ignored and noted, and the
/// unit's own leaders are paged instead.
#[tokio::test]
async fn a_roster_pages_only_people_of_its_own_unit() {
    let app = spawn_app().await;
    org(&app).await;
    let leader = phone(&app, "cleared").await;
    let district = app.login("district", "desk").await.user_id;
    let now = chrono::Utc::now().timestamp_millis();
    let (roster, _) = leader
        .device
        .create_record(&json!({"type": "roster", "title": "本周值班表",
            "shifts": [{"start": now - 3_600_000, "end": now + 3_600_000, "kind": "workday",
                "leader": {"user_id": district, "name": "区领导"}, "officers": []}]}))
        .await
        .unwrap();
    leader.received(&roster).await;
    let anna = phone(&app, "anna").await;
    let id = anna
        .device
        .urgent_report("accident", "road 3", "bridge down")
        .await
        .unwrap();
    anna.received(&id).await;
    let alert = red_alerts(&app, &id).await.remove(0).0;
    let token = app.login("cleared", "desk").await.access_token;
    let view = get(&app, &token, &format!("/api/alerts/{alert}")).await;
    let step = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["event"] == "alert.step")
        .unwrap()["detail"]
        .clone();
    assert_eq!(step["ignored"][0]["user_id"], district.as_str(), "{step}");
    assert_eq!(
        step["ignored"][0]["reason"], "not of the roster's unit",
        "{step}"
    );
    assert_eq!(step["targets"], json!([leader.user_id]), "{step}");
}
