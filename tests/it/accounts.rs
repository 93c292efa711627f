//! The account lifecycle (D24), as an admin of one unit and as whoever runs
//! `zhiban-server admin` would use it, and as an admin who tries to reach further: accounts
//! and units are managed only within the admin's own subtree; disabling a user, resetting a
//! password or changing role, unit or clearance closes their open sockets at once; an
//! admin-set password works for one login that sets the user's own; every action is audited,
//! an operator's with their operating-system user.

use std::time::Duration;

use serde_json::{Value, json};
use zhiban_api::Role;

use crate::helpers::{Org, PASSWORD, TestApp, org, spawn_app, spawn_app_with, test_settings};

/// A new password of the user's own, strong enough.
const OWN_PASSWORD: &str = "kettle orbit saffron 42";

struct Scene {
    app: TestApp,
    org: Org,
    /// An admin of Town A.
    admin: String,
    /// An admin of the district office, above Town A and Town B.
    district_admin: String,
}

async fn scene() -> Scene {
    let app = spawn_app().await;
    let org = org(&app).await;
    app.create_user("admin_a", &org.unit_a, Role::Admin, false)
        .await;
    app.create_user("admin_d", &org.district, Role::Admin, false)
        .await;
    let admin = app.login("admin_a", "admin desk").await.access_token;
    let district_admin = app.login("admin_d", "admin desk").await.access_token;
    Scene {
        app,
        org,
        admin,
        district_admin,
    }
}

/// `method path` with `body` as `token`; the status and the JSON answer (`null` if none).
async fn call(app: &TestApp, token: &str, method: &str, path: &str, body: Value) -> (u16, Value) {
    let request = match method {
        "GET" => app.http.get(app.url(path)),
        "PATCH" => app.http.patch(app.url(path)).json(&body),
        _ => app.http.post(app.url(path)).json(&body),
    };
    let response = request.bearer_auth(token).send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn user_id(app: &TestApp, username: &str) -> String {
    sqlx::query_scalar("SELECT id FROM users WHERE username = $1")
        .bind(username)
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

async fn login_status(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app
        .http
        .post(app.url("/api/auth/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The audit rows of `action`, oldest first: (user_id, detail).
async fn audited(app: &TestApp, action: &str) -> Vec<(Option<String>, Value)> {
    let rows: Vec<(Option<String>, String)> =
        sqlx::query_as("SELECT user_id, detail FROM audit_log WHERE action = $1 ORDER BY seq")
            .bind(action)
            .fetch_all(&app.pool)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(user, detail)| (user, serde_json::from_str(&detail).unwrap()))
        .collect()
}

#[tokio::test]
async fn an_admin_manages_accounts_of_their_own_subtree_only() {
    let Scene {
        app, org, admin, ..
    } = scene().await;
    let admin_id = user_id(&app, "admin_a").await;

    // A new user: made with a password the admin chose, which the user must replace.
    let (status, created) = call(
        &app,
        &admin,
        "POST",
        "/api/users",
        json!({"username": "zhou", "display_name": "Zhou Min", "password": PASSWORD,
               "unit_id": org.unit_a, "role": "officer"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["must_change_password"], true);
    assert_eq!(created["unit_id"], org.unit_a.as_str());
    let created_rows = audited(&app, "admin.create_user").await;
    let (by, detail) = created_rows.last().unwrap();
    assert_eq!(detail["username"], "zhou", "{detail}");
    assert_eq!(by.as_deref(), Some(admin_id.as_str()));

    // The list holds Town A's people and no one else's.
    let (status, users) = call(&app, &admin, "GET", "/api/users", Value::Null).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin_a", "alice", "anna", "cleared", "zhou"]);

    // Town B and the office above are out of reach, and look as if they did not exist.
    let bob = user_id(&app, "bob").await;
    let district = user_id(&app, "district").await;
    for (method, path, body) in [
        (
            "PATCH",
            format!("/api/users/{bob}"),
            json!({"role": "field"}),
        ),
        ("POST", format!("/api/users/{bob}/disable"), Value::Null),
        (
            "POST",
            format!("/api/users/{district}/reset-password"),
            json!({}),
        ),
        (
            "PATCH",
            format!("/api/users/{district}"),
            json!({"cleared": false}),
        ),
    ] {
        let (status, answer) = call(&app, &admin, method, &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {answer}");
        assert_eq!(answer["error"], "no such user");
    }
    // Nor may the admin move someone there, or create someone there.
    let alice = user_id(&app, "alice").await;
    let (status, _) = call(
        &app,
        &admin,
        "PATCH",
        &format!("/api/users/{alice}"),
        json!({"unit_id": org.unit_b}),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &app,
        &admin,
        "POST",
        "/api/users",
        json!({"username": "spy", "password": PASSWORD, "unit_id": org.unit_b, "role": "admin"}),
    )
    .await;
    assert_eq!(status, 404);

    // No admin makes themselves more, or locks themselves out.
    let (status, answer) = call(
        &app,
        &admin,
        "PATCH",
        &format!("/api/users/{admin_id}"),
        json!({"cleared": true}),
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    let (status, _) = call(
        &app,
        &admin,
        "POST",
        &format!("/api/users/{admin_id}/disable"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 403);

    // And only admins manage accounts at all.
    let officer = app.login("alice", "phone").await.access_token;
    let (status, _) = call(&app, &officer, "GET", "/api/users", Value::Null).await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &app,
        &officer,
        "POST",
        &format!("/api/users/{alice}/reset-password"),
        json!({}),
    )
    .await;
    assert_eq!(status, 403);

    // Bad input is a clear refusal, not a user: a weak password, a taken name.
    let (status, answer) = call(
        &app,
        &admin,
        "POST",
        "/api/users",
        json!({"username": "li", "password": "password1234", "unit_id": org.unit_a,
               "role": "officer"}),
    )
    .await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = call(
        &app,
        &admin,
        "POST",
        "/api/users",
        json!({"username": "alice", "password": PASSWORD, "unit_id": org.unit_a,
               "role": "officer"}),
    )
    .await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(
        audited(&app, "admin.create_user").await.len(),
        created_rows.len(),
        "nothing refused was created"
    );
}

#[tokio::test]
async fn disabling_a_user_closes_their_socket_at_once_and_refuses_their_login() {
    let Scene { app, admin, .. } = scene().await;
    let anna = app.login("anna", "phone").await;
    let mut socket = app.peer("anna").await;
    let anna_id = user_id(&app, "anna").await;

    let (status, view) = call(
        &app,
        &admin,
        "POST",
        &format!("/api/users/{anna_id}/disable"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert!(view["disabled_at"].is_i64(), "{view}");
    let (code, _) = tokio::time::timeout(Duration::from_secs(1), socket.until_closed())
        .await
        .expect("closed within a second")
        .unwrap();
    assert_eq!(code, Some(4003));

    // Every road back in is shut: the password, the tokens she holds, a new socket.
    let (status, answer) =
        login_status(&app, json!({"username": "anna", "password": PASSWORD})).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["error"], "this account is disabled");
    let refresh = app
        .http
        .post(app.url("/api/auth/refresh"))
        .json(&json!({"refresh_token": anna.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 401);
    let (status, _) = call(&app, &anna.access_token, "GET", "/api/me", Value::Null).await;
    assert_eq!(status, 401);
    let ticket = app
        .http
        .post(app.url("/api/sync/ticket"))
        .bearer_auth(&anna.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(ticket.status(), 401);
    let subscriptions: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM refresh_tokens r JOIN devices d ON d.id = r.device_id \
         WHERE d.user_id = $1",
    )
    .bind(&anna_id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(subscriptions, 0, "her refresh tokens are gone");
    let attempts = audited(&app, "auth.login_disabled").await;
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].0.as_deref(), Some(anna_id.as_str()));

    // Enabled again, she logs in as before.
    let (status, _) = call(
        &app,
        &admin,
        "POST",
        &format!("/api/users/{anna_id}/enable"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    app.login("anna", "phone").await;
    let admin_id = user_id(&app, "admin_a").await;
    for action in ["user.disable", "user.enable"] {
        let rows = audited(&app, action).await;
        assert_eq!(rows.len(), 1, "{action}");
        assert_eq!(rows[0].0.as_deref(), Some(admin_id.as_str()), "{action}");
        assert_eq!(rows[0].1["user_id"], anna_id.as_str(), "{action}");
    }
}

#[tokio::test]
async fn a_reset_password_works_for_one_login_that_sets_the_users_own() {
    let Scene { app, admin, .. } = scene().await;
    let mut socket = app.peer("alice").await;
    let alice = user_id(&app, "alice").await;

    let (status, reset) = call(
        &app,
        &admin,
        "POST",
        &format!("/api/users/{alice}/reset-password"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{reset}");
    let temporary = reset["temporary_password"].as_str().unwrap().to_owned();
    assert!(temporary.len() >= 12, "{temporary}");
    // Her sessions ended with the old password.
    let (code, _) = tokio::time::timeout(Duration::from_secs(1), socket.until_closed())
        .await
        .expect("closed within a second")
        .unwrap();
    assert_eq!(code, Some(4003));

    let (status, _) = login_status(&app, json!({"username": "alice", "password": PASSWORD})).await;
    assert_eq!(status, 401, "the old password is gone");
    let (status, answer) =
        login_status(&app, json!({"username": "alice", "password": temporary})).await;
    assert_eq!(status, 428, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("new_password"),
        "{answer}"
    );
    for (new_password, why) in [
        (temporary.as_str(), "differ"),
        ("password1234", "too easy to guess"),
    ] {
        let (status, answer) = login_status(
            &app,
            json!({"username": "alice", "password": temporary, "new_password": new_password}),
        )
        .await;
        assert_eq!(status, 400, "{answer}");
        assert!(
            answer["error"].as_str().unwrap().contains(why),
            "{new_password}: {answer}"
        );
    }
    let (status, tokens) = login_status(
        &app,
        json!({"username": "alice", "password": temporary, "new_password": OWN_PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["access_token"].is_string());
    // From now on her own password, and only hers.
    let (status, _) =
        login_status(&app, json!({"username": "alice", "password": OWN_PASSWORD})).await;
    assert_eq!(status, 200);
    let (status, _) = login_status(&app, json!({"username": "alice", "password": temporary})).await;
    assert_eq!(status, 401);
    assert_eq!(audited(&app, "user.reset_password").await.len(), 1);
    let changes = audited(&app, "auth.password_change").await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].0.as_deref(), Some(alice.as_str()));
    // The audit trail holds no password, temporary or new.
    let details: Vec<String> = sqlx::query_scalar("SELECT detail FROM audit_log")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    assert!(
        details
            .iter()
            .all(|d| !d.contains(&temporary) && !d.contains(OWN_PASSWORD))
    );
}

#[tokio::test]
async fn a_new_role_or_clearance_closes_open_sockets_and_counts_at_once() {
    let Scene {
        app, org, admin, ..
    } = scene().await;
    let cleared = app.login("cleared", "phone").await;
    let mut socket = app.peer("cleared").await;
    let classified = app.catalog("cleared", &org.unit_a, true).await;
    let cleared_id = user_id(&app, "cleared").await;

    let (status, view) = call(
        &app,
        &admin,
        "PATCH",
        &format!("/api/users/{cleared_id}"),
        json!({"cleared": false, "role": "officer"}),
    )
    .await;
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["cleared"], false);
    assert_eq!(view["role"], "officer");
    let (code, _) = tokio::time::timeout(Duration::from_secs(1), socket.until_closed())
        .await
        .expect("closed within a second")
        .unwrap();
    assert_eq!(code, Some(4003));

    // The token she still holds now speaks for an uncleared officer.
    let (status, units) = call(
        &app,
        &cleared.access_token,
        "GET",
        "/api/units",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        !units.to_string().contains(&classified.to_string()),
        "an uncleared user is not told the classified catalog: {units}"
    );
    let (_, detail) = audited(&app, "user.update").await.pop().unwrap();
    assert_eq!(detail["user_id"], cleared_id.as_str(), "{detail}");

    // A change that touches nothing that matters to a socket leaves it open.
    let mut socket = app.peer("alice").await;
    let alice = user_id(&app, "alice").await;
    let (status, _) = call(
        &app,
        &admin,
        "PATCH",
        &format!("/api/users/{alice}"),
        json!({"display_name": "Alice Wang"}),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), socket.until_closed())
            .await
            .is_err(),
        "a new display name does not close her socket"
    );
}

#[tokio::test]
async fn units_are_created_and_moved_within_the_admins_subtree_and_never_into_a_cycle() {
    let Scene {
        app,
        org,
        admin,
        district_admin,
    } = scene().await;

    let (status, village) = call(
        &app,
        &admin,
        "POST",
        "/api/units",
        json!({"name": "Village C", "parent_id": org.unit_a}),
    )
    .await;
    assert_eq!(status, 200, "{village}");
    let village = village["id"].as_str().unwrap().to_owned();
    // Created with its catalogs, and Town A's admin sees it.
    let (_, units) = call(&app, &admin, "GET", "/api/units", Value::Null).await;
    assert!(units.to_string().contains(&village), "{units}");

    // Town A's admin reaches neither Town B nor above.
    for body in [
        json!({"name": "Village D", "parent_id": org.unit_b}),
        json!({"id": village, "parent_id": org.unit_b}),
        json!({"id": org.unit_b, "parent_id": org.unit_a}),
    ] {
        let (status, answer) = call(&app, &admin, "POST", "/api/units", body.clone()).await;
        assert_eq!(status, 404, "{body}: {answer}");
    }
    // Nor moves their own unit (out of their own reach).
    let (status, _) = call(
        &app,
        &admin,
        "POST",
        "/api/units",
        json!({"id": org.unit_a, "parent_id": village}),
    )
    .await;
    assert_eq!(status, 403);

    // The district's admin moves the village to Town B, but never a unit below itself.
    let (status, moved) = call(
        &app,
        &district_admin,
        "POST",
        "/api/units",
        json!({"id": village, "parent_id": org.unit_b, "name": "Village C (B)"}),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["parent_id"], org.unit_b.as_str());
    assert_eq!(moved["name"], "Village C (B)");
    let (status, answer) = call(
        &app,
        &district_admin,
        "POST",
        "/api/units",
        json!({"id": org.unit_b, "parent_id": village}),
    )
    .await;
    assert_eq!(status, 400, "a unit below itself: {answer}");
    let (_, units) = call(&app, &admin, "GET", "/api/units", Value::Null).await;
    assert!(
        !units.to_string().contains(&village),
        "gone from Town A: {units}"
    );
    let moves = audited(&app, "unit.move").await;
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].1["unit_id"], village.as_str());
}

#[tokio::test]
async fn admin_commands_manage_accounts_and_record_the_operating_system_user() {
    let dir = tempfile::tempdir().unwrap();
    // Short tokens: the socket of a user disabled from the command line (another process)
    // is re-checked when its credential expires.
    let mut settings = test_settings(dir.path());
    settings.access_token_ttl_secs = 2;
    let app = spawn_app_with(settings.clone()).await;
    let org = org(&app).await;
    let admin = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_zhiban-server-under-test"))
            .arg("admin")
            .args(args)
            .env("ZHIBAN_DATABASE_URL", settings.database_url())
            .env("ZHIBAN_DATA_DIR", &settings.data_dir)
            .env("ZHIBAN_NEW_PASSWORD", "")
            .env("ZHIBAN_LOG", "warn")
            .env("USER", "duty-ops")
            .output()
            .expect("admin command runs");
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        assert!(output.status.success(), "{args:?}: {stderr}");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };

    let mut socket = app.peer("anna").await;
    admin(&["disable-user", "--username", "anna"]);
    let (code, _) = tokio::time::timeout(Duration::from_secs(10), socket.until_closed())
        .await
        .expect("closed at the socket's next check")
        .unwrap();
    assert_eq!(code, Some(4003));
    let (status, _) = login_status(&app, json!({"username": "anna", "password": PASSWORD})).await;
    assert_eq!(status, 403);
    admin(&["enable-user", "--username", "anna"]);
    app.login("anna", "phone").await;

    // An empty new password: the server makes one up and prints it, once.
    let temporary = admin(&["reset-password", "--username", "bob"]);
    let (status, _) = login_status(&app, json!({"username": "bob", "password": temporary})).await;
    assert_eq!(status, 428);
    // His tablet's login asks for a password of his own and sets it in the same login.
    let tablet = tempfile::tempdir().unwrap();
    let output = crate::cli::zhiban(tablet.path())
        .args(["login", "--server", &app.url(""), "--username", "bob"])
        .env("ZHIBAN_PASSWORD", &temporary)
        .env("ZHIBAN_NEW_PASSWORD", OWN_PASSWORD)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let (status, _) =
        login_status(&app, json!({"username": "bob", "password": OWN_PASSWORD})).await;
    assert_eq!(status, 200);

    let changed = admin(&[
        "set-user",
        "--username",
        "alice",
        "--role",
        "leader",
        "--unit",
        &org.unit_b,
    ]);
    let changed: Value = serde_json::from_str(&changed).unwrap();
    assert_eq!(changed["role"], "leader");
    assert_eq!(changed["unit_id"], org.unit_b.as_str());
    let village = admin(&[
        "create-unit",
        "--name",
        "Village C",
        "--parent",
        &org.unit_a,
    ]);
    admin(&["move-unit", "--unit", &village, "--parent", &org.unit_b]);
    let listed = admin(&["list-users"]);
    assert!(
        listed
            .lines()
            .any(|l| l.contains("\"username\":\"alice\"") && l.contains("leader"))
    );

    let uid: u64 = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next()?.parse().ok())
        .expect("our real uid");
    for action in [
        "user.disable",
        "user.enable",
        "user.reset_password",
        "user.update",
        "admin.create_unit",
        "unit.move",
    ] {
        let rows = audited(&app, action).await;
        let (user, detail) = rows.last().unwrap_or_else(|| panic!("{action} audited"));
        assert_eq!(user, &None, "{action}: no user of ours ran it");
        assert_eq!(detail["os_user"]["uid"], uid, "{action}: {detail}");
        assert_eq!(detail["os_user"]["name"], "duty-ops", "{action}: {detail}");
    }
    assert!(matches!(
        app.verify_audit().await,
        zhiban_server::audit::Verdict::Intact { .. }
    ));
}

/// An admin without clearance, as an attacker would use the account API to read classified
/// items: clear a new account or an existing one, or reset a cleared user's password and log
/// in as them. Each is refused and changes nothing; a cleared admin may.
#[tokio::test]
async fn an_uncleared_admin_cannot_make_or_take_over_a_cleared_account() {
    let Scene {
        app, org, admin, ..
    } = scene().await;
    let alice = user_id(&app, "alice").await;
    let cleared = user_id(&app, "cleared").await;
    for (method, path, body) in [
        (
            "POST",
            "/api/users".to_owned(),
            json!({"username": "mole", "password": PASSWORD, "unit_id": org.unit_a,
                   "role": "officer", "cleared": true}),
        ),
        (
            "PATCH",
            format!("/api/users/{alice}"),
            json!({"cleared": true}),
        ),
        (
            "POST",
            format!("/api/users/{cleared}/reset-password"),
            json!({}),
        ),
    ] {
        let (status, answer) = call(&app, &admin, method, &path, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("cleared admin"),
            "{answer}"
        );
    }
    app.login("cleared", "still theirs").await;
    let (_, users) = call(&app, &admin, "GET", "/api/users", Value::Null).await;
    let listed = users.to_string();
    assert!(!listed.contains("mole"), "{listed}");
    assert_eq!(audited(&app, "user.reset_password").await.len(), 0);

    // Clearance is a cleared admin's to give.
    app.create_user("admin_c", &org.unit_a, Role::Admin, true)
        .await;
    let cleared_admin = app.login("admin_c", "admin desk").await.access_token;
    let (status, answer) = call(
        &app,
        &cleared_admin,
        "PATCH",
        &format!("/api/users/{alice}"),
        json!({"cleared": true}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["cleared"], true);
}
