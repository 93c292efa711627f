//! Hostile or broken input: each gets a clear error or a closed socket, the server keeps
//! serving everyone else, and stored data does not change.

use automerge::Automerge;
use serde_json::json;
use zhiban_protocol::{DocumentId, Message};

use crate::helpers::{
    RawPeer, Received, TestApp, new_document, org, spawn_app, spawn_app_with, test_settings, text,
};

/// A stored document and a second, well-behaved peer, to check nothing else was harmed.
async fn stored_document(app: &TestApp) -> (DocumentId, Automerge) {
    let mut alice = app.peer("alice").await;
    let id = DocumentId::random();
    let mut doc = new_document(&[("title", "must survive")]);
    assert!(alice.sync(id, &mut doc).await.unwrap());
    (id, doc)
}

async fn assert_unharmed(app: &TestApp, id: DocumentId, doc: &Automerge, chunks: i64) {
    assert!(app.healthy().await);
    let mut anna = app.peer("anna").await;
    let mut copy = Automerge::new();
    assert!(anna.sync(id, &mut copy).await.unwrap());
    assert_eq!(copy.get_heads(), doc.get_heads());
    assert_eq!(text(&copy, "title").as_deref(), Some("must survive"));
    assert_eq!(app.chunk_rows(id).await, chunks);
}

#[tokio::test]
async fn malformed_frames_close_the_socket_with_an_error() {
    let app = spawn_app().await;
    org(&app).await;
    let (id, doc) = stored_document(&app).await;
    let chunks = app.chunk_rows(id).await;
    let mut bystander = app.peer("anna").await;

    let valid = Message::Sync {
        document_id: id,
        sender_id: bystander.peer_id.clone(),
        target_id: bystander.server_id.clone(),
        data: vec![1, 2, 3],
    }
    .encode();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\xff\x00 definitely not cbor".to_vec()),
        ("truncated", valid[..valid.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("not a map", vec![0x83, 0x01, 0x02, 0x03]),
        ("bad document id", {
            let mut e = Vec::new();
            e.extend_from_slice(&valid);
            let at = e.windows(10).position(|w| w == b"documentId").unwrap() + 11;
            e[at + 1] = b'0'; // '0' is not a base58 digit
            e
        }),
    ];
    for (name, frame) in cases {
        let mut peer = app.peer("alice").await;
        peer.send_raw(frame).await.unwrap();
        let (code, errors) = peer.until_closed().await.unwrap();
        assert_eq!(code, Some(1007), "{name}");
        assert!(
            errors.iter().any(|e| e.starts_with("malformed message")),
            "{name}: {errors:?}"
        );
    }
    // The bystander's connection is still fine.
    assert!(
        !bystander
            .sync(DocumentId::random(), &mut Automerge::new())
            .await
            .unwrap()
    );
    assert_unharmed(&app, id, &doc, chunks).await;
}

#[tokio::test]
async fn unknown_message_types_get_an_error_and_the_connection_stays() {
    let app = spawn_app().await;
    org(&app).await;
    let mut peer = app.peer("alice").await;
    let mut frame = Vec::new();
    {
        let mut e = minicbor_like_map(&[("type", "teleport"), ("senderId", peer.peer_id.as_str())]);
        frame.append(&mut e);
    }
    peer.send_raw(frame).await.unwrap();
    match peer.recv().await.unwrap() {
        Received::Message(Message::Error { message }) => {
            assert!(message.contains("teleport"), "{message}")
        }
        other => panic!("expected an error message, got {other:?}"),
    }
    assert!(
        !peer
            .sync(DocumentId::random(), &mut Automerge::new())
            .await
            .unwrap()
    );
}

/// A CBOR map of text keys to text values, written by hand so the test does not depend on
/// the encoder under test.
fn minicbor_like_map(entries: &[(&str, &str)]) -> Vec<u8> {
    fn text(out: &mut Vec<u8>, s: &str) {
        assert!(s.len() < 24 || s.len() < 256);
        if s.len() < 24 {
            out.push(0x60 | s.len() as u8);
        } else {
            out.push(0x78);
            out.push(s.len() as u8);
        }
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = vec![0xa0 | entries.len() as u8];
    for (key, value) in entries {
        text(&mut out, key);
        text(&mut out, value);
    }
    out
}

#[tokio::test]
async fn a_broken_automerge_payload_is_refused_and_the_document_is_unchanged() {
    let app = spawn_app().await;
    org(&app).await;
    let (id, doc) = stored_document(&app).await;
    let chunks = app.chunk_rows(id).await;
    let mut peer = app.peer("alice").await;
    peer.send_sync(id, b"\x42 not an automerge sync message".to_vec())
        .await
        .unwrap();
    match peer.recv().await.unwrap() {
        Received::Message(Message::Error { message }) => {
            assert!(message.contains("malformed sync message"), "{message}")
        }
        other => panic!("expected an error message, got {other:?}"),
    }
    assert_unharmed(&app, id, &doc, chunks).await;
}

#[tokio::test]
async fn oversized_and_text_frames_close_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.max_frame_bytes = 64 * 1024;
    let app = spawn_app_with(settings).await;
    org(&app).await;
    let (id, doc) = stored_document(&app).await;
    let chunks = app.chunk_rows(id).await;

    let mut peer = app.peer("alice").await;
    let _ = peer.send_raw(vec![0u8; 200 * 1024]).await;
    let (code, _) = peer.until_closed().await.unwrap();
    assert_eq!(code, Some(1009));

    let mut peer = app.peer("alice").await;
    use futures_util::SinkExt;
    peer.socket
        .send(tokio_tungstenite::tungstenite::Message::Text(
            "hello".into(),
        ))
        .await
        .unwrap();
    let (code, errors) = peer.until_closed().await.unwrap();
    assert_eq!(code, Some(1003));
    assert!(!errors.is_empty());
    assert_unharmed(&app, id, &doc, chunks).await;
}

#[tokio::test]
async fn malformed_api_requests_get_clear_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.max_api_body_bytes = 4096;
    let app = spawn_app_with(settings).await;
    org(&app).await;
    let login = app.url("/api/auth/login");
    let cases = [
        ("not json", "{\"username\": ", "application/json", 400),
        ("wrong shape", "{\"user\": 1}", "application/json", 422),
        ("wrong content type", "{}", "text/plain", 415),
    ];
    for (name, body, content_type, status) in cases {
        let response = app
            .http
            .post(&login)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{name}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}"
        );
    }
    let huge = json!({"username": "a".repeat(10_000), "password": "x"});
    let response = app.http.post(&login).json(&huge).send().await.unwrap();
    assert_eq!(response.status(), 413);
    let response = app
        .http
        .get(app.url("/api/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(app.healthy().await);
}

#[tokio::test]
async fn a_socket_that_never_joins_is_dropped() {
    let app = spawn_app().await;
    org(&app).await;
    let session = app.login("alice", "phone").await;
    let (mut socket, _) =
        tokio_tungstenite::connect_async(app.sync_url(&session.access_token).await)
            .await
            .unwrap();
    use futures_util::{SinkExt, StreamExt};
    // Anything but `join` as the first message ends the connection.
    let request = Message::Request {
        document_id: DocumentId::random(),
        sender_id: session.peer_id.as_str().into(),
        target_id: "server".into(),
        data: vec![],
    };
    socket
        .send(tokio_tungstenite::tungstenite::Message::Binary(
            request.encode().into(),
        ))
        .await
        .unwrap();
    let mut closed = false;
    while let Some(Ok(message)) = socket.next().await {
        if let tokio_tungstenite::tungstenite::Message::Close(frame) = message {
            assert_eq!(frame.map(|f| u16::from(f.code)), Some(1008));
            closed = true;
            break;
        }
    }
    assert!(closed);
    let _ = RawPeer::connect;
}

#[tokio::test]
async fn a_peer_that_stops_answering_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    settings.keepalive_secs = 1;
    let app = spawn_app_with(settings).await;
    org(&app).await;
    let mut live = app.peer("anna").await;
    let mut silent = app.peer("alice").await;
    let started = std::time::Instant::now();
    // The live peer keeps reading (and so answering pings) for three intervals.
    while started.elapsed() < std::time::Duration::from_secs(3) {
        assert!(
            !live
                .sync(DocumentId::random(), &mut Automerge::new())
                .await
                .unwrap()
        );
        let _ = live
            .recv_within(std::time::Duration::from_millis(200))
            .await;
    }
    // The silent one never read, so it never answered a ping: the server gave up on it.
    let (code, _) = silent.until_closed().await.unwrap();
    assert_eq!(code, Some(1001));
    assert!(
        !live
            .sync(DocumentId::random(), &mut Automerge::new())
            .await
            .unwrap()
    );
}
