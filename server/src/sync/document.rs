//! One task per loaded document. It owns the Automerge document and the sync state of every
//! peer subscribed to it, applies what peers send, commits new changes (`commit`) and only
//! then answers: no peer ever learns of a change the disk does not hold.
//! A document nobody uses is unloaded after a while; peers' sync states are kept in the
//! database so a reconnecting device does not start over.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use futures_util::FutureExt;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, ChangeHash, ObjType, PatchLog, ReadDoc};
use serde_json::json;
use tokio::sync::mpsc;
use zhiban_api::Role;
use zhiban_protocol::{DocumentId, Message};
use zhiban_records::{RecordKind, policy};

use super::peer::{CloseReason, Peer};
use super::validate;
use crate::commit::{DocumentWork, Work, retry_delay};
use crate::documents::{self, ActorBinding, Chunk, DocumentMeta, Receipt};
use crate::records::times::Receipts;
use crate::records::{self, Change, Source};
use crate::{AppState, audit};

pub enum Command {
    /// A `sync` or `request` message from a peer.
    Sync {
        peer: Arc<Peer>,
        data: Vec<u8>,
        request: bool,
    },
    Ephemeral {
        peer: Arc<Peer>,
        session_id: String,
        count: u64,
        data: Vec<u8>,
    },
    PeerGone {
        connection_id: u64,
    },
    /// To a unit's catalog: a record was registered in that unit.
    Catalog {
        document_id: DocumentId,
        unit_id: String,
        classified: bool,
        created_by: Option<String>,
        created_at: i64,
    },
    /// Stands in for a bug no input is known to reach, to test that a panic costs one
    /// document only.
    #[cfg(test)]
    Panic,
}

const COMMAND_QUEUE: usize = 1024;
/// Commands applied before committing and answering, so a burst costs one commit.
const MAX_COMMANDS_PER_ROUND: usize = 512;
/// Refused change hashes remembered per loaded document before the memory starts over.
const MAX_REMEMBERED_REFUSALS: usize = 4096;

/// The loaded documents. A sender is only used while the map's lock is held or the queue is
/// non-empty, which is what lets an idle actor remove itself without losing a command.
#[derive(Default)]
pub struct Documents {
    actors: Mutex<HashMap<DocumentId, (u64, mpsc::Sender<Command>)>>,
    next_generation: std::sync::atomic::AtomicU64,
    /// Document actors that panicked since start (each reloaded on next use).
    pub failures: std::sync::atomic::AtomicU64,
}

impl Documents {
    /// Delivers `command`, loading the document's actor if needed.
    pub async fn send(&self, state: &AppState, document_id: DocumentId, command: Command) {
        let mut command = command;
        loop {
            let sender = match self.try_deliver(state, document_id, command) {
                Ok(()) => return,
                Err((sender, back)) => {
                    command = back;
                    sender
                }
            };
            // The queue is full, so the actor cannot be unloading: wait for room.
            match sender.send(command).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(back)) => command = back,
            }
        }
    }

    /// Delivers without waiting, or hands back a full queue's sender and the command.
    /// Not async on purpose: an actor sends to other actors (catalogs), and spawning one
    /// inside an async fn would make the actor's future type depend on itself.
    fn try_deliver(
        &self,
        state: &AppState,
        document_id: DocumentId,
        mut command: Command,
    ) -> Result<(), (mpsc::Sender<Command>, Command)> {
        let mut actors = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let (_, sender) = actors.entry(document_id).or_insert_with(|| {
                let (sender, receiver) = mpsc::channel(COMMAND_QUEUE);
                let generation = self
                    .next_generation
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let actor = DocumentActor::new(state.clone(), document_id, generation);
                state.tasks.spawn(actor.run(receiver));
                (generation, sender)
            });
            match sender.try_send(command) {
                Ok(()) => return Ok(()),
                Err(mpsc::error::TrySendError::Full(back)) => return Err((sender.clone(), back)),
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    command = back;
                    actors.remove(&document_id);
                }
            }
        }
    }

    /// Delivers `command` only to an actor that is already loaded.
    pub fn send_if_loaded(&self, document_id: &DocumentId, command: Command) {
        let actors = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, sender)) = actors.get(document_id) {
            // A full queue drops a departure notice at worst; the peer's sync state is then
            // saved on unload instead.
            let _ = sender.try_send(command);
        }
    }

    /// Removes a failed actor's entry, so that the next command loads the document afresh.
    fn forget(&self, document_id: &DocumentId, generation: u64) {
        let mut actors = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        if actors
            .get(document_id)
            .is_some_and(|(current, _)| *current == generation)
        {
            actors.remove(document_id);
        }
    }

    pub fn loaded(&self) -> usize {
        self.actors.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Removes the actor's entry if its queue is empty; false means more work arrived.
    fn try_unload(
        &self,
        document_id: &DocumentId,
        generation: u64,
        receiver: &mpsc::Receiver<Command>,
    ) -> bool {
        let mut actors = self.actors.lock().unwrap_or_else(|e| e.into_inner());
        if !receiver.is_empty() {
            return false;
        }
        if actors
            .get(document_id)
            .is_some_and(|(current, _)| *current == generation)
        {
            actors.remove(document_id);
        }
        true
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
    /// A leader of an office above the unit, on an incident: may add instructions (D14),
    /// nothing else (`zhiban_records::policy`, rule W2).
    Instruct,
}

struct Subscriber {
    peer: Arc<Peer>,
    state: sync::State,
    /// None while the document is not yet registered and this peer is offering it.
    access: Option<Access>,
    needs_reply: bool,
}

struct DocumentActor {
    state: AppState,
    document_id: DocumentId,
    generation: u64,
    document: Automerge,
    meta: Option<DocumentMeta>,
    /// Whether `meta` is in the `documents` table yet.
    registered: bool,
    committed_heads: Vec<ChangeHash>,
    /// Bytes the document takes in storage (its chunks), against `max_document_bytes`.
    stored_bytes: u64,
    next_seq: i64,
    chunks_since_snapshot: u32,
    subscribers: HashMap<u64, Subscriber>,
    /// For a document the server has not stored yet: the peer whose changes created it.
    creator: Option<Arc<Peer>>,
    /// Who brought which changes this round, and when, for the audit trail (D19) and the
    /// times the record counts (`records::times`).
    authors: Vec<(Arc<Peer>, Vec<Receipt>)>,
    /// The receipts of the changes of an incident, or of a document of no type yet (see
    /// `keeps_receipts`).
    receipts: Receipts,
    /// Actors first seen this round, bound to the peer's user when the round commits.
    new_actors: Vec<(ActorId, Arc<Peer>)>,
    /// What this round's changes did, for projecting a long record item by item; active only
    /// for such records.
    patches: PatchLog,
    /// The record's type as last projected.
    kind: Option<RecordKind>,
    /// Hashes of changes refused while the document is loaded (see `refuse_changes`).
    refused: HashSet<String>,
    /// This round's audit rows of refusals and classified reads, recorded as it ends.
    audits: Vec<audit::Entry>,
    /// What the write policy sees of the document now; None: read it again before the next
    /// change (after loading, or after changes were taken back).
    seen: Option<policy::Seen>,
    /// The next round reads the record whole: after loading (the rows may be stale if the
    /// last change could not be processed), after a refusal rolled changes back, after a
    /// flagged commit.
    read_whole: bool,
}

impl DocumentActor {
    fn new(state: AppState, document_id: DocumentId, generation: u64) -> Self {
        Self {
            state,
            document_id,
            generation,
            document: Automerge::new(),
            meta: None,
            registered: false,
            committed_heads: Vec::new(),
            stored_bytes: 0,
            next_seq: 0,
            chunks_since_snapshot: 0,
            subscribers: HashMap::new(),
            creator: None,
            authors: Vec::new(),
            receipts: Receipts::default(),
            new_actors: Vec::new(),
            patches: PatchLog::inactive(),
            kind: None,
            refused: HashSet::new(),
            audits: Vec::new(),
            seen: None,
            read_whole: true,
        }
    }

    #[tracing::instrument(name = "document", skip_all, fields(document_id = %self.document_id))]
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        // A panic on one document's input costs that document, never the process: it is
        // caught here, its peers are disconnected, and it reloads from storage on next use.
        if let Err(panic) = AssertUnwindSafe(self.load()).catch_unwind().await {
            return self.failed(panic.as_ref());
        }
        let idle = self.state.settings.document_idle();
        loop {
            let command = tokio::select! {
                command = commands.recv() => command,
                _ = self.state.shutdown.cancelled() => break,
                _ = tokio::time::sleep(idle), if self.subscribers.is_empty() => {
                    if self
                        .state
                        .documents
                        .try_unload(&self.document_id, self.generation, &commands) {
                        break;
                    }
                    continue;
                }
            };
            let Some(command) = command else { break };
            let round = AssertUnwindSafe(async {
                self.handle(command).await;
                for _ in 1..MAX_COMMANDS_PER_ROUND {
                    match commands.try_recv() {
                        Ok(command) => self.handle(command).await,
                        Err(_) => break,
                    }
                }
                self.commit_and_reply().await;
                if !self.audits.is_empty() {
                    let audits = std::mem::take(&mut self.audits);
                    self.state.committer.record(audits).await;
                }
            })
            .catch_unwind()
            .await;
            if let Err(panic) = round {
                return self.failed(panic.as_ref());
            }
            // A request for a document that does not exist (or was refused) should not keep
            // an actor alive: probing random ids must not cost memory.
            if self.meta.is_none()
                && self.subscribers.is_empty()
                && self
                    .state
                    .documents
                    .try_unload(&self.document_id, self.generation, &commands)
            {
                break;
            }
        }
        self.save_sync_states();
        tracing::debug!("document unloaded");
    }

    /// After a panic: the peers are told and disconnected (their devices reconnect and
    /// resubscribe), the actor leaves the registry, and nothing of its memory is trusted.
    fn failed(&mut self, panic: &(dyn std::any::Any + Send)) {
        let message = panic
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        let failures = self
            .state
            .documents
            .failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        tracing::error!(panic = %message, failures, "document failed; its peers are disconnected and it reloads on next use");
        for subscriber in self.subscribers.values() {
            subscriber.peer.send(&Message::Error {
                message: format!(
                    "document {} failed on the server; reconnect",
                    self.document_id
                ),
            });
            subscriber.peer.close(CloseReason::DocumentFailed);
        }
        self.subscribers.clear();
        self.state
            .documents
            .forget(&self.document_id, self.generation);
    }

    async fn load(&mut self) {
        let mut attempt = 0;
        let stored = loop {
            match documents::load(&self.state.pool, &self.document_id).await {
                Ok(stored) => break stored,
                Err(error) => {
                    tracing::error!(%error, attempt, "cannot load document; retrying");
                    tokio::time::sleep(retry_delay(attempt)).await;
                    attempt += 1;
                }
            }
        };
        let mut document = Automerge::new();
        self.stored_bytes = stored
            .chunks
            .iter()
            .map(|chunk| u64::try_from(chunk.len()).unwrap_or(u64::MAX))
            .fold(0, u64::saturating_add);
        for chunk in &stored.chunks {
            if let Err(error) = document.load_incremental(chunk) {
                // Stored bytes were written by us after automerge accepted them; if they no
                // longer load, say so loudly and serve what did load rather than nothing.
                tracing::error!(%error, "stored chunk does not load");
            }
        }
        self.receipts = if keeps_receipts(&document) {
            let mut attempt = 0;
            loop {
                match documents::load_receipts(&self.state.pool, &self.document_id).await {
                    Ok(receipts) => break Receipts::new(receipts),
                    Err(error) => {
                        tracing::error!(%error, attempt, "cannot load receipts; retrying");
                        tokio::time::sleep(retry_delay(attempt)).await;
                        attempt += 1;
                    }
                }
            }
        } else {
            Receipts::default()
        };
        self.committed_heads = document.get_heads();
        self.document = document;
        self.seen = None;
        self.registered = stored.meta.is_some();
        self.meta = stored.meta;
        self.next_seq = stored.next_seq;
        if self.meta.as_ref().is_some_and(|meta| meta.catalog) {
            self.reconcile_catalog().await;
        }
        self.chunks_since_snapshot =
            u32::try_from(stored.chunks.len().saturating_sub(1)).unwrap_or(u32::MAX);
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Sync {
                peer,
                data,
                request,
            } => self.receive(peer, data, request).await,
            Command::Ephemeral {
                peer,
                session_id,
                count,
                data,
            } => self.relay_ephemeral(&peer, session_id, count, data),
            #[cfg(test)]
            Command::Panic => panic!("injected"),
            Command::PeerGone { connection_id } => {
                if let Some(subscriber) = self.subscribers.remove(&connection_id) {
                    self.save_sync_state(&subscriber);
                }
            }
            Command::Catalog {
                document_id,
                unit_id,
                classified,
                created_by,
                created_at,
            } => {
                // Only into the document the server registered as that catalog.
                let ours = self.meta.as_ref().is_some_and(|meta| {
                    meta.catalog && meta.unit_id == unit_id && meta.classified == classified
                });
                if !ours {
                    tracing::error!(%unit_id, classified, "an announcement for a document that is not the unit's catalog; ignored");
                    return;
                }
                self.add_to_catalog(&[(document_id.to_string(), created_by, created_at)]);
            }
        }
    }

    /// Adds every record of the unit the catalog lacks: a crash between storing a record and
    /// updating its catalog must not hide the record from the unit's devices.
    async fn reconcile_catalog(&mut self) {
        let Some(meta) = &self.meta else { return };
        match documents::list_records(&self.state.pool, &meta.unit_id, meta.classified).await {
            Ok(records) => self.add_to_catalog(&records),
            Err(error) => tracing::error!(%error, "cannot read the unit's records for its catalog"),
        }
    }

    fn add_to_catalog(&mut self, records: &[(String, Option<String>, i64)]) {
        let Ok(Some((_, documents))) = self.document.get(automerge::ROOT, "documents") else {
            tracing::error!("catalog without a documents map");
            return;
        };
        let missing: Vec<_> = records
            .iter()
            .filter(|(id, _, _)| matches!(self.document.get(&documents, id.as_str()), Ok(None)))
            .collect();
        if missing.is_empty() {
            return;
        }
        let result = self
            .document
            .transact::<_, _, automerge::AutomergeError>(|tx| {
                for (id, created_by, created_at) in &missing {
                    let entry = tx.put_object(&documents, id.as_str(), ObjType::Map)?;
                    tx.put(&entry, "created_at", *created_at)?;
                    if let Some(created_by) = created_by {
                        tx.put(&entry, "created_by", created_by.as_str())?;
                    }
                }
                Ok(())
            });
        if let Err(failure) = result {
            tracing::error!(error = %failure.error, "cannot update catalog");
        }
    }

    fn access(&self, peer: &Peer) -> Option<Access> {
        let meta = self.meta.as_ref()?;
        if meta.classified && !peer.identity.cleared {
            return None;
        }
        if meta.unit_id == peer.identity.unit_id && !meta.catalog {
            Some(Access::ReadWrite)
        } else if peer.visible_units.contains(&meta.unit_id) {
            let instructs = peer.identity.role == Role::Leader
                && !meta.catalog
                && policy::kind_of(&self.document) == Some(RecordKind::Incident);
            Some(if instructs {
                Access::Instruct
            } else {
                Access::ReadOnly
            })
        } else {
            None
        }
    }

    fn unavailable(&self, peer: &Peer) {
        peer.send(&Message::DocUnavailable {
            document_id: self.document_id,
            sender_id: self.state.server_peer_id.clone(),
            target_id: peer.peer_id.clone(),
        });
    }

    async fn receive(&mut self, peer: Arc<Peer>, data: Vec<u8>, request: bool) {
        let connection_id = peer.connection_id;
        let message = match sync::Message::decode(&data) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(peer = %peer.peer_id, %error, "malformed automerge sync message");
                peer.send(&Message::Error {
                    message: format!("malformed sync message for {}: {error}", self.document_id),
                });
                return;
            }
        };
        // Before automerge sees it: automerge trusts its input (see `validate`).
        let limits = self.state.settings.limits.clone();
        if let Err(refusal) = validate::check(&message, &validate::Limits::of(&limits)) {
            self.subscribers.remove(&connection_id);
            return self.refuse_message(&peer, refusal.to_string());
        }
        if !self.subscribers.contains_key(&connection_id) {
            let access = match &self.meta {
                Some(_) => match self.access(&peer) {
                    Some(access) => Some(access),
                    None => {
                        // Same answer as for a document that does not exist (D18).
                        tracing::info!(peer = %peer.peer_id, "access denied");
                        return self.unavailable(&peer);
                    }
                },
                // Nobody has stored it: a `request` finds nothing; a `sync` offers a new
                // document, checked against its claimed unit once its content is here.
                None if request => return self.unavailable(&peer),
                // An offer of a document nobody has stored, without its changes yet: answered
                // without keeping anything, so that offers cost no memory; the document is
                // held once its first changes arrive.
                None if message.changes.is_empty() && self.document.get_heads().is_empty() => {
                    return self.answer_offer(&peer, message);
                }
                None => None,
            };
            if access.is_some()
                && self
                    .meta
                    .as_ref()
                    .is_some_and(|meta| meta.classified && !meta.catalog)
            {
                // Who opened a classified record, on which device, when (D18, D19).
                self.audits.push(
                    audit::Entry::new("sync.read_classified")
                        .by(&peer.identity.user_id, Some(&peer.identity.device_id))
                        .document(self.document_id),
                );
            }
            let state = self.initial_sync_state(&peer, access).await;
            self.subscribers.insert(
                connection_id,
                Subscriber {
                    peer: peer.clone(),
                    state,
                    access,
                    needs_reply: false,
                },
            );
        }
        let before = self.document.get_heads();
        let had_content = !before.is_empty();
        let subscriber = self
            .subscribers
            .get_mut(&connection_id)
            .expect("subscriber inserted above");
        if subscriber.access == Some(Access::ReadOnly) && !message.changes.is_empty() {
            tracing::info!(peer = %peer.peer_id, "changes from a read-only peer ignored");
        }
        let writer = policy_writer(&peer, subscriber.access);
        let seen_before = match writer {
            Some(_) if !message.changes.is_empty() => Some(
                self.seen
                    .take()
                    .unwrap_or_else(|| policy::Seen::of(&self.document)),
            ),
            _ => None,
        };
        // Automerge takes a message that brings nothing and names our heads as the peer
        // knowing them, and marks them sent. Replies wait for the end of the round, though:
        // when the peer's previous message in this round brought a change, the heads it names
        // are its own, and only our reply tells it we hold that change. Marked sent, that
        // reply would never go out, and a device would show its report "not received" until
        // something else changed. Heads count as sent when we send them.
        let last_sent = subscriber.state.last_sent_heads.clone();
        let applied = validate::apply(
            &mut self.document,
            &mut subscriber.state,
            message,
            &mut self.patches,
            limits.max_depth,
        );
        // (Unless automerge emptied them: the peer lost its data and gets everything anew.)
        if !subscriber.state.last_sent_heads.is_empty() {
            subscriber.state.last_sent_heads = last_sent;
        }
        if !matches!(applied, Ok(validate::Applied::Changes(_))) {
            // The round's patches may hold part of what did not go in.
            self.read_whole = true;
            self.patches = PatchLog::inactive();
        }
        let brought = match applied {
            Ok(validate::Applied::Changes(brought)) => brought,
            Ok(validate::Applied::Error(error)) => {
                tracing::warn!(peer = %peer.peer_id, %error, "sync message refused");
                self.subscribers.remove(&connection_id);
                peer.send(&Message::Error {
                    message: format!("sync message refused for {}: {error}", self.document_id),
                });
                return;
            }
            Err(refusal) => {
                self.subscribers.remove(&connection_id);
                return self.refuse_message(&peer, refusal.to_string());
            }
        };
        let now = self.state.clock.now_ms();
        let earliest = peer.contact.earliest(now);
        let (actors, receipts): (Vec<ActorId>, Vec<Receipt>) = brought
            .into_iter()
            .map(|change| {
                let receipt = Receipt {
                    actor: change.actor.to_hex_string(),
                    start_op: change.start_op,
                    end_op: change.max_op,
                    hash: change.hash.to_string(),
                    received_at: now,
                    earliest,
                };
                (change.actor, receipt)
            })
            .unzip();
        let brought: Vec<String> = receipts
            .iter()
            .map(|receipt| receipt.hash.clone())
            .collect();
        let known_actors = self.new_actors.len();
        if let Err(reason) = self.check_authorship(&peer, actors).await {
            return self.refuse_changes(&peer, &before, &brought, known_actors, reason);
        }
        if let (Some(writer), Some(seen_before)) = (writer, seen_before) {
            // The message's changes are all this peer's user's (authorship above), so what
            // they did to the record is the difference they made.
            let seen = if brought.is_empty() {
                seen_before
            } else {
                let seen = policy::Seen::of(&self.document);
                let writer = policy::Writer {
                    user_id: &peer.identity.user_id,
                    ..writer
                };
                if let Err(violation) = policy::check(&seen_before, &seen, &writer) {
                    let reason = violation.to_string();
                    self.refuse_changes(&peer, &before, &brought, known_actors, reason);
                    self.seen = Some(seen_before);
                    return;
                }
                seen
            };
            self.seen = Some(seen);
        }
        if let Some(subscriber) = self.subscribers.get_mut(&connection_id) {
            subscriber.needs_reply = true;
        }
        if brought.is_empty() {
            return;
        }
        if self.meta.is_none() && !had_content {
            self.creator = Some(peer.clone());
        }
        peer.delivered.store(true, Ordering::Relaxed);
        self.authors.push((peer, receipts));
    }

    /// Checks that every actor in `actors` belongs to the peer's user, or is new (see
    /// `authorship`); new ones are bound when the round commits.
    async fn check_authorship(
        &mut self,
        peer: &Arc<Peer>,
        mut actors: Vec<ActorId>,
    ) -> Result<(), String> {
        actors.sort();
        actors.dedup();
        let user = &peer.identity.user_id;
        let mut unseen = Vec::new();
        for actor in actors {
            let owner = match self.new_actors.iter().find(|(seen, _)| *seen == actor) {
                Some((_, first)) => Some(first.identity.user_id.clone()),
                None => self
                    .state
                    .authors
                    .owner(&self.state.pool, &actor)
                    .await
                    .map_err(|error| format!("cannot check who wrote the changes: {error}"))?,
            };
            match owner {
                Some(owner) if owner == *user => {}
                Some(_) => {
                    return Err(format!(
                        "changes by actor {actor} were written by another user"
                    ));
                }
                None => unseen.push((actor, peer.clone())),
            }
        }
        self.new_actors.extend(unseen);
        Ok(())
    }

    /// Answers an offer of an unknown document as an empty document would, so that the
    /// peer sends its changes, and forgets it. One connection may make only so many.
    fn answer_offer(&mut self, peer: &Arc<Peer>, message: sync::Message) {
        let offers = peer.unknown_offers.fetch_add(1, Ordering::Relaxed) + 1;
        let limit = self.state.settings.limits.max_unknown_offers;
        if offers > limit {
            return self.refuse_message(
                peer,
                format!("more than {limit} offers of documents the server does not hold"),
            );
        }
        let mut empty = Automerge::new();
        let mut state = sync::State::new();
        if empty.receive_sync_message(&mut state, message).is_ok()
            && let Some(reply) = empty.generate_sync_message(&mut state)
        {
            peer.send(&Message::Sync {
                document_id: self.document_id,
                sender_id: self.state.server_peer_id.clone(),
                target_id: peer.peer_id.clone(),
                data: reply.encode(),
            });
        }
    }

    /// Refuses a peer's message as a whole: an `error` naming the limit, a log line, an
    /// audit row, and the socket closed (a hostile peer does not get to try again at once;
    /// an honest device reconnects and reports the refusal).
    fn refuse_message(&mut self, peer: &Arc<Peer>, reason: String) {
        self.tell_refused(peer, &reason, true);
        peer.close(CloseReason::Refused);
    }

    /// Takes back changes that broke a rule (or were forged). A device keeps what the server
    /// refused and offers it again on every connection: the same changes again get the same
    /// `error`, but no new audit row, so a device cannot grow the audit trail by repeating
    /// itself. `known_actors`: the actors seen this round before the message.
    fn refuse_changes(
        &mut self,
        peer: &Arc<Peer>,
        before: &[ChangeHash],
        brought: &[String],
        known_actors: usize,
        reason: String,
    ) {
        self.new_actors.truncate(known_actors);
        let again = brought.iter().all(|hash| self.refused.contains(hash));
        if self.refused.len() > MAX_REMEMBERED_REFUSALS {
            self.refused.clear();
        }
        self.refused.extend(brought.iter().cloned());
        self.take_back(peer, before, reason, false, !again);
    }

    /// The log line, the audit row (if `audit`) and the peer's `error` for a refused message.
    fn tell_refused(&mut self, peer: &Peer, reason: &str, audit: bool) {
        if audit {
            tracing::warn!(peer = %peer.peer_id, %reason, "sync message refused");
            self.audits.push(
                audit::Entry::new("sync.refused")
                    .by(&peer.identity.user_id, Some(&peer.identity.device_id))
                    .document(self.document_id)
                    .detail(json!({"reason": reason})),
            );
        } else {
            tracing::debug!(peer = %peer.peer_id, %reason, "refused changes offered again");
        }
        peer.send(&Message::Error {
            message: format!("changes to {} refused: {reason}", self.document_id),
        });
    }

    /// Takes back a message's changes: the document returns to `before` (which still holds
    /// this round's other changes) and the peer's sync state starts over. `close`: the
    /// changes broke a limit, and the peer's socket is closed too.
    fn take_back(
        &mut self,
        peer: &Arc<Peer>,
        before: &[ChangeHash],
        reason: String,
        close: bool,
        audit: bool,
    ) {
        // The round's patches describe changes no longer there.
        self.read_whole = true;
        self.patches = PatchLog::inactive();
        self.seen = None;
        match self.document.fork_at(before) {
            Ok(mut document) => {
                document.set_actor(self.document.get_actor().clone());
                self.document = document;
            }
            Err(error) => {
                // Cannot happen for heads the document had a moment ago; if it does, dropping
                // the document's actor reloads it from what is committed.
                tracing::error!(%error, "cannot roll back refused changes");
            }
        }
        if let Some(subscriber) = self.subscribers.get_mut(&peer.connection_id) {
            let read_only = subscriber.state.read_only;
            subscriber.state = sync::State::new();
            subscriber.state.read_only = read_only;
        }
        self.tell_refused(peer, &reason, audit);
        if close {
            peer.close(CloseReason::Refused);
        }
    }

    /// Takes back everything this round brought, when together it breaks a limit: the
    /// document returns to what is stored, and each peer that brought changes is told and
    /// disconnected (its device keeps the changes and reports the refusal).
    fn refuse_round(&mut self, reason: String) {
        let authors: Vec<Arc<Peer>> = self.authors.drain(..).map(|(peer, _)| peer).collect();
        let committed = self.committed_heads.clone();
        for peer in &authors {
            self.take_back(peer, &committed, reason.clone(), true, true);
        }
        self.new_actors.clear();
    }

    async fn initial_sync_state(&self, peer: &Peer, access: Option<Access>) -> sync::State {
        let mut state = match documents::load_sync_state(
            &self.state.pool,
            peer.peer_id.as_str(),
            &self.document_id,
        )
        .await
        {
            Ok(Some(bytes)) => sync::State::decode(&bytes).unwrap_or_default(),
            Ok(None) => sync::State::new(),
            Err(error) => {
                tracing::warn!(%error, "cannot load sync state; starting afresh");
                sync::State::new()
            }
        };
        state.read_only = access == Some(Access::ReadOnly);
        state
    }

    fn relay_ephemeral(&self, from: &Peer, session_id: String, count: u64, data: Vec<u8>) {
        match self.access(from) {
            None => return self.unavailable(from),
            // Presence and cursors are for the unit's editors: a reader, or an office above
            // that may only add instructions, has nothing to announce.
            Some(Access::ReadOnly | Access::Instruct) => {
                return from.send(&Message::Error {
                    message: format!(
                        "read-only peers and offices above send no ephemeral messages for {}",
                        self.document_id
                    ),
                });
            }
            Some(Access::ReadWrite) => {}
        }
        for subscriber in self.subscribers.values() {
            if subscriber.peer.connection_id != from.connection_id && subscriber.access.is_some() {
                subscriber.peer.send(&Message::Ephemeral {
                    document_id: self.document_id,
                    sender_id: from.peer_id.clone(),
                    target_id: subscriber.peer.peer_id.clone(),
                    session_id: session_id.clone(),
                    count,
                    data: data.clone(),
                });
            }
        }
    }

    /// Commits whatever this round changed, then answers: first the commit, then the fan-out.
    async fn commit_and_reply(&mut self) {
        let heads = self.document.get_heads();
        let changed = heads != self.committed_heads;
        if changed {
            let mut registered = None;
            let mut audit = Vec::new();
            if !self.registered {
                let meta = match self.meta.clone() {
                    Some(catalog) => catalog,
                    None => match self.claim().await {
                        Ok(meta) => meta,
                        Err(reason) => return self.refuse_new_document(reason),
                    },
                };
                let mut entry = audit::Entry::new(if meta.catalog {
                    "catalog.create"
                } else {
                    "document.register"
                })
                .document(self.document_id)
                .detail(json!({"unit_id": meta.unit_id, "classified": meta.classified}));
                if let Some(creator) = &self.creator {
                    entry = entry.by(&creator.identity.user_id, Some(&creator.identity.device_id));
                }
                audit.push(entry);
                registered = Some(meta);
            }
            let bound: Vec<(ActorId, Arc<Peer>)> = self.new_actors.drain(..).collect();
            let actors: Vec<ActorBinding> = bound
                .iter()
                .map(|(actor, peer)| ActorBinding {
                    actor_id: actor.to_hex_string(),
                    user_id: peer.identity.user_id.clone(),
                    device_id: peer.identity.device_id.clone(),
                })
                .collect();
            let receipts: Vec<Receipt> = if keeps_receipts(&self.document) {
                let round: Vec<Receipt> = self
                    .authors
                    .iter()
                    .flat_map(|(_, receipts)| receipts.iter().cloned())
                    .collect();
                for receipt in &round {
                    self.receipts.add(receipt.clone());
                }
                round
            } else {
                self.receipts = Receipts::default();
                Vec::new()
            };
            let record = self.project(registered.as_ref());
            // Not drained: a round refused for its size below tells its authors.
            for (peer, receipts) in &self.authors {
                let changes: Vec<&str> = receipts
                    .iter()
                    .map(|receipt| receipt.hash.as_str())
                    .collect();
                audit.push(
                    audit::Entry::new("sync.change")
                        .by(&peer.identity.user_id, Some(&peer.identity.device_id))
                        .document(self.document_id)
                        .detail(json!({"peer": peer.peer_id, "changes": changes})),
                );
            }
            let snapshot =
                self.chunks_since_snapshot + 1 >= self.state.settings.snapshot_after_chunks;
            let chunk = if snapshot {
                Chunk::Snapshot {
                    seq: self.next_seq,
                    data: self.document.save(),
                }
            } else {
                Chunk::Changes {
                    seq: self.next_seq,
                    data: self.document.save_after(&self.committed_heads),
                }
            };
            let (Chunk::Snapshot { data, .. } | Chunk::Changes { data, .. }) = &chunk;
            let chunk_bytes = u64::try_from(data.len()).unwrap_or(u64::MAX);
            let stored_bytes = if snapshot {
                chunk_bytes
            } else {
                self.stored_bytes.saturating_add(chunk_bytes)
            };
            let limit = self.state.settings.limits.max_document_bytes;
            if stored_bytes > limit && !self.meta.as_ref().is_some_and(|meta| meta.catalog) {
                return self.refuse_round(format!(
                    "the document would take {stored_bytes} bytes; the limit is {limit}"
                ));
            }
            let work = DocumentWork {
                document_id: self.document_id,
                register: registered.clone(),
                chunk,
                receipts,
                actors,
                record,
                audit,
            };
            self.commit(work).await;
            self.stored_bytes = stored_bytes;
            for (actor, peer) in bound {
                self.state
                    .authors
                    .remember(actor, peer.identity.user_id.clone());
            }
            self.next_seq += 1;
            self.chunks_since_snapshot = if snapshot {
                0
            } else {
                self.chunks_since_snapshot + 1
            };
            self.committed_heads = heads;
            if let Some(meta) = registered {
                tracing::info!(unit_id = %meta.unit_id, classified = meta.classified, catalog = meta.catalog, "document registered");
                self.registered = true;
                self.creator = None;
                if !meta.catalog {
                    self.announce_to_catalog(&meta).await;
                }
                self.meta = Some(meta);
                self.settle_offering_peers();
            }
        }
        self.authors.clear();
        self.new_actors.clear();
        let server_peer_id = &self.state.server_peer_id;
        for subscriber in self.subscribers.values_mut() {
            if !(changed || subscriber.needs_reply) {
                continue;
            }
            subscriber.needs_reply = false;
            if let Some(message) = self.document.generate_sync_message(&mut subscriber.state) {
                subscriber.peer.send(&Message::Sync {
                    document_id: self.document_id,
                    sender_id: server_peer_id.clone(),
                    target_id: subscriber.peer.peer_id.clone(),
                    data: message.encode(),
                });
            }
        }
    }

    /// The record's rows after this round: item by item for a long record whose last round
    /// went well, whole otherwise. Resets the round's patch log.
    fn project(&mut self, registered: Option<&DocumentMeta>) -> Option<records::Projection> {
        let patches = self.document.make_patches(&mut self.patches);
        let meta = registered
            .or(self.meta.as_ref())
            .filter(|meta| !meta.catalog)?;
        let fresh = registered.is_some();
        let change = if self.read_whole || fresh {
            Change::All
        } else {
            Change::Patches(&patches)
        };
        let source = Source {
            document_id: self.document_id,
            meta,
            doc: &self.document,
            receipts: &self.receipts,
        };
        let projection = records::project(&source, change, fresh);
        self.kind = projection.as_ref().map(|projection| projection.common.kind);
        self.read_whole = false;
        // Patches are worth logging only for records projected item by item.
        self.patches = if self.kind.and_then(RecordKind::items).is_some() {
            PatchLog::active()
        } else {
            PatchLog::inactive()
        };
        projection
    }

    async fn announce_to_catalog(&self, meta: &DocumentMeta) {
        let catalog = self.state.catalog_key.id(&meta.unit_id, meta.classified);
        let command = Command::Catalog {
            document_id: self.document_id,
            unit_id: meta.unit_id.clone(),
            classified: meta.classified,
            created_by: meta.created_by.clone(),
            created_at: crate::clock::system_ms(),
        };
        self.state
            .documents
            .send(&self.state, catalog, command)
            .await;
    }

    /// Retries until the database takes the work: the changes are in memory and
    /// unacknowledged, so the devices still hold them too, and nothing is answered until this
    /// returns. A record that could not be processed is stored all the same (`commit`); its
    /// next round reads it whole.
    async fn commit(&mut self, work: DocumentWork) {
        let mut attempt = 0;
        loop {
            match self
                .state
                .committer
                .commit(Work::Document(Box::new(work.clone())))
                .await
            {
                Ok(outcome) => {
                    if outcome.flagged.is_some() {
                        self.read_whole = true;
                    }
                    return;
                }
                Err(error) => {
                    tracing::error!(%error, attempt, "cannot store changes; retrying");
                    tokio::time::sleep(retry_delay(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Decides the unit and classification of a document offered by a device: taken from its
    /// `unit` and `classification` fields, defaulting to the creator's unit and plain. A
    /// device may only create documents in its own unit, and classified ones only if cleared.
    async fn claim(&self) -> Result<DocumentMeta, String> {
        let creator = self
            .creator
            .as_ref()
            .ok_or_else(|| "no creator for a new document".to_owned())?;
        let identity = &creator.identity;
        let limit = self.state.settings.limits.max_new_documents_per_hour;
        let hour_ago = self.state.clock.now_ms().saturating_sub(3_600_000);
        let created = documents::created_since(&self.state.pool, &identity.user_id, hour_ago)
            .await
            .map_err(|error| format!("cannot check how many documents you made: {error}"))?;
        if created >= limit {
            return Err(format!(
                "{created} documents made in the last hour; the limit is {limit}"
            ));
        }
        let unit_id = zhiban_records::json::text(&self.document, &automerge::ROOT, "unit")
            .unwrap_or_else(|| identity.unit_id.clone());
        let classified =
            match zhiban_records::json::text(&self.document, &automerge::ROOT, "classification")
                .as_deref()
            {
                None | Some("plain") => false,
                Some("classified") => true,
                Some(other) => return Err(format!("unknown classification `{other}`")),
            };
        if unit_id != identity.unit_id {
            return Err(format!("cannot create a document in unit {unit_id}"));
        }
        if classified && !identity.cleared {
            return Err("not cleared for classified documents".into());
        }
        Ok(DocumentMeta {
            unit_id,
            classified,
            catalog: false,
            created_by: Some(identity.user_id.clone()),
        })
    }

    fn refuse_new_document(&mut self, reason: String) {
        tracing::warn!(
            creator = ?self.creator.as_ref().map(|peer| peer.peer_id.clone()),
            %reason,
            "new document refused"
        );
        let mut entry = audit::Entry::new("document.refused")
            .document(self.document_id)
            .detail(json!({ "reason": reason }));
        if let Some(creator) = &self.creator {
            entry = entry.by(&creator.identity.user_id, Some(&creator.identity.device_id));
        }
        self.audits.push(entry);
        self.authors.clear();
        self.new_actors.clear();
        for subscriber in std::mem::take(&mut self.subscribers).into_values() {
            subscriber.peer.send(&Message::Error {
                message: format!("document {} refused: {reason}", self.document_id),
            });
            self.unavailable(&subscriber.peer);
        }
        self.document = Automerge::new();
        self.seen = None;
        self.patches = PatchLog::inactive();
        self.read_whole = true;
        self.committed_heads.clear();
        self.creator = None;
    }

    /// After registration, peers that offered the document get the access policy gives them.
    fn settle_offering_peers(&mut self) {
        let offering: Vec<u64> = self
            .subscribers
            .iter()
            .filter(|(_, subscriber)| subscriber.access.is_none())
            .map(|(connection_id, _)| *connection_id)
            .collect();
        for connection_id in offering {
            let peer = self.subscribers[&connection_id].peer.clone();
            match self.access(&peer) {
                Some(access) => {
                    let subscriber = self.subscribers.get_mut(&connection_id).expect("present");
                    subscriber.access = Some(access);
                    subscriber.state.read_only = access == Access::ReadOnly;
                }
                None => {
                    self.subscribers.remove(&connection_id);
                    self.unavailable(&peer);
                }
            }
        }
    }

    fn save_sync_state(&self, subscriber: &Subscriber) {
        if self.meta.is_some() {
            self.state.committer.submit(Work::SyncState {
                peer_id: subscriber.peer.peer_id.to_string(),
                document_id: self.document_id,
                state: subscriber.state.encode(),
            });
        }
    }

    fn save_sync_states(&self) {
        for subscriber in self.subscribers.values() {
            self.save_sync_state(subscriber);
        }
    }
}

/// Receipts are kept for incidents, whose deadlines run on them, and for documents of no
/// known type yet, which may still become one (a record keeps its type: policy W1).
fn keeps_receipts(document: &Automerge) -> bool {
    matches!(
        records::kind_of(document),
        None | Some(RecordKind::Incident)
    )
}

/// The writer as the policy sees them, without their user id (borrowed at the check); None
/// for a peer whose changes are not applied at all. A peer offering a document not yet
/// registered (no access yet) is creating it in their own unit: registration sees to that.
fn policy_writer(peer: &Peer, access: Option<Access>) -> Option<policy::Writer<'static>> {
    let superior = match access {
        Some(Access::ReadOnly) => return None,
        None | Some(Access::ReadWrite) => false,
        Some(Access::Instruct) => true,
    };
    Some(policy::Writer {
        user_id: "",
        leader: peer.identity.role == Role::Leader,
        admin: peer.identity.role == Role::Admin,
        superior,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;
    use zhiban_protocol::Message;

    use super::*;
    use crate::access::{Identity, Role};
    use crate::sync::peer::Contact;

    /// A field worker's connection to the catalog of `unit_id`.
    fn reader(
        state: &AppState,
        unit_id: &str,
        user_id: &str,
        connection_id: u64,
    ) -> (Arc<Peer>, mpsc::Receiver<bytes::Bytes>) {
        let identity = Identity {
            user_id: user_id.into(),
            device_id: format!("device {connection_id}"),
            unit_id: unit_id.into(),
            role: Role::Field,
            cleared: false,
        };
        let (peer, outbox) = Peer::new(
            connection_id,
            identity,
            [unit_id.to_owned()].into(),
            CancellationToken::new(),
            state.settings.limits.max_outbox_bytes,
            Contact {
                connected_at: 0,
                last_contact: 0,
            },
        );
        (Arc::new(peer), outbox)
    }

    async fn request(state: &AppState, document_id: DocumentId, peer: &Arc<Peer>) {
        let data = Automerge::new()
            .generate_sync_message(&mut sync::State::new())
            .unwrap()
            .encode();
        let command = Command::Sync {
            peer: Arc::clone(peer),
            data,
            request: true,
        };
        state.documents.send(state, document_id, command).await;
    }

    async fn next(outbox: &mut mpsc::Receiver<bytes::Bytes>) -> Message {
        let frame = tokio::time::timeout(Duration::from_secs(10), outbox.recv())
            .await
            .expect("a message in time")
            .expect("the outbox is open");
        Message::decode(&frame).unwrap()
    }

    #[tokio::test]
    async fn a_panic_costs_one_document_and_its_peers_reconnect_to_a_reloaded_copy() {
        let data = tempfile::tempdir().unwrap();
        let settings = crate::Settings {
            data_dir: data.path().to_owned(),
            ..crate::Settings::default()
        };
        let (state, _writer) = crate::start(settings).await.unwrap();
        let now = crate::clock::system_ms();
        let keys = crate::keys::Keys::load(&state.settings, &state.pool)
            .await
            .unwrap();
        let unit = crate::accounts::create_unit(&state.pool, &keys, "Town", None, now)
            .await
            .unwrap();
        let catalog = state.catalog_key.id(&unit, false);
        let (peer, mut outbox) = reader(&state, &unit, "anna", 1);
        request(&state, catalog, &peer).await;
        assert!(matches!(next(&mut outbox).await, Message::Sync { .. }));

        state.documents.send(&state, catalog, Command::Panic).await;
        let Message::Error { message } = next(&mut outbox).await else {
            panic!("subscribers are told");
        };
        assert!(message.contains("failed"), "{message}");
        tokio::time::timeout(Duration::from_secs(10), peer.cancelled().cancelled())
            .await
            .expect("and disconnected");
        assert_eq!(peer.close_reason(), CloseReason::DocumentFailed);
        assert_eq!(state.documents.failures.load(Ordering::Relaxed), 1);

        // The next use loads it from storage again: a reconnecting device gets the catalog.
        let (again, mut outbox) = reader(&state, &unit, "anna", 2);
        request(&state, catalog, &again).await;
        let Message::Sync { data, .. } = next(&mut outbox).await else {
            panic!("the document answers again");
        };
        let mut copy = Automerge::new();
        copy.receive_sync_message(
            &mut sync::State::new(),
            sync::Message::decode(&data).unwrap(),
        )
        .unwrap();
        assert!(
            copy.get(automerge::ROOT, "documents").unwrap().is_some(),
            "its stored content"
        );
    }
}
