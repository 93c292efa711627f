//! A loopback TCP proxy that injects network faults, for testing how clients behave on a bad network.
//!
//! Included via `#[path = "../support/flaky_proxy.rs"] mod flaky_proxy;` (no submodules here).
//!
//! [`FlakyProxy::start`] listens on `127.0.0.1:0` and forwards every accepted connection to an
//! upstream loopback address. Depending on [`Faults`], each new connection is either refused (accepted
//! and reset at once) or forwarded until its random lifetime runs out, when both sockets are reset
//! mid-stream (`SO_LINGER` 0, so the peers see `ECONNRESET` rather than a clean end of stream). Each
//! forwarded chunk can be held back by a random delay; a direction of a connection is one pipe
//! (read a chunk, wait, write it, read the next), so delays never reorder bytes.
//!
//! [`FlakyProxy::heal`] switches the faults off for existing and new connections (pending delays
//! end at once, no more cuts). [`FlakyProxy::stop`] (or dropping the proxy) aborts the listener and
//! every connection task. The randomness comes from std (no `rand` dependency needed), seeded
//! differently on every run.
#![allow(dead_code)]

use std::{
    future::pending,
    hash::{BuildHasher as _, RandomState},
    net::{Ipv4Addr, SocketAddr},
    ops::Range,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{
        TcpListener, TcpStream,
        tcp::{ReadHalf, WriteHalf},
    },
    sync::watch,
    task::{JoinHandle, JoinSet},
    time::{Instant, sleep, sleep_until},
};

/// Size of the forwarding buffer: one read, hence at most one "chunk", per direction.
const CHUNK: usize = 16 * 1024;
/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_RETRY: Duration = Duration::from_millis(10);

/// Which faults to inject. Every range is `start..end` with `end` exclusive; an empty range
/// (`start >= end`) means exactly `start`.
#[derive(Debug, Clone)]
pub struct Faults {
    /// Probability (0..1) that a new connection is refused/closed immediately.
    pub refuse: f64,
    /// Each connection is cut (both directions closed abruptly) after a random lifetime in this range.
    /// A lifetime too large to represent as an [`Instant`] (e.g. `Duration::MAX`) means "never".
    pub lifetime: Range<Duration>,
    /// Extra delay added per forwarded chunk, random in this range.
    pub delay: Range<Duration>,
}

impl Faults {
    /// No faults at all: a transparent proxy.
    pub fn none() -> Faults {
        Faults {
            refuse: 0.0,
            lifetime: Duration::MAX..Duration::MAX,
            delay: Duration::ZERO..Duration::ZERO,
        }
    }
}

impl Default for Faults {
    fn default() -> Faults {
        Faults::none()
    }
}

/// A running fault-injecting proxy. Stopped by [`FlakyProxy::stop`] or on drop.
pub struct FlakyProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop; it owns the [`JoinSet`] of connection tasks, so aborting it aborts them all.
    acceptor: JoinHandle<()>,
}

/// State shared by the handle, the accept loop and the connection tasks.
struct Shared {
    upstream: SocketAddr,
    faults: Faults,
    /// `true` once [`FlakyProxy::heal`] was called.
    healed: watch::Sender<bool>,
    connections: AtomicUsize,
    refused: AtomicUsize,
    cuts: AtomicUsize,
    /// SplitMix64 state.
    rng: AtomicU64,
}

impl FlakyProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream` (a loopback SocketAddr) applying `faults`.
    pub async fn start(upstream: SocketAddr, faults: Faults) -> anyhow::Result<FlakyProxy> {
        if !upstream.ip().is_loopback() {
            bail!("flaky proxy: upstream {upstream} is not a loopback address");
        }
        if !(0.0..=1.0).contains(&faults.refuse) {
            bail!(
                "flaky proxy: refuse probability {} is not in 0..=1",
                faults.refuse
            );
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("flaky proxy: bind 127.0.0.1:0")?;
        let addr = listener.local_addr().context("flaky proxy: local_addr")?;
        let shared = Arc::new(Shared {
            upstream,
            faults,
            healed: watch::Sender::new(false),
            connections: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            cuts: AtomicUsize::new(0),
            rng: AtomicU64::new(RandomState::new().hash_one(addr)),
        });
        let acceptor = tokio::spawn(accept_loop(listener, shared.clone()));
        tracing::debug!(%addr, %upstream, faults = ?shared.faults, "flaky proxy started");
        Ok(FlakyProxy {
            addr,
            shared,
            acceptor,
        })
    }

    /// The address clients should connect to (instead of the upstream).
    pub fn address(&self) -> SocketAddr {
        self.addr
    }

    /// Stop injecting faults from now on (existing and new connections pass through cleanly, no delay).
    pub fn heal(&self) {
        if !self.shared.healed.send_replace(true) {
            tracing::debug!(addr = %self.addr, "flaky proxy healed");
        }
    }

    /// Stop accepting and close everything (also on Drop).
    ///
    /// The listener and the connections are closed by aborting their tasks, which takes effect as
    /// soon as the runtime gets to them (not necessarily before this returns).
    pub fn stop(&self) {
        self.acceptor.abort();
    }

    /// How many connections were accepted so far (including refused and cut ones).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many connections were cut mid-stream (after their lifetime ran out) so far.
    /// Refused connections are not counted here, see [`FlakyProxy::refused`].
    pub fn cuts(&self) -> usize {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// How many connections were refused (reset right after being accepted) so far, including those
    /// whose upstream could not be reached.
    pub fn refused(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    fn healed(&self) -> bool {
        *self.healed.borrow()
    }

    /// The next 64 random bits (SplitMix64 over one atomic state).
    fn next_u64(&self) -> u64 {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut z = self
            .rng
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0.0..1.0`.
    fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `range` (`range.start` if the range is empty).
    fn duration_in(&self, range: &Range<Duration>) -> Duration {
        if range.start >= range.end {
            return range.start;
        }
        let span = (range.end - range.start).as_nanos();
        let random = (u128::from(self.next_u64()) << 64) | u128::from(self.next_u64());
        let offset = random % span;
        let offset = Duration::new(
            (offset / 1_000_000_000) as u64,
            (offset % 1_000_000_000) as u32,
        );
        range.start.saturating_add(offset)
    }

    /// How long to hold back the next chunk (zero once healed).
    fn chunk_delay(&self) -> Duration {
        if self.healed() {
            Duration::ZERO
        } else {
            self.duration_in(&self.faults.delay)
        }
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    // Dropping this set (when this task is aborted) aborts every connection task.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    let id = shared.connections.fetch_add(1, Ordering::SeqCst);
                    conns.spawn(handle_connection(client, peer, id, shared.clone()));
                }
                Err(err) => {
                    tracing::warn!(%err, "flaky proxy: accept failed");
                    sleep(ACCEPT_RETRY).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn handle_connection(
    mut client: TcpStream,
    peer: SocketAddr,
    id: usize,
    shared: Arc<Shared>,
) {
    let _ = client.set_nodelay(true);
    let refuse = !shared.healed() && shared.next_f64() < shared.faults.refuse;
    if refuse {
        tracing::debug!(id, %peer, "flaky proxy: refusing connection");
        shared.refused.fetch_add(1, Ordering::SeqCst);
        reset(client);
        return;
    }
    // The lifetime counts from the accept, connecting upstream included.
    let deadline = Instant::now().checked_add(shared.duration_in(&shared.faults.lifetime));
    let mut upstream = match TcpStream::connect(shared.upstream).await {
        Ok(upstream) => upstream,
        Err(err) => {
            tracing::debug!(id, %peer, %err, "flaky proxy: upstream unreachable, resetting client");
            shared.refused.fetch_add(1, Ordering::SeqCst);
            reset(client);
            return;
        }
    };
    let _ = upstream.set_nodelay(true);

    let outcome = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let forward = async {
            tokio::try_join!(
                pipe(client_read, upstream_write, &shared),
                pipe(upstream_read, client_write, &shared),
            )
        };
        tokio::select! {
            result = forward => match result {
                Ok(_) => Outcome::Closed,
                Err(err) => Outcome::Failed(err),
            },
            () = cut_at(deadline, shared.healed.subscribe()) => Outcome::Cut,
        }
    };
    match outcome {
        Outcome::Closed => tracing::trace!(id, %peer, "flaky proxy: connection closed"),
        Outcome::Failed(err) => {
            tracing::debug!(id, %peer, %err, "flaky proxy: connection failed, resetting both sides");
            reset(client);
            reset(upstream);
        }
        Outcome::Cut => {
            tracing::debug!(id, %peer, "flaky proxy: cutting connection");
            shared.cuts.fetch_add(1, Ordering::SeqCst);
            reset(client);
            reset(upstream);
        }
    }
}

enum Outcome {
    /// Both directions reached end of stream.
    Closed,
    /// A read or write failed (typically the other end reset).
    Failed(std::io::Error),
    /// The connection's lifetime ran out.
    Cut,
}

/// Forwards one direction until end of stream (then half-closes `to`), one delayed chunk at a time.
async fn pipe(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; CHUNK];
    let mut healed = shared.healed.subscribe();
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        let delay = shared.chunk_delay();
        if !delay.is_zero() {
            tokio::select! {
                () = sleep(delay) => {}
                // Healing ends pending delays right away.
                _ = healed.wait_for(|healed| *healed) => {}
            }
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// Completes when the connection must be cut: at `deadline`, unless the proxy heals first (then
/// never). `None` (a lifetime too long to represent) means never.
async fn cut_at(deadline: Option<Instant>, mut healed: watch::Receiver<bool>) {
    let Some(deadline) = deadline else {
        return pending().await;
    };
    let expired = tokio::select! {
        () = sleep_until(deadline) => true,
        _ = healed.wait_for(|healed| *healed) => false,
    };
    // Healing may have raced with the deadline.
    if !expired || *healed.borrow() {
        pending::<()>().await;
    }
}

/// Closes `stream` abruptly: `SO_LINGER` 0 makes the close send a RST instead of a FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}
