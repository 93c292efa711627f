//! Writes the starting corpus: `cargo +nightly run --example seeds` (in fuzz/). One valid
//! input of each kind, so that the fuzzer starts from what phones really send.

use std::collections::BTreeMap;
use std::path::Path;

use automerge::sync::SyncDoc;
use automerge::{Automerge, ROOT};
use serde_json::{Value, json};
use zhiban_protocol::{DocumentId, HeadsInfo, Message, PeerId, PeerMetadata};

fn records() -> Vec<Value> {
    let at = 1_790_000_000_000_i64;
    vec![
        json!({"type": "incident", "schema": 1, "title": "山体滑坡", "category": "natural_disaster",
            "grade": "red", "level": "II", "known_at": at, "location": "G4 km 1032",
            "casualties": "none", "measures": "road closed", "reported_by": "wang",
            "reports": [{"kind": "first", "at": at + 2, "by": "wang", "text": "…"}],
            "attachments": [{"sha256": "ab".repeat(32), "size": 1, "mime": "image/jpeg"}]}),
        json!({"type": "duty_log", "title": "值班日志", "entries": [
            {"received_at": at, "content": "caller reports smoke", "phone": "0571-8888 1234", "handler": "li"},
            {"received_at": at + 1, "content": "", "phone": "110"}]}),
        json!({"type": "roster", "title": "十二月", "shifts": [
            {"start": at, "end": at + 5, "leader": {"name": "li", "phone": "110"}, "officers": [{"name": "wang"}]}],
            "requests": [{"kind": "leave", "shift": 0, "requester": "wang", "substitute": "zhao"}]}),
        json!({"type": "handover", "title": "交接", "from": "li", "to": "wang", "at": at,
            "pending": [{"text": "follow up", "document_id": "x"}], "signatures": {"from": {"by": "li", "at": at}}}),
        json!({"type": "daily_report", "date": "2026-12-01", "summary": "平安"}),
        json!({"type": "document_register", "entries": [{"received_at": at, "title": "通知", "from": "市政府"}]}),
    ]
}

fn document(fields: &Value) -> Automerge {
    let mut doc = Automerge::new();
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        for (key, value) in fields.as_object().expect("a map") {
            zhiban_records::json::put(tx, &ROOT, key, value)?;
        }
        Ok(())
    })
    .expect("written");
    doc
}

/// The messages one document's sync with an empty peer sends, both ways.
fn sync_messages(doc: &Automerge) -> Vec<Vec<u8>> {
    let (mut ours, mut theirs) = (automerge::sync::State::new(), automerge::sync::State::new());
    let mut peer = Automerge::new();
    let mut messages = Vec::new();
    for _ in 0..4 {
        let mut quiet = true;
        if let Some(message) = doc.generate_sync_message(&mut ours) {
            messages.push(message.clone().encode());
            peer.receive_sync_message(&mut theirs, message)
                .expect("applies");
            quiet = false;
        }
        if let Some(message) = peer.generate_sync_message(&mut theirs) {
            messages.push(message.clone().encode());
            let mut copy = doc.clone();
            copy.receive_sync_message(&mut ours, message)
                .expect("applies");
            quiet = false;
        }
        if quiet {
            break;
        }
    }
    messages
}

fn wire_messages() -> Vec<Message> {
    let (me, you) = (PeerId::new("me"), PeerId::new("you"));
    let document_id = DocumentId::from_bytes([3; 16]);
    let data = sync_messages(&document(&records()[0]))[0].clone();
    vec![
        Message::Join {
            sender_id: me.clone(),
            supported_protocol_versions: vec!["1".into()],
            peer_metadata: Some(PeerMetadata {
                storage_id: Some("s".into()),
                is_ephemeral: false,
            }),
        },
        Message::Peer {
            sender_id: you.clone(),
            target_id: me.clone(),
            selected_protocol_version: "1".into(),
            peer_metadata: None,
        },
        Message::Leave {
            sender_id: me.clone(),
        },
        Message::Request {
            document_id,
            sender_id: me.clone(),
            target_id: you.clone(),
            data: data.clone(),
        },
        Message::Sync {
            document_id,
            sender_id: me.clone(),
            target_id: you.clone(),
            data,
        },
        Message::DocUnavailable {
            document_id,
            sender_id: you.clone(),
            target_id: me.clone(),
        },
        Message::Ephemeral {
            document_id,
            sender_id: me.clone(),
            target_id: you.clone(),
            session_id: "session".into(),
            count: 3,
            data: vec![0xa1, 0x61, 0x78, 0x01],
        },
        Message::RemoteSubscriptionChange {
            sender_id: me.clone(),
            target_id: you.clone(),
            add: vec!["storage".into()],
            remove: vec![],
        },
        Message::RemoteHeadsChanged {
            document_id,
            sender_id: you.clone(),
            target_id: me,
            new_heads: BTreeMap::from([(
                "storage".into(),
                HeadsInfo {
                    heads: vec!["h".into()],
                    timestamp: 5,
                },
            )]),
        },
        Message::Error {
            message: "没有".into(),
        },
    ]
}

fn write(target: &str, inputs: impl IntoIterator<Item = Vec<u8>>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("corpus directory");
    for (n, input) in inputs.into_iter().enumerate() {
        std::fs::write(dir.join(format!("seed-{n}")), input).expect("written");
    }
}

/// Edits on top of the fuzz targets' base document, as a phone sends them.
fn edits() -> Vec<Vec<u8>> {
    let base = zhiban_fuzz::base();
    let mut edited = base.fork();
    edited
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            use automerge::ReadDoc;
            use automerge::transaction::Transactable;
            tx.put(ROOT, "grade", "orange")?;
            let reports = tx.get(ROOT, "reports")?.expect("reports").1;
            tx.insert(&reports, 1, "follow-up")?;
            let nested = tx.put_object(ROOT, "casualties", automerge::ObjType::Map)?;
            tx.put(&nested, "dead", 0)?;
            Ok(())
        })
        .expect("edited");
    let (mut ours, mut theirs) = (automerge::sync::State::new(), automerge::sync::State::new());
    let mut server = base.clone();
    let mut messages = Vec::new();
    for _ in 0..4 {
        let Some(message) = edited.generate_sync_message(&mut ours) else {
            break;
        };
        messages.push(message.clone().encode());
        server
            .receive_sync_message(&mut theirs, message)
            .expect("applies");
        if let Some(reply) = server.generate_sync_message(&mut theirs) {
            edited
                .receive_sync_message(&mut ours, reply)
                .expect("applies");
        }
    }
    messages
}

fn main() {
    write("wire", wire_messages().iter().map(Message::encode));
    write(
        "sync_message",
        records()
            .iter()
            .flat_map(|record| sync_messages(&document(record)))
            .chain(edits()),
    );
    write(
        "record",
        records()
            .iter()
            .map(|record| serde_json::to_vec(record).expect("json")),
    );
}
