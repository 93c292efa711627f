//! Web Push on the server: the VAPID public key, registering and removing browser
//! subscriptions, which subscriptions may be used, and what the sender makes of a push
//! service's answers (against the loopback push receiver).

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use zhiban_server::push::{
    self, MAX_PAYLOAD_BYTES, Outcome, PushOrigins, Sender, Subscription, SubscriptionInfo, Urgency,
    VapidKey,
};

use zhiban_server::Settings;

use crate::helpers::{
    Session, TestApp, org, postgres_settings, spawn_app, spawn_app_with, test_settings,
};
use crate::push_receiver_support::PushReceiver;

const SUBSCRIPTIONS: &str = "/api/push/subscriptions";

/// What `PushSubscription.toJSON()` gives in a browser: a fresh P-256 key pair (any P-256
/// key pair will do, the server's own generator makes one) and a random 16-byte secret.
fn browser_subscription(endpoint: &str) -> Value {
    let key_pair = VapidKey::generate();
    json!({
        "endpoint": endpoint,
        "expirationTime": null,
        "keys": {
            "p256dh": URL_SAFE_NO_PAD.encode(key_pair.public_key()),
            "auth": URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes()),
        },
    })
}

async fn subscribe(app: &TestApp, session: &Session, body: &Value) -> reqwest::Response {
    app.http
        .post(app.url(SUBSCRIPTIONS))
        .bearer_auth(&session.access_token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// Registers `body` and returns the subscription id; asserts 201.
async fn subscribed(app: &TestApp, session: &Session, body: &Value) -> String {
    let response = subscribe(app, session, body).await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let body: Value = response.json().await.unwrap();
    body["id"].as_str().expect("an id").to_owned()
}

async fn vapid_public_key(app: &TestApp, session: &Session) -> Vec<u8> {
    let response = app
        .http
        .get(app.url("/api/push/vapid-public-key"))
        .bearer_auth(&session.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    URL_SAFE_NO_PAD
        .decode(body["publicKey"].as_str().expect("publicKey"))
        .expect("base64url without padding")
}

async fn rows(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_vapid_public_key_is_a_p256_point_kept_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    vapid_key_kept_across_restarts(test_settings(dir.path())).await;
}

#[tokio::test]
async fn the_vapid_public_key_is_a_p256_point_kept_across_restarts_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _database) = postgres_settings(dir.path()).await;
    vapid_key_kept_across_restarts(settings).await;
}

async fn vapid_key_kept_across_restarts(settings: Settings) {
    let app = spawn_app_with(settings).await;
    org(&app).await;
    let alice = app.login("alice", "phone").await;
    let key = vapid_public_key(&app, &alice).await;
    assert_eq!(key.len(), 65);
    p256::PublicKey::from_sec1_bytes(&key).expect("an uncompressed point on P-256");

    let anonymous = app
        .http
        .get(app.url("/api/push/vapid-public-key"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    let (settings, _dir) = app.stop_keeping_data().await;
    let app = spawn_app_with(settings).await;
    let alice = app.login("alice", "phone").await;
    assert_eq!(vapid_public_key(&app, &alice).await, key);
}

#[tokio::test]
async fn nodes_starting_at_once_agree_on_the_vapid_key() {
    let dir = tempfile::tempdir().unwrap();
    let pool = zhiban_server::db::connect(&test_settings(dir.path()).database_url())
        .await
        .unwrap();
    let settings = test_settings(dir.path());
    let (first, second) = tokio::join!(
        zhiban_server::keys::key(&settings, &pool, "vapid"),
        zhiban_server::keys::key(&settings, &pool, "vapid")
    );
    assert_eq!(first.unwrap(), second.unwrap());
}

#[tokio::test]
async fn a_browser_subscription_is_stored_once_per_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    stored_once_per_endpoint(test_settings(dir.path())).await;
}

#[tokio::test]
async fn a_browser_subscription_is_stored_once_per_endpoint_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _database) = postgres_settings(dir.path()).await;
    stored_once_per_endpoint(settings).await;
}

async fn stored_once_per_endpoint(settings: Settings) {
    let app = spawn_app_with(settings).await;
    org(&app).await;
    let phone = app.login("alice", "phone").await;
    let laptop = app.login("alice", "laptop").await;
    let endpoint = "https://push.example.net/wpush/v2/gAAAAABk";

    let first = subscribed(&app, &phone, &browser_subscription(endpoint)).await;
    // The browser subscribed again (new keys), now used from another device of hers.
    let renewed = browser_subscription(endpoint);
    let second = subscribed(&app, &laptop, &renewed).await;
    assert_eq!(first, second, "the same endpoint keeps its row");
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM push_subscriptions").await,
        1
    );

    let stored = push::subscriptions_for_users(
        &mut app.pool.acquire().await.unwrap(),
        std::slice::from_ref(&phone.user_id),
        zhiban_server::clock::system_ms(),
    )
    .await
    .unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].device_id, laptop.device_id);
    assert_eq!(stored[0].info.endpoint, endpoint);
    assert_eq!(stored[0].info.keys.p256dh, renewed["keys"]["p256dh"]);
    assert_eq!(stored[0].info.keys.auth, renewed["keys"]["auth"]);

    // Each registration is audited, without the keys or the endpoint's secret path.
    let details: Vec<String> = sqlx::query_scalar(
        "SELECT detail FROM audit_log WHERE action = 'push.subscribe' ORDER BY seq",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(details.len(), 2);
    for detail in &details {
        assert!(detail.contains("push.example.net"), "{detail}");
        for secret in ["gAAAAABk", renewed["keys"]["auth"].as_str().unwrap()] {
            assert!(!detail.contains(secret), "{detail}");
        }
    }
}

#[tokio::test]
async fn bad_subscriptions_get_clear_errors() {
    let app = spawn_app().await;
    org(&app).await;
    let alice = app.login("alice", "phone").await;
    let good = browser_subscription("https://push.example.net/x");
    let with = |pointer: &str, value: Value| {
        let mut body = good.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        body
    };
    let mut not_on_curve = URL_SAFE_NO_PAD
        .decode(good["keys"]["p256dh"].as_str().unwrap())
        .unwrap();
    not_on_curve[64] ^= 1;

    let cases = [
        (json!({"endpoint": "https://push.example.net/x"}), "keys"),
        (
            with("/keys", json!({"auth": good["keys"]["auth"]})),
            "p256dh",
        ),
        (with("/endpoint", json!("not a url")), "endpoint"),
        (
            with("/endpoint", json!("ftp://push.example.net/x")),
            "endpoint",
        ),
        (
            with("/keys/p256dh", json!(URL_SAFE_NO_PAD.encode(not_on_curve))),
            "keys.p256dh is not a point on the P-256 curve",
        ),
        (
            with("/keys/p256dh", json!(URL_SAFE_NO_PAD.encode([4u8; 33]))),
            "keys.p256dh must be a 65-byte uncompressed P-256 point",
        ),
        (
            with("/keys/p256dh", json!("not+base64/url")),
            "keys.p256dh must be base64url",
        ),
        (
            with("/keys/auth", json!(URL_SAFE_NO_PAD.encode([7u8; 12]))),
            "keys.auth must be 16 bytes",
        ),
    ];
    for (body, expected) in cases {
        let response = subscribe(&app, &alice, &body).await;
        assert_eq!(response.status(), 422, "{body}");
        let error: Value = response.json().await.unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(expected), "{body} -> {message}");
    }

    let anonymous = app
        .http
        .post(app.url(SUBSCRIPTIONS))
        .json(&good)
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM push_subscriptions").await,
        0
    );
}

/// An account registering a push endpoint on loopback, the office network or a cloud
/// metadata address would have the server post there (and read the answer): refused, with
/// the reason, and nothing is sent. A device and a user hold only so many subscriptions.
#[tokio::test]
async fn push_endpoints_only_on_push_services_and_only_so_many() {
    let app = spawn_app().await;
    org(&app).await;
    let alice = app.login("alice", "phone").await;
    let receiver = PushReceiver::start().await.unwrap();
    let loopback = receiver.subscribe("internal");
    for endpoint in [
        loopback["endpoint"].as_str().unwrap(),
        "http://169.254.169.254/latest/meta-data/x",
        "https://10.0.0.8/admin",
        "http://fcm.googleapis.com/fcm/send/x",
        "https://fcm.googleapis.com.attacker.example/x",
    ] {
        let response = subscribe(&app, &alice, &browser_subscription(endpoint)).await;
        assert_eq!(response.status(), 422, "{endpoint}");
        let error: Value = response.json().await.unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(
            message.contains("not allowed") || message.contains("https"),
            "{endpoint} -> {message}"
        );
    }
    assert_eq!(receiver.attempts("internal"), 0);
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM push_subscriptions").await,
        0
    );

    // Four per device: the fifth is refused, the same endpoint again is not a new one.
    for n in 0..4 {
        let endpoint = format!("https://fcm.googleapis.com/fcm/send/{n}");
        subscribed(&app, &alice, &browser_subscription(&endpoint)).await;
    }
    let again = browser_subscription("https://fcm.googleapis.com/fcm/send/0");
    assert_eq!(subscribe(&app, &alice, &again).await.status(), 201);
    let fifth = browser_subscription("https://web.push.apple.com/fifth");
    let response = subscribe(&app, &alice, &fifth).await;
    assert_eq!(response.status(), 422);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("this device already has 4"),
        "{error}"
    );
    // Another device of hers still may.
    let laptop = app.login("alice", "laptop").await;
    assert_eq!(subscribe(&app, &laptop, &fifth).await.status(), 201);
}

#[tokio::test]
async fn only_the_owner_removes_a_subscription() {
    let dir = tempfile::tempdir().unwrap();
    owner_removes(test_settings(dir.path())).await;
}

#[tokio::test]
async fn only_the_owner_removes_a_subscription_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _database) = postgres_settings(dir.path()).await;
    owner_removes(settings).await;
}

async fn owner_removes(settings: Settings) {
    let app = spawn_app_with(settings).await;
    org(&app).await;
    let alice = app.login("alice", "phone").await;
    let bob = app.login("bob", "phone").await;
    let by_id = subscribed(&app, &alice, &browser_subscription("https://p.example/a")).await;
    subscribed(&app, &alice, &browser_subscription("https://p.example/b")).await;

    let delete_id = |session: &Session, id: &str| {
        app.http
            .delete(app.url(&format!("{SUBSCRIPTIONS}/{id}")))
            .bearer_auth(&session.access_token)
            .send()
    };
    let delete_endpoint = |session: &Session, endpoint: &str| {
        app.http
            .delete(app.url(SUBSCRIPTIONS))
            .bearer_auth(&session.access_token)
            .json(&json!({ "endpoint": endpoint }))
            .send()
    };

    assert_eq!(delete_id(&bob, &by_id).await.unwrap().status(), 404);
    let refused = delete_endpoint(&bob, "https://p.example/b").await.unwrap();
    assert_eq!(refused.status(), 404);
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM push_subscriptions").await,
        2
    );

    assert_eq!(delete_id(&alice, &by_id).await.unwrap().status(), 204);
    let removed = delete_endpoint(&alice, "https://p.example/b")
        .await
        .unwrap();
    assert_eq!(removed.status(), 204);
    assert_eq!(delete_id(&alice, &by_id).await.unwrap().status(), 404);
    assert_eq!(
        rows(&app, "SELECT COUNT(*) FROM push_subscriptions").await,
        0
    );
    assert_eq!(
        rows(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'push.unsubscribe'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn revoked_devices_and_expired_subscriptions_are_not_used() {
    let dir = tempfile::tempdir().unwrap();
    revoked_and_expired_not_used(test_settings(dir.path())).await;
}

#[tokio::test]
async fn revoked_devices_and_expired_subscriptions_are_not_used_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _database) = postgres_settings(dir.path()).await;
    revoked_and_expired_not_used(settings).await;
}

async fn revoked_and_expired_not_used(settings: Settings) {
    let app = spawn_app_with(settings).await;
    org(&app).await;
    let lost_phone = app.login("alice", "lost phone").await;
    let laptop = app.login("alice", "laptop").await;
    let bob = app.login("bob", "phone").await;
    subscribed(
        &app,
        &lost_phone,
        &browser_subscription("https://p.example/lost"),
    )
    .await;
    let kept = subscribed(
        &app,
        &laptop,
        &browser_subscription("https://p.example/laptop"),
    )
    .await;
    let bobs = subscribed(&app, &bob, &browser_subscription("https://p.example/bob")).await;
    let mut expired = browser_subscription("https://p.example/expired");
    expired["expirationTime"] = json!(1_000_000_000_000_i64);
    subscribed(&app, &laptop, &expired).await;

    let revoked = app
        .http
        .post(app.url(&format!("/api/devices/{}/revoke", lost_phone.device_id)))
        .bearer_auth(&laptop.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let left: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM push_subscriptions WHERE device_id = $1")
            .bind(&lost_phone.device_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(left, 0, "revocation deletes the lost phone's subscriptions");

    let ids = |subscriptions: Vec<Subscription>| {
        let mut ids: Vec<String> = subscriptions.into_iter().map(|s| s.id).collect();
        ids.sort();
        ids
    };
    let alices = push::subscriptions_for_users(
        &mut app.pool.acquire().await.unwrap(),
        std::slice::from_ref(&laptop.user_id),
        zhiban_server::clock::system_ms(),
    )
    .await
    .unwrap();
    assert_eq!(ids(alices), vec![kept.clone()]);
    let both = push::subscriptions_for_users(
        &mut app.pool.acquire().await.unwrap(),
        &[laptop.user_id, bob.user_id],
        zhiban_server::clock::system_ms(),
    )
    .await
    .unwrap();
    let mut expected = vec![kept, bobs];
    expected.sort();
    assert_eq!(ids(both), expected);
    assert!(
        push::subscriptions_for_users(
            &mut app.pool.acquire().await.unwrap(),
            &[],
            zhiban_server::clock::system_ms(),
        )
        .await
        .unwrap()
        .is_empty()
    );
}

#[tokio::test]
async fn the_sender_delivers_to_a_push_service_and_reads_its_answers() {
    let receiver = PushReceiver::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(Settings {
        push_allowed_origins: receiver.origin().to_owned(),
        ..test_settings(dir.path())
    })
    .await;
    org(&app).await;
    let alice = app.login("alice", "phone").await;
    let public_key = URL_SAFE_NO_PAD.encode(vapid_public_key(&app, &alice).await);
    receiver.expect_vapid_key(&public_key);
    let id = subscribed(&app, &alice, &receiver.subscribe("alice-phone")).await;
    let subscription = push::subscriptions_for_users(
        &mut app.pool.acquire().await.unwrap(),
        std::slice::from_ref(&alice.user_id),
        zhiban_server::clock::system_ms(),
    )
    .await
    .unwrap()
    .pop()
    .expect("her subscription");
    assert_eq!(subscription.id, id);
    // The running server's sender is not reachable from here; one built on the same stored
    // key signs alike.
    let sender = Sender::new(
        &VapidKey::from_bytes(
            &zhiban_server::keys::key(&app.settings, &app.pool, "vapid")
                .await
                .unwrap(),
        )
        .unwrap(),
        &zhiban_server::Settings::default().push_contact,
        PushOrigins::parse(receiver.origin()).unwrap(),
    )
    .unwrap();
    assert_eq!(sender.public_key_base64(), public_key);

    let payload = br#"{"incident":"flood","level":"I"}"#;
    let outcome = sender.send(&subscription, payload, Urgency::High, 60).await;
    assert_eq!(outcome, Outcome::Delivered);
    let delivery = receiver
        .next_delivery(Duration::from_secs(5))
        .await
        .expect("delivered");
    assert_eq!(delivery.payload, payload);
    assert_eq!(delivery.urgency.as_deref(), Some("high"));
    assert_eq!(delivery.ttl, 60);
    assert_eq!(
        delivery.vapid_sub,
        zhiban_server::Settings::default().push_contact
    );

    // The push service's answers, as the escalation worker will see them.
    receiver.respond_with("alice-phone", &[429, 503, 410, 404, 400]);
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        outcomes.push(sender.send(&subscription, payload, Urgency::High, 60).await);
    }
    assert!(matches!(outcomes[0], Outcome::Retry { .. }), "{outcomes:?}");
    assert!(matches!(outcomes[1], Outcome::Retry { .. }), "{outcomes:?}");
    assert_eq!(outcomes[2..4], [Outcome::Gone, Outcome::Gone]);
    assert!(
        matches!(outcomes[4], Outcome::Rejected { .. }),
        "{outcomes:?}"
    );
    // Reused signatures and the pooled client still deliver after all that.
    assert_eq!(
        sender
            .send(&subscription, payload, Urgency::Normal, 0)
            .await,
        Outcome::Delivered
    );

    let too_large = vec![b'x'; MAX_PAYLOAD_BYTES + 1];
    let attempts = receiver.attempts("alice-phone");
    let outcome = sender
        .send(&subscription, &too_large, Urgency::High, 60)
        .await;
    assert!(matches!(outcome, Outcome::Rejected { .. }), "{outcome:?}");
    assert_eq!(receiver.attempts("alice-phone"), attempts, "never sent");
    let largest = vec![b'x'; MAX_PAYLOAD_BYTES];
    assert_eq!(
        sender
            .send(&subscription, &largest, Urgency::High, 60)
            .await,
        Outcome::Delivered,
        "the largest payload fits a push service's 4096-byte limit"
    );
}

#[tokio::test]
async fn unreachable_and_silent_push_services_are_retried() {
    // Nothing listens on a port just released; the second accepts and never answers.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_address = closed.local_addr().unwrap();
    drop(closed);
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_address = silent.local_addr().unwrap();
    let sender = Sender::new(
        &VapidKey::generate(),
        &zhiban_server::Settings::default().push_contact,
        PushOrigins::parse(&format!("http://{closed_address},http://{silent_address}")).unwrap(),
    )
    .unwrap()
    .with_timeout(Duration::from_millis(300));
    let at = |endpoint: String| {
        let browser = browser_subscription(&endpoint);
        Subscription {
            id: "s".into(),
            user_id: "u".into(),
            device_id: "d".into(),
            info: serde_json::from_value::<SubscriptionInfo>(browser).unwrap(),
            expiration_time: None,
        }
    };

    let outcome = sender
        .send(
            &at(format!("http://{closed_address}/push")),
            b"hi",
            Urgency::High,
            60,
        )
        .await;
    assert!(matches!(outcome, Outcome::Retry { .. }), "{outcome:?}");

    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let outcome = sender
        .send(
            &at(format!("http://{silent_address}/push")),
            b"hi",
            Urgency::High,
            60,
        )
        .await;
    assert!(
        matches!(&outcome, Outcome::Retry { reason, .. } if reason.contains("no answer")),
        "{outcome:?}"
    );

    // Whatever answers at an endpoint, its body is not the server's to keep or show: the
    // outcome says the status only.
    let talker = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let talker_address = talker.local_addr().unwrap();
    let answering = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = talker.accept().await {
            let mut request = vec![0u8; 64 * 1024];
            let _ = socket.read(&mut request).await;
            let body = "root:x:0:0:root:/root:/bin/bash internal-admin-page";
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    let talking = Sender::new(
        &VapidKey::generate(),
        &zhiban_server::Settings::default().push_contact,
        PushOrigins::parse(&format!("http://{talker_address}")).unwrap(),
    )
    .unwrap();
    let outcome = talking
        .send(
            &at(format!("http://{talker_address}/push")),
            b"hi",
            Urgency::High,
            60,
        )
        .await;
    assert_eq!(
        outcome,
        Outcome::Rejected {
            reason: "the push service answered 400 (4xx)".into()
        }
    );
    answering.abort();

    // A stored endpoint no longer allowed (the setting changed) is not even connected to.
    let outcome = sender
        .send(
            &at("http://127.0.0.1:9/push".into()),
            b"hi",
            Urgency::High,
            60,
        )
        .await;
    assert!(
        matches!(&outcome, Outcome::Rejected { reason } if reason.contains("not allowed")),
        "{outcome:?}"
    );
    holder.abort();
}
