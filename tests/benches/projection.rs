//! Projection benchmark: how many changes per second the projection keeps up with, computing
//! the rows from the document and writing them through the storage writer's path (SQLite,
//! synchronous=FULL, 100 changes per transaction as under load). Prints a table.
//!
//! - incidents: each change is a new or edited incident (the common case);
//! - a growing duty log: each change appends one call to the same shift's log, so the
//!   projection rewrites a longer log each time (the projection is not incremental).
//!
//! Run: `cargo bench -p zhiban-tests --bench projection`

use std::time::Instant;

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT};
use zhiban_protocol::DocumentId;
use zhiban_server::storage::{Backend, DocumentMeta, Write, write_now};
use zhiban_server::{Settings, db, projection, units};

const INCIDENTS: usize = 5_000;
const LOG_ENTRIES: usize = 1_000;
const BATCH: usize = 100;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let settings = Settings {
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
    let pool = db::connect(&settings.database_url()).await?;
    let backend = Backend { sqlite: true };
    let unit_id = units::create_unit(&pool, "Bench", None).await?;
    let meta = DocumentMeta {
        unit_id: unit_id.clone(),
        classified: false,
        catalog: false,
        created_by: None,
    };

    // Incidents: register each, then project it.
    let ids: Vec<DocumentId> = (0..INCIDENTS).map(|_| DocumentId::random()).collect();
    let registrations: Vec<Write> = ids
        .iter()
        .map(|id| Write::RegisterDocument {
            document_id: *id,
            meta: meta.clone(),
        })
        .collect();
    write_now(&pool, backend, &registrations).await?;
    let started = Instant::now();
    for (batch, chunk) in ids.chunks(BATCH).enumerate() {
        let mut writes = Vec::with_capacity(BATCH);
        for (offset, id) in chunk.iter().enumerate() {
            let number = batch * BATCH + offset;
            let mut doc = Automerge::new();
            doc.transact::<_, _, automerge::AutomergeError>(|tx| {
                tx.put(ROOT, "type", "incident")?;
                tx.put(ROOT, "title", format!("第{number}号 山体滑坡 道路中断"))?;
                tx.put(ROOT, "grade", "red")?;
                tx.put(ROOT, "category", "natural_disaster")?;
                tx.put(ROOT, "location", "G4 km 1032")?;
                tx.put(ROOT, "known_at", number as i64)?;
                let reports = tx.put_object(ROOT, "reports", ObjType::List)?;
                let first = tx.insert_object(&reports, 0, ObjType::Map)?;
                tx.put(&first, "kind", "first")?;
                tx.put(&first, "at", number as i64 + 1)?;
                tx.put(&first, "text", "两车追尾，一人受伤，已封闭车道")?;
                Ok(())
            })
            .map_err(|failure| failure.error)?;
            if let Some(rows) = projection::project(*id, &meta, &doc) {
                writes.push(Write::Project(Box::new(rows)));
            }
        }
        write_now(&pool, backend, &writes).await?;
    }
    let incidents = INCIDENTS as f64 / started.elapsed().as_secs_f64();

    // One duty log growing by one call per change.
    let log = DocumentId::random();
    write_now(
        &pool,
        backend,
        &[Write::RegisterDocument {
            document_id: log,
            meta: meta.clone(),
        }],
    )
    .await?;
    let mut doc = Automerge::new();
    let entries = doc
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(ROOT, "type", "duty_log")?;
            tx.put(ROOT, "title", "夜班")?;
            tx.put_object(ROOT, "entries", ObjType::List)
        })
        .map_err(|failure| failure.error)?
        .result;
    let started = Instant::now();
    let mut writes = Vec::with_capacity(BATCH);
    for number in 0..LOG_ENTRIES {
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            let entry = tx.insert_object(&entries, number, ObjType::Map)?;
            tx.put(&entry, "received_at", number as i64)?;
            tx.put(
                &entry,
                "content",
                format!("第{number}个来电：群众反映道路积水"),
            )?;
            tx.put(&entry, "handler", "值班员")?;
            Ok(())
        })
        .map_err(|failure| failure.error)?;
        if let Some(rows) = projection::project(log, &meta, &doc) {
            writes.push(Write::Project(Box::new(rows)));
        }
        if writes.len() == BATCH {
            write_now(&pool, backend, &std::mem::take(&mut writes)).await?;
        }
    }
    write_now(&pool, backend, &writes).await?;
    let log_rate = LOG_ENTRIES as f64 / started.elapsed().as_secs_f64();

    println!("| workload | changes/s |");
    println!("| --- | --- |");
    println!(
        "| incidents ({INCIDENTS}, one change each, {BATCH} per transaction) | {incidents:.0} |"
    );
    println!(
        "| one duty log growing to {LOG_ENTRIES} calls (one change per call) | {log_rate:.0} |"
    );
    println!(
        "machine: {} cores; SQLite synchronous=FULL; includes building the document's JSON view, the checks and the rows, and for each new red incident its alert (policy, on-duty lookup, first step, follow-up deadline)",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    Ok(())
}
