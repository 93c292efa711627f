//! Projection benchmark: how many changes per second the commit path keeps up with, each
//! change as a document's actor hands it over (its bytes, its record's rows computed from the
//! typed record, its audit rows, and the alert rules), committed by the real group-commit
//! writer on SQLite with synchronous=FULL, 100 changes per transaction as under load. Prints a
//! table.
//!
//! - incidents: each change is a new red incident (registration, rows, alert and deadline);
//! - a growing duty log: each change appends one call to the same shift's log; the rows are
//!   projected from the change's patches, so a call costs the same at entry 1,000 as at 1.
//!
//! Run: `cargo bench -p zhiban-tests --bench projection`
// Test and measurement code: a failed expectation should panic, and casts of counts and
// durations for printing are fine.
#![allow(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap,
    clippy::cast_sign_loss
)]

use std::time::Instant;

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT};
use zhiban_protocol::DocumentId;
use zhiban_server::audit::Entry;
use zhiban_server::commit::{Committer, DocumentWork, Handoff, Work};
use zhiban_server::documents::{Chunk, DocumentMeta};
use zhiban_server::records::{self, Change, Source};
use zhiban_server::{Settings, clock::Clock, db};

const INCIDENTS: usize = 5_000;
const LOG_ENTRIES: usize = 1_000;
const BATCH: usize = 100;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Runtime::new()?.block_on(run())
}

/// Commits a batch in order, all queued at once so that the writer groups them.
async fn commit_all(committer: &Committer, works: Vec<Work>) -> anyhow::Result<()> {
    for outcome in committer.commit_all(works).await? {
        anyhow::ensure!(outcome.flagged.is_none(), "flagged: {:?}", outcome.flagged);
    }
    Ok(())
}

fn audit(document_id: DocumentId, action: &'static str) -> Entry {
    Entry::new(action)
        .document(document_id)
        .detail(serde_json::json!({"peer": "bench"}))
}

async fn run() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let settings = Settings {
        data_dir: dir.path().to_owned(),
        ..Settings::default()
    };
    let url = settings.database_url();
    let pool = db::connect(&url).await?;
    let backend = db::Backend::of_url(&url);
    let (outbox, _pushes) = tokio::sync::mpsc::unbounded_channel();
    let handoff = Handoff {
        outbox,
        wake: Default::default(),
    };
    let now = Clock::system();
    let key = zhiban_server::keys::Keys::load(&settings, &pool).await?;
    let (committer, writer) = Committer::spawn(
        pool.clone(),
        backend,
        now.clone(),
        (zhiban_records::Intervals::default(), key.audit.clone()),
        handoff,
    );
    let unit_id =
        zhiban_server::accounts::create_unit(&pool, &key, "Bench", None, now.now_ms()).await?;
    let meta = DocumentMeta {
        unit_id: unit_id.clone(),
        classified: false,
        catalog: false,
        created_by: None,
    };
    let started_at = now.now_ms();

    // Incidents: each a new document, registered, stored and projected in one commit.
    let started = Instant::now();
    for batch in 0..INCIDENTS / BATCH {
        let mut works = Vec::with_capacity(BATCH);
        for offset in 0..BATCH {
            let number = batch * BATCH + offset;
            let id = DocumentId::random();
            let mut doc = Automerge::new();
            let known_at = started_at + i64::try_from(number)?;
            doc.transact::<_, _, automerge::AutomergeError>(|tx| {
                tx.put(ROOT, "type", "incident")?;
                tx.put(ROOT, "title", format!("第{number}号 山体滑坡 道路中断"))?;
                tx.put(ROOT, "grade", "red")?;
                tx.put(ROOT, "category", "natural_disaster")?;
                tx.put(ROOT, "location", "G4 km 1032")?;
                tx.put(ROOT, "known_at", known_at)?;
                let reports = tx.put_object(ROOT, "reports", ObjType::List)?;
                let first = tx.insert_object(&reports, 0, ObjType::Map)?;
                tx.put(&first, "kind", "first")?;
                tx.put(&first, "at", known_at + 1)?;
                tx.put(&first, "text", "两车追尾，一人受伤，已封闭车道")?;
                Ok(())
            })
            .map_err(|failure| failure.error)?;
            let source = Source {
                document_id: id,
                meta: &meta,
                doc: &doc,
                receipts: &Default::default(),
            };
            works.push(Work::Document(Box::new(DocumentWork {
                document_id: id,
                register: Some(meta.clone()),
                chunk: Chunk::Changes {
                    seq: 0,
                    data: doc.save(),
                },
                receipts: Vec::new(),
                actors: Vec::new(),
                record: records::project(&source, Change::All, true),
                audit: vec![audit(id, "document.register"), audit(id, "sync.change")],
            })));
        }
        commit_all(&committer, works).await?;
    }
    let incidents = INCIDENTS as f64 / started.elapsed().as_secs_f64();

    // One duty log growing by one call per change.
    let log = DocumentId::random();
    let mut doc = Automerge::new();
    let entries = doc
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(ROOT, "type", "duty_log")?;
            tx.put(ROOT, "title", "夜班")?;
            tx.put_object(ROOT, "entries", ObjType::List)
        })
        .map_err(|failure| failure.error)?
        .result;
    let source = Source {
        document_id: log,
        meta: &meta,
        doc: &doc,
        receipts: &Default::default(),
    };
    let first = Work::Document(Box::new(DocumentWork {
        document_id: log,
        register: Some(meta.clone()),
        chunk: Chunk::Changes {
            seq: 0,
            data: doc.save(),
        },
        receipts: Vec::new(),
        actors: Vec::new(),
        record: records::project(&source, Change::All, true),
        audit: vec![audit(log, "document.register")],
    }));
    commit_all(&committer, vec![first]).await?;
    let started = Instant::now();
    let mut works = Vec::with_capacity(BATCH);
    for number in 0..LOG_ENTRIES {
        let heads = doc.get_heads();
        let received_at = started_at + i64::try_from(number)?;
        let mut change = doc
            .transact_and_log_patches::<_, _, automerge::AutomergeError>(|tx| {
                let entry = tx.insert_object(&entries, number, ObjType::Map)?;
                tx.put(&entry, "received_at", received_at)?;
                tx.put(
                    &entry,
                    "content",
                    format!("第{number}个来电：群众反映道路积水"),
                )?;
                tx.put(&entry, "handler", "值班员")?;
                Ok(())
            })
            .map_err(|failure| failure.error)?;
        let patches = doc.make_patches(&mut change.patch_log);
        let source = Source {
            document_id: log,
            meta: &meta,
            doc: &doc,
            receipts: &Default::default(),
        };
        works.push(Work::Document(Box::new(DocumentWork {
            document_id: log,
            register: None,
            chunk: Chunk::Changes {
                // The log's first chunk (seq 0) is its registration.
                seq: i64::try_from(number)? + 1,
                data: doc.save_after(&heads),
            },
            receipts: Vec::new(),
            actors: Vec::new(),
            record: records::project(&source, Change::Patches(&patches), false),
            audit: vec![audit(log, "sync.change")],
        })));
        if works.len() == BATCH {
            commit_all(&committer, std::mem::take(&mut works)).await?;
        }
    }
    commit_all(&committer, works).await?;
    let log_rate = LOG_ENTRIES as f64 / started.elapsed().as_secs_f64();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM log_entries WHERE document_id = $1")
        .bind(log.to_string())
        .fetch_one(&pool)
        .await?;
    anyhow::ensure!(stored == LOG_ENTRIES as i64, "{stored} log rows");
    committer.stop().await;
    writer.await?;

    println!("| workload | changes/s |");
    println!("| --- | --- |");
    println!(
        "| incidents ({INCIDENTS}, one new red incident per change, {BATCH} per transaction) | {incidents:.0} |"
    );
    println!(
        "| one duty log growing to {LOG_ENTRIES} calls (one change per call) | {log_rate:.0} |"
    );
    println!(
        "machine: {} cores; SQLite synchronous=FULL; each change: its bytes, registration (new incidents), audit rows, the typed record's rows and search text, and the alert rules (for a red incident: policy, on-duty lookup, first step, follow-up deadline)",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    Ok(())
}
