//! Login, refresh, token checks and device revocation (D24).

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use zhiban_server::access::Role;

use crate::helpers::{PASSWORD, RawPeer, Received, spawn_app, spawn_app_on};

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let app = spawn_app().await;
    let unit = app.create_unit("Town A", None).await;
    app.create_user("alice", &unit, Role::Officer, false).await;
    for (username, password) in [("alice", "wrong password"), ("nobody", PASSWORD)] {
        let response = app
            .http
            .post(app.url("/api/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], "wrong username or password");
    }
}

/// Refresh tokens rotate. A spent one presented again at once is a phone retrying after a
/// lost answer: refused, nothing else. Later it means two holders of one token family (a
/// stolen token): the device is revoked, the thief's rotated token dies with it, its socket
/// closes, and the audit trail says so.
#[tokio::test]
async fn a_reused_refresh_token_revokes_its_whole_family() {
    let clock = zhiban_server::clock::Clock::manual(chrono::Utc::now().timestamp_millis());
    let app = spawn_app_on(clock.clone()).await;
    let unit = app.create_unit("Town A", None).await;
    app.create_user("alice", &unit, Role::Officer, false).await;
    let session = app.login("alice", "phone").await;
    let refresh = |token: String| {
        let app = &app;
        async move {
            app.http
                .post(app.url("/api/auth/refresh"))
                .json(&json!({ "refresh_token": token }))
                .send()
                .await
                .unwrap()
        }
    };
    let error = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 401);
        response.json::<serde_json::Value>().await.unwrap()["error"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // The thief refreshes first with the stolen token.
    let thief = refresh(session.refresh_token.clone()).await;
    assert_eq!(thief.status(), 200);
    let thief: serde_json::Value = thief.json().await.unwrap();
    assert_eq!(thief["device_id"], session.device_id.as_str());
    assert_ne!(thief["refresh_token"], session.refresh_token.as_str());
    let thief_access = thief["access_token"].as_str().unwrap().to_owned();
    let mut socket = RawPeer::connect(&app.sync_url(&thief_access).await, &session.peer_id)
        .await
        .unwrap();
    assert_eq!(
        error(refresh(session.refresh_token.clone()).await).await,
        "refresh token already used",
        "at once: a retry"
    );

    // The phone's own refresh, a minute later: the reuse is seen.
    clock.advance(Duration::from_secs(60));
    assert!(
        error(refresh(session.refresh_token.clone()).await)
            .await
            .contains("revoked")
    );
    match socket.recv_within(Duration::from_secs(1)).await.unwrap() {
        Received::Closed(code) => assert_eq!(code, Some(4001)),
        other => panic!("expected the thief's socket to close, got {other:?}"),
    }
    assert_eq!(
        refresh(thief["refresh_token"].as_str().unwrap().to_owned())
            .await
            .status(),
        401,
        "the rotated token dies with its family"
    );
    let me = app
        .http
        .get(app.url("/api/me"))
        .bearer_auth(&thief_access)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
    let audited: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM audit_log WHERE action = 'auth.refresh_reuse' AND device_id = $1",
    )
    .bind(&session.device_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(audited, 1);
}

#[derive(serde::Serialize)]
struct Claims<'a> {
    sub: &'a str,
    dev: &'a str,
    aud: &'a str,
    iss: &'a str,
    iat: i64,
    exp: i64,
}

#[tokio::test]
async fn expired_forged_and_wrong_audience_tokens_are_refused() {
    let app = spawn_app().await;
    let unit = app.create_unit("Town A", None).await;
    app.create_user("alice", &unit, Role::Officer, false).await;
    let session = app.login("alice", "phone").await;
    let secret = zhiban_server::keys::key(&app.settings, &app.pool, "jwt")
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let sign = |key: &[u8], aud: &str, exp: i64| {
        let claims = Claims {
            sub: &session.user_id,
            dev: &session.device_id,
            aud,
            iss: "zhiban",
            iat: now - 3600,
            exp,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    };
    let valid = sign(&secret, "zhiban", now + 600);
    let cases = [
        (
            "expired",
            sign(&secret, "zhiban", now - 120),
            "access token expired",
        ),
        (
            "forged",
            sign(b"another key that is 32 bytes long", "zhiban", now + 600),
            "invalid access token",
        ),
        (
            "wrong audience",
            sign(&secret, "somebody-else", now + 600),
            "invalid access token",
        ),
        ("garbage", "not.a.token".to_owned(), "invalid access token"),
    ];
    let me = |token: String| {
        let app = &app;
        async move {
            app.http
                .get(app.url("/api/me"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        me(valid.clone()).await.status(),
        200,
        "the control token works"
    );
    for (name, token, message) in cases {
        let response = me(token.clone()).await;
        assert_eq!(response.status(), 401, "{name} token on /api");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"], message, "{name}");
        let refused = RawPeer::connect(&app.sync_url(&token).await, &session.peer_id).await;
        let error = refused
            .err()
            .unwrap_or_else(|| panic!("{name} token opened /sync"));
        assert!(error.to_string().contains("401"), "{name}: {error}");
    }
    RawPeer::connect(&app.sync_url(&valid).await, &session.peer_id)
        .await
        .expect("the control token opens /sync");
}

#[tokio::test]
async fn a_revoked_device_is_cut_off_within_a_second() {
    let app = spawn_app().await;
    let unit = app.create_unit("Town A", None).await;
    app.create_user("alice", &unit, Role::Officer, false).await;
    let lost = app.login("alice", "lost phone").await;
    let desk = app.login("alice", "desk").await;
    let mut socket = RawPeer::connect(&app.sync_url(&lost.access_token).await, &lost.peer_id)
        .await
        .unwrap();
    let mut other = RawPeer::connect(&app.sync_url(&desk.access_token).await, &desk.peer_id)
        .await
        .unwrap();

    let started = Instant::now();
    let response = app
        .http
        .post(app.url(&format!("/api/devices/{}/revoke", lost.device_id)))
        .bearer_auth(&desk.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    match socket.recv_within(Duration::from_secs(1)).await.unwrap() {
        Received::Closed(code) => assert_eq!(code, Some(4001)),
        other => panic!("expected the socket to close, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(1));

    let refresh = app
        .http
        .post(app.url("/api/auth/refresh"))
        .json(&json!({ "refresh_token": lost.refresh_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 401);
    let me = app
        .http
        .get(app.url("/api/me"))
        .bearer_auth(&lost.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401, "the unexpired access token is dead too");
    let reconnect = RawPeer::connect(&app.sync_url(&lost.access_token).await, &lost.peer_id).await;
    assert!(reconnect.is_err());
    let relogin = app
        .http
        .post(app.url("/api/auth/login"))
        .json(&json!({"username": "alice", "password": PASSWORD, "device_id": lost.device_id}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        relogin.status(),
        403,
        "a revoked device cannot log in again"
    );

    // The other device of the same user is untouched.
    let probe = zhiban_protocol::DocumentId::random();
    let mut doc = automerge::Automerge::new();
    assert!(!other.sync(probe, &mut doc).await.unwrap());
}

#[tokio::test]
async fn only_the_owner_or_a_superior_admin_may_revoke() {
    let app = spawn_app().await;
    let district = app.create_unit("District", None).await;
    let town_a = app.create_unit("Town A", Some(&district)).await;
    let town_b = app.create_unit("Town B", Some(&district)).await;
    app.create_user("alice", &town_a, Role::Officer, false)
        .await;
    app.create_user("bob", &town_b, Role::Admin, false).await;
    app.create_user("root", &district, Role::Admin, false).await;
    let alice = app.login("alice", "phone").await;
    let bob = app.login("bob", "phone").await;
    let root = app.login("root", "desk").await;
    let revoke = |token: String| {
        let app = &app;
        let url = app.url(&format!("/api/devices/{}/revoke", alice.device_id));
        async move { app.http.post(url).bearer_auth(token).send().await.unwrap() }
    };
    assert_eq!(
        revoke(bob.access_token).await.status(),
        404,
        "a sibling unit's admin"
    );
    assert_eq!(
        revoke(root.access_token).await.status(),
        204,
        "the district's admin"
    );
}

#[tokio::test]
async fn a_handshake_claiming_another_peer_id_is_dropped() {
    let app = spawn_app().await;
    let unit = app.create_unit("Town A", None).await;
    app.create_user("alice", &unit, Role::Officer, false).await;
    app.create_user("anna", &unit, Role::Officer, false).await;
    let alice = app.login("alice", "phone").await;
    let anna = app.login("anna", "phone").await;
    let error = RawPeer::connect(&app.sync_url(&alice.access_token).await, &anna.peer_id)
        .await
        .err()
        .expect("the handshake must fail");
    assert!(error.to_string().contains("expected peer"), "{error}");

    // Claiming another id after the handshake closes the socket too.
    let mut peer = RawPeer::connect(&app.sync_url(&alice.access_token).await, &alice.peer_id)
        .await
        .unwrap();
    let message = zhiban_protocol::Message::Request {
        document_id: zhiban_protocol::DocumentId::random(),
        sender_id: zhiban_protocol::PeerId::new(anna.peer_id.clone()),
        target_id: peer.server_id.clone(),
        data: automerge::sync::Message::decode(&[])
            .map(|m| m.encode())
            .unwrap_or_default(),
    };
    peer.send(&message).await.unwrap();
    let (code, errors) = peer.until_closed().await.unwrap();
    assert_eq!(code, Some(1008));
    assert!(errors.iter().any(|e| e.contains("senderId")), "{errors:?}");
}

/// D11 counts from times the device writes: a device whose clock is off is told at login and
/// at every refresh, flagged in its device list and the audit trail, and cleared once right.
#[tokio::test]
async fn a_device_whose_clock_is_off_is_told_and_flagged() {
    let app = spawn_app().await;
    let unit = app.create_unit("Town A", None).await;
    app.create_user("alice", &unit, Role::Officer, false).await;
    let now = || chrono::Utc::now().timestamp_millis();
    let post = |path: &'static str, body: serde_json::Value| {
        let app = &app;
        async move {
            let response = app
                .http
                .post(app.url(path))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let ahead = post(
        "/api/auth/login",
        json!({"username": "alice", "password": PASSWORD, "device_time": now() + 10 * 60_000}),
    )
    .await;
    let skew = ahead["clock_skew_ms"].as_i64().unwrap();
    assert!((590_000..=610_000).contains(&skew), "{ahead}");
    let devices = |token: String| {
        let app = &app;
        async move {
            app.http
                .get(app.url("/api/devices"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json::<serde_json::Value>()
                .await
                .unwrap()
        }
    };
    let listed = devices(ahead["access_token"].as_str().unwrap().to_owned()).await;
    assert!(listed[0]["clock_skew_ms"].as_i64().is_some(), "{listed}");
    let audited: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'device.clock_skew'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(audited, 1);

    // Set right: the next refresh says nothing and clears the flag; a few seconds are fine.
    let right = post(
        "/api/auth/refresh",
        json!({"refresh_token": ahead["refresh_token"], "device_time": now() - 3_000}),
    )
    .await;
    assert!(right.get("clock_skew_ms").is_none(), "{right}");
    let listed = devices(right["access_token"].as_str().unwrap().to_owned()).await;
    assert!(listed[0]["clock_skew_ms"].is_null(), "{listed}");
}

/// Answers carry record data a shared browser or proxy must not keep, and nothing of them may
/// be sniffed into another type or framed by another site: on success and on error alike.
#[tokio::test]
async fn api_answers_are_not_cached_sniffed_or_framed() {
    let app = spawn_app().await;
    let unit = app.create_unit("Town A", None).await;
    app.create_user("alice", &unit, Role::Officer, false).await;
    let session = app.login("alice", "phone").await;
    let me = app
        .http
        .get(app.url("/api/incidents"))
        .bearer_auth(&session.access_token)
        .send()
        .await
        .unwrap();
    let anonymous = app.http.get(app.url("/api/me")).send().await.unwrap();
    let missing = app.http.get(app.url("/api/nowhere")).send().await.unwrap();
    for (response, status) in [(me, 200), (anonymous, 401), (missing, 404)] {
        assert_eq!(response.status(), status);
        let headers = response.headers();
        assert_eq!(headers["cache-control"], "no-store", "{status}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{status}");
        assert_eq!(headers["x-frame-options"], "DENY", "{status}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{status}");
    }
}

/// A sync ticket opens this device's `/sync` for two minutes and nothing else; what a proxy
/// log might show (the ticket) is useless against the REST API, and the access token itself is
/// no ticket.
#[tokio::test]
async fn a_sync_ticket_opens_this_devices_socket_and_nothing_else() {
    let app = spawn_app().await;
    let unit = app.create_unit("Town A", None).await;
    app.create_user("alice", &unit, Role::Officer, false).await;
    let phone = app.login("alice", "phone").await;
    let tablet = app.login("alice", "tablet").await;
    let answer: zhiban_api::SyncTicket = app
        .http
        .post(app.url("/api/sync/ticket"))
        .bearer_auth(&phone.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer.expires_in, 120);
    let ticket = answer.ticket;
    let socket = |credential: &str| format!("ws://{}/sync?{credential}", app.address);

    // On the REST API a ticket is no token.
    for path in ["/api/me", "/api/units", "/api/sync/ticket"] {
        let response = app
            .http
            .get(app.url(path))
            .bearer_auth(&ticket)
            .send()
            .await
            .unwrap();
        assert!(
            matches!(response.status().as_u16(), 401 | 405),
            "{path}: {}",
            response.status()
        );
    }
    let refused = app
        .http
        .post(app.url("/api/sync/ticket"))
        .bearer_auth(&ticket)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401, "a ticket does not buy another");

    // In the URL only a ticket counts: not the access token, not the old `token=`.
    for url in [
        socket(&format!("ticket={}", phone.access_token)),
        socket(&format!("token={}", phone.access_token)),
        socket(""),
    ] {
        let refused = RawPeer::connect(&url, &phone.peer_id).await;
        let error = refused
            .err()
            .unwrap_or_else(|| panic!("{url} opened /sync"));
        assert!(error.to_string().contains("401"), "{url}: {error}");
    }

    // An expired ticket (signed with the real key) is refused.
    let secret = zhiban_server::keys::key(&app.settings, &app.pool, "jwt")
        .await
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let expired = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &Claims {
            sub: &phone.user_id,
            dev: &phone.device_id,
            aud: "zhiban-sync",
            iss: "zhiban",
            iat: now - 600,
            exp: now - 120,
        },
        &EncodingKey::from_secret(&secret),
    )
    .unwrap();
    let error = RawPeer::connect(&socket(&format!("ticket={expired}")), &phone.peer_id)
        .await
        .err()
        .expect("an expired ticket is refused");
    assert!(error.to_string().contains("401"), "{error}");

    // The phone's ticket is the phone's: the tablet cannot join with it.
    let refused = RawPeer::connect(&socket(&format!("ticket={ticket}")), &tablet.peer_id).await;
    assert!(
        refused.is_err(),
        "the tablet joined with the phone's ticket"
    );
    // And it opens the phone's own socket, as does the access token in a header (for
    // clients that can set one).
    RawPeer::connect(&socket(&format!("ticket={ticket}")), &phone.peer_id)
        .await
        .expect("the ticket opens the phone's socket");
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(socket(""))
            .unwrap();
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", phone.access_token).parse().unwrap(),
    );
    tokio_tungstenite::connect_async(request)
        .await
        .expect("an access token in the header opens /sync");
}
