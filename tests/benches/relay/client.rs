//! A raw automerge-repo peer for the benchmark: one websocket, one task, and per document its
//! own `Automerge` and `sync::State`. It answers every sync message the way a repo would
//! (receive, then generate replies until there is nothing more to say), so the same client
//! code measures both servers.
//!
//! What each server sends differs: samod announces every active document to every peer, so
//! `sync` messages for documents this client never opened are ignored (counted), and a
//! `request` for such a document (samod asking its peers for a document it lacks) is answered
//! with `doc-unavailable`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use automerge::{AutomergeError, ChangeHash, ObjType, ReadDoc, ScalarValue, Value};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use zhiban_protocol::{DocumentId, Message, PROTOCOL_VERSION, PeerId, PeerMetadata};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Replies generated for one received message at most; automerge needs one or two.
const MAX_REPLIES: usize = 8;

/// Frames received by all clients sharing it, and when the last one arrived: lets the
/// benchmark wait until the server has gone quiet between rounds.
pub struct Activity {
    base: Instant,
    last_nanos: AtomicU64,
    pub frames: AtomicU64,
    pub unsolicited: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Activity {
            base: Instant::now(),
            last_nanos: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            unsolicited: AtomicU64::new(0),
        })
    }

    fn touch(&self) {
        let nanos = self.base.elapsed().as_nanos() as u64;
        self.last_nanos.fetch_max(nanos, Ordering::Relaxed);
        self.frames.fetch_add(1, Ordering::Relaxed);
    }

    /// Waits until no client has received a frame for `quiet`, or fails after `limit`.
    pub async fn settle(&self, quiet: Duration, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let last = self.base + Duration::from_nanos(self.last_nanos.load(Ordering::Relaxed));
            if last.elapsed() >= quiet {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("traffic did not settle within {limit:?}");
            }
            tokio::time::sleep(quiet / 4).await;
        }
    }
}

/// What the benchmark can watch of one document in one client.
#[derive(Clone, Debug)]
pub struct DocView {
    /// This client's heads.
    pub heads: Vec<ChangeHash>,
    /// When `heads` last changed (a received change was applied, or a local change made).
    pub changed_at: Instant,
    /// The heads the server announced in its latest sync message for this document.
    pub server_heads: Vec<ChangeHash>,
    /// The server answered `doc-unavailable`.
    pub unavailable: bool,
}

enum Command {
    Open {
        document_id: DocumentId,
        doc: Box<Automerge>,
        request: bool,
        view: watch::Sender<DocView>,
    },
    /// Adds one record to the document's `records` list and sends it.
    Change {
        document_id: DocumentId,
        done: oneshot::Sender<anyhow::Result<(Instant, ChangeHash)>>,
    },
    Close(oneshot::Sender<()>),
}

pub struct Client {
    commands: mpsc::UnboundedSender<Command>,
    ended: Arc<Mutex<Option<String>>>,
}

struct OpenDoc {
    doc: Automerge,
    state: sync::State,
    request: bool,
    view: watch::Sender<DocView>,
}

struct Task {
    socket: Socket,
    me: PeerId,
    server: PeerId,
    docs: HashMap<DocumentId, OpenDoc>,
    activity: Arc<Activity>,
}

impl Client {
    /// Connects to `url`, sends `join` as `peer_id` and waits for the server's `peer`.
    pub async fn connect(
        url: &str,
        peer_id: PeerId,
        activity: Arc<Activity>,
    ) -> anyhow::Result<Client> {
        let (mut socket, _) = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            tokio_tungstenite::connect_async_with_config(url, None, true),
        )
        .await
        .map_err(|_| anyhow!("websocket connect timed out"))?
        .with_context(|| format!("websocket connect to {}", strip_query(url)))?;
        let join = Message::Join {
            sender_id: peer_id.clone(),
            supported_protocol_versions: vec![PROTOCOL_VERSION.into()],
            peer_metadata: Some(PeerMetadata {
                storage_id: None,
                is_ephemeral: false,
            }),
        };
        socket.send(WsMessage::binary(join.encode())).await?;
        let server = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
            loop {
                match socket.next().await {
                    Some(Ok(WsMessage::Binary(frame))) => match Message::decode(&frame)? {
                        Message::Peer { sender_id, .. } => return Ok(sender_id),
                        Message::Error { message } => bail!("server error in handshake: {message}"),
                        other => bail!("expected peer, got {}", other.type_name()),
                    },
                    Some(Ok(WsMessage::Close(frame))) => bail!("closed in handshake: {frame:?}"),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error.into()),
                    None => bail!("connection ended in handshake"),
                }
            }
        })
        .await
        .map_err(|_| anyhow!("no peer message within {HANDSHAKE_TIMEOUT:?}"))??;
        let (commands, receiver) = mpsc::unbounded_channel();
        let ended = Arc::new(Mutex::new(None));
        let task = Task {
            socket,
            me: peer_id,
            server,
            docs: HashMap::new(),
            activity,
        };
        let ended_by_task = ended.clone();
        tokio::spawn(async move {
            let reason = match task.run(receiver).await {
                Ok(()) => "closed by the benchmark".to_owned(),
                Err(error) => format!("{error:#}"),
            };
            *ended_by_task.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        });
        Ok(Client { commands, ended })
    }

    /// Why the connection ended, if it did.
    pub fn ended(&self) -> Option<String> {
        self.ended.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn gone(&self) -> anyhow::Error {
        anyhow!(
            "connection ended: {}",
            self.ended().unwrap_or_else(|| "unknown reason".into())
        )
    }

    /// Starts syncing `doc` as `document_id`: with `request`, as a device that lacks it.
    pub fn open(
        &self,
        document_id: DocumentId,
        doc: Automerge,
        request: bool,
    ) -> anyhow::Result<watch::Receiver<DocView>> {
        let (view, receiver) = watch::channel(DocView {
            heads: doc.get_heads(),
            changed_at: Instant::now(),
            server_heads: Vec::new(),
            unavailable: false,
        });
        self.commands
            .send(Command::Open {
                document_id,
                doc: Box::new(doc),
                request,
                view,
            })
            .map_err(|_| self.gone())?;
        Ok(receiver)
    }

    /// Adds one record to an open document and sends it; returns when it was sent and its hash.
    pub async fn change(&self, document_id: DocumentId) -> anyhow::Result<(Instant, ChangeHash)> {
        let (done, outcome) = oneshot::channel();
        self.commands
            .send(Command::Change { document_id, done })
            .map_err(|_| self.gone())?;
        outcome.await.map_err(|_| self.gone())?
    }

    pub async fn close(self) {
        let (done, closed) = oneshot::channel();
        if self.commands.send(Command::Close(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(5), closed).await;
        }
    }
}

impl Task {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) -> anyhow::Result<()> {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None => return Ok(()),
                    Some(Command::Close(done)) => {
                        let _ = self.socket.close(None).await;
                        let _ = done.send(());
                        return Ok(());
                    }
                    Some(command) => self.on_command(command).await?,
                },
                frame = self.socket.next() => match frame {
                    Some(Ok(WsMessage::Binary(frame))) => {
                        self.activity.touch();
                        self.on_frame(&frame).await?;
                    }
                    Some(Ok(WsMessage::Close(frame))) => bail!("server closed the connection: {frame:?}"),
                    Some(Ok(_)) => {}
                    Some(Err(error)) => bail!("websocket error: {error}"),
                    None => bail!("server ended the connection"),
                },
            }
        }
    }

    async fn on_command(&mut self, command: Command) -> anyhow::Result<()> {
        match command {
            Command::Open {
                document_id,
                doc,
                request,
                view,
            } => {
                self.docs.insert(
                    document_id,
                    OpenDoc {
                        doc: *doc,
                        state: sync::State::new(),
                        request,
                        view,
                    },
                );
                let server = self.server.clone();
                self.send_sync(document_id, &server).await?;
            }
            Command::Change { document_id, done } => {
                let Some(open) = self.docs.get_mut(&document_id) else {
                    let _ = done.send(Err(anyhow!("document {document_id} is not open")));
                    return Ok(());
                };
                let hash = match add_record(&mut open.doc) {
                    Ok(hash) => hash,
                    Err(error) => {
                        let _ = done.send(Err(error));
                        return Ok(());
                    }
                };
                let now = Instant::now();
                open.view.send_modify(|view| {
                    view.heads = open.doc.get_heads();
                    view.changed_at = now;
                });
                let server = self.server.clone();
                let sent_at = Instant::now();
                self.send_sync(document_id, &server).await?;
                let _ = done.send(Ok((sent_at, hash)));
            }
            Command::Close(_) => unreachable!("handled in run"),
        }
        Ok(())
    }

    /// Sends what automerge has to say about `document_id`, until it has nothing more.
    async fn send_sync(&mut self, document_id: DocumentId, target: &PeerId) -> anyhow::Result<()> {
        let Some(open) = self.docs.get_mut(&document_id) else {
            return Ok(());
        };
        let mut frames = Vec::new();
        while frames.len() < MAX_REPLIES {
            let Some(message) = open.doc.generate_sync_message(&mut open.state) else {
                break;
            };
            let data = message.encode();
            let frame = if open.request && open.doc.get_heads().is_empty() {
                Message::Request {
                    document_id,
                    sender_id: self.me.clone(),
                    target_id: target.clone(),
                    data,
                }
            } else {
                Message::Sync {
                    document_id,
                    sender_id: self.me.clone(),
                    target_id: target.clone(),
                    data,
                }
            };
            frames.push(frame.encode());
        }
        for frame in frames {
            self.socket.send(WsMessage::binary(frame)).await?;
        }
        Ok(())
    }

    async fn on_frame(&mut self, frame: &[u8]) -> anyhow::Result<()> {
        let message = Message::decode(frame).context("undecodable frame from the server")?;
        match message {
            Message::Sync {
                document_id,
                sender_id,
                data,
                ..
            }
            | Message::Request {
                document_id,
                sender_id,
                data,
                ..
            } if self.docs.contains_key(&document_id) => {
                let open = self.docs.get_mut(&document_id).expect("checked");
                let message = sync::Message::decode(&data)
                    .with_context(|| format!("bad sync data for {document_id}"))?;
                let server_heads = message.heads.clone();
                let before = open.doc.get_heads();
                open.doc
                    .receive_sync_message(&mut open.state, message)
                    .with_context(|| format!("applying sync data for {document_id}"))?;
                let after = open.doc.get_heads();
                let now = Instant::now();
                open.view.send_modify(|view| {
                    view.server_heads = server_heads;
                    if after != before {
                        view.heads = after;
                        view.changed_at = now;
                    }
                });
                self.send_sync(document_id, &sender_id).await?;
            }
            Message::Request {
                document_id,
                sender_id,
                ..
            } => {
                self.activity.unsolicited.fetch_add(1, Ordering::Relaxed);
                let answer = Message::DocUnavailable {
                    document_id,
                    sender_id: self.me.clone(),
                    target_id: sender_id,
                };
                self.socket.send(WsMessage::binary(answer.encode())).await?;
            }
            Message::Sync { .. } => {
                self.activity.unsolicited.fetch_add(1, Ordering::Relaxed);
            }
            Message::DocUnavailable { document_id, .. } => {
                if let Some(open) = self.docs.get(&document_id) {
                    open.view.send_modify(|view| view.unavailable = true);
                }
            }
            Message::Error { message } => bail!("server sent error: {message}"),
            _ => {}
        }
        Ok(())
    }
}

/// A new document with an empty `records` list, made by a fresh actor.
pub fn new_document() -> anyhow::Result<Automerge> {
    let mut doc = Automerge::new();
    doc.transact::<_, _, AutomergeError>(|tx| {
        tx.put_object(ROOT, "records", ObjType::List)?;
        tx.put(ROOT, "kind", "bench")?;
        Ok(())
    })
    .map_err(|failure| failure.error)?;
    Ok(doc)
}

/// Appends one duty-log-like record in its own change; returns the change's hash.
pub fn add_record(doc: &mut Automerge) -> anyhow::Result<ChangeHash> {
    let records = match doc.get(ROOT, "records")? {
        Some((Value::Object(ObjType::List), id)) => id,
        _ => bail!("document has no records list"),
    };
    let index = doc.length(&records);
    doc.transact::<_, _, AutomergeError>(|tx| {
        let record = tx.insert_object(&records, index, ObjType::Map)?;
        tx.put(&record, "n", index as u64)?;
        tx.put(&record, "kind", "event")?;
        tx.put(
            &record,
            "text",
            format!("record {index}: all quiet, nothing to report"),
        )?;
        tx.put(
            &record,
            "at",
            ScalarValue::Timestamp(1_700_000_000_000 + index as i64),
        )?;
        Ok(())
    })
    .map_err(|failure| failure.error)?;
    doc.get_last_local_change()
        .map(|change| change.hash())
        .ok_or_else(|| anyhow!("no local change after a change"))
}

fn strip_query(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}
