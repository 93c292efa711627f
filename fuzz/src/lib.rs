//! What each fuzz target runs. The integration tests include this file and replay the
//! corpora through it (tests/it/fuzz_corpora.rs), so CI checks every input the fuzzer kept
//! without nightly. Each function takes any bytes; a panic is a finding.

use automerge::sync::SyncDoc;
use automerge::{Automerge, PatchLog, ROOT};
use sha2::{Digest, Sha256};
use zhiban_protocol::{DocumentId, Message};
use zhiban_server::documents::DocumentMeta;
use zhiban_server::records::{self, Change, Source};
use zhiban_server::settings::Limits;
use zhiban_server::sync::validate;

/// For the targets' `init`. libFuzzer's panic hook aborts on every panic, even one the
/// server catches on purpose (automerge's, in `validate::readable`); this one reports a panic
/// in a line and lets it unwind, so that only a panic nothing catches ends the run.
pub fn let_caught_panics_unwind() {
    std::panic::set_hook(Box::new(|info| eprintln!("panic: {info}")));
}

/// The wire decoder: never a panic, and what it decodes encodes back to the same message.
pub fn wire(data: &[u8]) {
    if let Ok(message) = Message::decode(data) {
        let again = Message::decode(&message.encode()).expect("our own encoding decodes");
        assert_eq!(again, message, "a message survives encoding");
    }
}

/// An automerge sync message as the server meets one: checked, and if accepted, applied
/// (`validate::apply`: to a copy, its nesting checked) and the record projected, stored and
/// answered. The checksums
/// of change chunks are put right first, or the fuzzer would never get past them.
pub fn sync_message(data: &[u8]) {
    let Ok(mut message) = automerge::sync::Message::decode(data) else {
        return;
    };
    let chunks: Vec<Vec<u8>> = message.changes.iter().map(with_checksum).collect();
    message.changes = chunks.into();
    let limits = Limits::default();
    if validate::check(&message, &validate::Limits::of(&limits)).is_err() {
        return;
    }
    // A new document, and one with content that the message's changes may build on.
    for mut doc in [Automerge::new(), base()] {
        let before = doc.get_heads();
        let mut patches = PatchLog::active();
        let mut state = automerge::sync::State::new();
        let applied = validate::apply(
            &mut doc,
            &mut state,
            message.clone(),
            &mut patches,
            limits.max_depth,
        );
        if !matches!(applied, Ok(validate::Applied::Changes(_))) {
            continue;
        }
        let patches = doc.make_patches(&mut patches);
        project(&doc, Change::Patches(&patches));
        project(&doc, Change::All);
        let _ = doc.generate_sync_message(&mut state);
        let _ = doc.save_after(&before);
    }
}

/// The document the seed corpus's edits apply to: an incident, the same bytes every time.
pub fn base() -> Automerge {
    let mut doc = Automerge::new().with_actor(automerge::ActorId::from([1; 16]));
    let fields = serde_json::json!({
        "type": "incident", "title": "山体滑坡", "grade": "red", "known_at": 1_790_000_000_000_i64,
        "reports": [{"kind": "first", "at": 1_790_000_000_000_i64, "by": "wang", "text": "…"}],
    });
    let mut tx = doc.transaction();
    for (key, value) in fields.as_object().into_iter().flatten() {
        zhiban_records::json::put(&mut tx, &ROOT, key, value).expect("written");
    }
    tx.commit_with(automerge::transaction::CommitOptions::default().with_time(0));
    doc
}

/// A record as JSON (what a phone's document holds): read and checked by the records crate,
/// then written into an automerge document and projected the way the server projects it.
pub fn record(data: &[u8]) {
    let Ok(view) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = zhiban_records::check(&view);
    let serde_json::Value::Object(fields) = &view else {
        return;
    };
    let mut doc = Automerge::new();
    let written = doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        for (key, value) in fields {
            zhiban_records::json::put(tx, &ROOT, key, value)?;
        }
        Ok(())
    });
    if written.is_ok() {
        project(&doc, Change::All);
    }
}

fn project(doc: &Automerge, change: Change<'_>) {
    let meta = DocumentMeta {
        unit_id: "unit".into(),
        classified: false,
        catalog: false,
        created_by: Some("user".into()),
    };
    let source = Source {
        document_id: DocumentId::from_bytes([7; 16]),
        meta: &meta,
        doc,
        receipts: &Default::default(),
    };
    let _ = records::project(&source, change, false);
}

/// `chunk` with the checksum automerge expects of a document or change chunk: the first
/// four bytes of the SHA-256 of its type, length and contents. (A compressed chunk's covers
/// its inflated form, left as it is.)
fn with_checksum(chunk: &[u8]) -> Vec<u8> {
    let mut chunk = chunk.to_vec();
    if chunk.len() > 9 && chunk[..4] == [0x85, 0x6f, 0x4a, 0x83] && chunk[8] != 2 {
        let (mut length, mut shift, mut at) = (0u64, 0u32, 9usize);
        while let Some(&byte) = chunk.get(at) {
            length |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            at += 1;
            shift += 7;
            if byte & 0x80 == 0 || shift > 63 {
                break;
            }
        }
        let end = usize::try_from(length)
            .ok()
            .and_then(|length| at.checked_add(length))
            .filter(|end| *end <= chunk.len());
        if let Some(end) = end {
            let digest = Sha256::digest(&chunk[8..end]);
            chunk[4..8].copy_from_slice(&digest[..4]);
        }
    }
    chunk
}
