//! The sync connection: one websocket to the server's `/sync`, opened whenever the server can
//! be reached, reopened with backoff and jitter when it drops. While connected it syncs every
//! document the device holds, follows the catalogs of the units the user may see (so new
//! reports from colleagues arrive by themselves), and pushes local changes as they happen,
//! including those written by another process of the same device.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use automerge::sync::{Message as SyncMessage, State as SyncState, SyncDoc};
use automerge::{Automerge, ReadDoc};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use zhiban_protocol::{DocumentId, Message, PROTOCOL_VERSION, PeerId, PeerMetadata};

use crate::store::RemoteWrite;
use crate::{DeliveryStatus, Device, Error, Event, Held, delivery_status};

/// Reconnection delays: doubling from `initial` up to `max`, each scaled by a random factor
/// in [0.5, 1) so that a whole unit's phones do not reconnect in step after an outage.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(250),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(1 << attempt.min(16))
            .min(self.max);
        base.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }
}

/// The running sync; dropping it leaves the sync running until the process ends.
pub struct SyncHandle {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl SyncHandle {
    /// Closes the connection and stops reconnecting.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

pub(crate) fn start(device: Device, backoff: Backoff) -> SyncHandle {
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(run(device, backoff, stopped));
    SyncHandle { stop, task }
}

enum Ended {
    Stopped,
    Revoked,
    /// Connected and later lost: reconnect promptly.
    Dropped(String),
    /// Could not connect at all.
    Failed(String),
}

/// How often another process's local writes are looked for, and the socket kept alive.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
const PING_INTERVAL: Duration = Duration::from_secs(15);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames taken from the socket before their writes are committed together.
const MAX_FRAMES_PER_BATCH: usize = 256;

async fn run(device: Device, backoff: Backoff, mut stopped: watch::Receiver<bool>) {
    let mut attempt = 0u32;
    loop {
        if *stopped.borrow() {
            return;
        }
        match connection(&device, &mut stopped).await {
            Ended::Stopped => return,
            Ended::Revoked => {
                tracing::warn!("device revoked; sync stopped");
                if let Err(error) = device.inner.session.mark_revoked().await {
                    tracing::error!(%error, "cannot record revocation");
                }
                device.emit(Event::Revoked);
                return;
            }
            Ended::Dropped(reason) => {
                tracing::info!(%reason, "connection lost");
                device.emit(Event::Disconnected);
                attempt = 0;
            }
            Ended::Failed(reason) => {
                tracing::debug!(%reason, attempt, "cannot connect");
                attempt = attempt.saturating_add(1);
            }
        }
        let delay = backoff.delay(attempt);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stopped.changed() => return,
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connection(device: &Device, stopped: &mut watch::Receiver<bool>) -> Ended {
    let Some(identity) = device.identity().await else {
        return Ended::Failed("not logged in".into());
    };
    // Units and their catalogs change on the server: learn them anew on every connection,
    // and carry on with what was known if the server cannot say.
    let identity = match device.inner.session.refresh_units().await {
        Ok(fresh) => fresh,
        Err(Error::Revoked) => return Ended::Revoked,
        Err(error) => {
            tracing::debug!(%error, "units not refreshed");
            identity
        }
    };
    // A ticket per connection: the URL of a websocket may end up in a proxy's log, where an
    // access token (good for the whole API) must not; a ticket opens this socket only.
    let ticket = match device.inner.session.sync_ticket().await {
        Ok(ticket) => ticket,
        Err(Error::Revoked) => return Ended::Revoked,
        Err(error) => return Ended::Failed(error.to_string()),
    };
    let url = format!(
        "{}/sync?ticket={ticket}",
        identity
            .server_url
            .replacen("http://", "ws://", 1)
            .replacen("https://", "wss://", 1)
    );
    // A server (or a captive portal) that accepts TCP and never answers must not hold the
    // device forever, nor keep `stop` from returning.
    // No Nagle: sync frames are small and every round trip counts toward "received".
    let connect = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            true,
            // The HTTP API's own TLS configuration: whatever CA the login trusted.
            Some(tokio_tungstenite::Connector::Rustls(
                device.inner.session.transport().tls,
            )),
        ),
    );
    let mut socket = tokio::select! {
        _ = stopped.changed() => return Ended::Stopped,
        connected = connect => match connected {
            Err(_) => return Ended::Failed("no answer to connect".into()),
            Ok(Ok((socket, _))) => socket,
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response)))
                if response.status() == 401 =>
            {
                // The access token may have been refused early (clock skew, key rotation):
                // refreshing also tells us whether the device was revoked.
                return match device.inner.session.refresh().await {
                    Err(Error::Revoked) => Ended::Revoked,
                    _ => Ended::Failed("token refused".into()),
                };
            }
            Ok(Err(error)) => {
                return Ended::Failed(
                    crate::tls::explain(&error).unwrap_or_else(|| error.to_string()),
                );
            }
        },
    };
    let peer_id = PeerId::new(identity.peer_id.clone());
    let server_id = tokio::select! {
        _ = stopped.changed() => return Ended::Stopped,
        answer = handshake(&mut socket, &peer_id) => match answer {
            Ok(server_id) => server_id,
            Err(reason) => return Ended::Failed(reason),
        },
    };
    tracing::info!(server = %server_id, "connected");
    device.emit(Event::Connected);

    let mut connection = Connection {
        device,
        peer_id,
        server_id,
        states: HashMap::new(),
        catalogs: identity.catalogs.iter().copied().collect(),
        outgoing: Vec::new(),
        others: match device.others().await {
            Ok(others) => others,
            Err(error) => {
                tracing::warn!(%error, "cannot read this tablet's other users");
                HashSet::new()
            }
        },
        refused: match device.inner.store.refusals().await {
            Ok(refusals) => refusals.keys().filter_map(|id| id.parse().ok()).collect(),
            Err(error) => {
                tracing::warn!(%error, "cannot read the server's refusals");
                HashSet::new()
            }
        },
    };
    let ended = connection.serve(&mut socket, stopped).await;
    let _ = socket.close(None).await;
    ended
}

async fn handshake(socket: &mut Socket, peer_id: &PeerId) -> Result<PeerId, String> {
    let join = Message::Join {
        sender_id: peer_id.clone(),
        supported_protocol_versions: vec![PROTOCOL_VERSION.into()],
        peer_metadata: Some(PeerMetadata {
            storage_id: None,
            is_ephemeral: false,
        }),
    };
    socket
        .send(WsMessage::Binary(join.encode().into()))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let frame = tokio::time::timeout(HANDSHAKE_TIMEOUT, socket.next())
            .await
            .map_err(|_| "no answer to join".to_owned())?;
        match frame {
            Some(Ok(WsMessage::Binary(bytes))) => match Message::decode(&bytes) {
                Ok(Message::Peer { sender_id, .. }) => return Ok(sender_id),
                Ok(Message::Error { message }) => return Err(format!("server: {message}")),
                Ok(other) => return Err(format!("expected peer, got {}", other.type_name())),
                Err(error) => return Err(error.to_string()),
            },
            Some(Ok(WsMessage::Close(_))) | None => return Err("closed during handshake".into()),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error.to_string()),
        }
    }
}

struct Connection<'a> {
    device: &'a Device,
    peer_id: PeerId,
    server_id: PeerId,
    /// This connection's sync state per document, started from the persisted one.
    states: HashMap<DocumentId, SyncState>,
    catalogs: HashSet<DocumentId>,
    outgoing: Vec<Message>,
    /// Documents whose changes the server refused, until it confirms them after all.
    refused: HashSet<DocumentId>,
    /// Actors other users of this tablet wrote with: a document holding changes of theirs
    /// that the server has not confirmed is held back in this session (the server binds an
    /// actor to the user whose session first delivers it).
    others: HashSet<automerge::ActorId>,
}

impl Connection<'_> {
    async fn serve(&mut self, socket: &mut Socket, stopped: &mut watch::Receiver<bool>) -> Ended {
        if let Err(error) = self.follow_catalogs().await {
            return Ended::Dropped(error.to_string());
        }
        let all: Vec<DocumentId> = self
            .device
            .inner
            .documents
            .lock()
            .await
            .keys()
            .copied()
            .collect();
        self.offer(&all).await;
        if let Err(error) = self.flush(socket).await {
            return Ended::Dropped(error);
        }
        let store = &self.device.inner.store;
        let mut seen_seq = store.local_seq().await.unwrap_or_default();
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        let mut ping = tokio::time::interval(PING_INTERVAL);
        let mut heard = true;
        loop {
            tokio::select! {
                _ = stopped.changed() => return Ended::Stopped,
                _ = self.device.inner.local_change.notified() => {
                    let dirty: Vec<DocumentId> = self
                        .device
                        .inner
                        .dirty
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .drain()
                        .collect();
                    self.offer(&dirty).await;
                }
                _ = poll.tick() => {
                    match self.pick_up_other_processes(&mut seen_seq).await {
                        Ok(changed) => self.offer(&changed).await,
                        Err(error) => tracing::warn!(%error, "cannot read the local store"),
                    }
                }
                _ = ping.tick() => {
                    if !heard {
                        return Ended::Dropped("server silent".into());
                    }
                    heard = false;
                    if let Err(error) = socket.send(WsMessage::Ping(Vec::new().into())).await {
                        return Ended::Dropped(error.to_string());
                    }
                }
                frame = socket.next() => {
                    heard = true;
                    let mut frames = vec![frame];
                    while frames.len() < MAX_FRAMES_PER_BATCH {
                        match socket.next().now_or_never() {
                            Some(frame) => frames.push(frame),
                            None => break,
                        }
                    }
                    let mut messages = Vec::with_capacity(frames.len());
                    for frame in frames {
                        match frame {
                            Some(Ok(WsMessage::Binary(bytes))) => match Message::decode(&bytes) {
                                Ok(message) => messages.push(message),
                                Err(error) => tracing::warn!(%error, "malformed frame from server"),
                            },
                            Some(Ok(WsMessage::Close(close))) => {
                                if close.as_ref().is_some_and(|c| c.code == CloseCode::Library(4001)) {
                                    return Ended::Revoked;
                                }
                                return Ended::Dropped(format!("closed by server: {close:?}"));
                            }
                            Some(Ok(_)) => {}
                            Some(Err(error)) => return Ended::Dropped(error.to_string()),
                            None => return Ended::Dropped("connection ended".into()),
                        }
                    }
                    if let Err(error) = self.receive(messages).await {
                        return Ended::Dropped(error.to_string());
                    }
                }
            }
            if let Err(error) = self.flush(socket).await {
                return Ended::Dropped(error);
            }
        }
    }

    /// Makes sure the catalogs of the user's units are held, so they are synced like any
    /// other document.
    async fn follow_catalogs(&mut self) -> Result<(), Error> {
        let catalogs: Vec<DocumentId> = self.catalogs.iter().copied().collect();
        self.hold(&catalogs).await
    }

    /// Starts holding documents learned of from a catalog (empty until the server sends them).
    async fn hold(&mut self, ids: &[DocumentId]) -> Result<(), Error> {
        let mut documents = self.device.inner.documents.lock().await;
        for id in ids {
            if !documents.contains_key(id) {
                self.device.inner.store.ensure_document(*id).await?;
                documents.insert(
                    *id,
                    Held {
                        doc: Automerge::new().with_actor(self.device.actor()),
                        last_chunk: 0,
                        server_state: SyncState::new(),
                        server_heads: Vec::new(),
                        chunks: 0,
                    },
                );
            }
        }
        Ok(())
    }

    /// Queues a sync (or, for a document we have nothing of, a request) for each document
    /// that has something to say.
    async fn offer(&mut self, ids: &[DocumentId]) {
        let documents = self.device.inner.documents.lock().await;
        for id in ids {
            let Some(held) = documents.get(id) else {
                continue;
            };
            if crate::holds_unsent_of(held, &self.others) {
                tracing::info!(document_id = %id, "held back: it holds another user's unsent changes");
                continue;
            }
            let state = self.states.entry(*id).or_insert_with(|| state_for(held));
            if let Some(message) = held.doc.generate_sync_message(state) {
                let empty = held.doc.get_heads().is_empty();
                self.outgoing.push(self.wire(*id, message, empty));
            }
        }
    }

    fn wire(&self, document_id: DocumentId, message: SyncMessage, request: bool) -> Message {
        Message::sync_or_request(
            request,
            document_id,
            self.peer_id.clone(),
            self.server_id.clone(),
            message.encode(),
        )
    }

    async fn flush(&mut self, socket: &mut Socket) -> Result<(), String> {
        for message in self.outgoing.drain(..) {
            socket
                .feed(WsMessage::Binary(message.encode().into()))
                .await
                .map_err(|e| e.to_string())?;
        }
        socket.flush().await.map_err(|e| e.to_string())
    }

    /// Applies a batch of messages, stores what they brought in one transaction, then queues
    /// the replies.
    async fn receive(&mut self, messages: Vec<Message>) -> Result<(), Error> {
        let mut writes = Vec::new();
        let mut touched = Vec::new();
        let mut refusals = Vec::new();
        let mut new_in_catalogs = Vec::new();
        {
            let mut documents = self.device.inner.documents.lock().await;
            for message in messages {
                let (id, data) = match message {
                    Message::Sync {
                        document_id, data, ..
                    }
                    | Message::Request {
                        document_id, data, ..
                    } => (document_id, data),
                    Message::DocUnavailable { document_id, .. } => {
                        tracing::debug!(%document_id, "server does not have (or show) a document");
                        continue;
                    }
                    Message::Error { message } => {
                        tracing::warn!(%message, "server reported an error");
                        if let Some((id, reason)) = refusal(&message)
                            && documents.contains_key(&id)
                        {
                            refusals.push((id, reason.to_owned()));
                        }
                        continue;
                    }
                    _ => continue,
                };
                let Some(held) = documents.get_mut(&id) else {
                    continue;
                };
                let message = match SyncMessage::decode(&data) {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::warn!(%error, document_id = %id, "malformed sync message");
                        continue;
                    }
                };
                let state = self
                    .states
                    .entry(id)
                    .or_insert_with(|| fresh_state(&held.server_state));
                let before = held.doc.get_heads();
                let was = delivery_status(held);
                // Replies go out after the whole batch: keep automerge from marking our heads
                // sent because a later message of the batch names them (as the server's
                // document actor does; see there).
                let last_sent = state.last_sent_heads.clone();
                if let Err(error) = held.doc.receive_sync_message(state, message) {
                    tracing::warn!(%error, document_id = %id, "cannot apply sync message");
                    continue;
                }
                if !state.last_sent_heads.is_empty() {
                    state.last_sent_heads = last_sent;
                }
                let changed = held.doc.get_heads() != before;
                if changed {
                    writes.push(RemoteWrite::Changes {
                        id,
                        data: held.doc.save_after(&before),
                    });
                    held.chunks += 1;
                    if self.catalogs.contains(&id) {
                        new_in_catalogs.extend(catalog_entries(&held.doc));
                    }
                }
                if let Some(heads) = &state.their_heads {
                    held.server_heads.clone_from(heads);
                }
                held.server_state = fresh_state(state);
                writes.push(RemoteWrite::ServerSync {
                    id,
                    state: state.encode(),
                    heads: held.server_heads.clone(),
                });
                let now = delivery_status(held);
                touched.push((
                    id,
                    changed,
                    was != now && now == DeliveryStatus::ReceivedByServer,
                ));
            }
        }
        if !writes.is_empty() {
            self.device.inner.store.commit_remote(&writes).await?;
        }
        let store = &self.device.inner.store;
        for (id, reason) in refusals {
            store
                .set_refusal(id, Some(&reason), crate::now_ms())
                .await?;
            self.refused.insert(id);
            self.device.emit(Event::Refused(id, reason));
        }
        let ids: Vec<DocumentId> = touched.iter().map(|(id, _, _)| *id).collect();
        for (id, changed, received) in touched {
            if changed {
                self.device.emit(Event::DocumentChanged(id));
            }
            if received {
                if self.refused.remove(&id) {
                    store.set_refusal(id, None, crate::now_ms()).await?;
                }
                self.device.emit(Event::Received(id));
            }
        }
        if !new_in_catalogs.is_empty() {
            let known = self.device.inner.documents.lock().await;
            let unknown: Vec<DocumentId> = new_in_catalogs
                .into_iter()
                .filter(|id| !known.contains_key(id))
                .collect();
            drop(known);
            self.hold(&unknown).await?;
            self.offer(&unknown).await;
        }
        self.offer(&ids).await;
        Ok(())
    }

    /// Loads changes another process of this device wrote since we last looked.
    async fn pick_up_other_processes(&self, seen_seq: &mut i64) -> Result<Vec<DocumentId>, Error> {
        let store = &self.device.inner.store;
        let latest = store.local_seq().await?;
        if latest <= *seen_seq {
            return Ok(Vec::new());
        }
        let changed = store.changed_since(*seen_seq).await?;
        *seen_seq = latest;
        let mut documents = self.device.inner.documents.lock().await;
        let mut picked = Vec::new();
        for id in changed {
            let held = match documents.get_mut(&id) {
                Some(held) => held,
                None => {
                    let stored = store.load(id).await?;
                    documents.insert(
                        id,
                        Device::held_from(
                            stored.chunks,
                            stored.server_state,
                            stored.server_heads,
                            &self.device.actor(),
                        )?,
                    );
                    picked.push(id);
                    continue;
                }
            };
            let before = held.doc.get_heads();
            for (chunk, data) in store.chunks_after(id, held.last_chunk).await? {
                held.doc.load_incremental(&data)?;
                held.last_chunk = chunk;
                held.chunks += 1;
            }
            if held.doc.get_heads() != before {
                picked.push(id);
            }
        }
        drop(documents);
        for id in &picked {
            self.device.emit(Event::DocumentChanged(*id));
        }
        Ok(picked)
    }
}

/// A sync state for a new connection: only what persists across connections (the heads we
/// know we share), as automerge expects.
fn fresh_state(state: &SyncState) -> SyncState {
    SyncState::decode(&state.encode()).unwrap_or_default()
}

/// The connection's sync state for a held document. When the server has confirmed nothing of
/// it (a report made on this device), it is assumed to have nothing: the first message then
/// carries the changes, instead of the server's heads costing a round trip first. Should the
/// server have it after all, it ignores what it already holds.
fn state_for(held: &Held) -> SyncState {
    let mut state = fresh_state(&held.server_state);
    if held.server_heads.is_empty()
        && state.shared_heads.is_empty()
        && !held.doc.get_heads().is_empty()
    {
        state.their_heads = Some(Vec::new());
        state.their_need = Some(Vec::new());
        state.their_have = Some(vec![automerge::sync::Have::default()]);
    }
    state
}

fn catalog_entries(doc: &Automerge) -> Vec<DocumentId> {
    match doc.get(automerge::ROOT, "documents") {
        Ok(Some((_, map))) => doc.keys(&map).filter_map(|key| key.parse().ok()).collect(),
        _ => Vec::new(),
    }
}

/// The document and reason of a server `error` that refused this device's changes (the
/// server's wording: `changes to <id> refused: <reason>`, or `document <id> refused: …` for a
/// new document it would not register).
fn refusal(message: &str) -> Option<(DocumentId, &str)> {
    let (subject, reason) = message.split_once(" refused: ")?;
    let id = subject
        .strip_prefix("changes to ")
        .or_else(|| subject.strip_prefix("document "))?;
    Some((id.parse().ok()?, reason))
}
