//! One connected device as the document actors see it: who it is, what it may see, and a
//! bounded outbox drained by its socket task. A peer that cannot keep up is disconnected
//! rather than allowed to hold memory or stall the fan-out to everyone else.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zhiban_protocol::{Message, PeerId};

use crate::access::Identity;

/// Why the server ended a connection; sent as the websocket close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum CloseReason {
    ShuttingDown = 1,
    Revoked = 2,
    TooSlow = 3,
}

impl CloseReason {
    pub fn code_and_text(self) -> (u16, &'static str) {
        match self {
            CloseReason::ShuttingDown => (1001, "server shutting down"),
            CloseReason::Revoked => (4001, "device revoked"),
            CloseReason::TooSlow => (1013, "peer too slow; reconnect"),
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
    cancel: CancellationToken,
    close_reason: AtomicU8,
}

/// Frames a peer may have queued before it counts as too slow.
pub const OUTBOX_CAPACITY: usize = 512;

impl Peer {
    pub fn new(
        connection_id: u64,
        identity: Identity,
        visible_units: HashSet<String>,
        cancel: CancellationToken,
    ) -> (Peer, mpsc::Receiver<Bytes>) {
        let (outbox, receiver) = mpsc::channel(OUTBOX_CAPACITY);
        let peer = Peer {
            connection_id,
            peer_id: identity.peer_id(),
            identity,
            visible_units,
            outbox,
            cancel,
            close_reason: AtomicU8::new(0),
        };
        (peer, receiver)
    }

    /// Queues a message for this peer without waiting.
    pub fn send(&self, message: &Message) {
        self.send_frame(Bytes::from(message.encode()));
    }

    pub fn send_frame(&self, frame: Bytes) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.outbox.try_send(frame) {
            tracing::warn!(peer = %self.peer_id, "outbox full; disconnecting slow peer");
            self.close(CloseReason::TooSlow);
        }
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
            _ => CloseReason::ShuttingDown,
        }
    }
}

/// Open connections by device, so that revoking a device closes its sockets at once.
#[derive(Default)]
pub struct Connections {
    by_device: Mutex<HashMap<String, Vec<std::sync::Arc<Peer>>>>,
}

impl Connections {
    pub fn add(&self, peer: std::sync::Arc<Peer>) {
        let mut by_device = self.by_device.lock().unwrap_or_else(|e| e.into_inner());
        by_device
            .entry(peer.identity.device_id.clone())
            .or_default()
            .push(peer);
    }

    pub fn remove(&self, peer: &Peer) {
        let mut by_device = self.by_device.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(peers) = by_device.get_mut(&peer.identity.device_id) {
            peers.retain(|p| p.connection_id != peer.connection_id);
            if peers.is_empty() {
                by_device.remove(&peer.identity.device_id);
            }
        }
    }

    /// Closes every socket of the device; returns how many there were.
    pub fn disconnect_device(&self, device_id: &str) -> usize {
        let by_device = self.by_device.lock().unwrap_or_else(|e| e.into_inner());
        let peers = by_device
            .get(device_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        for peer in peers {
            peer.close(CloseReason::Revoked);
        }
        peers.len()
    }

    pub fn count(&self) -> usize {
        let by_device = self.by_device.lock().unwrap_or_else(|e| e.into_inner());
        by_device.values().map(Vec::len).sum()
    }
}
