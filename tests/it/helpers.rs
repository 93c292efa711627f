//! `spawn_app()`: the real server on port 0 with a fresh SQLite file, plus typed helpers to
//! set up units and users, log in, and speak the sync protocol as a raw peer.

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use anyhow::{Context, bail};
use automerge::sync::SyncDoc;
use automerge::{Automerge, ChangeHash};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zhiban_protocol::{DocumentId, Message, PeerId};
use zhiban_server::access::Role;
use zhiban_server::units::NewUser;
use zhiban_server::{Settings, db};

pub const PASSWORD: &str = "correct horse battery";

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| "info,zhiban_server=debug".into()),
                )
                .with_test_writer()
                .init();
        }
    });
}

pub struct TestApp {
    pub address: std::net::SocketAddr,
    pub http: reqwest::Client,
    pub pool: db::Pool,
    pub settings: Settings,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

pub fn test_settings(data_dir: &Path) -> Settings {
    Settings {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        // Made-up endpoints of tests that never push (reserved names: nothing resolves).
        push_allowed_origins: "https://push.example.net,https://p.example".into(),
        ..Settings::default()
    }
}

/// A database of its own on the local PostgreSQL, dropped when the test is done with it.
pub struct TestDatabase {
    name: String,
}

const POSTGRES_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, and the test's runtime may be ending: a thread of its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                use sqlx::Connection;
                let mut admin = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL).await?;
                // FORCE: a server the test left running still holds connections.
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await?;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}: {dropped:?}", self.name);
        }
    }
}

/// Settings for a fresh database on the local PostgreSQL (127.0.0.1:5432, trust auth), and
/// the database itself: keep it alive for as long as the test uses the settings.
pub async fn postgres_settings(data_dir: &Path) -> (Settings, TestDatabase) {
    use sqlx::Connection;
    let name = format!("zhiban_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(POSTGRES_ADMIN_URL)
        .await
        .expect("the local PostgreSQL on 127.0.0.1:5432");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let settings = Settings {
        database_url: Some(format!("postgres://postgres@127.0.0.1:5432/{name}")),
        ..test_settings(data_dir)
    };
    (settings, TestDatabase { name })
}

pub async fn spawn_app() -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut app = spawn_app_with(test_settings(dir.path())).await;
    app._dir = Some(dir);
    app
}

/// [`spawn_app`] on a manual clock, for tests that move the server's time.
pub async fn spawn_app_on(clock: zhiban_server::clock::Clock) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut app = spawn_app_with(Settings {
        clock,
        ..test_settings(dir.path())
    })
    .await;
    app._dir = Some(dir);
    app
}

/// Starts the server with `settings` (its data directory is kept by the caller).
pub async fn spawn_app_with(settings: Settings) -> TestApp {
    init_logs();
    let pool = db::connect(&settings.database_url())
        .await
        .expect("database");
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .expect("bind");
    let address = listener.local_addr().unwrap();
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(zhiban_server::launch(
        settings.clone(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    TestApp {
        address,
        http: reqwest::Client::new(),
        pool,
        settings,
        shutdown: Some(shutdown),
        server: Some(server),
        _dir: None,
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    pub user_id: String,
    pub device_id: String,
    pub peer_id: String,
}

impl TestApp {
    /// `https://…` when the server was started with a certificate.
    pub fn url(&self, path: &str) -> String {
        let scheme = if self.settings.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}{path}", self.address)
    }

    /// `/sync` opened with a ticket fetched with the access token `token` (see
    /// [`sync_url_at`]).
    pub async fn sync_url(&self, token: &str) -> String {
        let tls = self.settings.tls_cert.is_some();
        sync_url_at(&self.http, &self.address.to_string(), tls, token).await
    }

    pub async fn create_unit(&self, name: &str, parent: Option<&str>) -> String {
        let key = zhiban_server::keys::Keys::load(&self.settings, &self.pool)
            .await
            .expect("catalog key");
        zhiban_server::accounts::create_unit(
            &self.pool,
            &key,
            name,
            parent,
            zhiban_server::clock::system_ms(),
        )
        .await
        .expect("create unit")
    }

    /// The server's keys, as its admin commands read them.
    pub async fn keys(&self) -> zhiban_server::keys::Keys {
        zhiban_server::keys::Keys::load(&self.settings, &self.pool)
            .await
            .expect("keys")
    }

    /// `admin verify-audit`: the chain with the audit key, and the checkpoint file.
    pub async fn verify_audit(&self) -> zhiban_server::audit::Verdict {
        let checkpoints = self.settings.audit_checkpoint_file();
        zhiban_server::audit::verify(&self.pool, &self.keys().await.audit, Some(&checkpoints))
            .await
            .expect("verify")
    }

    pub async fn create_user(&self, username: &str, unit_id: &str, role: Role, cleared: bool) {
        let key = self.keys().await;
        zhiban_server::accounts::create_user(
            &self.pool,
            &key,
            NewUser {
                username,
                display_name: None,
                password: PASSWORD,
                unit_id,
                role,
                cleared,
            },
            zhiban_server::clock::system_ms(),
        )
        .await
        .expect("create user");
    }

    pub async fn login(&self, username: &str, device: &str) -> Session {
        let response = self
            .http
            .post(self.url("/api/auth/login"))
            .json(&json!({"username": username, "password": PASSWORD, "device_name": device}))
            .send()
            .await
            .expect("login request");
        assert_eq!(response.status(), 200, "login of {username} failed");
        response.json().await.expect("login body")
    }

    /// The catalog of `unit`'s plain (or classified) records, as `username` learns it from
    /// `GET /api/units` (catalog ids are the server's to give).
    pub async fn catalog(&self, username: &str, unit: &str, classified: bool) -> DocumentId {
        let token = self.login(username, "catalogs").await.access_token;
        let units = get(self, &token, "/api/units").await;
        let unit = units
            .as_array()
            .unwrap()
            .iter()
            .find(|view| view["id"] == unit)
            .expect("the unit is visible");
        let key = if classified {
            "classified_catalog"
        } else {
            "catalog"
        };
        unit[key].as_str().expect("a catalog id").parse().unwrap()
    }

    /// A raw protocol peer logged in as `username` on a new device.
    pub async fn peer(&self, username: &str) -> RawPeer {
        let session = self.login(username, "raw peer").await;
        RawPeer::connect(
            &self.sync_url(&session.access_token).await,
            &session.peer_id,
        )
        .await
        .expect("raw peer connects")
    }

    /// Graceful shutdown, as on SIGTERM; returns the server's own result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let server = self.server.take().expect("server running");
        tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .context("server did not stop within 20 s")??
    }

    /// Stops the server and keeps its data directory for a restart.
    pub async fn stop_keeping_data(mut self) -> (Settings, Option<tempfile::TempDir>) {
        let dir = self._dir.take();
        let settings = self.settings.clone();
        self.stop().await.expect("clean stop");
        (settings, dir)
    }

    /// Stored chunks of one document.
    pub async fn chunk_rows(&self, document_id: DocumentId) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM document_chunks WHERE document_id = $1")
            .bind(document_id.to_string())
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn healthy(&self) -> bool {
        matches!(self.http.get(self.url("/healthz")).send().await, Ok(r) if r.status() == 200)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A peer that speaks the wire protocol directly with our protocol crate and automerge, for
/// tests that need to see exactly what the server sends.
pub struct RawPeer {
    pub socket: Socket,
    pub peer_id: PeerId,
    pub server_id: PeerId,
}

#[derive(Debug)]
pub enum Received {
    Message(Message),
    Closed(Option<u16>),
}

impl RawPeer {
    pub async fn connect(url: &str, peer_id: &str) -> anyhow::Result<RawPeer> {
        let (mut socket, _) = tokio_tungstenite::connect_async(url).await?;
        let join = Message::Join {
            sender_id: PeerId::new(peer_id),
            supported_protocol_versions: vec!["1".into()],
            peer_metadata: None,
        };
        socket.send(WsMessage::Binary(join.encode().into())).await?;
        let mut peer = RawPeer {
            socket,
            peer_id: PeerId::new(peer_id),
            server_id: PeerId::new(""),
        };
        match peer.recv().await? {
            Received::Message(Message::Peer { sender_id, .. }) => peer.server_id = sender_id,
            other => bail!("expected peer, got {other:?}"),
        }
        Ok(peer)
    }

    pub async fn send(&mut self, message: &Message) -> anyhow::Result<()> {
        self.send_raw(message.encode()).await
    }

    pub async fn send_raw(&mut self, frame: Vec<u8>) -> anyhow::Result<()> {
        self.socket.send(WsMessage::Binary(frame.into())).await?;
        Ok(())
    }

    /// The next protocol message or the close, within 10 s.
    pub async fn recv(&mut self) -> anyhow::Result<Received> {
        self.recv_within(Duration::from_secs(10)).await
    }

    pub async fn recv_within(&mut self, limit: Duration) -> anyhow::Result<Received> {
        loop {
            let next = tokio::time::timeout(limit, self.socket.next())
                .await
                .context("nothing received in time")?;
            match next {
                Some(Ok(WsMessage::Binary(frame))) => {
                    return Ok(Received::Message(Message::decode(&frame)?));
                }
                Some(Ok(WsMessage::Close(frame))) => {
                    return Ok(Received::Closed(frame.map(|f| u16::from(f.code))));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Ok(Received::Closed(None)),
            }
        }
    }

    /// Reads until the socket closes; returns the close code and any error messages seen.
    pub async fn until_closed(&mut self) -> anyhow::Result<(Option<u16>, Vec<String>)> {
        let mut errors = Vec::new();
        loop {
            match self.recv().await? {
                Received::Closed(code) => return Ok((code, errors)),
                Received::Message(Message::Error { message }) => errors.push(message),
                Received::Message(_) => {}
            }
        }
    }

    /// Sends `data` (an automerge sync message, or anything an attacker likes) as `sync`.
    pub async fn send_sync(
        &mut self,
        document_id: DocumentId,
        data: Vec<u8>,
    ) -> anyhow::Result<()> {
        let message = self.sync_message(document_id, data, false);
        self.send(&message).await
    }

    fn sync_message(&self, document_id: DocumentId, data: Vec<u8>, request: bool) -> Message {
        let (sender_id, target_id) = (self.peer_id.clone(), self.server_id.clone());
        Message::sync_or_request(request, document_id, sender_id, target_id, data)
    }

    /// Runs the sync protocol for one document until the server holds `doc`'s heads and we
    /// hold the server's. Returns false if the server says the document is unavailable.
    pub async fn sync(
        &mut self,
        document_id: DocumentId,
        doc: &mut Automerge,
    ) -> anyhow::Result<bool> {
        let mut state = automerge::sync::State::new();
        self.sync_with(document_id, doc, &mut state).await
    }

    pub async fn sync_with(
        &mut self,
        document_id: DocumentId,
        doc: &mut Automerge,
        state: &mut automerge::sync::State,
    ) -> anyhow::Result<bool> {
        let request = doc.get_heads().is_empty();
        if let Some(message) = doc.generate_sync_message(state) {
            let message = self.sync_message(document_id, message.encode(), request);
            self.send(&message).await?;
        }
        loop {
            if state.their_heads.as_ref() == Some(&doc.get_heads()) {
                return Ok(true);
            }
            match self.recv().await? {
                Received::Message(Message::Sync {
                    document_id: id,
                    data,
                    ..
                }) if id == document_id => {
                    doc.receive_sync_message(state, automerge::sync::Message::decode(&data)?)?;
                    if let Some(reply) = doc.generate_sync_message(state) {
                        let message = self.sync_message(document_id, reply.encode(), false);
                        self.send(&message).await?;
                    }
                }
                Received::Message(Message::DocUnavailable {
                    document_id: id, ..
                }) if id == document_id => {
                    return Ok(false);
                }
                Received::Message(Message::Error { message }) => bail!("server error: {message}"),
                Received::Message(_) => {}
                Received::Closed(code) => bail!("socket closed ({code:?}) during sync"),
            }
        }
    }

    /// Sends our changes and waits until the server confirms it holds `heads`.
    pub async fn push_until_acknowledged(
        &mut self,
        document_id: DocumentId,
        doc: &mut Automerge,
        state: &mut automerge::sync::State,
    ) -> anyhow::Result<Vec<ChangeHash>> {
        anyhow::ensure!(
            self.sync_with(document_id, doc, state).await?,
            "unavailable"
        );
        Ok(doc.get_heads())
    }
}

/// Waits for the server's refusal of `device`'s changes to `id`; its reason. The changes
/// stay on the device, not "received".
pub async fn refusal(
    device: &zhiban_client_core::Device,
    id: &zhiban_client_core::DocumentId,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let listed = device.list().await.unwrap();
        let summary = listed.into_iter().find(|d| d.id == *id).unwrap();
        if let Some(reason) = summary.refused {
            assert_eq!(
                summary.status,
                zhiban_client_core::DeliveryStatus::SavedOnDevice
            );
            return reason;
        }
        assert!(tokio::time::Instant::now() < deadline, "no refusal of {id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (up to 20 s) until `device` holds the record `id` with its content, not just its id
/// from a catalog.
pub async fn until_held(device: &zhiban_client_core::Device, id: &zhiban_client_core::DocumentId) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while device
        .get(id)
        .await
        .map_or(true, |doc| doc["type"].is_null())
    {
        assert!(std::time::Instant::now() < deadline, "{id} never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GET an API path as `token`; asserts 200 and returns the JSON body.
pub async fn get(app: &TestApp, token: &str, path: &str) -> serde_json::Value {
    let response = app
        .http
        .get(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

/// A document with a few fields set in one change, as a device would create it.
pub fn new_document(fields: &[(&str, &str)]) -> Automerge {
    use automerge::transaction::Transactable;
    let mut doc = Automerge::new();
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        for (key, value) in fields {
            tx.put(automerge::ROOT, *key, *value)?;
        }
        Ok(())
    })
    .map_err(|f| f.error)
    .expect("transaction");
    doc
}

pub fn edit(doc: &mut Automerge, key: &str, value: &str) {
    use automerge::transaction::Transactable;
    doc.transact::<_, _, automerge::AutomergeError>(|tx| {
        tx.put(automerge::ROOT, key, value)?;
        Ok(())
    })
    .map_err(|f| f.error)
    .expect("transaction");
}

pub fn text(doc: &Automerge, key: &str) -> Option<String> {
    use automerge::ReadDoc;
    match doc.get(automerge::ROOT, key).ok()?? {
        (automerge::Value::Scalar(s), _) => s.as_str().map(str::to_owned),
        (automerge::Value::Object(automerge::ObjType::Text), id) => doc.text(&id).ok(),
        _ => None,
    }
}

/// `/sync` on the server at `address`, opened with a ticket fetched with the access token
/// `token`. A token that gets no ticket goes into the URL itself, so that tests of refused
/// credentials see `/sync` refuse them too.
pub async fn sync_url_at(http: &reqwest::Client, address: &str, tls: bool, token: &str) -> String {
    let (http_scheme, ws_scheme) = if tls {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    let response = http
        .post(format!("{http_scheme}://{address}/api/sync/ticket"))
        .bearer_auth(token)
        .send()
        .await
        .expect("ticket request");
    let ticket = if response.status().is_success() {
        let ticket: zhiban_api::SyncTicket = response.json().await.expect("ticket");
        ticket.ticket
    } else {
        token.to_owned()
    };
    format!("{ws_scheme}://{address}/sync?ticket={ticket}")
}

/// A raw protocol peer logged in as `username` on a new device of the server at `address`
/// (a server process).
pub async fn peer_at(address: &str, username: &str) -> RawPeer {
    let session = login(address, username).await;
    let url = sync_url_at(
        &reqwest::Client::new(),
        address,
        false,
        &session.access_token,
    )
    .await;
    RawPeer::connect(&url, &session.peer_id)
        .await
        .expect("raw peer connects")
}

/// Two units side by side under one district office, a user of each role we need.
pub struct Org {
    pub district: String,
    pub unit_a: String,
    pub unit_b: String,
}

pub async fn org(app: &TestApp) -> Org {
    let district = app.create_unit("District office", None).await;
    let unit_a = app.create_unit("Town A", Some(&district)).await;
    let unit_b = app.create_unit("Town B", Some(&district)).await;
    app.create_user("district", &district, Role::Leader, true)
        .await;
    app.create_user("alice", &unit_a, Role::Officer, false)
        .await;
    app.create_user("anna", &unit_a, Role::Field, false).await;
    app.create_user("bob", &unit_b, Role::Officer, false).await;
    app.create_user("cleared", &unit_a, Role::Leader, true)
        .await;
    Org {
        district,
        unit_a,
        unit_b,
    }
}

/// The server as a child process, so that a test can `kill -9` it or read its memory.
pub struct ServerProcess {
    pub child: tokio::process::Child,
    pub address: String,
}

impl ServerProcess {
    fn status(&self, field: &str) -> u64 {
        let pid = self.child.id().expect("running");
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a memory figure")
    }

    /// The most resident memory it ever had, KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status("VmHWM:")
    }
}

/// Starts the server binary on `settings`' database, with `env` (e.g. `ZHIBAN_LIMITS__…`)
/// on top, and waits for the address it prints.
pub async fn start_server_process(settings: &Settings, env: &[(&str, &str)]) -> ServerProcess {
    use tokio::io::AsyncBufReadExt;
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_zhiban-server-under-test"));
    command
        .env("ZHIBAN_LISTEN", "127.0.0.1:0")
        .env("ZHIBAN_DATABASE_URL", settings.database_url())
        .env("ZHIBAN_DATA_DIR", &settings.data_dir)
        .env("ZHIBAN_LOG", "warn");
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(if std::env::var_os("TEST_LOG").is_some() {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        })
        .kill_on_drop(true)
        .spawn()
        .expect("server binary starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("server prints its address")
        .unwrap()
        .expect("a line");
    let address = line
        .strip_prefix("zhiban-server listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    ServerProcess { child, address }
}

/// Logs `username` in at a server's `address` with the test password.
pub async fn login(address: &str, username: &str) -> Session {
    reqwest::Client::new()
        .post(format!("http://{address}/api/auth/login"))
        .json(&serde_json::json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A tablet (a `client-core` device in a directory of its own) of `username`, logged in at
/// the server's present time; its sync runs only while it [`creates`](Tablet::create).
pub struct Tablet {
    pub device: zhiban_client_core::Device,
    _dir: tempfile::TempDir,
}

impl Tablet {
    pub async fn login(app: &TestApp, username: &str) -> Tablet {
        let dir = tempfile::tempdir().unwrap();
        let device = zhiban_client_core::Device::open(dir.path()).await.unwrap();
        device
            .login(
                &format!("http://{}", app.address),
                username,
                PASSWORD,
                "tablet",
            )
            .await
            .unwrap();
        Tablet { device, _dir: dir }
    }

    /// Creates `records` and waits until the server has them.
    pub async fn create(&self, records: &[serde_json::Value]) -> Vec<DocumentId> {
        let sync = self.device.start_sync_with(zhiban_client_core::Backoff {
            initial: Duration::from_millis(20),
            max: Duration::from_millis(300),
        });
        let mut ids = Vec::new();
        for record in records {
            let (id, _warnings) = self.device.create_record(record).await.unwrap();
            ids.push(id);
        }
        for id in &ids {
            self.device
                .wait_received(id, Duration::from_secs(20))
                .await
                .unwrap();
        }
        sync.stop().await;
        ids
    }
}

/// Waits (20 s at most) until `device` holds `id` readably: fetched through a catalog.
pub async fn wait_holds(device: &zhiban_client_core::Device, id: &DocumentId) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while device.get(id).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never reached the device"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
