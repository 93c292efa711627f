//! Every account is hostile (issue 10). Each test is an attack an ordinary logged-in device
//! (or anyone, for logins) could make, written as the attacker would with a raw protocol
//! client, against the server as a child process whose memory is read. Each asserts the
//! secure outcome: the attacker is refused and told why, the server still answers,
//! colleagues still receive reports filed after the attack, and memory stays bounded.

use std::io::Write as _;
use std::time::Duration;

use automerge::sync::SyncDoc;
use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ROOT};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zhiban_protocol::{DocumentId, Message};
use zhiban_server::access::Role;

use crate::helpers::{
    PASSWORD, RawPeer, Received, ServerProcess, Session, edit, login, new_document,
    start_server_process, test_settings, text,
};

/// A unit on a child server: Town A (officer alice, field worker anna, cleared leader
/// `cleared`) under a district office whose leader `district` reads it.
struct Target {
    server: ServerProcess,
    database_url: String,
    _data: tempfile::TempDir,
}

impl Target {
    async fn start(env: &[(&str, &str)]) -> Target {
        let data = tempfile::tempdir().unwrap();
        let settings = test_settings(data.path());
        let pool = zhiban_server::db::connect(&settings.database_url())
            .await
            .unwrap();
        let now = zhiban_server::clock::system_ms();
        let key = zhiban_server::keys::Keys::load(&settings, &pool)
            .await
            .unwrap();
        let district = zhiban_server::accounts::create_unit(&pool, &key, "District", None, now)
            .await
            .unwrap();
        let town =
            zhiban_server::accounts::create_unit(&pool, &key, "Town A", Some(&district), now)
                .await
                .unwrap();
        for (username, unit, role, cleared) in [
            ("alice", &town, Role::Officer, false),
            ("anna", &town, Role::Field, false),
            ("cleared", &town, Role::Leader, true),
            ("district", &district, Role::Leader, true),
            ("root", &district, Role::Admin, true),
        ] {
            let user = zhiban_server::units::NewUser {
                username,
                display_name: None,
                password: PASSWORD,
                unit_id: unit,
                role,
                cleared,
            };
            zhiban_server::accounts::create_user(&pool, &key, user, now)
                .await
                .unwrap();
        }
        pool.close().await;
        Target {
            server: start_server_process(&settings, env).await,
            database_url: settings.database_url(),
            _data: data,
        }
    }

    fn address(&self) -> &str {
        &self.server.address
    }

    async fn login(&self, username: &str) -> Session {
        login(self.address(), username).await
    }

    async fn peer(&self, username: &str) -> RawPeer {
        crate::helpers::peer_at(self.address(), username).await
    }

    async fn get(&self, token: &str, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("http://{}{path}", self.address()))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Town A as `username` sees it in `GET /api/units`.
    async fn town(&self, username: &str) -> Value {
        let token = self.login(username).await.access_token;
        let units = self.get(&token, "/api/units").await;
        units
            .as_array()
            .unwrap()
            .iter()
            .find(|unit| unit["name"] == "Town A")
            .unwrap()
            .clone()
    }

    /// The plain (or classified) catalog of Town A, as `username` learns it.
    async fn catalog(&self, username: &str, classified: bool) -> DocumentId {
        let town = self.town(username).await;
        let key = if classified {
            "classified_catalog"
        } else {
            "catalog"
        };
        town[key].as_str().unwrap().parse().unwrap()
    }

    /// Alice reports; returns the report's id once the server holds it.
    async fn report(&self, title: &str) -> DocumentId {
        let id = DocumentId::random();
        let mut doc = new_document(&[("type", "incident"), ("title", title)]);
        assert!(self.peer("alice").await.sync(id, &mut doc).await.unwrap());
        id
    }

    /// Whether the leader's copy of the catalog lists `report`: the unit's devices still
    /// hear of new reports.
    async fn catalog_lists(&self, report: DocumentId) -> bool {
        let catalog = self.catalog("cleared", false).await;
        let mut copy = Automerge::new();
        assert!(
            self.peer("cleared")
                .await
                .sync(catalog, &mut copy)
                .await
                .unwrap()
        );
        let Ok(Some((_, documents))) = automerge::ReadDoc::get(&copy, ROOT, "documents") else {
            return false;
        };
        automerge::ReadDoc::keys(&copy, &documents).any(|id| id == report.to_string())
    }

    /// The `detail` of every audit row recording `action`.
    async fn audit(&self, action: &str) -> Vec<String> {
        let pool = zhiban_server::db::connect(&self.database_url)
            .await
            .unwrap();
        let details = sqlx::query_scalar("SELECT detail FROM audit_log WHERE action = $1")
            .bind(action)
            .fetch_all(&pool)
            .await
            .unwrap();
        pool.close().await;
        details
    }

    async fn healthy(&self) -> bool {
        reqwest::get(format!("http://{}/healthz", self.address()))
            .await
            .is_ok_and(|response| response.status() == 200)
    }

    /// Asserts that the server's resident memory never reached `limit` MiB (and says what
    /// it was, for `--nocapture`).
    fn assert_peak_below(&self, limit: u64) {
        let peak = self.server.peak_rss_kib() / 1024;
        eprintln!("peak RSS {peak} MiB");
        assert!(peak < limit, "peak RSS {peak} MiB");
    }
}

/// Sends `data` as a sync message for `document` and returns how the socket ended and the
/// errors it was sent.
async fn send_and_wait_for_close(
    peer: &mut RawPeer,
    document: DocumentId,
    data: Vec<u8>,
) -> (Option<u16>, Vec<String>) {
    peer.send_sync(document, data).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), peer.until_closed())
        .await
        .expect("the server closes the socket")
        .unwrap()
}

fn uleb(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let byte = u8::try_from(value & 0x7f).unwrap();
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// A sync message (automerge's v1 layout) with one `have` whose Bloom filter is `bloom`.
fn sync_message_with_bloom(bloom: &[u8]) -> Vec<u8> {
    let mut message = vec![0x42, 0, 0, 1, 0];
    uleb(&mut message, u64::try_from(bloom.len()).unwrap());
    message.extend(bloom);
    message.push(0);
    message
}

/// A sync message carrying `chunk` as its only change.
fn sync_message_with_chunk(chunk: &[u8]) -> Vec<u8> {
    let mut message = vec![0x42, 0, 0, 0, 1];
    uleb(&mut message, u64::try_from(chunk.len()).unwrap());
    message.extend(chunk);
    message
}

#[tokio::test]
async fn crafted_bloom_filters_are_refused_before_automerge_sees_them() {
    let target = Target::start(&[]).await;
    let catalog = target.catalog("anna", false).await;
    // num_bits_per_entry = 0 divided by zero inside automerge; aimed at the unit's catalog it
    // used to stop every colleague hearing of new reports.
    let mut anna = target.peer("anna").await;
    let zero_bits = sync_message_with_bloom(&[1, 0, 7]);
    let (code, errors) = send_and_wait_for_close(&mut anna, catalog, zero_bits).await;
    assert_eq!(code, Some(1008), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("bits per entry")),
        "{errors:?}"
    );
    // num_probes = u32::MAX made automerge allocate 16 GiB.
    let mut probes = vec![1, 10];
    uleb(&mut probes, u64::from(u32::MAX));
    probes.extend([0, 0]);
    let mut anna = target.peer("anna").await;
    let report = target.report("before").await;
    let (code, errors) =
        send_and_wait_for_close(&mut anna, report, sync_message_with_bloom(&probes)).await;
    assert_eq!(code, Some(1008), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("probes")), "{errors:?}");

    let after = target.report("after the attack").await;
    assert!(
        target.catalog_lists(after).await,
        "colleagues still hear of reports"
    );
    assert!(target.healthy().await);
    let refusals = target.audit("sync.refused").await;
    assert_eq!(refusals.len(), 2, "{refusals:?}");
    assert!(refusals[0].contains("bits per entry"), "{refusals:?}");
    target.assert_peak_below(200);
}

#[tokio::test]
async fn a_deeply_nested_record_is_refused_every_time_without_crashing_the_server() {
    let target = Target::start(&[]).await;
    let id = DocumentId::random();
    let mut doc = new_document(&[("type", "incident"), ("title", "深")]);
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        let mut object = ROOT;
        for _ in 0..20_000 {
            object = tx.put_object(&object, "x", ObjType::Map)?;
        }
        Ok(())
    })
    .unwrap();
    // Refused, and refused again when the device offers it again after reconnecting.
    for _ in 0..2 {
        let mut anna = target.peer("anna").await;
        let outcome = tokio::time::timeout(Duration::from_secs(30), anna.sync(id, &mut doc))
            .await
            .expect("an answer");
        let error = outcome.expect_err("refused").to_string();
        assert!(error.contains("levels deep"), "{error}");
    }
    let token = target.login("cleared").await.access_token;
    let record = reqwest::Client::new()
        .get(format!("http://{}/api/records/{id}", target.address()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(record.status(), 404, "nothing of it was stored");
    let after = target.report("after the attack").await;
    assert!(target.catalog_lists(after).await);
    assert!(target.healthy().await);
    target.assert_peak_below(300);
}

#[tokio::test]
async fn a_compressed_chunk_bomb_is_refused_without_being_inflated() {
    let target = Target::start(&[]).await;
    // 512 MiB of zeros deflate to about half a megabyte: a change chunk (type 2) of them.
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..512 {
        encoder.write_all(&zeros).unwrap();
    }
    let compressed = encoder.finish().unwrap();
    let mut chunk = vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0, 2];
    uleb(&mut chunk, u64::try_from(compressed.len()).unwrap());
    chunk.extend(&compressed);
    let mut anna = target.peer("anna").await;
    let (code, errors) = send_and_wait_for_close(
        &mut anna,
        DocumentId::random(),
        sync_message_with_chunk(&chunk),
    )
    .await;
    assert_eq!(code, Some(1008), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("inflated")), "{errors:?}");
    assert!(target.healthy().await);
    target.assert_peak_below(200);
}

#[tokio::test]
async fn ephemeral_floods_and_peers_that_never_read_are_cut_off() {
    let target = Target::start(&[
        ("ZHIBAN_LIMITS__EPHEMERAL_PER_MINUTE", "100000"),
        ("ZHIBAN_LIMITS__MAX_OUTBOX_BYTES", "1048576"),
        ("ZHIBAN_LIMITS__SEND_TIMEOUT_SECS", "2"),
    ])
    .await;
    let report = target.report("现场").await;
    let ephemeral = |peer: &RawPeer, bytes: usize| Message::Ephemeral {
        document_id: report,
        sender_id: peer.peer_id.clone(),
        target_id: peer.server_id.clone(),
        session_id: "s".into(),
        count: 1,
        data: vec![7; bytes],
    };
    // Too large: refused and closed.
    let mut anna = target.peer("anna").await;
    anna.sync(report, &mut Automerge::new()).await.unwrap();
    anna.send(&ephemeral(&anna, 64 * 1024)).await.unwrap();
    let (code, errors) = anna.until_closed().await.unwrap();
    assert_eq!(code, Some(1009), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("at most")), "{errors:?}");

    // A read-only superior office announces nothing.
    let mut district = target.peer("district").await;
    district.sync(report, &mut Automerge::new()).await.unwrap();
    district.send(&ephemeral(&district, 100)).await.unwrap();
    let refused = loop {
        match district.recv_within(Duration::from_secs(10)).await.unwrap() {
            Received::Message(Message::Error { message }) => break message,
            Received::Message(_) => {}
            Received::Closed(code) => panic!("closed: {code:?}"),
        }
    };
    assert!(refused.contains("read-only"), "{refused}");

    // A subscriber that stops reading is disconnected once its queue passes the limit.
    let mut sleeper = target.peer("cleared").await;
    sleeper.sync(report, &mut Automerge::new()).await.unwrap();
    let mut alice = target.peer("alice").await;
    alice.sync(report, &mut Automerge::new()).await.unwrap();
    for _ in 0..400 {
        alice.send(&ephemeral(&alice, 15_000)).await.unwrap();
    }
    let admin = target.login("root").await.access_token;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let stats = target.get(&admin, "/api/sync/stats").await;
        // alice, district, the sleeper: the sleeper is gone.
        if stats["connections"].as_u64() <= Some(2) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(sleeper);
    let after = target.report("after the attack").await;
    assert!(target.catalog_lists(after).await);
    target.assert_peak_below(200);
}

#[tokio::test]
async fn offers_of_unknown_documents_cost_no_memory_and_are_limited() {
    let target = Target::start(&[("ZHIBAN_LIMITS__MAX_UNKNOWN_OFFERS", "300")]).await;
    let mut anna = target.peer("anna").await;
    let doc = new_document(&[("title", "诱饵")]);
    let mut closed = None;
    for offered in 0..2_000 {
        let mut state = automerge::sync::State::new();
        let offer = doc.generate_sync_message(&mut state).unwrap();
        if anna
            .send_sync(DocumentId::random(), offer.encode())
            .await
            .is_err()
        {
            closed = Some(offered);
            break;
        }
    }
    let (code, errors) = tokio::time::timeout(Duration::from_secs(20), anna.until_closed())
        .await
        .expect("closed")
        .unwrap();
    assert_eq!(code, Some(1008), "{errors:?} after {closed:?}");
    assert!(
        errors.iter().any(|e| e.contains("more than 300 offers")),
        "{errors:?}"
    );
    let admin = target.login("root").await.access_token;
    let stats = target.get(&admin, "/api/sync/stats").await;
    assert!(
        stats["documents_loaded"].as_u64().unwrap() < 20,
        "offers are not held: {stats}"
    );
    target.assert_peak_below(200);
}

#[tokio::test]
async fn an_account_creates_only_so_many_documents_and_none_past_the_size_limit() {
    let target = Target::start(&[
        ("ZHIBAN_LIMITS__MAX_NEW_DOCUMENTS_PER_HOUR", "3"),
        ("ZHIBAN_LIMITS__MAX_DOCUMENT_BYTES", "65536"),
    ])
    .await;
    let mut anna = target.peer("anna").await;
    for n in 0..3 {
        let mut doc = new_document(&[("type", "incident"), ("title", &format!("第{n}起"))]);
        assert!(anna.sync(DocumentId::random(), &mut doc).await.unwrap());
    }
    let mut fourth = new_document(&[("type", "incident"), ("title", "第四起")]);
    let error = anna
        .sync(DocumentId::random(), &mut fourth)
        .await
        .expect_err("refused")
        .to_string();
    assert!(error.contains("the limit is 3"), "{error}");
    let colleague = target.report("alice's report").await;
    assert!(target.catalog_lists(colleague).await, "others still create");

    // 200 KB of hex (about 100 KB once compressed) on a 64 KiB budget: refused, and what
    // was stored before stays.
    let id = DocumentId::random();
    let mut doc = new_document(&[("type", "incident"), ("title", "大")]);
    assert!(target.peer("alice").await.sync(id, &mut doc).await.unwrap());
    let mut noise = String::new();
    let mut block = [0u8; 32];
    while noise.len() < 200_000 {
        use sha2::{Digest, Sha256};
        block = Sha256::digest(block).into();
        noise.push_str(&hex::encode(block));
    }
    edit(&mut doc, "location", &noise);
    let mut alice = target.peer("alice").await;
    let error = alice
        .sync(id, &mut doc)
        .await
        .expect_err("refused")
        .to_string();
    assert!(error.contains("the limit is 65536"), "{error}");
    let mut stored = Automerge::new();
    assert!(
        target
            .peer("cleared")
            .await
            .sync(id, &mut stored)
            .await
            .unwrap()
    );
    assert_eq!(text(&stored, "title").as_deref(), Some("大"));
    assert_eq!(text(&stored, "location"), None);
    assert!(target.healthy().await);
    target.assert_peak_below(200);
}

#[tokio::test]
async fn failed_logins_lock_out_and_password_checks_are_bounded() {
    let target = Target::start(&[("ZHIBAN_LIMITS__FAILED_LOGINS_PER_ADDRESS", "20")]).await;
    let http = reqwest::Client::new();
    let url = format!("http://{}/api/auth/login", target.address());
    let attempt = |username: String, password: &'static str| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let response = http
                .post(url)
                .json(&json!({"username": username, "password": password}))
                .send()
                .await
                .unwrap();
            let retry = response.headers().get("retry-after").cloned();
            (response.status().as_u16(), retry)
        }
    };
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(attempt("alice".into(), "wrong password").await);
    }
    assert!(
        statuses[..4].iter().all(|(status, _)| *status == 401),
        "{statuses:?}"
    );
    assert!(
        statuses[5..]
            .iter()
            .all(|(status, retry)| *status == 429 && retry.is_some())
    );
    // Locked out, even with the right password; others are not.
    assert_eq!(attempt("alice".into(), PASSWORD).await.0, 429);
    assert_eq!(attempt("anna".into(), PASSWORD).await.0, 200);
    // A name no user can have is refused before any password check.
    assert_eq!(attempt("x".repeat(100_000), "whatever").await.0, 400);
    let lockouts = target.audit("auth.lockout").await;
    assert!(lockouts[0].contains("username alice"), "{lockouts:?}");

    // 150 logins at once: each is answered (401 or 429), and memory stays bounded.
    let storm: Vec<_> = (0..150)
        .map(|i| tokio::spawn(attempt(format!("stranger{i}"), "guess")))
        .collect();
    for login in storm {
        let (status, _) = login.await.unwrap();
        assert!(status == 401 || status == 429, "{status}");
    }
    target.assert_peak_below(150);
    // Guessing across usernames locks the address out (whatever the storm's share was:
    // logins turned away busy count for nothing), even for the right password…
    let mut guesses = 0;
    while attempt(format!("guess{guesses}"), "guess").await.0 != 429 {
        guesses += 1;
        assert!(guesses <= 20, "no lockout after {guesses} more failures");
    }
    assert_eq!(attempt("anna".into(), PASSWORD).await.0, 429);
    // …while another address (an office elsewhere) is not.
    let elsewhere = reqwest::Client::builder()
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .unwrap();
    let response = elsewhere
        .post(&url)
        .json(&json!({"username": "anna", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let failures = target.audit("auth.login_failed").await;
    assert!(
        failures.iter().all(|detail| detail.len() < 200),
        "nothing huge is kept"
    );
}

#[tokio::test]
async fn a_request_that_never_finishes_its_headers_is_dropped() {
    let target = Target::start(&[("ZHIBAN_LIMITS__HTTP_HEADER_TIMEOUT_SECS", "1")]).await;
    let mut socket = tokio::net::TcpStream::connect(target.address())
        .await
        .unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: zhiban\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), socket.read_to_end(&mut answer))
        .await
        .expect("the server hangs up within seconds");
    assert!(read.is_ok() || answer.is_empty());
    assert!(target.healthy().await);
}

#[tokio::test]
async fn a_device_may_hold_only_so_many_connections() {
    let target = Target::start(&[("ZHIBAN_LIMITS__MAX_CONNECTIONS_PER_DEVICE", "2")]).await;
    let session = target.login("anna").await;
    let url = crate::helpers::sync_url_at(
        &reqwest::Client::new(),
        target.address(),
        false,
        &session.access_token,
    )
    .await;
    let _first = RawPeer::connect(&url, &session.peer_id).await.unwrap();
    let _second = RawPeer::connect(&url, &session.peer_id).await.unwrap();
    let refused = RawPeer::connect(&url, &session.peer_id).await;
    let error = refused
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(error.contains("connections"), "{error}");
}

#[tokio::test]
async fn catalogs_cannot_be_squatted() {
    let target = Target::start(&[]).await;
    // Catalog ids are no longer derived from the unit id: the old derivation names an
    // ordinary document, which never receives announcements.
    let town = target.town("anna").await;
    assert!(
        town["classified_catalog"].is_null(),
        "not for the uncleared"
    );
    let old = {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(b"zhiban/catalog/v1/");
        hasher.update(town["id"].as_str().unwrap().as_bytes());
        hasher.update(b"/plain");
        let digest = hasher.finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        DocumentId::from_bytes(bytes)
    };
    let mut squat = Automerge::new();
    squat
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(ROOT, "type", "catalog")?;
            tx.put_object(ROOT, "documents", ObjType::Map)?;
            Ok(())
        })
        .unwrap();
    let mut anna = target.peer("anna").await;
    assert!(
        anna.sync(old, &mut squat).await.unwrap(),
        "an ordinary record"
    );

    // The classified catalog exists already, so an uncleared user who learns its id cannot
    // make it hers; the plain one is read-only to every device.
    let classified = target.catalog("cleared", true).await;
    let mut grab = new_document(&[("type", "catalog")]);
    let mut anna = target.peer("anna").await;
    assert!(
        !anna.sync(classified, &mut grab).await.unwrap(),
        "unavailable"
    );
    let plain = target.catalog("anna", false).await;
    let mut copy = Automerge::new();
    let mut state = automerge::sync::State::new();
    let mut anna = target.peer("anna").await;
    assert!(anna.sync_with(plain, &mut copy, &mut state).await.unwrap());
    copy.transact::<_, _, automerge::AutomergeError>(|tx| tx.delete(ROOT, "documents"))
        .unwrap();
    let message = copy.generate_sync_message(&mut state).unwrap();
    anna.send_sync(plain, message.encode()).await.unwrap();

    let after = target.report("after the squatting").await;
    assert!(
        target.catalog_lists(after).await,
        "the real catalog still announces"
    );
    let mut check = Automerge::new();
    assert!(
        target
            .peer("alice")
            .await
            .sync(old, &mut check)
            .await
            .unwrap()
    );
    let Ok(Some((_, documents))) = automerge::ReadDoc::get(&check, ROOT, "documents") else {
        panic!("the squatted document lost its map");
    };
    assert_eq!(
        automerge::ReadDoc::keys(&check, &documents).count(),
        0,
        "nothing is announced into a document the server did not register as a catalog"
    );
    target.assert_peak_below(200);
}
