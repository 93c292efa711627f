//! `samod` (the Rust automerge-repo, =0.16.0) as an independent client of a sync server.
//!
//! Included via `#[path = "../support/samod_peer.rs"] mod samod_peer;` (no submodules here).
//!
//! The websocket side is our own [`samod::Dialer`] over `tokio-tungstenite` 0.29: samod's built-in
//! `Repo::dial_websocket` lives behind its `tungstenite` feature, which pins tokio-tungstenite 0.27 and
//! native-tls, so it is not used. The dialer reconnects with a short backoff when the connection drops
//! (e.g. the server restarts); an HTTP rejection of the upgrade (401, 403, ...) is a permanent failure.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, anyhow, bail};
use automerge::{Automerge, ObjId, ObjType, ReadDoc, ScalarValue, Value, transaction::Transaction};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _, future::BoxFuture};
use samod::{
    BackoffConfig, DialError, Dialer, DialerEvent, DialerHandle, DocHandle, DocumentId, PeerId,
    Repo, Transport,
};
use tokio_tungstenite::tungstenite::{self, Message};

/// How long [`SamodPeer::connect`] waits for the `join` → `peer` handshake.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`SamodPeer::find`] (and the implicit lookups of `change`/`read`/`wait_until`) may take.
pub const FIND_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on [`SamodPeer::stop`] waiting for samod to shut down.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// Reconnect backoff after the first connection: quick, and forever (until `stop`).
fn backoff() -> BackoffConfig {
    BackoffConfig {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_secs(1),
        max_retries: None,
    }
}

/// What a change closure may return: `()` or `Result<(), E>` for any `E: Into<anyhow::Error>`
/// (e.g. `automerge::AutomergeError`, so that `?` works on `tx.put(...)`; write the final value as
/// `Ok::<_, automerge::AutomergeError>(())`). An `Err` or a panic rolls the transaction back.
pub trait ChangeOutcome {
    fn into_outcome(self) -> anyhow::Result<()>;
}

impl ChangeOutcome for () {
    fn into_outcome(self) -> anyhow::Result<()> {
        Ok(())
    }
}

impl<E: Into<anyhow::Error>> ChangeOutcome for Result<(), E> {
    fn into_outcome(self) -> anyhow::Result<()> {
        self.map_err(Into::into)
    }
}

/// Error type of the websocket transport and of the dialer's permanent failures.
#[derive(Debug, Clone)]
pub struct WsError(pub String);

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WsError {}

struct WsDialer {
    /// Full URL including `?ticket=...`, used to connect.
    url: String,
    /// Same URL without the query string; samod only uses it for logs/diagnostics.
    log_url: samod::Url,
    /// The last transient connect error, for diagnostics when the handshake never completes.
    last_error: Arc<Mutex<Option<String>>>,
}

impl Dialer for WsDialer {
    type Error = WsError;

    fn url(&self) -> samod::Url {
        self.log_url.clone()
    }

    fn connect(&self) -> BoxFuture<'static, Result<Transport, DialError<WsError>>> {
        let url = self.url.clone();
        let last_error = self.last_error.clone();
        Box::pin(async move {
            match tokio_tungstenite::connect_async_with_config(url.as_str(), None, true).await {
                Ok((ws, _response)) => Ok(ws_transport(ws)),
                Err(tungstenite::Error::Http(response)) => {
                    let body = response
                        .body()
                        .as_deref()
                        .map(|b| format!(": {}", String::from_utf8_lossy(b)))
                        .unwrap_or_default();
                    let msg = format!(
                        "server rejected the websocket upgrade with HTTP {}{body}",
                        response.status()
                    );
                    *last_error.lock().unwrap() = Some(msg.clone());
                    Err(DialError::PermanentFailure(WsError(msg)))
                }
                Err(e) => {
                    *last_error.lock().unwrap() = Some(e.to_string());
                    Err(DialError::transient(e))
                }
            }
        })
    }
}

/// Adapt a tungstenite websocket into samod's byte transport: binary frames carry protocol messages,
/// ping/pong/close frames are skipped (the stream ends after close), text frames are an error.
fn ws_transport<S>(ws: tokio_tungstenite::WebSocketStream<S>) -> Transport
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sink, stream) = ws.split();
    let stream = stream
        .filter_map(|msg| {
            futures_util::future::ready(match msg {
                Ok(Message::Binary(bytes)) => Some(Ok(bytes.to_vec())),
                Ok(Message::Text(_)) => Some(Err(WsError(
                    "unexpected text message on websocket".to_string(),
                ))),
                Ok(_) => None,
                Err(e) => Some(Err(WsError(format!("websocket receive error: {e}")))),
            })
        })
        .boxed();
    // No sink_map_err here: its FnOnce mapper panics if the sink errors twice.
    let sink = sink.with(|bytes: Vec<u8>| {
        futures_util::future::ready(Ok::<_, tungstenite::Error>(Message::Binary(bytes.into())))
    });
    Transport::new(stream, sink)
}

fn stopped(_: samod::Stopped) -> anyhow::Error {
    anyhow!("the samod repo has been stopped")
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Run `f` in one transaction on `doc`; commit on success, roll back on `Err` or panic.
/// Panics are caught so that they never unwind through samod's document actor.
fn apply_change<R: ChangeOutcome>(
    doc: &mut Automerge,
    f: impl FnOnce(&mut Transaction<'_>) -> R,
) -> anyhow::Result<()> {
    let mut tx = doc.transaction();
    match catch_unwind(AssertUnwindSafe(|| f(&mut tx).into_outcome())) {
        Ok(Ok(())) => {
            tx.commit();
            Ok(())
        }
        Ok(Err(e)) => {
            tx.rollback();
            Err(e.context("change closure returned an error (rolled back)"))
        }
        Err(payload) => {
            tx.rollback();
            bail!(
                "change closure panicked: {}",
                panic_message(payload.as_ref())
            )
        }
    }
}

/// Accepts a bare bs58check id or an `automerge:` URL.
pub fn parse_document_id(document_id: &str) -> anyhow::Result<DocumentId> {
    let raw = document_id
        .strip_prefix("automerge:")
        .unwrap_or(document_id);
    raw.parse::<DocumentId>()
        .map_err(|e| anyhow!("invalid document id {document_id:?}: {e}"))
}

/// A samod repo (in-memory storage, samod's default share policy) connected to one sync server.
pub struct SamodPeer {
    repo: Repo,
    dialer: DialerHandle<WsError>,
    server_peer_id: String,
    handles: Mutex<HashMap<String, DocHandle>>,
    stopped: bool,
}

impl SamodPeer {
    /// Connect a samod repo to `ws_url` (e.g. `ws://127.0.0.1:PORT/sync?ticket=TICKET`) with exactly `peer_id`
    /// as the peer id of its `join`. Returns once the server answered `peer`; errors after
    /// [`CONNECT_TIMEOUT`], or at once if the server rejects the HTTP upgrade.
    pub async fn connect(ws_url: &str, peer_id: &str) -> anyhow::Result<SamodPeer> {
        Self::connect_with_timeout(ws_url, peer_id, CONNECT_TIMEOUT).await
    }

    pub async fn connect_with_timeout(
        ws_url: &str,
        peer_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<SamodPeer> {
        let mut log_url = samod::Url::parse(ws_url)
            .with_context(|| format!("invalid websocket url {ws_url:?}"))?;
        log_url.set_query(None);
        let repo = Repo::build_tokio()
            .with_peer_id(PeerId::from(peer_id))
            .load()
            .await;
        let last_error = Arc::new(Mutex::new(None));
        let dialer = Arc::new(WsDialer {
            url: ws_url.to_string(),
            log_url,
            last_error: last_error.clone(),
        });
        let handle = match repo.dial(backoff(), dialer) {
            Ok(handle) => handle,
            Err(e) => {
                let _ = tokio::time::timeout(STOP_TIMEOUT, repo.stop()).await;
                return Err(stopped(e));
            }
        };
        // `events()` borrows its handle (2024 capture rules), so subscribe through a clone.
        let events_source = handle.clone();
        let mut events = events_source.events();
        let outcome = tokio::time::timeout(timeout, handle.established()).await;
        let fail = |msg: String| {
            let repo = repo.clone();
            let handle = handle.clone();
            async move {
                handle.close();
                let _ = tokio::time::timeout(STOP_TIMEOUT, repo.stop()).await;
                anyhow!(msg)
            }
        };
        match outcome {
            Ok(Ok(info)) => Ok(SamodPeer {
                repo,
                dialer: handle,
                server_peer_id: info.peer_id.to_string(),
                handles: Mutex::new(HashMap::new()),
                stopped: false,
            }),
            Ok(Err(e)) => Err(fail(format!("samod could not connect to {ws_url}: {e}")).await),
            Err(_) => {
                let mut seen: Vec<DialerEvent> = Vec::new();
                while let Some(Some(event)) = events.next().now_or_never() {
                    seen.push(event);
                }
                let last = last_error.lock().unwrap().clone();
                Err(fail(format!(
                    "samod did not complete the handshake with {ws_url} within {timeout:?} \
                     (last connect error: {last:?}; dialer events: {seen:?})"
                ))
                .await)
            }
        }
    }

    /// The underlying samod repo (escape hatch).
    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    /// The underlying samod dialer (events, connection id, ...).
    pub fn dialer(&self) -> &DialerHandle<WsError> {
        &self.dialer
    }

    /// Our own peer id (as sent in `join`).
    pub fn peer_id(&self) -> String {
        self.repo.peer_id().to_string()
    }

    /// The `senderId` of the server's `peer` message in the first handshake.
    pub fn server_peer_id(&self) -> &str {
        &self.server_peer_id
    }

    /// Whether the dialer currently has a handshaken connection.
    pub fn is_connected(&self) -> bool {
        self.dialer.is_connected()
    }

    /// Wait until the dialer is (re)connected, e.g. after a server restart.
    pub async fn wait_connected(&self, timeout: Duration) -> anyhow::Result<()> {
        match tokio::time::timeout(timeout, self.dialer.established()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(anyhow!("samod dialer failed: {e}")),
            Err(_) => bail!("samod dialer not connected within {timeout:?}"),
        }
    }

    /// Create a document, apply `init` in one transaction, return its bs58check id (no `automerge:`).
    /// samod syncs it to the server in the background; use [`Self::wait_synced`] to wait for the ack.
    pub async fn create<R: ChangeOutcome>(
        &self,
        init: impl FnOnce(&mut Transaction<'_>) -> R,
    ) -> anyhow::Result<String> {
        let mut doc = Automerge::new();
        apply_change(&mut doc, init)?;
        let handle = self.repo.create(doc).await.map_err(stopped)?;
        let id = handle.document_id().to_string();
        self.handles.lock().unwrap().insert(id.clone(), handle);
        Ok(id)
    }

    /// Find a document by id (bs58check or `automerge:` URL). `Ok(None)` when every connected peer (the
    /// server) answered `doc-unavailable`; errors after [`FIND_TIMEOUT`].
    pub async fn find(&self, document_id: &str) -> anyhow::Result<Option<DocHandle>> {
        self.find_with_timeout(document_id, FIND_TIMEOUT).await
    }

    /// Note: samod keeps one actor per document. Once a lookup ended "unavailable", a second `find`
    /// answers `None` immediately without asking the server again (unless the server has pushed the
    /// document meanwhile).
    pub async fn find_with_timeout(
        &self,
        document_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<Option<DocHandle>> {
        let id = parse_document_id(document_id)?;
        let key = id.to_string();
        match tokio::time::timeout(timeout, self.repo.find(id)).await {
            Err(_) => bail!("samod find({key}) did not resolve within {timeout:?}"),
            Ok(Err(e)) => Err(stopped(e)),
            Ok(Ok(None)) => Ok(None),
            Ok(Ok(Some(handle))) => {
                self.handles.lock().unwrap().insert(key, handle.clone());
                Ok(Some(handle))
            }
        }
    }

    /// A handle for a document created or found before, else looked up (an error if unavailable).
    pub async fn handle(&self, document_id: &str) -> anyhow::Result<DocHandle> {
        let key = parse_document_id(document_id)?.to_string();
        if let Some(handle) = self.handles.lock().unwrap().get(&key) {
            return Ok(handle.clone());
        }
        self.find(&key)
            .await?
            .ok_or_else(|| anyhow!("document {key} is unavailable"))
    }

    /// Apply a change in one transaction (runs on samod's document actor).
    pub async fn change<R: ChangeOutcome>(
        &self,
        document_id: &str,
        f: impl FnOnce(&mut Transaction<'_>) -> R + Send + 'static,
    ) -> anyhow::Result<()> {
        let handle = self.handle(document_id).await?;
        handle
            .with_document_async(move |doc| apply_change(doc, f))
            .await
            .map_err(stopped)?
    }

    /// Read the document.
    pub async fn read<R: Send + 'static>(
        &self,
        document_id: &str,
        f: impl FnOnce(&Automerge) -> R + Send + 'static,
    ) -> anyhow::Result<R> {
        let handle = self.handle(document_id).await?;
        handle
            .with_document_async(move |doc| {
                catch_unwind(AssertUnwindSafe(|| f(doc)))
                    .map_err(|p| anyhow!("read closure panicked: {}", panic_message(p.as_ref())))
            })
            .await
            .map_err(stopped)?
    }

    /// The whole document as JSON (see [`doc_to_json`]).
    pub async fn json(&self, document_id: &str) -> anyhow::Result<serde_json::Value> {
        self.read(document_id, doc_to_json).await
    }

    /// Wait until `pred` holds. Event-driven: re-evaluated on each `DocHandle::changes()` notification
    /// (emitted whenever the document heads change, by local or remote changes). Fails after `timeout`.
    pub async fn wait_until(
        &self,
        document_id: &str,
        timeout: Duration,
        pred: impl Fn(&Automerge) -> bool + Send + Sync + 'static,
    ) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let handle = tokio::time::timeout_at(deadline, self.handle(document_id))
            .await
            .map_err(|_| anyhow!("wait_until({document_id}): lookup timed out"))??;
        let pred = Arc::new(pred);
        // Subscribe before the first check so that no change slips in between.
        let mut changes = Box::pin(handle.changes());
        loop {
            let p = pred.clone();
            let holds = handle
                .with_document_async(move |doc| {
                    catch_unwind(AssertUnwindSafe(|| p(doc)))
                        .map_err(|e| anyhow!("predicate panicked: {}", panic_message(e.as_ref())))
                })
                .await
                .map_err(stopped)??;
            if holds {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, changes.next()).await {
                Ok(Some(_)) => {
                    // Coalesce notifications that are already queued.
                    while let Some(Some(_)) = changes.next().now_or_never() {}
                }
                Ok(None) => bail!("wait_until({document_id}): change stream ended (repo stopped)"),
                Err(_) => {
                    let state = handle
                        .with_document_async(|doc| doc_to_json(doc))
                        .await
                        .ok();
                    bail!(
                        "wait_until({document_id}): condition not met within {timeout:?}; \
                         document is {}",
                        state.map(|s| s.to_string()).unwrap_or_default()
                    )
                }
            }
        }
    }

    /// Wait until the server acknowledged our current heads of the document (its sync state's
    /// shared heads equal our heads) on the current connection.
    pub async fn wait_synced(&self, document_id: &str, timeout: Duration) -> anyhow::Result<()> {
        let handle = self.handle(document_id).await?;
        let conn = self
            .dialer
            .connection_id()
            .ok_or_else(|| anyhow!("not connected to the server"))?;
        tokio::time::timeout(timeout, handle.they_have_our_changes(conn))
            .await
            .map_err(|_| anyhow!("server did not acknowledge {document_id} within {timeout:?}"))
    }

    /// Close the connection and stop the repo.
    pub async fn stop(mut self) {
        self.stopped = true;
        self.dialer.close();
        if tokio::time::timeout(STOP_TIMEOUT, self.repo.stop())
            .await
            .is_err()
        {
            tracing::warn!("samod peer did not stop within {STOP_TIMEOUT:?}");
        }
    }
}

impl Drop for SamodPeer {
    fn drop(&mut self) {
        if !self.stopped {
            // Fire and forget: stops reconnecting and shuts the repo down in the background.
            self.dialer.close();
            drop(self.repo.stop());
        }
    }
}

/// Render a document as JSON: maps → objects, lists → arrays, text → strings, counters → numbers,
/// bytes → arrays of numbers, timestamps → numbers (ms).
pub fn doc_to_json(doc: &Automerge) -> serde_json::Value {
    obj_to_json(doc, &automerge::ROOT)
}

fn obj_to_json(doc: &Automerge, obj: &ObjId) -> serde_json::Value {
    match doc.object_type(obj) {
        Ok(ObjType::Map | ObjType::Table) => serde_json::Value::Object(
            doc.keys(obj)
                .map(|key| {
                    let value = value_to_json(doc, doc.get(obj, key.as_str()).ok().flatten());
                    (key, value)
                })
                .collect(),
        ),
        Ok(ObjType::List) => serde_json::Value::Array(
            (0..doc.length(obj))
                .map(|i| value_to_json(doc, doc.get(obj, i).ok().flatten()))
                .collect(),
        ),
        Ok(ObjType::Text) => serde_json::Value::String(doc.text(obj).unwrap_or_default()),
        Err(_) => serde_json::Value::Null,
    }
}

fn value_to_json(doc: &Automerge, value: Option<(Value<'_>, ObjId)>) -> serde_json::Value {
    match value {
        None => serde_json::Value::Null,
        Some((Value::Object(_), id)) => obj_to_json(doc, &id),
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(s) => serde_json::Value::String(s.to_string()),
            ScalarValue::Int(i) | ScalarValue::Timestamp(i) => (*i).into(),
            ScalarValue::Uint(u) => (*u).into(),
            ScalarValue::F64(f) => (*f).into(),
            ScalarValue::Counter(c) => i64::from(c).into(),
            ScalarValue::Boolean(b) => (*b).into(),
            ScalarValue::Null => serde_json::Value::Null,
            ScalarValue::Bytes(b) => b.to_vec().into(),
            other => serde_json::Value::String(other.to_string()),
        },
    }
}
