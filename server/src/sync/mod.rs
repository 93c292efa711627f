//! `/sync`: the automerge-repo websocket. The upgrade checks the sync ticket (or an access
//! token in a header), and the socket is checked again whenever what opened it expires; the handshake
//! binds the connection to the `user:device` peer id; each document message is handed to that
//! document's actor (`document`), which decides what the peer may see.

pub mod authorship;
mod document;
mod peer;
pub mod validate;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use zhiban_api::SyncStats;
use zhiban_protocol::{DecodeError, DocumentId, Message, PROTOCOL_VERSION, PeerMetadata};

pub use authorship::Authors;
use document::Command;
pub use document::Documents;
pub use peer::Connections;
use peer::{CloseReason, Contact, Peer};

use crate::AppState;
use crate::access::{Identity, Role, visible_units};
use crate::auth::{AuthError, SyncCredential};
use crate::error::AppError;
use crate::records::times::CATCH_UP_MS;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sync", get(upgrade))
        .route("/api/sync/stats", get(stats))
}

/// What the relay holds in memory now; for operators (admins) only.
#[utoipa::path(get, path = "/api/sync/stats", tag = "sync",
    responses((status = 200, body = SyncStats), (status = 403, body = zhiban_api::ErrorBody)),
    security(("bearer" = [])))]
pub(crate) async fn stats(
    State(state): State<AppState>,
    identity: Identity,
) -> Result<axum::Json<SyncStats>, AppError> {
    if identity.role != Role::Admin {
        return Err(AppError::Forbidden("admins only"));
    }
    Ok(axum::Json(SyncStats {
        connections: state.connections.count(),
        documents_loaded: state.documents.loaded(),
        documents_failed: state.documents.failures.load(Ordering::Relaxed),
    }))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SyncQuery {
    /// A ticket from `POST /api/sync/ticket` (browsers cannot set headers on websockets).
    ticket: Option<String>,
}

/// The automerge-repo websocket (binary CBOR frames). Opened with `?ticket=` or an access
/// token in `Authorization: Bearer`, never an access token in the URL (proxies log URLs);
/// the first frame must be `join` with this device's peer id.
#[utoipa::path(get, path = "/sync", tag = "sync", params(SyncQuery),
    responses((status = 101, description = "Switching to the sync protocol"),
        (status = 401, body = zhiban_api::ErrorBody)))]
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    Query(query): Query<SyncQuery>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, AppError> {
    let header_token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let credential = match (query.ticket.as_deref(), header_token) {
        (Some(ticket), _) => SyncCredential::Ticket(ticket),
        (None, Some(token)) => SyncCredential::AccessToken(token),
        (None, None) => return Err(AuthError::Missing.into()),
    };
    let (identity, valid_until) = crate::auth::identify_sync(&state, credential).await?;
    let visible_units = visible_units(&state.pool, &identity.unit_id).await?;
    let max = state.settings.max_frame_bytes;
    Ok(upgrade
        // Small buffers: an idle device should cost a few kilobytes, not the defaults' 128 KiB.
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            let tasks = state.tasks.clone();
            tasks.track_future(serve_peer(
                state,
                socket,
                identity,
                visible_units,
                valid_until,
            ))
        }))
}

static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);

/// Sends one frame, giving up after `limit`: a peer that does not read must not keep this
/// task (and what it holds) alive.
async fn send(socket: &mut WebSocket, message: WsMessage, limit: Duration) -> bool {
    matches!(
        tokio::time::timeout(limit, socket.send(message)).await,
        Ok(Ok(()))
    )
}

#[tracing::instrument(name = "peer", skip_all, fields(peer = %identity.peer_id()))]
async fn serve_peer(
    state: AppState,
    mut socket: WebSocket,
    identity: Identity,
    visible_units: HashSet<String>,
    valid_until: i64,
) {
    let limits = &state.settings.limits;
    let send_limit = Duration::from_secs(limits.send_timeout_secs.max(1));
    let connection_id = NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed);
    let contact = match last_contact(&state, &identity.device_id).await {
        Ok(contact) => contact,
        Err(error) => {
            tracing::error!(%error, "cannot read the device's last contact");
            send(&mut socket, close_frame(1011, "try again"), send_limit).await;
            return;
        }
    };
    let device_id = identity.device_id.clone();
    let (peer, mut outbox) = Peer::new(
        connection_id,
        identity,
        visible_units,
        state.shutdown.child_token(),
        limits.max_outbox_bytes,
        contact,
    );
    let peer = Arc::new(peer);
    let refused = match handshake(&mut socket, &peer).await {
        Err(reason) => Some(reason),
        Ok(()) => state.connections.add(peer.clone(), limits).err(),
    };
    if let Some(reason) = refused {
        tracing::warn!(%reason, "connection refused");
        send(&mut socket, error_frame(&reason), send_limit).await;
        send(&mut socket, close_frame(1008, "refused"), send_limit).await;
        return;
    }
    let welcome = Message::Peer {
        sender_id: state.server_peer_id.clone(),
        target_id: peer.peer_id.clone(),
        selected_protocol_version: PROTOCOL_VERSION.into(),
        peer_metadata: Some(PeerMetadata {
            storage_id: None,
            is_ephemeral: false,
        }),
    };
    if !send(
        &mut socket,
        WsMessage::Binary(welcome.encode().into()),
        send_limit,
    )
    .await
    {
        state.connections.remove(&peer);
        return;
    }
    tracing::debug!("peer connected");

    let mut documents: HashSet<DocumentId> = HashSet::new();
    let mut ephemeral = RateWindow::new(limits.ephemeral_per_minute);
    // A phone that vanished without closing its socket (tunnel, dead battery, NAT timeout) is
    // noticed after at most two intervals without any frame from it.
    let mut keepalive = tokio::time::interval(state.settings.keepalive());
    keepalive.tick().await;
    let mut heard_since_ping = true;
    // What opened the socket is checked again when it expires, then once per access token's
    // lifetime: a change made where this node could not close the socket at once (another
    // node, the admin command) ends it by then.
    let mut recheck = Box::pin(tokio::time::sleep(until(valid_until)));
    let close = loop {
        tokio::select! {
            biased;
            _ = peer.cancelled().cancelled() => {
                let (code, text) = peer.close_reason().code_and_text();
                tracing::info!(code, text, "closing connection");
                break Some((code, text));
            }
            _ = &mut recheck => {
                if let Some(reason) = changed(&state, &peer.identity).await {
                    let (code, text) = reason.code_and_text();
                    tracing::info!(code, text, "socket no longer allowed as it was opened");
                    break Some((code, text));
                }
                recheck.set(tokio::time::sleep(state.settings.access_token_ttl()));
            }
            _ = keepalive.tick() => {
                if !heard_since_ping {
                    tracing::info!("no answer to ping; dropping connection");
                    break Some((1001, "no answer to ping"));
                }
                heard_since_ping = false;
                if !send(&mut socket, WsMessage::Ping(Bytes::new()), send_limit).await {
                    break None;
                }
            }
            Some(frame) = outbox.recv() => {
                peer.sent(&frame);
                if !send(&mut socket, WsMessage::Binary(frame), send_limit).await {
                    tracing::info!("peer does not read; dropping connection");
                    break None;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(WsMessage::Binary(frame))) => {
                    heard_since_ping = true;
                    let result = on_frame(&state, &peer, &mut documents, &mut ephemeral, &frame).await;
                    if let Err((code, text)) = result {
                        break Some((code, text));
                    }
                }
                Some(Ok(WsMessage::Text(_))) => {
                    tracing::warn!("text frame on /sync");
                    send(&mut socket, error_frame("text frames are not part of the protocol"), send_limit).await;
                    break Some((1003, "binary frames only"));
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => heard_since_ping = true,
                Some(Ok(WsMessage::Close(_))) | None => break None,
                Some(Err(error)) => {
                    // Oversized frames and protocol violations end up here.
                    tracing::warn!(%error, "websocket error");
                    break Some((1009, "frame too large or malformed"));
                }
            },
        }
    };
    // Drain what is already queued for the peer before closing, e.g. a final `error`.
    while let Ok(frame) = outbox.try_recv() {
        peer.sent(&frame);
        if !send(&mut socket, WsMessage::Binary(frame), send_limit).await {
            break;
        }
    }
    if let Some((code, text)) = close {
        send(&mut socket, close_frame(code, text), send_limit).await;
    }
    state.connections.remove(&peer);
    for document_id in documents {
        state
            .documents
            .send_if_loaded(&document_id, Command::PeerGone { connection_id });
    }
    // A connection that lasted past catching up, or that delivered changes, had the device
    // send what it held: what it sends next time was made after now. (Counting only long
    // ones let a device that keeps every connection short backdate to its login.)
    let now = state.clock.now_ms();
    if (now.saturating_sub(contact.connected_at) > CATCH_UP_MS
        || peer.delivered.load(Ordering::Relaxed))
        && let Err(error) = sqlx::query("UPDATE devices SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&device_id)
            .execute(&state.pool)
            .await
    {
        tracing::warn!(%error, "cannot record the device's last contact");
    }
    tracing::debug!("peer disconnected");
}

/// How long from now until `at` (ms; the system clock, as tokens' expiry times).
fn until(at: i64) -> Duration {
    Duration::from_millis(u64::try_from(at.saturating_sub(crate::clock::system_ms())).unwrap_or(0))
}

/// Why a socket opened as `opened` may no longer stay open, if it may not.
async fn changed(state: &AppState, opened: &Identity) -> Option<CloseReason> {
    match crate::auth::load_identity(state, &opened.user_id, &opened.device_id).await {
        Ok(now) => (now.unit_id != opened.unit_id
            || now.role != opened.role
            || now.cleared != opened.cleared)
            .then_some(CloseReason::AccountChanged),
        Err(AuthError::Revoked) => Some(CloseReason::Revoked),
        Err(AuthError::Database(error)) => {
            // Not the device's fault: the next check decides.
            tracing::warn!(%error, "cannot check the socket's account");
            None
        }
        Err(_) => Some(CloseReason::AccountChanged),
    }
}

/// The device's contact as it connects now (see `records::times`).
async fn last_contact(state: &AppState, device_id: &str) -> Result<Contact, sqlx::Error> {
    let last_contact: Option<i64> =
        sqlx::query_scalar("SELECT COALESCE(last_seen_at, created_at) FROM devices WHERE id = $1")
            .bind(device_id)
            .fetch_optional(&state.pool)
            .await?;
    let connected_at = state.clock.now_ms();
    Ok(Contact {
        connected_at,
        last_contact: last_contact.unwrap_or(connected_at),
    })
}

/// Counts events in a sliding minute.
struct RateWindow {
    per_minute: u32,
    started: tokio::time::Instant,
    count: u32,
}

impl RateWindow {
    fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            started: tokio::time::Instant::now(),
            count: 0,
        }
    }

    /// Whether one more event fits in this minute.
    fn allow(&mut self) -> bool {
        if self.started.elapsed() >= Duration::from_secs(60) {
            self.started = tokio::time::Instant::now();
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
        self.count <= self.per_minute
    }
}

/// Reads and checks the peer's join; the answer waits until the connection is counted.
async fn handshake(socket: &mut WebSocket, peer: &Peer) -> Result<(), String> {
    let first = match tokio::time::timeout(HANDSHAKE_TIMEOUT, socket.recv()).await {
        Err(_) => return Err("no join message in time".into()),
        Ok(None | Some(Err(_))) => return Err("connection closed before join".into()),
        Ok(Some(Ok(WsMessage::Binary(frame)))) => frame,
        Ok(Some(Ok(_))) => return Err("expected a binary join message".into()),
    };
    match Message::decode(&first) {
        Ok(Message::Join {
            sender_id,
            supported_protocol_versions,
            ..
        }) => {
            if sender_id != peer.peer_id {
                return Err(format!(
                    "peer id {sender_id} does not belong to this device (expected {})",
                    peer.peer_id
                ));
            }
            if !supported_protocol_versions
                .iter()
                .any(|v| v == PROTOCOL_VERSION)
            {
                return Err("no supported protocol version (we speak \"1\")".into());
            }
            Ok(())
        }
        Ok(other) => Err(format!("expected join, got {}", other.type_name())),
        Err(error) => Err(format!("malformed join message: {error}")),
    }
}

/// Handles one frame after the handshake; an `Err` closes the connection with that code.
async fn on_frame(
    state: &AppState,
    peer: &Arc<Peer>,
    documents: &mut HashSet<DocumentId>,
    ephemeral: &mut RateWindow,
    frame: &[u8],
) -> Result<(), (u16, &'static str)> {
    let message = match Message::decode(frame) {
        Ok(message) => message,
        Err(DecodeError::UnknownType(kind)) => {
            // Newer peers may speak messages we do not know; say so and carry on.
            tracing::warn!(%kind, "unknown message type");
            peer.send(&Message::Error {
                message: format!("unknown message type `{kind}`"),
            });
            return Ok(());
        }
        Err(error) => {
            tracing::warn!(%error, bytes = frame.len(), "malformed frame");
            peer.send(&Message::Error {
                message: format!("malformed message: {error}"),
            });
            return Err((1007, "malformed message"));
        }
    };
    let sender = match &message {
        Message::Request { sender_id, .. }
        | Message::Sync { sender_id, .. }
        | Message::Ephemeral { sender_id, .. }
        | Message::DocUnavailable { sender_id, .. }
        | Message::Leave { sender_id }
        | Message::RemoteHeadsChanged { sender_id, .. }
        | Message::RemoteSubscriptionChange { sender_id, .. } => Some(sender_id),
        _ => None,
    };
    if sender.is_some_and(|sender| *sender != peer.peer_id) {
        tracing::warn!(claimed = ?sender, "message claims another peer id");
        peer.send(&Message::Error {
            message: "senderId does not match this connection".into(),
        });
        return Err((1008, "senderId does not match this connection"));
    }
    match message {
        Message::Sync {
            document_id, data, ..
        } => forward_sync(state, peer, documents, document_id, data, false).await,
        Message::Request {
            document_id, data, ..
        } => forward_sync(state, peer, documents, document_id, data, true).await,
        Message::Ephemeral {
            document_id,
            session_id,
            count,
            data,
            ..
        } => {
            let limit = state.settings.limits.max_ephemeral_bytes;
            if data.len() > limit {
                tracing::warn!(bytes = data.len(), "ephemeral message over the limit");
                peer.send(&Message::Error {
                    message: format!("ephemeral messages carry at most {limit} bytes"),
                });
                return Err((1009, "ephemeral message too large"));
            }
            if !ephemeral.allow() {
                // Presence and cursors are best effort: the excess is dropped, once said.
                if ephemeral.count == ephemeral.per_minute.saturating_add(1) {
                    tracing::warn!("ephemeral messages over the rate");
                    peer.send(&Message::Error {
                        message: format!(
                            "more than {} ephemeral messages a minute: the rest are dropped",
                            ephemeral.per_minute
                        ),
                    });
                }
                return Ok(());
            }
            state.documents.send_if_loaded(
                &document_id,
                Command::Ephemeral {
                    peer: peer.clone(),
                    session_id,
                    count,
                    data,
                },
            );
        }
        Message::Leave { .. } => return Err((1000, "leave")),
        Message::Error { message } => tracing::info!(%message, "peer reported an error"),
        Message::DocUnavailable { .. }
        | Message::RemoteHeadsChanged { .. }
        | Message::RemoteSubscriptionChange { .. } => {}
        Message::Join { .. } | Message::Peer { .. } => {
            peer.send(&Message::Error {
                message: "handshake already done".into(),
            });
        }
    }
    Ok(())
}

async fn forward_sync(
    state: &AppState,
    peer: &Arc<Peer>,
    documents: &mut HashSet<DocumentId>,
    document_id: DocumentId,
    data: Vec<u8>,
    request: bool,
) {
    documents.insert(document_id);
    let command = Command::Sync {
        peer: peer.clone(),
        data,
        request,
    };
    state.documents.send(state, document_id, command).await;
}

fn error_frame(message: &str) -> WsMessage {
    WsMessage::Binary(Bytes::from(
        Message::Error {
            message: message.to_owned(),
        }
        .encode(),
    ))
}

fn close_frame(code: u16, reason: &'static str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}
