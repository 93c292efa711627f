//! Independent clients against our server: the stock JavaScript automerge-repo and samod.

use std::time::Duration;

use automerge::ReadDoc;
use automerge::transaction::Transactable;
use serde_json::json;

use crate::helpers::{TestApp, org, spawn_app};
use crate::js_peer::JsPeer;
use crate::samod_peer::SamodPeer;

async fn js(app: &TestApp, username: &str, device: &str) -> JsPeer {
    JsPeer::start(
        &format!("http://{}", app.address),
        username,
        crate::helpers::PASSWORD,
        device,
    )
    .await
    .expect("js peer starts")
}

async fn samod(app: &TestApp, username: &str) -> SamodPeer {
    let session = app.login(username, "samod").await;
    SamodPeer::connect(&app.sync_url(&session.access_token).await, &session.peer_id)
        .await
        .expect("samod peer connects")
}

#[tokio::test]
async fn the_stock_js_client_creates_finds_and_sees_live_edits() {
    let app = spawn_app().await;
    org(&app).await;
    let mut alice = js(&app, "alice", "alice-browser").await;
    let mut anna = js(&app, "anna", "anna-phone").await;
    let mut bob = js(&app, "bob", "bob-phone").await;

    let created = alice
        .call(json!({"cmd": "create", "doc": {"title": "Landslide on road 3", "notes": []}}))
        .await
        .unwrap();
    assert_eq!(created["ok"], true, "{created}");
    let url = created["url"].as_str().unwrap().to_owned();

    let found = anna.call(json!({"cmd": "find", "url": url})).await.unwrap();
    assert_eq!(found["ok"], true, "{found}");
    assert_eq!(found["doc"]["title"], "Landslide on road 3");

    let pushed = alice
        .call(json!({"cmd": "push", "url": url, "path": ["notes"], "value": "road closed"}))
        .await
        .unwrap();
    assert_eq!(pushed["ok"], true, "{pushed}");
    let seen = anna
        .call(json!({"cmd": "wait_len", "url": url, "path": ["notes"], "len": 1, "timeout_ms": 10000}))
        .await
        .unwrap();
    assert_eq!(seen["ok"], true, "{seen}");
    assert_eq!(seen["doc"]["notes"][0], "road closed");

    let denied = bob.call(json!({"cmd": "find", "url": url})).await.unwrap();
    assert_eq!(denied["ok"], false);
    assert_eq!(denied["error"], "unavailable", "{denied}");

    for peer in [alice, anna, bob] {
        peer.close().await.unwrap();
    }
}

#[tokio::test]
async fn samod_creates_finds_and_sees_live_edits() {
    let app = spawn_app().await;
    org(&app).await;
    let alice = samod(&app, "alice").await;
    let anna = samod(&app, "anna").await;
    let bob = samod(&app, "bob").await;

    let id = alice
        .create(|tx| {
            tx.put(automerge::ROOT, "title", "Bridge damaged").unwrap();
        })
        .await
        .unwrap();
    alice
        .wait_synced(&id, Duration::from_secs(10))
        .await
        .unwrap();

    assert!(anna.find(&id).await.unwrap().is_some());
    let title = anna
        .read(&id, |doc| {
            doc.get(automerge::ROOT, "title")
                .unwrap()
                .map(|(v, _)| v.to_string())
        })
        .await
        .unwrap();
    assert_eq!(title.as_deref(), Some("\"Bridge damaged\""));

    alice
        .change(&id, |tx| {
            tx.put(automerge::ROOT, "status", "closed to traffic")
                .unwrap();
        })
        .await
        .unwrap();
    anna.wait_until(&id, Duration::from_secs(10), |doc| {
        doc.get(automerge::ROOT, "status").ok().flatten().is_some()
    })
    .await
    .unwrap();

    assert!(
        bob.find(&id).await.unwrap().is_none(),
        "another unit gets unavailable"
    );
    for peer in [alice, anna, bob] {
        peer.stop().await;
    }
}

#[tokio::test]
async fn samod_and_js_editing_one_document_concurrently_converge() {
    let app = spawn_app().await;
    org(&app).await;
    let alice = samod(&app, "alice").await;
    let mut anna = js(&app, "anna", "anna-phone").await;

    let id = alice
        .create(|tx| {
            tx.put(automerge::ROOT, "title", "Fire at the market")
                .unwrap();
            tx.put_object(automerge::ROOT, "log", automerge::ObjType::List)
                .unwrap();
        })
        .await
        .unwrap();
    alice
        .wait_synced(&id, Duration::from_secs(10))
        .await
        .unwrap();
    let url = format!("automerge:{id}");
    let found = anna.call(json!({"cmd": "find", "url": url})).await.unwrap();
    assert_eq!(found["ok"], true, "{found}");

    // Both sides write at once: their own fields, the same field, and appends to one list.
    let samod_writes = async {
        for i in 0..10 {
            alice
                .change(&id, move |tx| {
                    let log = match tx.get(automerge::ROOT, "log").unwrap() {
                        Some((_, log)) => log,
                        None => panic!("log list missing"),
                    };
                    let len = tx.length(&log);
                    tx.insert(&log, len, format!("samod {i}")).unwrap();
                    tx.put(automerge::ROOT, "by_samod", i as i64).unwrap();
                    tx.put(automerge::ROOT, "status", "samod says").unwrap();
                })
                .await
                .unwrap();
        }
    };
    let js_writes = async {
        for i in 0..10 {
            let reply = anna
                .call(json!({"cmd": "push", "url": url, "path": ["log"], "value": format!("js {i}"), "wait_synced": false}))
                .await
                .unwrap();
            assert_eq!(reply["ok"], true, "{reply}");
        }
        let reply = anna
            .call(json!({"cmd": "set", "url": url, "path": ["status"], "value": "js says", "wait_synced": false}))
            .await
            .unwrap();
        assert_eq!(reply["ok"], true, "{reply}");
    };
    tokio::join!(samod_writes, js_writes);

    let converged = anna
        .call(
            json!({"cmd": "wait_len", "url": url, "path": ["log"], "len": 20, "timeout_ms": 15000}),
        )
        .await
        .unwrap();
    assert_eq!(converged["ok"], true, "{converged}");
    alice
        .wait_until(&id, Duration::from_secs(15), |doc| {
            let log = doc.get(automerge::ROOT, "log").unwrap().unwrap().1;
            doc.length(&log) == 20
        })
        .await
        .unwrap();
    let js_synced = anna
        .call(json!({"cmd": "synced", "url": url, "timeout_ms": 10000}))
        .await
        .unwrap();
    assert_eq!(js_synced["ok"], true, "{js_synced}");
    let samod_view = alice.json(&id).await.unwrap();
    let js_view = anna.call(json!({"cmd": "get", "url": url})).await.unwrap();
    // Wait until both have each other's final heads, then compare whole documents.
    let samod_heads = alice.read(&id, |doc| doc.get_heads().len()).await.unwrap();
    assert!(samod_heads >= 1);
    assert_eq!(samod_view["log"].as_array().unwrap().len(), 20);
    assert_eq!(
        js_view["doc"]["log"], samod_view["log"],
        "same order on both sides"
    );
    assert_eq!(
        js_view["doc"]["status"], samod_view["status"],
        "same winner on both sides"
    );
    anna.close().await.unwrap();
    alice.stop().await;
}
