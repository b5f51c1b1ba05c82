//! The peer transport: TCP links between the members of an ensemble.
//!
//! Each member listens on its quorum port (the first port of ZooKeeper's
//! `server.N=host:quorumPort:electionPort`; Corral carries everything,
//! elections included, over the quorum port and ignores the election port)
//! and dials every other member. Between two members there are two TCP
//! connections, one per direction: a member's *outgoing* link to a peer
//! carries its messages to that peer, in the order [`PeerNet::send`] was
//! called, and the peer's outgoing link carries the answers back. A link
//! opens with a [`codec::Hello`] from the dialer, checked and echoed by the
//! acceptor, so each side knows it talks to the member it expects; then
//! frames of [`codec`] flow one way.
//!
//! What the shell sees: [`PeerNet::send`] (never blocks, callable from any
//! thread) and one channel of [`PeerEvent`]s: every received message, and
//! `Down(peer)` whenever a link to or from `peer` breaks, so that the
//! replica learns at once that a killed leader's connections closed
//! (`Replica::on_peer_down`) instead of waiting out an election timeout.
//!
//! Shaped as mini-redis: one task per link, bounded queues everywhere, and
//! a `CancellationToken` + `TaskTracker` so that [`PeerNet::shutdown`]
//! returns only once every task has ended.

pub mod codec;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Notify, Semaphore};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::replica::Envelope;
use codec::{Hello, PeerCodec, PeerCodecError, HELLO_BYTES};

/// Messages at most queued for one peer. A queue that fills means the peer
/// (or the network to it) does not keep up: the link is treated as broken
/// (queue dropped, `Down` reported, reconnect) rather than let memory grow.
/// Raft retransmits what was lost; forwarded writes are failed on `Down`.
pub const PEER_SEND_QUEUE_MAX: usize = 4096;
/// Events at most waiting for the shell; a full queue stops reading sockets.
pub const PEER_EVENT_QUEUE_MAX: usize = 4096;
/// Incoming connections at most open at once (peers and unauthenticated
/// dialers together); more wait in the listen backlog.
pub const PEER_INCOMING_MAX: usize = 64;
/// Bytes at most gathered into one socket write (a single larger frame is
/// written whole).
pub const PEER_WRITE_BATCH_BYTES_MAX: usize = 1 << 20;
/// How long a dialer or acceptor waits for the handshake to complete.
pub const PEER_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one connection attempt may take (a host that is down answers nothing).
pub const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// The first wait before redialing; doubled after each failure up to
/// [`PEER_RECONNECT_BACKOFF_MAX`], back to this after a successful handshake
/// or when the peer dials in (it has just restarted: dial back at once).
pub const PEER_RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(20);
pub const PEER_RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Read buffer kept per incoming link; a larger one (after a snapshot frame) is given back.
const READ_BUFFER_BYTES_KEEP: usize = 1 << 20;
/// Initial read and write buffer size.
const BUFFER_BYTES_INITIAL: usize = 64 << 10;

/// What the transport reports to the shell, in the order it happened per link.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// A message from a peer, addressed to this member (checked).
    Message(Envelope),
    /// The outgoing link to this peer is established: from now on, messages
    /// sent to it are delivered (while the link lasts). Informational; the
    /// replica needs no call for it.
    Up(u64),
    /// A link to or from this peer broke (EOF, reset, error, garbage, send
    /// queue overflow, replaced by a newer connection). Messages queued for
    /// it may be lost. Reported once per broken link, so a killed peer is
    /// usually reported twice (both directions); never for a link that was
    /// never established.
    Down(u64),
}

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
enum LinkError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Codec(#[from] PeerCodecError),
    #[error("timed out")]
    Timeout,
    #[error("closed by the peer")]
    Eof,
    #[error("handshake from {from} for {to}, expected {expected_from} for {expected_to}")]
    WrongPeer { from: u64, to: u64, expected_from: u64, expected_to: u64 },
    #[error("handshake from unknown member {from} (for {to})")]
    UnknownPeer { from: u64, to: u64 },
    #[error("a message from {from} to {to} on the link from {link}")]
    Misaddressed { from: u64, to: u64, link: u64 },
    #[error("{0} unexpected bytes on an outgoing link")]
    UnexpectedData(usize),
    #[error("send queue full ({0} messages): the peer does not keep up")]
    QueueFull(usize),
    #[error("replaced by a newer connection from the same member")]
    Replaced,
    /// Shutdown (or the shell went away): not a failure, not reported.
    #[error("stopped")]
    Stopped,
}

impl From<tokio::time::error::Elapsed> for LinkError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        LinkError::Timeout
    }
}

/// The sending end of an established outgoing link.
struct Link {
    queue: mpsc::Sender<Envelope>,
    /// Cancelled by `send` when the queue overflows: the link task drops the connection.
    broken: CancellationToken,
}

/// Everything about one peer.
struct PeerSlot {
    id: u64,
    addr: SocketAddr,
    /// `Some` exactly while the outgoing link is established (installed and
    /// removed by the link's dialer task only; `send` may take it on overflow).
    link: Mutex<Option<Link>>,
    /// Signalled when the peer dials in: redial now rather than after the backoff.
    wake: Notify,
    /// The current incoming link from the peer, and its generation: a newer
    /// connection from the same member replaces (cancels) the older one.
    incoming: Mutex<(u64, Option<CancellationToken>)>,
}

impl PeerSlot {
    fn link(&self) -> std::sync::MutexGuard<'_, Option<Link>> {
        // Nothing is left half-updated under this lock: poison is harmless.
        self.link.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct Shared {
    my_id: u64,
    peers: BTreeMap<u64, Arc<PeerSlot>>,
    events: mpsc::Sender<PeerEvent>,
    stop: CancellationToken,
    tracker: TaskTracker,
    send_queue_max: usize,
    /// Peers whose messages are dropped both ways, as a cut network would
    /// (set by an embedded cluster's `partition`; the TCP links stay up).
    cut: Mutex<std::collections::BTreeSet<u64>>,
}

impl Shared {
    fn is_cut(&self, peer: u64) -> bool {
        self.cut.lock().unwrap_or_else(PoisonError::into_inner).contains(&peer)
    }

    /// Reports an event to the shell, waiting for room; false once stopping.
    async fn report(&self, event: PeerEvent) -> bool {
        tokio::select! {
            biased;
            _ = self.stop.cancelled() => false,
            r = self.events.send(event) => r.is_ok(),
        }
    }
}

/// The running transport of one member. Cheap to clone (all clones drive
/// the same links).
#[derive(Clone)]
pub struct PeerNet {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
}

impl PeerNet {
    /// Listens on `listen_addr` (this member's quorum port) and dials every
    /// member of `peers` (an entry for `my_id` itself is skipped). Stops when
    /// `shutdown` is cancelled or [`PeerNet::shutdown`] is called. Events
    /// come out of the returned receiver.
    ///
    /// # Panics
    /// If `my_id` or a peer id is 0 (raft's "none") or a peer id repeats.
    pub async fn start(
        my_id: u64,
        listen_addr: SocketAddr,
        peers: Vec<(u64, SocketAddr)>,
        shutdown: CancellationToken,
    ) -> std::io::Result<(PeerNet, mpsc::Receiver<PeerEvent>)> {
        let listener = TcpListener::bind(listen_addr).await?;
        PeerNet::start_with_listener(my_id, listener, peers, shutdown)
    }

    /// As [`PeerNet::start`], on a listener already bound.
    pub fn start_with_listener(
        my_id: u64,
        listener: TcpListener,
        peers: Vec<(u64, SocketAddr)>,
        shutdown: CancellationToken,
    ) -> std::io::Result<(PeerNet, mpsc::Receiver<PeerEvent>)> {
        PeerNet::start_inner(my_id, listener, peers, shutdown, PEER_SEND_QUEUE_MAX)
    }

    fn start_inner(
        my_id: u64,
        listener: TcpListener,
        peers: Vec<(u64, SocketAddr)>,
        shutdown: CancellationToken,
        send_queue_max: usize,
    ) -> std::io::Result<(PeerNet, mpsc::Receiver<PeerEvent>)> {
        assert!(my_id != 0, "member id 0 is raft's \"none\"");
        assert!(send_queue_max > 0);
        let local_addr = listener.local_addr()?;
        let mut slots = BTreeMap::new();
        for (id, addr) in peers.into_iter().filter(|(id, _)| *id != my_id) {
            assert!(id != 0, "member id 0 is raft's \"none\"");
            let slot = PeerSlot { id, addr, link: Mutex::new(None), wake: Notify::new(), incoming: Mutex::new((0, None)) };
            assert!(slots.insert(id, Arc::new(slot)).is_none(), "member {id} listed twice");
        }
        let (events, events_rx) = mpsc::channel(PEER_EVENT_QUEUE_MAX);
        let shared = Arc::new(Shared {
            my_id,
            peers: slots,
            events,
            // A child: shutting this transport down leaves the caller's token alone.
            stop: shutdown.child_token(),
            tracker: TaskTracker::new(),
            send_queue_max,
            cut: Mutex::default(),
        });
        shared.tracker.spawn(accept_loop(shared.clone(), listener));
        for slot in shared.peers.values() {
            shared.tracker.spawn(dial_loop(shared.clone(), slot.clone()));
        }
        // Closed at once so that `wait` returns when the tasks end, however
        // they are stopped; tasks spawned later (one per accepted
        // connection) are still tracked.
        shared.tracker.close();
        tracing::info!(my_id, addr = %local_addr, peers = ?shared.peers.keys().collect::<Vec<_>>(), "peer transport listening");
        Ok((PeerNet { shared, local_addr }, events_rx))
    }

    /// The address the quorum port listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// This member's id.
    pub fn my_id(&self) -> u64 {
        self.shared.my_id
    }

    /// Drops every message to and from `peers` from now on (and restores
    /// every other peer), as a network partition would: for tests and
    /// embedded clusters. Raft sees lost messages, not closed links.
    pub fn cut_off(&self, peers: &[u64]) {
        *self.shared.cut.lock().unwrap_or_else(PoisonError::into_inner) = peers.iter().copied().collect();
    }

    fn is_cut(&self, peer: u64) -> bool {
        self.shared.is_cut(peer)
    }

    /// Queues `env` for its peer and returns at once (never blocks, never
    /// awaits: callable from the processor's synchronous code). Dropped if the link to
    /// `env.to` is down; if its queue is full the link is broken (queue
    /// dropped, `Down` reported, redialed). Returns whether it was queued:
    /// the replica must hear of a dropped one (`Replica::on_unreachable`).
    ///
    /// # Panics
    /// If `env.from` is not this member or `env.to` is not a peer: a bug in
    /// the caller, not something the network can cause.
    pub fn send(&self, env: Envelope) -> bool {
        assert_eq!(env.from, self.shared.my_id, "a message sent in another member's name");
        let Some(slot) = self.shared.peers.get(&env.to) else {
            panic!("a message for {}, who is not a peer of {}", env.to, self.shared.my_id);
        };
        if self.is_cut(env.to) {
            return true; // lost on the way, as far as the sender can tell
        }
        let mut link = slot.link();
        let Some(l) = link.as_ref() else {
            tracing::trace!(to = env.to, "link down, message dropped");
            return false;
        };
        match l.queue.try_send(env) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                tracing::warn!(peer = slot.id, limit = self.shared.send_queue_max, "send queue full, breaking the link");
                if let Some(l) = link.take() {
                    l.broken.cancel();
                }
                false
            }
            // The link task is gone (stopping): nothing to deliver to.
            Err(TrySendError::Closed(_)) => {
                drop(link.take());
                false
            }
        }
    }

    /// Stops every task (accept loop, links) and waits until all have ended.
    pub async fn shutdown(&self) {
        self.shared.stop.cancel();
        self.shared.tracker.wait().await;
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let permits = Arc::new(Semaphore::new(PEER_INCOMING_MAX));
    loop {
        let permit = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
        };
        let (socket, addr) = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!("peer accept failed: {e}");
                    tokio::select! {
                        _ = shared.stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                    }
                }
            },
        };
        let shared2 = shared.clone();
        shared.tracker.spawn(async move {
            let _permit = permit;
            serve_incoming(shared2, socket, addr).await;
        });
    }
}

/// One incoming connection: handshake, then frames until it breaks.
async fn serve_incoming(shared: Arc<Shared>, mut socket: TcpStream, addr: SocketAddr) {
    let _ = socket.set_nodelay(true);
    let handshake = tokio::time::timeout(PEER_HANDSHAKE_TIMEOUT, accept_handshake(&shared, &mut socket));
    let peer = tokio::select! {
        biased;
        _ = shared.stop.cancelled() => return,
        r = handshake => match r.map_err(LinkError::from).and_then(|r| r) {
            Ok(peer) => peer,
            Err(e) => {
                tracing::info!(%addr, "peer connection refused: {e}");
                return;
            }
        },
    };
    let Some(slot) = shared.peers.get(&peer).cloned() else { return };
    let replaced = CancellationToken::new();
    let generation = {
        let mut inc = slot.incoming.lock().unwrap_or_else(PoisonError::into_inner);
        inc.0 += 1;
        if let Some(old) = inc.1.replace(replaced.clone()) {
            old.cancel();
        }
        inc.0
    };
    // The peer has (re)started: dial back now instead of after the backoff.
    slot.wake.notify_one();
    tracing::info!(peer, %addr, "incoming peer link up");
    let end = read_frames(&shared, peer, &mut socket, &replaced).await;
    {
        let mut inc = slot.incoming.lock().unwrap_or_else(PoisonError::into_inner);
        if inc.0 == generation {
            inc.1 = None;
        }
    }
    if matches!(end, LinkError::Stopped) {
        return;
    }
    tracing::info!(peer, %addr, "incoming peer link down: {end}");
    shared.report(PeerEvent::Down(peer)).await;
}

/// Checks the dialer's hello (right magic and version, a known member, for
/// this member) and echoes one back; the dialer's id.
async fn accept_handshake(shared: &Shared, socket: &mut TcpStream) -> Result<u64, LinkError> {
    let mut b = [0u8; HELLO_BYTES];
    socket.read_exact(&mut b).await?;
    let hello = Hello::decode(&b)?;
    if !shared.peers.contains_key(&hello.from) {
        return Err(LinkError::UnknownPeer { from: hello.from, to: hello.to });
    }
    if hello.to != shared.my_id {
        return Err(LinkError::WrongPeer {
            from: hello.from,
            to: hello.to,
            expected_from: hello.from,
            expected_to: shared.my_id,
        });
    }
    socket.write_all(&Hello { from: shared.my_id, to: hello.from }.encode()).await?;
    Ok(hello.from)
}

/// Reads frames from `peer` and reports them until the link ends; why it ended.
async fn read_frames(shared: &Shared, peer: u64, socket: &mut TcpStream, replaced: &CancellationToken) -> LinkError {
    let mut codec = PeerCodec::default();
    let mut buf = BytesMut::with_capacity(BUFFER_BYTES_INITIAL);
    loop {
        // Check-then-parse: deliver every whole frame buffered, then read more.
        loop {
            match codec.decode(&mut buf) {
                Ok(None) => break,
                Err(e) => return e.into(),
                Ok(Some(env)) => {
                    if env.from != peer || env.to != shared.my_id {
                        return LinkError::Misaddressed { from: env.from, to: env.to, link: peer };
                    }
                    if shared.is_cut(peer) {
                        continue;
                    }
                    if !shared.report(PeerEvent::Message(env)).await {
                        return LinkError::Stopped;
                    }
                }
            }
        }
        if buf.is_empty() && buf.capacity() > READ_BUFFER_BYTES_KEEP {
            buf = BytesMut::with_capacity(BUFFER_BYTES_INITIAL);
        }
        tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return LinkError::Stopped,
            _ = replaced.cancelled() => return LinkError::Replaced,
            r = socket.read_buf(&mut buf) => match r {
                Ok(0) => return LinkError::Eof,
                Ok(_) => {}
                Err(e) => return e.into(),
            },
        }
    }
}

/// The outgoing side of one peer for the transport's whole life: dial,
/// handshake, carry messages until the link breaks, back off, redial.
async fn dial_loop(shared: Arc<Shared>, slot: Arc<PeerSlot>) {
    let mut backoff = PEER_RECONNECT_BACKOFF_MIN;
    loop {
        let dial = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break,
            r = dial(&shared, &slot) => r,
        };
        match dial {
            Ok(stream) => {
                backoff = PEER_RECONNECT_BACKOFF_MIN;
                tracing::info!(peer = slot.id, addr = %slot.addr, "outgoing peer link up");
                let end = run_link(&shared, &slot, stream).await;
                if matches!(end, LinkError::Stopped) {
                    break;
                }
                tracing::info!(peer = slot.id, addr = %slot.addr, "outgoing peer link down: {end}");
                if !shared.report(PeerEvent::Down(slot.id)).await {
                    break;
                }
            }
            Err(e) => tracing::debug!(peer = slot.id, addr = %slot.addr, "cannot link to peer: {e}"),
        }
        let woken = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => break,
            _ = slot.wake.notified() => true,
            _ = tokio::time::sleep(backoff) => false,
        };
        backoff = if woken { PEER_RECONNECT_BACKOFF_MIN } else { (backoff * 2).min(PEER_RECONNECT_BACKOFF_MAX) };
    }
}

/// Connects to the peer and checks its hello: the member we meant to reach.
async fn dial(shared: &Shared, slot: &PeerSlot) -> Result<TcpStream, LinkError> {
    let mut stream = tokio::time::timeout(PEER_CONNECT_TIMEOUT, TcpStream::connect(slot.addr)).await??;
    stream.set_nodelay(true)?;
    tokio::time::timeout(PEER_HANDSHAKE_TIMEOUT, async {
        stream.write_all(&Hello { from: shared.my_id, to: slot.id }.encode()).await?;
        let mut b = [0u8; HELLO_BYTES];
        stream.read_exact(&mut b).await?;
        let hello = Hello::decode(&b)?;
        if hello.from != slot.id || hello.to != shared.my_id {
            return Err(LinkError::WrongPeer {
                from: hello.from,
                to: hello.to,
                expected_from: slot.id,
                expected_to: shared.my_id,
            });
        }
        Ok(())
    })
    .await??;
    Ok(stream)
}

/// An established outgoing link: installs its queue for `send`, writes
/// what is queued in batches, and ends when the link breaks; the queue is
/// removed (and what it held dropped) before returning.
async fn run_link(shared: &Shared, slot: &PeerSlot, mut stream: TcpStream) -> LinkError {
    let (queue, mut rx) = mpsc::channel(shared.send_queue_max);
    let broken = CancellationToken::new();
    {
        let mut link = slot.link();
        assert!(link.is_none(), "one outgoing link per peer");
        *link = Some(Link { queue, broken: broken.clone() });
    }
    let end = if shared.report(PeerEvent::Up(slot.id)).await {
        write_frames(shared, slot, &mut stream, &mut rx, &broken).await
    } else {
        LinkError::Stopped
    };
    slot.link().take();
    end
}

async fn write_frames(
    shared: &Shared,
    slot: &PeerSlot,
    stream: &mut TcpStream,
    rx: &mut mpsc::Receiver<Envelope>,
    broken: &CancellationToken,
) -> LinkError {
    let (mut rd, mut wr) = stream.split();
    let mut buf = BytesMut::with_capacity(BUFFER_BYTES_INITIAL);
    let mut probe = [0u8; 64];
    loop {
        tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return LinkError::Stopped,
            _ = broken.cancelled() => return LinkError::QueueFull(shared.send_queue_max),
            // Nothing comes back on an outgoing link: reading only notices
            // the peer closing (a killed process's socket is closed by its kernel).
            r = rd.read(&mut probe) => return match r {
                Ok(0) => LinkError::Eof,
                Ok(n) => LinkError::UnexpectedData(n),
                Err(e) => e.into(),
            },
            env = rx.recv() => {
                // `send` dropped the queue: only on overflow, which cancels `broken` first.
                let Some(env) = env else { return LinkError::QueueFull(shared.send_queue_max) };
                encode_batch(shared.my_id, slot.id, env, rx, &mut buf);
            }
        }
        if buf.is_empty() {
            continue;
        }
        tokio::select! {
            biased;
            _ = shared.stop.cancelled() => return LinkError::Stopped,
            _ = broken.cancelled() => return LinkError::QueueFull(shared.send_queue_max),
            r = wr.write_all(&buf) => if let Err(e) = r { return e.into() },
        }
        buf.clear();
        if buf.capacity() > 4 * PEER_WRITE_BATCH_BYTES_MAX {
            buf = BytesMut::with_capacity(BUFFER_BYTES_INITIAL);
        }
    }
}

/// Encodes `first` and whatever else is queued (up to the batch limit) into
/// `buf`: one write carries them all. A message that cannot be encoded (too
/// large) is logged and dropped; raft retries.
fn encode_batch(my_id: u64, peer: u64, first: Envelope, rx: &mut mpsc::Receiver<Envelope>, buf: &mut BytesMut) {
    let mut next = Some(first);
    while let Some(env) = next.take() {
        debug_assert!(env.from == my_id && env.to == peer, "queued for the wrong link");
        if let Err(e) = codec::encode_frame(&env, buf) {
            tracing::error!(peer, "message not sent: {e}");
        }
        if buf.len() < PEER_WRITE_BATCH_BYTES_MAX {
            next = rx.try_recv().ok();
        }
    }
}

#[cfg(test)]
mod tests;
