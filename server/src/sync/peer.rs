//! One connected device as the document actors see it: who it is, what it may see, and a
//! bounded outbox drained by its socket task. A peer that cannot keep up is disconnected
//! rather than allowed to hold memory or stall the fan-out to everyone else.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zhiban_protocol::{Message, PeerId};

use crate::access::Identity;
use crate::records::times::CATCH_UP_MS;

/// Why the server ended a connection; sent as the websocket close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    ShuttingDown = 1,
    Revoked = 2,
    TooSlow = 3,
    /// The peer sent what the server refuses (a limit, a malformed message).
    Refused = 4,
    /// A document it used failed on the server; reconnecting reloads it.
    DocumentFailed = 5,
    /// The user's account changed (disabled, password reset, new role, unit or clearance, a
    /// unit moved above them): a new connection is checked and sees anew.
    AccountChanged = 6,
}

impl CloseReason {
    pub fn code_and_text(self) -> (u16, &'static str) {
        match self {
            CloseReason::ShuttingDown => (1001, "server shutting down"),
            CloseReason::Revoked => (4001, "device revoked"),
            CloseReason::TooSlow => (1013, "peer too slow; reconnect"),
            CloseReason::Refused => (1008, "message refused"),
            CloseReason::DocumentFailed => (1011, "document failed; reconnect"),
            CloseReason::AccountChanged => (4003, "account changed; reconnect"),
        }
    }
}

pub struct Peer {
    pub connection_id: u64,
    pub peer_id: PeerId,
    pub identity: Identity,
    /// The caller's unit and every unit below it.
    pub visible_units: HashSet<String>,
    outbox: mpsc::Sender<Bytes>,
    /// Bytes queued in `outbox`: a peer that stops reading must not pin memory.
    queued_bytes: AtomicUsize,
    max_queued_bytes: usize,
    cancel: CancellationToken,
    close_reason: AtomicU8,
    /// Offers of documents the server does not hold (each costs a look-up).
    pub unknown_offers: AtomicUsize,
    pub contact: Contact,
    /// Whether this connection delivered changes: then the device was able to send what it
    /// held, however short the connection (see `sync::serve_peer`).
    pub delivered: std::sync::atomic::AtomicBool,
}

/// When the device connected, and when the server last heard from it before: the bounds of
/// when the changes it sends can have been made (`records::times`).
#[derive(Debug, Clone, Copy)]
pub struct Contact {
    pub connected_at: i64,
    /// The end of its last connection that had time to deliver what it held, or its login.
    pub last_contact: i64,
}

impl Contact {
    /// The earliest time a change arriving `now` can have been made: while the device catches
    /// up after connecting, since its last contact; afterwards, when it arrived.
    pub fn earliest(&self, now: i64) -> i64 {
        if now.saturating_sub(self.connected_at) <= CATCH_UP_MS {
            self.last_contact.min(now)
        } else {
            now
        }
    }
}

/// Frames a peer may have queued before it counts as too slow.
pub const OUTBOX_CAPACITY: usize = 512;

impl Peer {
    pub fn new(
        connection_id: u64,
        identity: Identity,
        visible_units: HashSet<String>,
        cancel: CancellationToken,
        max_queued_bytes: usize,
        contact: Contact,
    ) -> (Peer, mpsc::Receiver<Bytes>) {
        let (outbox, receiver) = mpsc::channel(OUTBOX_CAPACITY);
        let peer = Peer {
            connection_id,
            peer_id: identity.peer_id(),
            identity,
            visible_units,
            outbox,
            queued_bytes: AtomicUsize::new(0),
            max_queued_bytes,
            cancel,
            close_reason: AtomicU8::new(0),
            unknown_offers: AtomicUsize::new(0),
            contact,
            delivered: std::sync::atomic::AtomicBool::new(false),
        };
        (peer, receiver)
    }

    /// Queues a message for this peer without waiting.
    pub fn send(&self, message: &Message) {
        self.send_frame(Bytes::from(message.encode()));
    }

    pub fn send_frame(&self, frame: Bytes) {
        let len = frame.len();
        let queued = self.queued_bytes.fetch_add(len, Ordering::AcqRel) + len;
        if queued > self.max_queued_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            tracing::warn!(peer = %self.peer_id, queued, "outbox bytes over the limit; disconnecting slow peer");
            return self.close(CloseReason::TooSlow);
        }
        if let Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) =
            self.outbox.try_send(frame)
        {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            tracing::warn!(peer = %self.peer_id, "outbox full; disconnecting slow peer");
            self.close(CloseReason::TooSlow);
        }
    }

    /// Called by the socket task for each frame it has taken from the outbox.
    pub fn sent(&self, frame: &Bytes) {
        self.queued_bytes.fetch_sub(frame.len(), Ordering::AcqRel);
    }

    pub fn close(&self, reason: CloseReason) {
        let _ = self.close_reason.compare_exchange(
            0,
            reason as u8,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.cancel.cancel();
    }

    pub fn cancelled(&self) -> &CancellationToken {
        &self.cancel
    }

    pub fn close_reason(&self) -> CloseReason {
        match self.close_reason.load(Ordering::Acquire) {
            2 => CloseReason::Revoked,
            3 => CloseReason::TooSlow,
            4 => CloseReason::Refused,
            5 => CloseReason::DocumentFailed,
            6 => CloseReason::AccountChanged,
            _ => CloseReason::ShuttingDown,
        }
    }
}

/// Open connections by device, so that revoking a device closes its sockets at once, and
/// counted by user, so that no account can hold more than its share.
#[derive(Default)]
pub struct Connections(Mutex<Open>);

#[derive(Default)]
struct Open {
    by_device: HashMap<String, Vec<std::sync::Arc<Peer>>>,
    by_user: HashMap<String, usize>,
}

impl Connections {
    /// Registers a connection, unless its device or user already has as many as allowed.
    pub fn add(
        &self,
        peer: std::sync::Arc<Peer>,
        limits: &crate::settings::Limits,
    ) -> Result<(), String> {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let identity = &peer.identity;
        let device = open.by_device.get(&identity.device_id).map_or(0, Vec::len);
        if device >= limits.max_connections_per_device {
            return Err(format!(
                "this device already has {device} connections, the limit"
            ));
        }
        let user = open.by_user.get(&identity.user_id).copied().unwrap_or(0);
        if user >= limits.max_connections_per_user {
            return Err(format!(
                "this user already has {user} connections, the limit"
            ));
        }
        *open.by_user.entry(identity.user_id.clone()).or_default() += 1;
        open.by_device
            .entry(identity.device_id.clone())
            .or_default()
            .push(peer);
        Ok(())
    }

    pub fn remove(&self, peer: &Peer) {
        let mut open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let identity = &peer.identity;
        let Some(peers) = open.by_device.get_mut(&identity.device_id) else {
            return;
        };
        let before = peers.len();
        peers.retain(|p| p.connection_id != peer.connection_id);
        let removed = before - peers.len();
        if peers.is_empty() {
            open.by_device.remove(&identity.device_id);
        }
        if let Some(count) = open.by_user.get_mut(&identity.user_id) {
            *count = count.saturating_sub(removed);
            if *count == 0 {
                open.by_user.remove(&identity.user_id);
            }
        }
    }

    /// Closes every socket of the device; returns how many there were.
    pub fn disconnect_device(&self, device_id: &str) -> usize {
        let open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let peers = open
            .by_device
            .get(device_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for peer in peers {
            peer.close(CloseReason::Revoked);
        }
        peers.len()
    }

    /// Closes every socket of the user, on all their devices; returns how many.
    pub fn disconnect_user(&self, user_id: &str) -> usize {
        self.disconnect_where(|identity| identity.user_id == user_id)
    }

    /// Closes every socket of the users of `units`; returns how many.
    pub fn disconnect_units(&self, units: &HashSet<String>) -> usize {
        self.disconnect_where(|identity| units.contains(&identity.unit_id))
    }

    fn disconnect_where(&self, affected: impl Fn(&Identity) -> bool) -> usize {
        let open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut closed = 0;
        for peer in open.by_device.values().flatten() {
            if affected(&peer.identity) {
                peer.close(CloseReason::AccountChanged);
                closed += 1;
            }
        }
        closed
    }

    pub fn count(&self) -> usize {
        let open = self.0.lock().unwrap_or_else(|e| e.into_inner());
        open.by_user.values().sum()
    }
}
