//! Search benchmark (D20): `GET /api/search` over 100,000 records on the real server with
//! SQLite, through HTTP, as an officer of one unit among ten. Prints a table.
//!
//! Records are written straight into the projection tables (what the server's projection
//! writes after each change) so that the setup takes seconds, not the time of 100,000 syncs.
//!
//! Run: `cargo bench -p zhiban-tests --bench search`
// Test and measurement code: a failed expectation should panic, and casts of counts and
// durations for printing are fine.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::time::{Duration, Instant};

use zhiban_server::access::Role;
use zhiban_server::units::NewUser;
use zhiban_server::{Settings, accounts, db};

const RECORDS: usize = 100_000;
const UNITS: usize = 10;
const RUNS: usize = 100;
const PASSWORD: &str = "longer bench passphrase";

const WORDS: [&str; 40] = [
    "山体滑坡",
    "交通事故",
    "火灾",
    "农民工",
    "工地",
    "群众",
    "聚集",
    "道路",
    "封闭",
    "救援",
    "消防",
    "医院",
    "伤员",
    "暴雨",
    "积水",
    "停电",
    "燃气",
    "泄漏",
    "学校",
    "食物中毒",
    "疫情",
    "排查",
    "值班",
    "领导",
    "批示",
    "续报",
    "终报",
    "现场",
    "村民",
    "河道",
    "桥梁",
    "隧道",
    "高速",
    "货车",
    "客车",
    "水库",
    "堤防",
    "巡查",
    "转移",
    "安置",
];

fn main() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let settings = Settings {
        listen: "127.0.0.1:0".parse()?,
        data_dir: dir.path().to_owned(),
        log: "warn".into(),
        ..Settings::default()
    };
    let pool = db::connect(&settings.database_url()).await?;
    let key = zhiban_server::keys::Keys::load(&settings, &pool).await?;
    let district = accounts::create_unit(
        &pool,
        &key,
        "District",
        None,
        zhiban_server::clock::system_ms(),
    )
    .await?;
    let mut unit_ids = Vec::new();
    for i in 0..UNITS {
        unit_ids.push(
            accounts::create_unit(
                &pool,
                &key,
                &format!("Town {i}"),
                Some(&district),
                zhiban_server::clock::system_ms(),
            )
            .await?,
        );
    }
    accounts::create_user(
        &pool,
        &key,
        NewUser {
            username: "officer",
            display_name: None,
            password: PASSWORD,
            unit_id: &unit_ids[0],
            role: Role::Officer,
            cleared: false,
        },
        zhiban_server::clock::system_ms(),
    )
    .await?;

    let started = Instant::now();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut tx = pool.begin().await?;
    for i in 0..RECORDS {
        let id = zhiban_protocol::DocumentId::random().to_string();
        let unit = &unit_ids[i % UNITS];
        let words = 8 + next() % 12;
        let body: Vec<&str> = (0..words).map(|_| WORDS[(next() % 40) as usize]).collect();
        let body = format!("{} 第{i}号\n{}", body[0], body.join(""));
        sqlx::query(
            "INSERT INTO documents (id, unit_id, classification, kind, created_by, created_at) \
             VALUES ($1, $2, $3, 'record', NULL, $4)",
        )
        .bind(&id)
        .bind(unit)
        .bind(if i % 20 == 0 { "classified" } else { "plain" })
        .bind(i as i64)
        .execute(&mut *tx)
        .await?;
        // What the projection writes for a record whose text is one part: its status row
        // (the hits' titles) and the part the FTS5 row is keyed by.
        sqlx::query(
            "INSERT INTO records (document_id, kind, unit_id, classified, title, problems, \
             warnings, updated_at) VALUES ($1, 'incident', $2, $3, $4, '[]', '[]', $5)",
        )
        .bind(&id)
        .bind(unit)
        .bind(i64::from(i % 20 == 0))
        .bind(body.lines().next().unwrap_or_default())
        .bind(i as i64)
        .execute(&mut *tx)
        .await?;
        let rowid: i64 = sqlx::query_scalar(
            "INSERT INTO search_parts (document_id, list, position) VALUES ($1, '', 0) \
             RETURNING id",
        )
        .bind(&id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO search_index (rowid, body) VALUES ($1, $2)")
            .bind(rowid)
            .bind(&body)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let setup = started.elapsed();

    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(zhiban_server::launch(settings, listener, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let login: serde_json::Value = http
        .post(format!("{base}/api/auth/login"))
        .json(&serde_json::json!({"username": "officer", "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let token = login["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    println!(
        "{RECORDS} records in {UNITS} units (5% classified), loaded in {:.1} s",
        setup.as_secs_f64()
    );
    println!("| query | hits (first 20) | median | p99 |");
    println!("| --- | --- | --- | --- |");
    for (query, label) in [
        ("讨薪", "2 characters, absent"),
        ("火灾", "2 characters, common"),
        ("食物中毒", "4 characters"),
        ("第4250号", "5 characters, one record"),
        ("山体滑坡交通事故", "8 characters"),
    ] {
        let url = format!("{base}/api/search?q={}&limit=20", encode(query));
        let mut times = Vec::with_capacity(RUNS);
        let mut hits = 0;
        for _ in 0..RUNS {
            let begun = Instant::now();
            let body: serde_json::Value = http
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await?
                .json()
                .await?;
            times.push(begun.elapsed());
            hits = body["hits"].as_array().map_or(0, Vec::len);
        }
        times.sort();
        println!(
            "| {query} ({label}) | {hits} | {:.1} ms | {:.1} ms |",
            ms(times[RUNS / 2]),
            ms(times[RUNS * 99 / 100 - 1])
        );
    }
    println!(
        "machine: {} cores; server and client in one process",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    let _ = stop.send(());
    server.await??;
    Ok(())
}

fn encode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
