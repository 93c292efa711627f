//! Zhiban's device library: what a phone or field tablet runs. Every document the device
//! holds lives in a durable local store, so creating, editing, reading and listing work with
//! no network at all; [`Device::start_sync`] keeps a connection to the server whenever one
//! can be had and syncs everything pending without anybody pressing "sync" (D21).
//!
//! The one-tap urgent report (D22) returns only once the report is on disk:
//!
//! ```no_run
//! # async fn example() -> Result<(), zhiban_client_core::Error> {
//! use zhiban_client_core::{Device, DeliveryStatus};
//!
//! let device = Device::open("/data/zhiban").await?;
//! device.login("http://127.0.0.1:8080", "wang", "password", "wang's phone").await?;
//! let sync = device.start_sync();
//! let report = device.urgent_report("accident", "G4 km 1032", "two lorries, road blocked").await?;
//! // Saved on this device now; "received" once the server holds it.
//! if device.status(&report).await? == DeliveryStatus::ReceivedByServer {
//!     println!("the duty room has it");
//! }
//! sync.stop().await;
//! # Ok(()) }
//! ```
//!
//! This crate knows nothing of HTTP servers: it is a client of the Zhiban server's API and
//! of its `/sync` websocket (the automerge-repo protocol, via `zhiban-protocol`).

#![warn(missing_docs)]

mod alerts;
mod duty;
mod session;
mod store;
mod sync;
mod tls;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use automerge::sync::State as SyncState;
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ChangeHash, ReadDoc};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, Notify, broadcast};

pub use duty::{Call, ReportKind};
pub use session::{Identity, SessionState};
pub use sync::{Backoff, SyncHandle};
/// The server's API types, which [`Device`]'s online questions answer with.
pub use zhiban_api;
pub use zhiban_protocol::{DocumentId, PeerId};

use store::Store;
use zhiban_records::json;

/// Everything that can go wrong on the device.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device's own database failed (disk full, corrupt file).
    #[error("local storage failed: {0}")]
    Storage(String),
    /// The device does not hold this document.
    #[error("no such document on this device: {0}")]
    NoSuchDocument(DocumentId),
    /// The caller's input was refused before anything was written.
    #[error("invalid input: {0}")]
    Invalid(String),
    /// The operation needs a session; log in first.
    #[error("not logged in")]
    NotLoggedIn,
    /// The server revoked this device.
    #[error("this device has been revoked; log in again from a trusted device")]
    Revoked,
    /// The password was set by an admin (a new account, a reset): log in again with a new
    /// password of the user's own ([`LoginOptions::new_password`]).
    #[error("this password was set by an admin; choose a new one of your own to log in")]
    PasswordChangeRequired,
    /// The server answered with a refusal (wrong password, no permission).
    #[error("the server refused: {0}")]
    Refused(String),
    /// The server could not be reached; local data is unaffected.
    #[error("cannot reach the server: {0}")]
    Network(String),
    /// Automerge refused an edit or stored bytes.
    #[error("document error: {0}")]
    Document(#[from] automerge::AutomergeError),
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        Error::Storage(error.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        Error::Storage(error.to_string())
    }
}

/// What [`Device::login_with`] takes besides the user's name and password.
#[derive(Debug, Clone, Default)]
pub struct LoginOptions {
    /// A CA certificate (PEM; several may follow one another) to trust besides the Mozilla
    /// and system roots: for a server whose certificate an office's own (government) CA
    /// issued. A file holding no usable certificate fails the login with [`Error::Invalid`].
    /// Kept on the device once the login succeeds, so later commands and the sync connection
    /// trust it too, until a later login brings another; `None` keeps the one kept.
    pub ca_pem: Option<Vec<u8>>,
    /// A new password, set by this login: required when the server answers
    /// [`Error::PasswordChangeRequired`], allowed at any login.
    pub new_password: Option<String>,
}

/// Where a document stands with respect to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// On this device's disk; the server has not confirmed every local change yet.
    SavedOnDevice,
    /// The server has confirmed holding every change this device has.
    ReceivedByServer,
}

/// One line of [`Device::list`].
#[derive(Debug, Clone, Serialize)]
pub struct DocumentSummary {
    /// The document's id.
    pub id: DocumentId,
    /// The document's `type` field (`incident`, `catalog`, …), if any.
    pub kind: Option<String>,
    /// The document's `title` field, if any.
    pub title: Option<String>,
    /// Whether the server has confirmed it.
    pub status: DeliveryStatus,
    /// Why the server refused this device's changes to it, if it did and has confirmed
    /// nothing since.
    pub refused: Option<String>,
}

/// Something the application may want to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The sync connection is up.
    Connected,
    /// The sync connection dropped; it will be retried.
    Disconnected,
    /// A document changed, locally or from the server.
    DocumentChanged(DocumentId),
    /// The server confirmed holding this document's changes.
    Received(DocumentId),
    /// The server refused this device's changes to a document, for this reason (a rule of
    /// `docs/write-policy.md` or a limit). The changes stay on the device, not "received".
    Refused(DocumentId, String),
    /// The server says this device is revoked; syncing has stopped.
    Revoked,
}

/// A document held in memory, with what is known of the server's copy.
struct Held {
    doc: Automerge,
    /// The newest stored chunk already applied to `doc`.
    last_chunk: i64,
    /// Persisted sync state with the server (shared heads only).
    server_state: SyncState,
    /// The heads the server last reported for this document.
    server_heads: Vec<ChangeHash>,
    chunks: usize,
}

/// The device: its store, its documents and its session. Cheap to clone.
#[derive(Clone)]
pub struct Device {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Replaced when another user logs in on this device (see [`Device::login`]).
    actor: std::sync::RwLock<ActorId>,
    documents: Mutex<HashMap<DocumentId, Held>>,
    session: session::Session,
    /// Documents changed locally since the sync connection last looked.
    dirty: std::sync::Mutex<HashSet<DocumentId>>,
    local_change: Notify,
    events: broadcast::Sender<Event>,
}

/// After this many chunks a document is rewritten as one snapshot on the device.
const SNAPSHOT_AFTER_CHUNKS: usize = 64;

impl Device {
    /// Opens (or creates) the device's store in `data_dir` and loads every document in it.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<Device, Error> {
        let store = Store::open(data_dir.as_ref()).await?;
        let actor = match store.setting("actor_id").await? {
            Some(text) => ActorId::from(
                hex::decode(&text).map_err(|_| Error::Storage("corrupt actor id".into()))?,
            ),
            None => {
                // One actor per device for its whole life, so its changes are recognisable.
                let actor = ActorId::random();
                store
                    .set_setting("actor_id", &actor.to_hex_string())
                    .await?;
                actor
            }
        };
        let mut documents = HashMap::new();
        for stored in store.load_all().await? {
            let held = Self::held_from(
                stored.chunks,
                stored.server_state,
                stored.server_heads,
                &actor,
            )?;
            documents.insert(stored.id, held);
        }
        let session = session::Session::load(store.clone()).await?;
        let (events, _) = broadcast::channel(1024);
        Ok(Device {
            inner: Arc::new(Inner {
                store,
                actor: std::sync::RwLock::new(actor),
                documents: Mutex::new(documents),
                session,
                dirty: std::sync::Mutex::new(HashSet::new()),
                local_change: Notify::new(),
                events,
            }),
        })
    }

    fn held_from(
        chunks: Vec<(i64, Vec<u8>)>,
        server_state: Option<Vec<u8>>,
        server_heads: Vec<ChangeHash>,
        actor: &ActorId,
    ) -> Result<Held, Error> {
        let mut doc = Automerge::new().with_actor(actor.clone());
        let mut last_chunk = 0;
        for (id, data) in &chunks {
            doc.load_incremental(data)?;
            last_chunk = *id;
        }
        Ok(Held {
            doc,
            last_chunk,
            server_state: server_state
                .and_then(|bytes| SyncState::decode(&bytes).ok())
                .unwrap_or_default(),
            server_heads,
            chunks: chunks.len(),
        })
    }

    /// Logs in to the server at `server_url` (e.g. `https://duty.example.gov.cn` or
    /// `http://127.0.0.1:8080`) and keeps the session on the device. A device logging in
    /// again keeps its device id. `https` servers must show a certificate the device trusts
    /// (see [`Device::login_with`] for an office's own CA); one it does not trust fails with
    /// [`Error::Network`] saying so.
    pub async fn login(
        &self,
        server_url: &str,
        username: &str,
        password: &str,
        device_name: &str,
    ) -> Result<Identity, Error> {
        self.login_with(
            server_url,
            username,
            password,
            device_name,
            &LoginOptions::default(),
        )
        .await
    }

    /// [`Device::login`] with [`LoginOptions`], e.g. trusting a private CA.
    pub async fn login_with(
        &self,
        server_url: &str,
        username: &str,
        password: &str,
        device_name: &str,
        options: &LoginOptions,
    ) -> Result<Identity, Error> {
        let identity = self
            .inner
            .session
            .login(server_url, username, password, device_name, options)
            .await?;
        self.own_actor(&identity.user_id).await?;
        Ok(identity)
    }

    /// The server attributes every change to the user its actor is bound to, so a second user
    /// of a shared tablet writes with an actor of their own; every actor this device has used
    /// is remembered with its user (`actor_users`), so that one user's changes are never
    /// delivered in another's session (see `sync`).
    async fn own_actor(&self, user_id: &str) -> Result<(), Error> {
        let store = &self.inner.store;
        let result = match store.setting("actor_user").await? {
            Some(owner) if owner == user_id => Ok(()),
            None => store.set_setting("actor_user", user_id).await,
            Some(_) => {
                let actor = ActorId::random();
                store
                    .set_setting("actor_id", &actor.to_hex_string())
                    .await?;
                store.set_setting("actor_user", user_id).await?;
                *self.inner.actor.write().expect("actor lock") = actor.clone();
                for held in self.inner.documents.lock().await.values_mut() {
                    held.doc.set_actor(actor.clone());
                }
                Ok(())
            }
        };
        result?;
        let mut users = self.actor_users().await?;
        users.insert(self.actor().to_hex_string(), user_id.to_owned());
        let users = serde_json::to_string(&users).map_err(|e| Error::Storage(e.to_string()))?;
        store.set_setting("actor_users", &users).await
    }

    /// Every actor this device has written with, and whose it was (hex → user id).
    pub(crate) async fn actor_users(
        &self,
    ) -> Result<std::collections::HashMap<String, String>, Error> {
        Ok(self
            .inner
            .store
            .setting("actor_users")
            .await?
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default())
    }

    /// The actors this tablet's other users wrote with: everyone's but the user logged in.
    pub(crate) async fn others(&self) -> Result<HashSet<ActorId>, Error> {
        let user = self.identity().await.map(|identity| identity.user_id);
        Ok(self
            .actor_users()
            .await?
            .into_iter()
            .filter(|(_, owner)| Some(owner) != user.as_ref())
            .filter_map(|(actor, _)| hex::decode(actor).ok())
            .map(ActorId::from)
            .collect())
    }

    /// Ends this user's session on a shared tablet. Their changes not yet on the server stay,
    /// held back and unreadable until they log in here again (no other user's session
    /// delivers or shows them); every document the server holds whole is removed, so the
    /// next user reads only what the server gives them (classified records included: D18).
    /// Stop the sync first. Returns how many were removed.
    pub async fn logout(&self) -> Result<usize, Error> {
        self.identity().await.ok_or(Error::NotLoggedIn)?;
        let mut documents = self.inner.documents.lock().await;
        let on_server: Vec<DocumentId> = documents
            .iter()
            .filter(|(_, held)| {
                held.doc.get_heads().is_empty()
                    || delivery_status(held) == DeliveryStatus::ReceivedByServer
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &on_server {
            self.inner.store.delete_document(*id).await?;
            documents.remove(id);
        }
        drop(documents);
        self.inner.session.logout().await?;
        Ok(on_server.len())
    }

    fn actor(&self) -> ActorId {
        self.inner.actor.read().expect("actor lock").clone()
    }

    /// Who this device is logged in as, if anyone.
    pub async fn identity(&self) -> Option<Identity> {
        self.inner.session.identity().await
    }

    /// Whether the device may sync: logged out, active or revoked.
    pub async fn session_state(&self) -> SessionState {
        self.inner.session.state().await
    }

    /// How far this device's clock is off the server's (device minus server, ms), when the
    /// server said at the last login or refresh that it is more than 5 minutes: the times
    /// this device writes into reports are then doubtful.
    pub async fn clock_skew(&self) -> Result<Option<i64>, Error> {
        self.inner.session.clock_skew().await
    }

    /// Events: connection changes, document changes, confirmations, revocation.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    fn emit(&self, event: Event) {
        let _ = self.inner.events.send(event);
    }

    /// Creates a document from a JSON object; it is on disk when this returns.
    pub async fn create(&self, initial: &serde_json::Value) -> Result<DocumentId, Error> {
        let fields = initial
            .as_object()
            .ok_or_else(|| Error::Invalid("a document is a JSON object".into()))?;
        let id = DocumentId::random();
        let mut doc = Automerge::new().with_actor(self.actor());
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            for (key, value) in fields {
                json::put(tx, &automerge::ROOT, key, value)?;
            }
            Ok(())
        })
        .map_err(|failure| failure.error)?;
        let data = doc.save();
        let mut documents = self.inner.documents.lock().await;
        let chunk = self
            .inner
            .store
            .local_write(id, 0, true, |_| Ok(Some(data)))
            .await?
            .unwrap_or_default();
        documents.insert(
            id,
            Held {
                doc,
                last_chunk: chunk,
                server_state: SyncState::new(),
                server_heads: Vec::new(),
                chunks: 1,
            },
        );
        drop(documents);
        self.local_changed(id);
        Ok(id)
    }

    /// Creates a duty record (incident, duty log) after the checks of `zhiban-records`: a
    /// structurally broken record is refused with the reason; missing core elements and
    /// doubtful values come back as warnings and never block (D11).
    pub async fn create_record(
        &self,
        record: &serde_json::Value,
    ) -> Result<(DocumentId, Vec<String>), Error> {
        let checked = zhiban_records::check(record);
        if !checked.is_valid() {
            return Err(Error::Invalid(checked.errors.join("; ")));
        }
        Ok((self.create(record).await?, checked.warnings))
    }

    /// What the record checks say about a document now.
    pub async fn check(&self, id: &DocumentId) -> Result<zhiban_records::Checked, Error> {
        Ok(zhiban_records::check(&self.get(id).await?))
    }

    /// The one-tap urgent report (D22): a red incident in the user's unit, durable on this
    /// device when this returns, sent as soon as any network exists.
    pub async fn urgent_report(
        &self,
        category: &str,
        location: &str,
        note: &str,
    ) -> Result<DocumentId, Error> {
        let identity = self.identity().await.ok_or(Error::NotLoggedIn)?;
        if category.trim().is_empty() {
            return Err(Error::Invalid("an urgent report needs a category".into()));
        }
        let now = chrono::Utc::now().timestamp_millis();
        let mut notes = Vec::new();
        if !note.trim().is_empty() {
            notes.push(serde_json::json!({"at": now, "by": identity.user_id, "text": note}));
        }
        let report = serde_json::json!({
            "type": "incident",
            "schema": 1,
            "grade": "red",
            "urgent": true,
            "title": format!("URGENT {category} at {location}"),
            "category": category,
            "location": location,
            "known_at": now,
            "reported_at": now,
            "reported_by": identity.user_id,
            "device": identity.device_id,
            "unit": identity.unit_id,
            "classification": "plain",
            "notes": notes,
        });
        self.create(&report).await
    }

    /// Applies `edit` to a document as one change, durable when this returns.
    pub async fn change<F>(&self, id: &DocumentId, edit: F) -> Result<(), Error>
    where
        F: FnOnce(
            &mut automerge::transaction::Transaction<'_>,
        ) -> Result<(), automerge::AutomergeError>,
    {
        let others = self.others().await?;
        let mut documents = self.inner.documents.lock().await;
        readable(&documents, id, &others)?;
        let held = documents.get_mut(id).ok_or(Error::NoSuchDocument(*id))?;
        let mut edit = Some(edit);
        let mut outcome = Ok(());
        let stored = self
            .inner
            .store
            .local_write(*id, held.last_chunk, false, |newer| {
                // Another process of this device may have written since we loaded.
                for (chunk, data) in &newer {
                    held.doc.load_incremental(data)?;
                    held.last_chunk = *chunk;
                }
                let before = held.doc.get_heads();
                let edit = edit.take().expect("called once");
                if let Err(failure) = held.doc.transact(edit) {
                    outcome = Err(Error::Document(failure.error));
                    return Ok(None);
                }
                Ok(Some(held.doc.save_after(&before)))
            })
            .await;
        match stored {
            Ok(Some(chunk)) => {
                held.last_chunk = chunk;
                held.chunks += 1;
            }
            Ok(None) => return outcome,
            Err(error) => {
                // The change is in memory but not on disk: drop it rather than pretend.
                let stored = self.inner.store.load(*id).await?;
                *held = Self::held_from(
                    stored.chunks,
                    stored.server_state,
                    stored.server_heads,
                    &self.actor(),
                )?;
                return Err(error);
            }
        }
        if held.chunks > SNAPSHOT_AFTER_CHUNKS {
            let snapshot = held.doc.save();
            match self
                .inner
                .store
                .compact(*id, held.last_chunk, snapshot)
                .await
            {
                Ok(chunk) => {
                    held.last_chunk = chunk;
                    held.chunks = 1;
                }
                Err(error) => tracing::warn!(%error, "cannot compact a document; keeping chunks"),
            }
        }
        drop(documents);
        self.local_changed(*id);
        Ok(())
    }

    /// Sets a field (a path of map keys from the root) to a JSON value.
    pub async fn set_field(
        &self,
        id: &DocumentId,
        path: &[&str],
        value: &serde_json::Value,
    ) -> Result<(), Error> {
        let (last, parents) = path
            .split_last()
            .ok_or_else(|| Error::Invalid("an empty field path".into()))?;
        self.change(id, |tx| {
            let object = walk_maps(tx, parents)?;
            json::put(tx, &object, last, value)
        })
        .await
    }

    /// Appends a JSON value to the list at `path` (created if absent).
    pub async fn append(
        &self,
        id: &DocumentId,
        path: &[&str],
        value: &serde_json::Value,
    ) -> Result<(), Error> {
        let (last, parents) = path
            .split_last()
            .ok_or_else(|| Error::Invalid("an empty list path".into()))?;
        self.change(id, |tx| {
            let object = walk_maps(tx, parents)?;
            let list = match tx.get(&object, *last)? {
                Some((automerge::Value::Object(automerge::ObjType::List), list)) => list,
                _ => tx.put_object(&object, *last, automerge::ObjType::List)?,
            };
            let end = tx.length(&list);
            json::insert(tx, &list, end, value)
        })
        .await
    }

    /// Appends a timestamped note by the current user to the document's `notes` list.
    pub async fn add_note(&self, id: &DocumentId, text: &str) -> Result<(), Error> {
        let by = self.identity().await.map(|identity| identity.user_id);
        let note = serde_json::json!({
            "at": chrono::Utc::now().timestamp_millis(),
            "by": by,
            "text": text,
        });
        self.append(id, &["notes"], &note).await
    }

    /// The document as JSON.
    pub async fn get(&self, id: &DocumentId) -> Result<serde_json::Value, Error> {
        let others = self.others().await?;
        let documents = self.inner.documents.lock().await;
        let held = readable(&documents, id, &others)?;
        Ok(json::read(&held.doc, &automerge::ROOT))
    }

    /// The document's current heads.
    pub async fn heads(&self, id: &DocumentId) -> Result<Vec<ChangeHash>, Error> {
        let others = self.others().await?;
        let documents = self.inner.documents.lock().await;
        Ok(readable(&documents, id, &others)?.doc.get_heads())
    }

    /// Whether the server has confirmed every change of this document that this device has.
    pub async fn status(&self, id: &DocumentId) -> Result<DeliveryStatus, Error> {
        let others = self.others().await?;
        let documents = self.inner.documents.lock().await;
        Ok(delivery_status(readable(&documents, id, &others)?))
    }

    /// Every document on the device, with its delivery status.
    pub async fn list(&self) -> Result<Vec<DocumentSummary>, Error> {
        let mut refusals = self.inner.store.refusals().await?;
        let others = self.others().await?;
        let documents = self.inner.documents.lock().await;
        let mut list: Vec<DocumentSummary> = documents
            .iter()
            .filter(|(_, held)| !holds_unsent_of(held, &others))
            .map(|(id, held)| DocumentSummary {
                id: *id,
                kind: root_string(&held.doc, "type"),
                title: root_string(&held.doc, "title"),
                status: delivery_status(held),
                refused: refusals.remove(&id.to_string()),
            })
            .collect();
        list.sort_by_key(|summary| summary.id.to_string());
        Ok(list)
    }

    /// Waits until `id` is received by the server, up to `timeout`; returns the final status.
    pub async fn wait_received(
        &self,
        id: &DocumentId,
        timeout: Duration,
    ) -> Result<DeliveryStatus, Error> {
        let mut events = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.status(id).await?;
            if status == DeliveryStatus::ReceivedByServer {
                return Ok(status);
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) | Ok(Err(broadcast::error::RecvError::Closed)) => return Ok(status),
                Ok(_) => continue,
            }
        }
    }

    /// Starts the background sync: connects whenever the server is reachable, reconnects
    /// with backoff and jitter, and keeps every document live while connected.
    pub fn start_sync(&self) -> SyncHandle {
        self.start_sync_with(Backoff::default())
    }

    /// [`Device::start_sync`] with chosen reconnection delays.
    pub fn start_sync_with(&self, backoff: Backoff) -> SyncHandle {
        sync::start(self.clone(), backoff)
    }

    fn local_changed(&self, id: DocumentId) {
        self.inner
            .dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id);
        self.inner.local_change.notify_one();
        self.emit(Event::DocumentChanged(id));
    }
}

fn walk_maps<T: Transactable>(
    tx: &mut T,
    path: &[&str],
) -> Result<automerge::ObjId, automerge::AutomergeError> {
    let mut object = automerge::ROOT;
    for key in path {
        object = match tx.get(&object, *key)? {
            Some((automerge::Value::Object(automerge::ObjType::Map), inner)) => inner,
            _ => tx.put_object(&object, *key, automerge::ObjType::Map)?,
        };
    }
    Ok(object)
}

fn root_string(doc: &Automerge, key: &str) -> Option<String> {
    match json::read(doc, &automerge::ROOT).get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

/// Received when the server's reported heads cover every change we have: either each of our
/// heads is one of theirs, or (when we know all their heads) nothing of ours lies outside
/// their history.
/// Whether `held` has changes of `others` (another user of this tablet) that the server has
/// not confirmed: they are theirs alone until they log in again.
fn holds_unsent_of(held: &Held, others: &HashSet<ActorId>) -> bool {
    !others.is_empty()
        && held
            .doc
            .get_changes(&held.server_heads)
            .iter()
            .any(|change| others.contains(change.actor_id()))
}

/// The document, unless it is not here or is another user's until they log in again.
fn readable<'a>(
    documents: &'a HashMap<DocumentId, Held>,
    id: &DocumentId,
    others: &HashSet<ActorId>,
) -> Result<&'a Held, Error> {
    documents
        .get(id)
        .filter(|held| !holds_unsent_of(held, others))
        .ok_or(Error::NoSuchDocument(*id))
}

fn delivery_status(held: &Held) -> DeliveryStatus {
    let ours = held.doc.get_heads();
    let theirs = &held.server_heads;
    let received = if ours.iter().all(|head| theirs.contains(head)) {
        true
    } else if theirs
        .iter()
        .all(|head| held.doc.get_change_by_hash(head).is_some())
    {
        held.doc.get_changes(theirs).is_empty()
    } else {
        false
    };
    if received && !ours.is_empty() {
        DeliveryStatus::ReceivedByServer
    } else {
        DeliveryStatus::SavedOnDevice
    }
}

/// The device's clock, in milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
