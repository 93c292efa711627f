//! Nothing confirmed is lost: across a clean restart, across `kill -9` of the server process
//! right after it confirmed a change, and across snapshot compaction.

use std::time::Duration;

use automerge::Automerge;
use zhiban_protocol::DocumentId;
use zhiban_server::access::Role;

use crate::helpers::{
    PASSWORD, RawPeer, TestApp, edit, login, new_document, org, postgres_settings, spawn_app,
    spawn_app_with, start_server_process, test_settings, text,
};

#[tokio::test]
async fn documents_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    survive_a_restart(test_settings(dir.path())).await;
}

#[tokio::test]
async fn documents_survive_a_restart_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _database) = postgres_settings(dir.path()).await;
    survive_a_restart(settings).await;
}

async fn survive_a_restart(settings: zhiban_server::Settings) {
    let app = spawn_app_with(settings.clone()).await;
    org(&app).await;
    let mut alice = app.peer("alice").await;
    let id = DocumentId::random();
    let mut doc = new_document(&[("title", "Gas leak")]);
    assert!(alice.sync(id, &mut doc).await.unwrap());
    drop(alice);
    app.stop().await.unwrap();

    let app = spawn_app_with(settings).await;
    let mut anna = app.peer("anna").await;
    let mut copy = Automerge::new();
    assert!(anna.sync(id, &mut copy).await.unwrap());
    assert_eq!(copy.get_heads(), doc.get_heads());
    assert_eq!(text(&copy, "title").as_deref(), Some("Gas leak"));
}

#[tokio::test]
async fn snapshots_fold_chunks_without_losing_changes() {
    let dir = tempfile::tempdir().unwrap();
    fold_chunks(test_settings(dir.path())).await;
}

#[tokio::test]
async fn snapshots_fold_chunks_without_losing_changes_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _database) = postgres_settings(dir.path()).await;
    fold_chunks(settings).await;
}

async fn fold_chunks(mut settings: zhiban_server::Settings) {
    settings.snapshot_after_chunks = 4;
    let app = spawn_app_with(settings.clone()).await;
    org(&app).await;
    let mut alice = app.peer("alice").await;
    let id = DocumentId::random();
    let mut doc = new_document(&[("title", "Storm")]);
    let mut state = automerge::sync::State::new();
    for round in 0..10 {
        edit(&mut doc, &format!("step{round}"), "done");
        assert!(alice.sync_with(id, &mut doc, &mut state).await.unwrap());
    }
    assert!(app.chunk_rows(id).await <= 4, "chunks were not folded");
    drop(alice);
    app.stop().await.unwrap();

    let app = spawn_app_with(settings).await;
    let mut copy = Automerge::new();
    assert!(app.peer("anna").await.sync(id, &mut copy).await.unwrap());
    assert_eq!(copy.get_heads(), doc.get_heads());
    assert_eq!(text(&copy, "step9").as_deref(), Some("done"));
}

#[tokio::test]
async fn kill_9_right_after_a_confirmation_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    kill_9(test_settings(dir.path())).await;
}

#[tokio::test]
async fn kill_9_right_after_a_confirmation_loses_nothing_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _database) = postgres_settings(dir.path()).await;
    kill_9(settings).await;
}

async fn kill_9(settings: zhiban_server::Settings) {
    {
        let pool = zhiban_server::db::connect(&settings.database_url())
            .await
            .unwrap();
        let key = zhiban_server::keys::Keys::load(&settings, &pool)
            .await
            .unwrap();
        let unit = zhiban_server::accounts::create_unit(
            &pool,
            &key,
            "Town A",
            None,
            zhiban_server::clock::system_ms(),
        )
        .await
        .unwrap();
        for name in ["alice", "anna"] {
            zhiban_server::accounts::create_user(
                &pool,
                &key,
                zhiban_server::units::NewUser {
                    username: name,
                    display_name: None,
                    password: PASSWORD,
                    unit_id: &unit,
                    role: Role::Officer,
                    cleared: false,
                },
                zhiban_server::clock::system_ms(),
            )
            .await
            .unwrap();
        }
        pool.close().await;
    }

    let mut server = start_server_process(&settings, &[]).await;
    let mut alice = crate::helpers::peer_at(&server.address, "alice").await;
    let id = DocumentId::random();
    let mut doc = new_document(&[("title", "Chemical spill")]);
    let mut state = automerge::sync::State::new();
    for round in 0..20 {
        edit(&mut doc, &format!("followup{round}"), "reported");
        // Returns as soon as the server's sync message reports our heads.
        alice
            .push_until_acknowledged(id, &mut doc, &mut state)
            .await
            .unwrap();
    }
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();

    let server = start_server_process(&settings, &[]).await;
    let mut anna = crate::helpers::peer_at(&server.address, "anna").await;
    let mut copy = Automerge::new();
    assert!(anna.sync(id, &mut copy).await.unwrap());
    assert_eq!(
        copy.get_heads(),
        doc.get_heads(),
        "every confirmed change is there"
    );
    assert_eq!(text(&copy, "followup19").as_deref(), Some("reported"));
}

#[tokio::test]
async fn a_restart_keeps_users_and_the_signing_key() {
    let app = spawn_app().await;
    org(&app).await;
    let session = app.login("alice", "phone").await;
    let (settings, _dir) = app.stop_keeping_data().await;
    let app = spawn_app_with(settings).await;
    let me = app
        .http
        .get(app.url("/api/me"))
        .bearer_auth(&session.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        me.status(),
        200,
        "tokens issued before the restart still work"
    );
}

#[tokio::test]
async fn a_failing_database_delays_the_acknowledgement_but_loses_nothing() {
    let app = spawn_app().await;
    org(&app).await;
    let mut alice = app.peer("alice").await;
    let id = DocumentId::random();
    let mut doc = new_document(&[("title", "Power outage")]);
    let mut state = automerge::sync::State::new();
    assert!(alice.sync_with(id, &mut doc, &mut state).await.unwrap());

    // Every chunk insert now fails, as on a full disk.
    sqlx::query(
        "CREATE TRIGGER refuse_chunks BEFORE INSERT ON document_chunks \
         BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    edit(&mut doc, "status", "substation down");
    let message = automerge::sync::SyncDoc::generate_sync_message(&doc, &mut state).unwrap();
    alice.send_sync(id, message.encode()).await.unwrap();
    // No acknowledgement while the database refuses the write.
    assert!(
        alice.recv_within(Duration::from_millis(700)).await.is_err(),
        "the server acknowledged a change it could not store"
    );

    sqlx::query("DROP TRIGGER refuse_chunks")
        .execute(&app.pool)
        .await
        .unwrap();
    // The server retries on its own; the acknowledgement follows.
    assert!(alice.sync_with(id, &mut doc, &mut state).await.unwrap());
    drop(alice);
    let mut copy = Automerge::new();
    assert!(app.peer("anna").await.sync(id, &mut copy).await.unwrap());
    assert_eq!(text(&copy, "status").as_deref(), Some("substation down"));
}

#[tokio::test]
async fn the_admin_commands_set_up_a_unit_and_a_user_who_can_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path());
    let admin_with = |password: &str, args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_zhiban-server-under-test"))
            .arg("admin")
            .args(args)
            .env("ZHIBAN_DATABASE_URL", settings.database_url())
            // The keys (the audit key among them) are the server's: same data directory.
            .env("ZHIBAN_DATA_DIR", &settings.data_dir)
            .env("ZHIBAN_NEW_PASSWORD", password)
            .env("ZHIBAN_LOG", "warn")
            .output()
            .expect("admin command runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).trim().to_owned(),
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        )
    };
    let admin = |args: &[&str]| admin_with(PASSWORD, args);
    let (ok, district, _) = admin(&["create-unit", "--name", "District office"]);
    assert!(ok);
    let (ok, town, _) = admin(&["create-unit", "--name", "Town A", "--parent", &district]);
    assert!(ok);
    let (ok, _, _) = admin(&[
        "create-user",
        "--username",
        "wang",
        "--unit",
        &town,
        "--role",
        "leader",
        "--cleared",
    ]);
    assert!(ok);
    // Passwords: never an argument, at least 12 characters, not a common one.
    let (ok, _, error) = admin(&[
        "create-user",
        "--username",
        "li",
        "--password",
        PASSWORD,
        "--unit",
        &town,
        "--role",
        "officer",
    ]);
    assert!(!ok && error.contains("--password"), "{error}");
    for (weak, why) in [
        ("Zx9!kq", "at least 12 characters"),
        ("password1234", "too easy to guess"),
        ("qwertyuiop12", "too easy to guess"),
    ] {
        let (ok, _, error) = admin_with(
            weak,
            &[
                "create-user",
                "--username",
                "li",
                "--unit",
                &town,
                "--role",
                "officer",
            ],
        );
        assert!(!ok && error.contains(why), "{weak}: {error}");
    }
    let (ok, _, error) = admin(&[
        "create-user",
        "--username",
        "wang",
        "--unit",
        &town,
        "--role",
        "leader",
    ]);
    assert!(!ok, "a taken username is refused");
    assert!(error.contains("taken"), "{error}");
    let (ok, _, error) = admin(&[
        "create-unit",
        "--name",
        "Orphan",
        "--parent",
        "no-such-unit",
    ]);
    assert!(!ok);
    assert!(error.contains("no unit"), "{error}");
    let (ok, listing, _) = admin(&["list-units"]);
    assert!(ok);
    assert_eq!(listing.lines().count(), 2);
    assert!(
        listing.contains(&format!("\"parent_id\":\"{district}\"")),
        "{listing}"
    );

    let server = start_server_process(&settings, &[]).await;
    let session = login(&server.address, "wang").await;
    assert!(!session.access_token.is_empty());
    let (ok, report, _) = admin(&["verify-audit"]);
    assert!(ok);
    // Two units, one user (the refused ones were not created), one login.
    assert_eq!(report, "audit trail intact: 4 rows");
}

/// seq, action, user, device, document, detail
type AuditRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
);

#[tokio::test]
async fn the_audit_trail_records_who_did_what_and_detects_tampering() {
    let app = spawn_app().await;
    org(&app).await;
    let session = app.login("alice", "phone").await;
    let mut alice = RawPeer::connect(&app.sync_url(&session.access_token).await, &session.peer_id)
        .await
        .unwrap();
    let id = DocumentId::random();
    let mut doc = new_document(&[("title", "Bridge cracked")]);
    let mut state = automerge::sync::State::new();
    assert!(alice.sync_with(id, &mut doc, &mut state).await.unwrap());
    edit(&mut doc, "status", "closed");
    assert!(alice.sync_with(id, &mut doc, &mut state).await.unwrap());
    let failed = app
        .http
        .post(app.url("/api/auth/login"))
        .json(&serde_json::json!({"username": "alice", "password": "guess"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 401);

    let rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT seq, action, user_id, device_id, document_id, detail FROM audit_log ORDER BY seq",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let of = |action: &str| rows.iter().filter(|r| r.1 == action).collect::<Vec<_>>();
    assert_eq!(of("auth.login").len(), 1);
    assert_eq!(
        of("auth.login")[0].2.as_deref(),
        Some(session.user_id.as_str())
    );
    assert_eq!(
        of("auth.login")[0].3.as_deref(),
        Some(session.device_id.as_str())
    );
    assert_eq!(of("document.register").len(), 1);
    let changes = of("sync.change");
    assert_eq!(changes.len(), 2, "two changes accepted through sync");
    for change in &changes {
        assert_eq!(change.2.as_deref(), Some(session.user_id.as_str()));
        assert_eq!(change.4.as_deref(), Some(id.to_string().as_str()));
    }
    let last_change = doc.get_heads()[0].to_string();
    assert!(
        changes[1].5.contains(&last_change),
        "the change hash is recorded"
    );
    assert_eq!(of("auth.login_failed").len(), 1);
    assert_eq!(
        app.verify_audit().await,
        zhiban_server::audit::Verdict::Intact {
            rows: rows.len() as i64
        }
    );

    // Someone with database access rewrites history: the chain breaks at that row.
    let victim = changes[0].0;
    sqlx::query("UPDATE audit_log SET user_id = 'somebody-else' WHERE seq = $1")
        .bind(victim)
        .execute(&app.pool)
        .await
        .unwrap();
    match app.verify_audit().await {
        zhiban_server::audit::Verdict::Broken { seq, .. } => assert_eq!(seq, victim),
        intact => panic!("tampering not detected: {intact:?}"),
    }
    // Removing a row instead is caught as well.
    sqlx::query("UPDATE audit_log SET user_id = $1 WHERE seq = $2")
        .bind(&session.user_id)
        .bind(victim)
        .execute(&app.pool)
        .await
        .unwrap();
    assert!(matches!(
        app.verify_audit().await,
        zhiban_server::audit::Verdict::Intact { .. }
    ));
    sqlx::query("DELETE FROM audit_log WHERE seq = $1")
        .bind(victim)
        .execute(&app.pool)
        .await
        .unwrap();
    match app.verify_audit().await {
        zhiban_server::audit::Verdict::Broken { seq, .. } => assert_eq!(seq, victim),
        intact => panic!("deletion not detected: {intact:?}"),
    }
}

/// seq, at, user, device, action, document, detail: what a row's hash covers.
type ChainedRow = (
    i64,
    i64,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    String,
);

/// What an attacker with the database but not the key does: alters row `from`, then
/// rewrites the hashes from there on, as a short script can, with a key of their own (None:
/// plain SHA-256, as the chain was before it was keyed).
async fn rechain(app: &TestApp, from: i64, key: Option<&zhiban_server::audit::AuditKey>) {
    sqlx::query("UPDATE audit_log SET user_id = 'somebody-else' WHERE seq = $1")
        .bind(from)
        .execute(&app.pool)
        .await
        .unwrap();
    let mut prev: String = if from == 1 {
        zhiban_server::audit::GENESIS.to_owned()
    } else {
        sqlx::query_scalar("SELECT hash FROM audit_log WHERE seq = $1")
            .bind(from - 1)
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    let rows: Vec<ChainedRow> = sqlx::query_as(
        "SELECT seq, at, user_id, device_id, action, document_id, detail FROM audit_log \
             WHERE seq >= $1 ORDER BY seq",
    )
    .bind(from)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    for (seq, at, user_id, device_id, action, document_id, detail) in rows {
        let hash = zhiban_server::audit::hash(
            key,
            &prev,
            &zhiban_server::audit::Chained {
                seq,
                at,
                user_id: user_id.as_deref(),
                device_id: device_id.as_deref(),
                action: &action,
                document_id: document_id.as_deref(),
                detail: &detail,
            },
        );
        sqlx::query("UPDATE audit_log SET prev_hash = $1, hash = $2 WHERE seq = $3")
            .bind(&prev)
            .bind(&hash)
            .bind(seq)
            .execute(&app.pool)
            .await
            .unwrap();
        prev = hash;
    }
}

/// The chain is keyed: rewritten and re-chained without the audit key, it fails at the first
/// rewritten row; rewritten whole (as if never keyed) it no longer reaches the signed
/// checkpoint; and cutting off the newest rows is caught by the checkpoint too.
#[tokio::test]
async fn the_audit_trail_cannot_be_rewritten_without_its_key_nor_cut_short() {
    use zhiban_server::audit::{AuditKey, Verdict, checkpoint};
    let app = spawn_app().await;
    org(&app).await;
    for user in ["alice", "bob", "anna"] {
        app.login(user, "phone").await;
    }
    let keys = app.keys().await;
    let file = app.settings.audit_checkpoint_file();
    let head = checkpoint(
        &app.pool,
        &keys.audit,
        &file,
        zhiban_server::clock::system_ms(),
    )
    .await
    .unwrap()
    .expect("a head to sign");
    let Verdict::Intact { rows } = app.verify_audit().await else {
        panic!("intact at first");
    };
    assert_eq!(rows, head);

    rechain(&app, 4, Some(&AuditKey::from_bytes([7; 32]))).await;
    assert!(
        matches!(app.verify_audit().await, Verdict::Broken { seq: 4, .. }),
        "a guessed key"
    );
    rechain(&app, 4, None).await;
    assert!(
        matches!(app.verify_audit().await, Verdict::Broken { seq: 4, .. }),
        "unkeyed rows after keyed ones"
    );
    rechain(&app, 1, None).await;
    match app.verify_audit().await {
        // (The server signs a head at start too: the first checkpoint that differs.)
        Verdict::Broken { seq, reason } => {
            assert!(seq <= head, "{seq}: {reason}");
            assert!(reason.contains("checkpoint"), "{reason}");
        }
        intact => panic!("a whole unkeyed rewrite passed: {intact:?}"),
    }

    // Another trail, its newest rows dropped after a checkpoint saw them.
    let app = spawn_app().await;
    org(&app).await;
    app.login("alice", "phone").await;
    let keys = app.keys().await;
    let file = app.settings.audit_checkpoint_file();
    let head = checkpoint(
        &app.pool,
        &keys.audit,
        &file,
        zhiban_server::clock::system_ms(),
    )
    .await
    .unwrap()
    .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq > $1")
        .bind(head - 2)
        .execute(&app.pool)
        .await
        .unwrap();
    match app.verify_audit().await {
        Verdict::Broken { seq, reason } => {
            assert_eq!(seq, head);
            assert!(reason.contains("missing"), "{reason}");
        }
        intact => panic!("a cut-off tail passed: {intact:?}"),
    }
    // A forged checkpoint line is refused as such.
    std::fs::write(&file, format!("{} {} 0 {}\n", head, "00", "ab".repeat(32))).unwrap();
    assert!(matches!(
        app.verify_audit().await,
        Verdict::Broken { seq: 0, .. }
    ));
}
