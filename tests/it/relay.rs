//! The relay's sharing rules through raw protocol peers: who receives what, live updates,
//! read-only superiors, classified documents and documents claimed for another unit.

use std::time::Duration;

use automerge::Automerge;
use automerge::sync::SyncDoc;
use zhiban_protocol::{DocumentId, Message};

use crate::helpers::{
    RawPeer, Received, edit, new_document, org, postgres_settings, spawn_app, spawn_app_with, text,
};

/// Waits until `peer` receives a sync message for `document_id` that brings `key = value`.
async fn wait_for_value(
    peer: &mut RawPeer,
    document_id: DocumentId,
    doc: &mut Automerge,
    state: &mut automerge::sync::State,
    key: &str,
    value: &str,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while text(doc, key).as_deref() != Some(value) {
        let left = deadline - tokio::time::Instant::now();
        match peer.recv_within(left).await.expect("update in time") {
            Received::Message(Message::Sync {
                document_id: id,
                data,
                ..
            }) if id == document_id => {
                doc.receive_sync_message(state, automerge::sync::Message::decode(&data).unwrap())
                    .unwrap();
                if let Some(reply) = doc.generate_sync_message(state) {
                    peer.send_sync(document_id, reply.encode()).await.unwrap();
                }
            }
            Received::Message(_) => {}
            Received::Closed(code) => panic!("closed ({code:?}) while waiting for {key}"),
        }
    }
}

#[tokio::test]
async fn a_unit_member_finds_a_document_and_sees_edits_live() {
    find_and_see_live_edits(spawn_app().await).await;
}

#[tokio::test]
async fn a_unit_member_finds_a_document_and_sees_edits_live_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let (settings, _database) = postgres_settings(dir.path()).await;
    find_and_see_live_edits(spawn_app_with(settings).await).await;
}

async fn find_and_see_live_edits(app: crate::helpers::TestApp) {
    org(&app).await;
    let mut alice = app.peer("alice").await;
    let mut anna = app.peer("anna").await;
    let id = DocumentId::random();
    let mut original = new_document(&[("title", "Flood at the river bank")]);
    let mut alice_state = automerge::sync::State::new();
    assert!(
        alice
            .sync_with(id, &mut original, &mut alice_state)
            .await
            .unwrap()
    );

    let mut copy = Automerge::new();
    let mut anna_state = automerge::sync::State::new();
    assert!(
        anna.sync_with(id, &mut copy, &mut anna_state)
            .await
            .unwrap()
    );
    assert_eq!(
        text(&copy, "title").as_deref(),
        Some("Flood at the river bank")
    );

    edit(&mut original, "status", "evacuating");
    assert!(
        alice
            .sync_with(id, &mut original, &mut alice_state)
            .await
            .unwrap()
    );
    wait_for_value(
        &mut anna,
        id,
        &mut copy,
        &mut anna_state,
        "status",
        "evacuating",
    )
    .await;
    assert_eq!(copy.get_heads(), original.get_heads());
}

#[tokio::test]
async fn another_unit_gets_unavailable_exactly_as_for_a_missing_document() {
    let app = spawn_app().await;
    org(&app).await;
    let mut alice = app.peer("alice").await;
    let mut bob = app.peer("bob").await;
    let id = DocumentId::random();
    assert!(
        alice
            .sync(id, &mut new_document(&[("title", "secret-ish")]))
            .await
            .unwrap()
    );

    let mut answers = Vec::new();
    for probe in [id, DocumentId::random()] {
        let empty = Automerge::new();
        let mut state = automerge::sync::State::new();
        let first = empty.generate_sync_message(&mut state).unwrap();
        bob.send(&Message::Request {
            document_id: probe,
            sender_id: bob.peer_id.clone(),
            target_id: bob.server_id.clone(),
            data: first.encode(),
        })
        .await
        .unwrap();
        match bob.recv().await.unwrap() {
            Received::Message(Message::DocUnavailable {
                document_id,
                sender_id,
                target_id,
            }) => {
                assert_eq!(document_id, probe);
                answers.push((sender_id, target_id));
            }
            other => panic!("expected doc-unavailable, got {other:?}"),
        }
    }
    assert_eq!(
        answers[0], answers[1],
        "no difference between denied and missing"
    );
}

#[tokio::test]
async fn documents_are_not_announced_to_peers_that_did_not_ask() {
    let app = spawn_app().await;
    org(&app).await;
    let mut anna = app.peer("anna").await;
    let mut alice = app.peer("alice").await;
    let id = DocumentId::random();
    assert!(
        alice
            .sync(id, &mut new_document(&[("title", "x")]))
            .await
            .unwrap()
    );
    // A probe as a barrier: anything the server had queued for anna about `id` would arrive
    // before the answer to the probe.
    let probe = DocumentId::random();
    assert!(!anna.sync(probe, &mut Automerge::new()).await.unwrap());
    match anna.recv_within(Duration::from_millis(300)).await {
        Err(_) => {}
        Ok(received) => panic!("anna received {received:?}"),
    }
}

#[tokio::test]
async fn a_superior_office_reads_but_cannot_write() {
    let app = spawn_app().await;
    org(&app).await;
    let mut alice = app.peer("alice").await;
    let mut district = app.peer("district").await;
    let id = DocumentId::random();
    let mut original = new_document(&[("title", "Road accident")]);
    assert!(alice.sync(id, &mut original).await.unwrap());
    let chunks_before = app.chunk_rows(id).await;

    let mut copy = Automerge::new();
    let mut state = automerge::sync::State::new();
    assert!(district.sync_with(id, &mut copy, &mut state).await.unwrap());
    assert_eq!(text(&copy, "title").as_deref(), Some("Road accident"));

    edit(&mut copy, "title", "rewritten by the district");
    let message = copy.generate_sync_message(&mut state).unwrap();
    district.send_sync(id, message.encode()).await.unwrap();
    // The server answers but does not take the change.
    let mut fresh = Automerge::new();
    let mut anna = app.peer("anna").await;
    assert!(anna.sync(id, &mut fresh).await.unwrap());
    assert_eq!(text(&fresh, "title").as_deref(), Some("Road accident"));
    assert_eq!(app.chunk_rows(id).await, chunks_before);
}

#[tokio::test]
async fn classified_documents_reach_only_cleared_users() {
    let app = spawn_app().await;
    org(&app).await;
    let mut cleared = app.peer("cleared").await;
    let id = DocumentId::random();
    let mut doc = new_document(&[
        ("title", "classified matter"),
        ("classification", "classified"),
    ]);
    assert!(cleared.sync(id, &mut doc).await.unwrap());

    let mut alice = app.peer("alice").await;
    assert!(
        !alice.sync(id, &mut Automerge::new()).await.unwrap(),
        "same unit, not cleared"
    );
    let mut district = app.peer("district").await;
    let mut copy = Automerge::new();
    assert!(
        district.sync(id, &mut copy).await.unwrap(),
        "cleared superior"
    );
    assert_eq!(text(&copy, "title").as_deref(), Some("classified matter"));

    // An uncleared user cannot create a classified document, nor move one to another unit.
    let refused = DocumentId::random();
    let mut anna = app.peer("anna").await;
    let attempt = anna
        .sync(
            refused,
            &mut new_document(&[("classification", "classified")]),
        )
        .await;
    assert!(attempt.is_err() || !attempt.unwrap());
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM documents WHERE id = $1")
        .bind(refused.to_string())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn a_document_cannot_be_created_in_or_moved_to_another_unit() {
    let app = spawn_app().await;
    let org = org(&app).await;
    let mut alice = app.peer("alice").await;
    let id = DocumentId::random();
    let result = alice
        .sync(
            id,
            &mut new_document(&[("unit", &org.unit_b), ("title", "planted")]),
        )
        .await;
    assert!(
        result.is_err() || !result.unwrap(),
        "claiming unit B must be refused"
    );
    let mut bob = app.peer("bob").await;
    assert!(!bob.sync(id, &mut Automerge::new()).await.unwrap());

    // Editing the unit field of an existing document changes nothing about who sees it.
    let id = DocumentId::random();
    let mut doc = new_document(&[("unit", &org.unit_a), ("title", "ours")]);
    let mut state = automerge::sync::State::new();
    assert!(alice.sync_with(id, &mut doc, &mut state).await.unwrap());
    edit(&mut doc, "unit", &org.unit_b);
    assert!(alice.sync_with(id, &mut doc, &mut state).await.unwrap());
    assert!(!bob.sync(id, &mut Automerge::new()).await.unwrap());
    let unit: String = sqlx::query_scalar("SELECT unit_id FROM documents WHERE id = $1")
        .bind(id.to_string())
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(unit, org.unit_a);
}

#[tokio::test]
async fn a_change_in_another_users_name_is_refused_and_nothing_of_it_is_stored() {
    let app = spawn_app().await;
    let org = org(&app).await;
    let mut leader = app.peer("cleared").await;
    let id = DocumentId::random();
    let mut doc = new_document(&[("unit", &org.unit_a), ("title", "road closed")]);
    assert!(leader.sync(id, &mut doc).await.unwrap());
    let leader_actor = doc.get_actor().clone();

    // Alice reads the document, so she knows the leader's actor id, and writes as him.
    let mut alice = app.peer("alice").await;
    let mut copy = Automerge::new();
    assert!(alice.sync(id, &mut copy).await.unwrap());
    copy.set_actor(leader_actor);
    edit(&mut copy, "instruction", "approved by the leader");
    let error = alice.sync(id, &mut copy).await.unwrap_err().to_string();
    assert!(error.contains("another user"), "{error}");

    // The server kept nothing of it and still serves the document and the leader.
    let mut reader = Automerge::new();
    let mut anna = app.peer("anna").await;
    assert!(anna.sync(id, &mut reader).await.unwrap());
    assert_eq!(reader.get_heads(), doc.get_heads());
    assert_eq!(text(&reader, "instruction"), None);
    edit(&mut doc, "title", "road reopened");
    assert!(leader.sync(id, &mut doc).await.unwrap());
    let refused: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'sync.refused'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(refused, 1);
}

#[tokio::test]
async fn a_disconnecting_peer_leaves_its_sync_state_behind() {
    let app = spawn_app().await;
    org(&app).await;
    let session = app.login("alice", "tablet").await;
    let mut alice = RawPeer::connect(&app.sync_url(&session.access_token).await, &session.peer_id)
        .await
        .unwrap();
    let id = DocumentId::random();
    let mut doc = new_document(&[("title", "x")]);
    assert!(alice.sync(id, &mut doc).await.unwrap());
    drop(alice);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT state FROM sync_states WHERE peer_id = $1 AND document_id = $2",
        )
        .bind(&session.peer_id)
        .bind(id.to_string())
        .fetch_optional(&app.pool)
        .await
        .unwrap();
        if let Some(state) = state {
            let state = automerge::sync::State::decode(&state).unwrap();
            assert_eq!(state.shared_heads, doc.get_heads());
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "sync state never saved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn idle_documents_are_unloaded_and_reload_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::test_settings(dir.path());
    settings.document_idle_secs = 0;
    let app = spawn_app_with(settings).await;
    let org = org(&app).await;
    app.create_user(
        "operator",
        &org.unit_a,
        zhiban_server::access::Role::Admin,
        false,
    )
    .await;
    let operator = app.login("operator", "desk").await;
    let stats = || {
        let app = &app;
        let token = operator.access_token.clone();
        async move {
            let response = app
                .http
                .get(app.url("/api/sync/stats"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    let alice_token = app.login("alice", "phone").await.access_token;
    let forbidden = app
        .http
        .get(app.url("/api/sync/stats"))
        .bearer_auth(alice_token)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);

    let mut alice = app.peer("alice").await;
    let id = DocumentId::random();
    let mut doc = new_document(&[("title", "x")]);
    assert!(alice.sync(id, &mut doc).await.unwrap());
    // The document and its unit's catalog.
    assert!(stats().await["documents_loaded"].as_u64().unwrap() >= 1);
    drop(alice);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while stats().await["documents_loaded"] != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "document never unloaded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stats().await["connections"], 0);
    let mut copy = Automerge::new();
    assert!(app.peer("anna").await.sync(id, &mut copy).await.unwrap());
    assert_eq!(copy.get_heads(), doc.get_heads());
}

fn catalog_entries(doc: &Automerge) -> Vec<String> {
    use automerge::ReadDoc;
    match doc.get(automerge::ROOT, "documents").unwrap() {
        Some((_, map)) => doc.keys(&map).collect(),
        None => Vec::new(),
    }
}

#[tokio::test]
async fn unit_catalogs_list_new_documents_live_and_only_to_those_who_may_see_them() {
    let app = spawn_app().await;
    let org = org(&app).await;
    let mut alice = app.peer("alice").await;
    let first = DocumentId::random();
    assert!(
        alice
            .sync(first, &mut new_document(&[("title", "one")]))
            .await
            .unwrap()
    );

    let plain = app.catalog("anna", &org.unit_a, false).await;
    let classified_catalog = app.catalog("cleared", &org.unit_a, true).await;
    let mut anna = app.peer("anna").await;
    let mut catalog = Automerge::new();
    let mut state = automerge::sync::State::new();
    assert!(
        anna.sync_with(plain, &mut catalog, &mut state)
            .await
            .unwrap()
    );
    assert_eq!(catalog_entries(&catalog), vec![first.to_string()]);

    // A new document shows up in the catalog without anna asking again.
    let second = DocumentId::random();
    assert!(
        alice
            .sync(second, &mut new_document(&[("title", "two")]))
            .await
            .unwrap()
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while catalog_entries(&catalog).len() < 2 {
        let left = deadline - tokio::time::Instant::now();
        if let Received::Message(Message::Sync {
            document_id, data, ..
        }) = anna
            .recv_within(left)
            .await
            .expect("catalog update in time")
        {
            assert_eq!(document_id, plain);
            catalog
                .receive_sync_message(&mut state, automerge::sync::Message::decode(&data).unwrap())
                .unwrap();
        }
    }
    assert!(catalog_entries(&catalog).contains(&second.to_string()));

    // Classified records go to the classified catalog only, which uncleared users cannot open.
    let mut cleared = app.peer("cleared").await;
    let secret = DocumentId::random();
    let mut doc = new_document(&[("classification", "classified")]);
    assert!(cleared.sync(secret, &mut doc).await.unwrap());
    let mut classified = Automerge::new();
    assert!(
        cleared
            .sync(classified_catalog, &mut classified)
            .await
            .unwrap()
    );
    assert_eq!(catalog_entries(&classified), vec![secret.to_string()]);
    assert!(
        !anna
            .sync(classified_catalog, &mut Automerge::new())
            .await
            .unwrap()
    );
    assert!(!catalog_entries(&catalog).contains(&secret.to_string()));

    // Another unit cannot open it; nobody can write to it.
    let mut bob = app.peer("bob").await;
    assert!(!bob.sync(plain, &mut Automerge::new()).await.unwrap());
    edit(&mut catalog, "type", "vandalised");
    let message = catalog.generate_sync_message(&mut state).unwrap();
    anna.send_sync(plain, message.encode()).await.unwrap();
    let mut fresh = Automerge::new();
    assert!(
        app.peer("alice")
            .await
            .sync(plain, &mut fresh)
            .await
            .unwrap()
    );
    assert_eq!(text(&fresh, "type").as_deref(), Some("catalog"));
}
