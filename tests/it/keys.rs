//! Keys live in files, never in the database (D24): a copy of the database file, as a backup
//! would hold it, contains no key, and a deployment that kept its keys in the database has
//! them moved out on its next start, still valid.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use zhiban_server::access::Role;

use crate::helpers::{TestApp, spawn_app, spawn_app_with, test_settings};

const NAMES: [&str; 3] = ["jwt", "vapid", "catalog"];

fn key_file(app: &TestApp, name: &str) -> [u8; 32] {
    let path = app
        .settings
        .data_dir
        .join("keys")
        .join(format!("{name}.key"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{name}.key");
    let text = std::fs::read_to_string(&path).unwrap();
    hex::decode(text.trim()).unwrap().try_into().unwrap()
}

/// The database and its WAL, as a backup copies them.
fn database_bytes(data_dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for file in ["zhiban.db", "zhiban.db-wal"] {
        if let Ok(content) = std::fs::read(data_dir.join(file)) {
            bytes.extend(content);
        }
    }
    assert!(!bytes.is_empty());
    bytes
}

fn holds(haystack: &[u8], key: &[u8; 32]) -> bool {
    let hex = hex::encode(key);
    haystack.windows(32).any(|window| window == key)
        || haystack.windows(64).any(|window| window == hex.as_bytes())
}

async fn secrets_in_table(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM server_secrets")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_copy_of_the_database_holds_no_key() {
    let app = spawn_app().await;
    let unit = app.create_unit("Town A", None).await;
    app.create_user("alice", &unit, Role::Officer, false).await;
    app.login("alice", "phone").await;
    let dir_mode = std::fs::metadata(app.settings.data_dir.join("keys"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    assert_eq!(secrets_in_table(&app).await, 0);
    let copy = database_bytes(&app.settings.data_dir);
    for name in NAMES {
        assert!(
            !holds(&copy, &key_file(&app, name)),
            "{name} key in the database"
        );
    }
}

#[tokio::test]
async fn keys_kept_in_the_database_move_out_and_stay_valid() {
    let dir = tempfile::tempdir().unwrap();
    let settings = test_settings(dir.path());
    let old: Vec<[u8; 32]> = (0..3u8).map(|n| [0xA0 + n; 32]).collect();
    {
        // A deployment from before key files: its keys in the table.
        let pool = zhiban_server::db::connect(&settings.database_url())
            .await
            .unwrap();
        for (name, key) in NAMES.iter().zip(&old) {
            sqlx::query("INSERT INTO server_secrets (name, value) VALUES ($1, $2)")
                .bind(*name)
                .bind(key.to_vec())
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
    }
    assert!(
        holds(&database_bytes(dir.path()), &old[0]),
        "the test's premise"
    );
    let app = spawn_app_with(settings).await;
    let unit = app.create_unit("Town A", None).await;
    app.create_user("alice", &unit, Role::Officer, false).await;
    app.login("alice", "phone").await;
    for (name, key) in NAMES.iter().zip(&old) {
        assert_eq!(key_file(&app, name), *key, "{name} kept its value");
    }
    assert_eq!(secrets_in_table(&app).await, 0);
    let copy = database_bytes(dir.path());
    for (name, key) in NAMES.iter().zip(&old) {
        assert!(!holds(&copy, key), "{name} key still in the database file");
    }
}
