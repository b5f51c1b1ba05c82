//! The replica driver: one value that owns everything replicated — the core
//! and raft-rs's `RawNode` over the in-memory [`log::Log`] — and is driven
//! by plain calls. No I/O, no clock, no randomness: time comes in with each
//! call, and what must happen comes out of [`Replica::poll`] as values
//! (writes to make durable, raft messages to send, replies and watch events
//! to deliver). The shell (net::processor) and the simulator are its only callers.
//!
//! The path of one write: [`Replica::on_request`] prepares it against the
//! tree plus every outstanding change into a txn whose zxid is the log index
//! it will take, and proposes it; [`Replica::poll`] hands the entry out to
//! be persisted; once the shell reports it durable ([`Replica::on_persisted`])
//! and a quorum has it, raft commits it, the core applies it, and the reply
//! (made from the pending proposal) and the watch events come out, in order.
//! A read is answered at once unless its session still waits for an earlier
//! write; then it waits behind that write (ZooKeeper's per-session order).

pub mod log;
mod outbox;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use prost::Message as _;
use protocol::{ConnectRequest, ErrorCode, Id, Request, Response};
use raft::eraftpb::{ConfState, Entry, EntryType, HardState, Message, MessageType};
use raft::{RawNode, StateRole};

use crate::core::txn::{CreateSessionTxn, ErrorTxn, InitSecretTxn, Op, Txn, TxnOp};
use crate::core::watch::WatchEvent;
use crate::core::{self, Caller, Connect, Core, CoreConfig, Handled};
use crate::testbug::TestBug;
use log::{Log, LogSnapshot};

/// Milliseconds of one raft tick.
pub const RAFT_TICK_MS: i64 = 100;
/// Containers/TTL nodes deleted at most per check, as ZooKeeper's `znode.container.maxPerMinute` spirit.
const EXPIRABLE_PER_CHECK_MAX: usize = 10_000;
/// Raft ticks at most replayed by one `on_tick` (after a long pause the
/// clock jumps; replaying every missed tick would only delay the election).
const TICKS_PER_CALL_MAX: i64 = 100;

/// The two clocks a replica is given: monotonic milliseconds for deadlines
/// (session expiry, raft ticks) and wall-clock milliseconds for the times
/// stored in znodes (`ctime`, `mtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    pub mono_ms: i64,
    pub wall_ms: i64,
}

/// Settings of one replica.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// This member's id (`myid`), never 0.
    pub id: u64,
    /// Every voting member's id, this one included.
    pub voters: Vec<u64>,
    pub core: CoreConfig,
    /// Entries applied between snapshots (`snapCount`).
    pub snap_count: u64,
    /// How often empty containers and TTL nodes are looked for.
    pub container_check_interval_ms: i64,
    /// Raft ticks without a leader's heartbeat before an election.
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    /// Test-only faults (see [`crate::testbug`]); empty in production.
    pub test_bugs: Vec<TestBug>,
    /// `readConsistency=linearizable`: every data read first confirms,
    /// through the leader and a quorum (raft's ReadIndex), that this member
    /// has applied everything committed when the read arrived.
    pub linearizable_reads: bool,
}

/// What the store kept, to restart from.
#[derive(Debug, Default)]
pub struct Recovered {
    pub hard_state: HardState,
    pub conf_state: Option<ConfState>,
    pub snapshot: Option<LogSnapshot>,
    /// Entries after the snapshot, in index order.
    pub entries: Vec<Entry>,
}

/// A message between members.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerMessage {
    Raft(Message),
    /// A follower's client write for the leader to prep and propose; the
    /// entry's context routes the reply back to the origin's proposal.
    Forward { incarnation: u64, proposal: u64, session_id: i64, cxid: i32, auth: Vec<Id>, req: Request },
    /// A new session opened on a follower, for the leader to propose.
    CreateSession { incarnation: u64, proposal: u64, session_id: i64, timeout_ms: i32 },
    /// Sessions whose clients a follower heard from since its last batch:
    /// only the leader expires sessions, so it must know they live.
    Touch { sessions: Vec<i64> },
    /// A member found with an empty log asks the others for their term
    /// before it takes part (see [`Replica::on_message`]).
    TermQuery,
    TermReply { term: u64, last_index: u64 },
}

/// A message and the member it goes to (`from` is the sender).
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    pub from: u64,
    pub to: u64,
    pub msg: PeerMessage,
}

/// Writes the shell must make durable before reporting `number` persisted.
#[derive(Debug, Default)]
pub struct Persist {
    pub number: u64,
    /// Entries to append; any stored entry at or after the first one's index is replaced.
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
    /// A snapshot received from the leader: it replaces the stored log.
    pub snapshot: Option<LogSnapshot>,
    /// Whether an fsync is needed before reporting it persisted (raft-rs's `must_sync`).
    pub must_sync: bool,
}

/// One thing to deliver to a client, in the order given.
#[derive(Debug, PartialEq)]
pub enum Delivery {
    /// The answer to a request (`xid` as the client sent it).
    Reply { conn: u64, xid: i32, zxid: i64, err: ErrorCode, body: Response },
    /// A watch event for a session (delivered if it is connected here).
    Event(WatchEvent),
    /// A connect answered: `session_id` 0 means refused (expired or bad password).
    Connected { conn: u64, session_id: i64, timeout_ms: i32, passwd: Vec<u8> },
    /// Close the connection (after anything queued before).
    Close { conn: u64 },
    /// The session ended (closed or expired, on whichever member): close
    /// its connection here, if it has one, after anything queued before.
    SessionClosed { session_id: i64 },
    /// This member has no leader: close every client connection so clients
    /// move to a member that has one (ZooKeeper without read-only mode).
    LeaderLost,
    /// This member's state was replaced by a snapshot from the leader:
    /// close every client connection. Their watches were set on the state
    /// that is gone and would never fire; a client reconnects and sets them
    /// again against its last zxid, which fires what changed meanwhile (a
    /// ZooKeeper follower resyncs only with its clients disconnected).
    Resynced,
}

/// Everything a replica asks of its shell; taken with [`Replica::poll`].
#[derive(Debug, Default)]
pub struct Output {
    /// Messages that may go out now.
    pub messages: Vec<Envelope>,
    /// Writes to make durable, then report with [`Replica::on_persisted`].
    pub persist: Option<Persist>,
    /// Messages that may go out only once `persist` is durable.
    pub messages_after_persist: Vec<Envelope>,
    pub deliveries: Vec<Delivery>,
    /// A snapshot taken locally: the shell may store it and drop the log it covers.
    pub snapshot: Option<LogSnapshot>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
            && self.persist.is_none()
            && self.messages_after_persist.is_empty()
            && self.deliveries.is_empty()
            && self.snapshot.is_none()
    }
}

/// Why a request got no ordinary answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplicaError {
    /// This member cannot order writes now (no leader, or not the leader):
    /// the connection is closed so the client retries elsewhere.
    #[error("not the leader")]
    NotLeader,
}

/// A write this member proposed (or forwarded to the leader) and waits to
/// see applied.
#[derive(Debug)]
struct Pending {
    kind: Proposal,
    /// The leader it was forwarded to (0: proposed here).
    forwarded_to: u64,
    /// When it is given up (connection closed) if not applied by then.
    deadline_ms: i64,
}

#[derive(Debug)]
enum Proposal {
    Request { conn: u64, xid: i32, req: Request },
    Connect { conn: u64, session_id: i64, timeout_ms: i32 },
    /// Expiry, container removal: no one waits for a reply. Also a create
    /// already answered when proposed (the `early-ack` test bug).
    Internal,
}

impl Proposal {
    fn conn(&self) -> Option<u64> {
        match self {
            Proposal::Request { conn, .. } | Proposal::Connect { conn, .. } => Some(*conn),
            Proposal::Internal => None,
        }
    }
}

/// Requests at most waiting in one session's line (writes not yet applied
/// and the requests behind them). A client that pipelines more without
/// reading its replies is disconnected rather than buffered without bound.
pub const SESSION_PENDING_MAX: usize = 10_000;

/// Readies at most handed out and not yet reported persisted. Every ready
/// carries the messages raft wants sent, so a leader whose readies wait for
/// their fsync cannot send appends: with 4, a loaded leader sent its
/// followers nothing while its own fsync ran (20% less 3-member write
/// throughput). The persister groups them all into one fsync anyway.
pub const READIES_IN_FLIGHT_MAX: usize = 64;

/// How far apart members stand for election after losing their leader's
/// links, by rank of id (a pre-vote round trip on a LAN is far shorter).
const CAMPAIGN_STAGGER_MS: i64 = 150;

/// How long a leader waits for a follower to take a snapshot before it
/// sends it again (a snapshot of a coordination service's tree is small).
const SNAPSHOT_WAIT_MS_MAX: i64 = 5_000;

/// How long a forwarded write may wait for its entry, in election timeouts:
/// past that the leader is presumed gone and the client told to retry.
const FORWARD_TIMEOUT_ELECTIONS: i64 = 3;

/// A session's place in line: its requests are answered in the order sent.
#[derive(Debug)]
enum Slot {
    /// A proposed write, by proposal id.
    Write(u64),
    /// A read that arrived while a write of its session was pending, or
    /// (`gate`: a read-index request id) a linearizable read waiting until
    /// this member has applied everything committed when it arrived.
    Read { conn: u64, xid: i32, req: Request, auth: Vec<Id>, gate: Option<u64> },
    /// A write held back behind a linearizable read of its session.
    Held { conn: u64, xid: i32, req: Request, auth: Vec<Id> },
}

/// A linearizable read's ReadIndex request.
#[derive(Debug)]
struct ReadGate {
    /// The commit index the leader confirmed (by a quorum heartbeat) after the read arrived.
    index: Option<u64>,
    issued_ms: i64,
    deadline_ms: i64,
}

/// Routing of an entry back to the proposal that made it: the proposing
/// member, its incarnation (proposal ids restart with the process) and the
/// proposal id, in the entry's context.
fn context(member: u64, incarnation: u64, proposal: u64) -> Vec<u8> {
    [member, incarnation, proposal].iter().flat_map(|v| v.to_be_bytes()).collect()
}

fn parse_context(ctx: &[u8]) -> Option<(u64, u64, u64)> {
    let word = |i: usize| Some(u64::from_be_bytes(ctx.get(i * 8..i * 8 + 8)?.try_into().ok()?));
    (ctx.len() == 24).then_some(())?;
    Some((word(0)?, word(1)?, word(2)?))
}

pub struct Replica {
    id: u64,
    cfg: ReplicaConfig,
    node: RawNode<Log>,
    core: Core,
    /// Distinguishes this process's proposals from an earlier one's.
    incarnation: u64,
    /// Proposed as the ensemble's password secret if none is set yet.
    fresh_secret: u64,
    /// As leader: the index of its term's first entry. Writes are prepped
    /// only once everything up to it is applied (see [`Replica::ready_to_prep`]).
    term_start: u64,
    /// Forwarded writes that reached this leader before it was ready to prep.
    early_forwards: Vec<(u64, PeerMessage)>,
    /// Sessions this leader proposed to create and has not applied yet, with
    /// the index of their creation. Followers count towards a commit before
    /// the leader's own disk has synced it, so one may apply a creation,
    /// answer the client, and forward its first write before the leader
    /// knows the session from its tree.
    opening: BTreeMap<i64, u64>,
    /// Followers this leader has been sending a snapshot since (monotonic ms).
    snapshot_since: BTreeMap<u64, i64>,
    secret_proposed_term: u64,
    next_proposal: u64,
    proposals: BTreeMap<u64, Pending>,
    /// Sessions heard from since the last touch batch sent to the leader.
    touched: BTreeSet<i64>,
    leader: u64,
    /// Per session, its requests not yet answered, in arrival order
    /// (ordered maps throughout: a simulation replays exactly).
    lines: BTreeMap<i64, VecDeque<Slot>>,
    /// Set while a ready is being handled (nothing may be proposed then).
    in_ready: bool,
    /// Sessions whose held write may go once the ready is advanced.
    resume_after_ready: BTreeSet<i64>,
    /// Linearizable reads waiting for their read index, by request id.
    gates: BTreeMap<u64, ReadGate>,
    next_gate: u64,
    /// Applied txns, kept only when a simulator asks (`record_applied`).
    applied_log: Option<Vec<(u64, Txn)>>,
    out: Output,
    /// Readies handed out for persisting and not yet reported back.
    unpersisted: VecDeque<u64>,
    /// A snapshot installed by ready `.0`, at index `.1`, to report applied once persisted.
    snapshot_applied: Option<(u64, u64)>,
    /// Set while a member found with an empty log (brand new, or wiped)
    /// learns the ensemble's term: the terms the others answered.
    recovering: Option<BTreeMap<u64, (u64, u64)>>,
    /// After joining an existing ensemble with an empty log: this member
    /// grants no vote until its commit index reaches this (the longest log
    /// another member reported), since it may have held committed entries
    /// that a candidate it would vote for lacks.
    vote_after_commit: Option<u64>,
    /// When to stand for election after the link to the leader broke
    /// (members take turns by id, so that they do not split the vote).
    campaign_at_ms: Option<(i64, u64)>,
    now: Now,
    last_tick_ms: i64,
    last_container_check_ms: i64,
    applied_since_snapshot: u64,
    role: StateRole,
    /// Fixed election timeouts (in ticks), drawn by a simulator from its seed
    /// so a run replays exactly; `None` leaves raft-rs's own random choice.
    pinned_election_ticks: Option<Vec<usize>>,
    elections_pinned: usize,
}

impl Replica {
    /// A replica restarted from `recovered` (empty for a new member).
    /// `first_session_id` seeds this member's session ids; `incarnation`
    /// must differ between runs of the same member; `fresh_secret` (non-zero)
    /// becomes the ensemble's password secret if this member is its first
    /// leader. All three come from the shell: clock and randomness stay out
    /// of here.
    pub fn new(cfg: ReplicaConfig, recovered: Recovered, fresh_secret: u64, first_session_id: i64, incarnation: u64, now: Now) -> Result<Replica, raft::Error> {
        assert!(fresh_secret != 0, "a secret of 0 means unset");
        assert!(cfg.id != 0 && cfg.voters.contains(&cfg.id), "replica {} not among the voters {:?}", cfg.id, cfg.voters);
        let mut conf_state = recovered.conf_state.unwrap_or_default();
        if conf_state.voters.is_empty() {
            conf_state.voters = cfg.voters.clone();
        }
        let core = match &recovered.snapshot {
            Some(s) => Core::restore(cfg.core.clone(), 0, first_session_id, &s.core),
            None => Core::new(cfg.core.clone(), 0, first_session_id),
        };
        let applied = recovered.snapshot.as_ref().map_or(0, |s| s.index);
        let log = Log::restore(recovered.hard_state, conf_state, recovered.snapshot, recovered.entries);
        let raft_cfg = raft::Config {
            id: cfg.id,
            election_tick: cfg.election_tick,
            heartbeat_tick: cfg.heartbeat_tick,
            applied,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
            // The `split-brain` bug: a leader cut off from its quorum never
            // learns it, so it goes on answering as one.
            check_quorum: !cfg.test_bugs.contains(&TestBug::SplitBrain),
            pre_vote: true,
            ..Default::default()
        };
        raft_cfg.validate()?;
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let mut node = RawNode::new(&raft_cfg, log, &logger)?;
        // A lone member need not wait out an election timeout.
        if cfg.voters.len() == 1 {
            node.campaign()?;
        }
        // An empty log means lost data whatever the hard state says: a
        // member wiped, restarted, that adopted a term during its recovery
        // and crashed again before it caught up still has no entries, and
        // must again not vote until it has what it may have acknowledged
        // (found by the simulator, seed 7403 with messages held during
        // recovery: such a member voted a stale-log leader in, which
        // overwrote committed entries).
        let empty = node.raft.raft_log.last_index() == 0;
        let recovering = (empty && cfg.voters.len() > 1).then(BTreeMap::new);
        Ok(Replica {
            id: cfg.id,
            cfg,
            node,
            core,
            incarnation,
            fresh_secret,
            term_start: u64::MAX,
            early_forwards: Vec::new(),
            opening: BTreeMap::new(),
            snapshot_since: BTreeMap::new(),
            secret_proposed_term: 0,
            next_proposal: 1,
            proposals: BTreeMap::new(),
            touched: Default::default(),
            leader: 0,
            lines: BTreeMap::new(),
            gates: BTreeMap::new(),
            next_gate: 1,
            in_ready: false,
            resume_after_ready: BTreeSet::new(),
            applied_log: None,
            out: Output::default(),
            unpersisted: VecDeque::new(),
            snapshot_applied: None,
            recovering,
            vote_after_commit: None,
            campaign_at_ms: None,
            now,
            last_tick_ms: now.mono_ms,
            last_container_check_ms: now.mono_ms,
            applied_since_snapshot: 0,
            role: StateRole::Follower,
            pinned_election_ticks: None,
            elections_pinned: 0,
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn core(&self) -> &Core {
        &self.core
    }

    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The leader as this member knows it (0: none).
    pub fn leader_id(&self) -> u64 {
        self.node.raft.leader_id
    }

    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    pub fn commit_index(&self) -> u64 {
        self.node.raft.raft_log.committed
    }

    pub fn applied_index(&self) -> u64 {
        self.node.raft.raft_log.applied
    }

    /// Entries in the log after the last snapshot.
    pub fn log_entries(&self) -> u64 {
        let log = self.node.raft.raft_log.store();
        log.last_index() + 1 - log.first_index()
    }

    /// The term of the log entry at `index`, while the log still holds it
    /// (a simulator tells a leader's own proposals from inherited ones).
    pub fn entry_term(&self, index: u64) -> Option<u64> {
        self.node.raft.raft_log.term(index).ok()
    }

    /// The index of the last entry in this member's log.
    pub fn last_index(&self) -> u64 {
        self.node.raft.raft_log.last_index()
    }

    /// On the leader: (followers, followers that have every committed entry).
    pub fn followers(&self) -> Option<(usize, usize)> {
        if !self.is_leader() {
            return None;
        }
        let commit = self.commit_index();
        let others: Vec<_> = self.node.raft.prs().iter().filter(|(id, _)| **id != self.id).map(|(_, p)| p.matched).collect();
        Some((others.len(), others.iter().filter(|m| **m >= commit).count()))
    }

    /// The leader's view of each follower's replication, for diagnostics.
    pub fn progress(&self) -> String {
        let mut v: Vec<String> = self.node.raft.prs().iter().map(|(id, p)| format!("{id}:{:?} match {:#x} next {:#x}", p.state, p.matched, p.next_idx)).collect();
        v.sort();
        v.join(", ")
    }

    /// Whether this member, found with an empty log, is still learning the
    /// ensemble's term (it takes no part in raft meanwhile).
    pub fn is_recovering(&self) -> bool {
        self.recovering.is_some()
    }

    /// Requests waiting for their write to be applied.
    pub fn pending_count(&self) -> usize {
        self.proposals.len()
    }

    /// The most requests waiting in one session's line (mntr, against
    /// [`SESSION_PENDING_MAX`]).
    pub fn longest_line(&self) -> usize {
        self.lines.values().map(VecDeque::len).max().unwrap_or(0)
    }

    /// Makes every later election timeout of this member come from `ticks`
    /// in turn (cycled), instead of raft-rs's thread-local RNG.
    pub fn pin_election_timeouts(&mut self, ticks: Vec<usize>) {
        assert!(!ticks.is_empty());
        self.pinned_election_ticks = Some(ticks);
        self.pin();
    }

    fn pin(&mut self) {
        // raft-rs draws a new timeout whenever it resets the election clock.
        if let Some(t) = &self.pinned_election_ticks {
            if self.node.raft.election_elapsed == 0 {
                let ticks = t[self.elections_pinned % t.len()];
                self.elections_pinned += 1;
                self.node.raft.set_randomized_election_timeout(ticks);
            }
        }
    }

    /// A connect request on connection `conn`.
    pub fn on_connect(&mut self, conn: u64, req: &ConnectRequest, now: Now) {
        self.now = now;
        if self.leader_id() == 0 || self.core.sessions.secret() == 0 {
            // No leader, or not yet the ensemble's first txn (passwords
            // cannot be checked): a client is better served elsewhere or later.
            self.out.deliveries.push(Delivery::Close { conn });
            return;
        }
        match self.core.connect(req, now.mono_ms) {
            Connect::New { session_id, timeout_ms, op } => {
                let proposal = Proposal::Connect { conn, session_id, timeout_ms };
                if self.is_leader() {
                    self.propose(session_id, 0, vec![op], proposal);
                    if self.is_leader() {
                        self.opening.insert(session_id, self.node.raft.raft_log.last_index());
                    }
                } else {
                    let pid = self.pend(session_id, proposal, self.leader_id());
                    let msg = PeerMessage::CreateSession { incarnation: self.incarnation, proposal: pid, session_id, timeout_ms };
                    self.send(self.leader_id(), msg);
                }
            }
            Connect::Resume { session_id, timeout_ms } => {
                self.touched.insert(session_id);
                let passwd = self.core.sessions.password(session_id);
                self.out.deliveries.push(Delivery::Connected { conn, session_id, timeout_ms, passwd });
            }
            Connect::Expired => {
                self.out.deliveries.push(Delivery::Connected { conn, session_id: 0, timeout_ms: 0, passwd: vec![0; 16] });
                self.out.deliveries.push(Delivery::Close { conn });
            }
            Connect::ZxidAhead => self.out.deliveries.push(Delivery::Close { conn }),
        }
    }

    /// A request of session `session_id`, connected on `conn` with the
    /// authenticated ids `auth`.
    pub fn on_request(&mut self, conn: u64, session_id: i64, auth: &[Id], xid: i32, req: Request, now: Now) {
        self.now = now;
        if !self.core.touch(session_id, now.mono_ms) {
            self.reply(conn, xid, ErrorCode::SessionExpired, Response::Empty);
            self.out.deliveries.push(Delivery::Close { conn });
            return;
        }
        self.touched.insert(session_id);
        if self.lines.get(&session_id).is_some_and(|l| l.len() >= SESSION_PENDING_MAX) {
            tracing::warn!(session = format!("{session_id:#x}"), limit = SESSION_PENDING_MAX, "too many requests waiting in one session (SESSION_PENDING_MAX); disconnecting");
            self.fail_session(session_id, Some(conn));
            return;
        }
        if !goes_through_log(&req) {
            if self.bug(TestBug::StaleRead) {
                self.read(conn, session_id, auth, xid, &req);
                return;
            }
            // The `split-brain` bug: a leader trusts its leadership without
            // asking a quorum (a lease that nothing backs).
            let lease_bypass = self.bug(TestBug::SplitBrain) && self.is_leader();
            let gate = (self.cfg.linearizable_reads && reads_data(&req) && !lease_bypass).then(|| self.read_index());
            match (self.lines.get_mut(&session_id), gate) {
                (Some(line), gate) => line.push_back(Slot::Read { conn, xid, req, auth: auth.to_vec(), gate }),
                (None, None) => self.read(conn, session_id, auth, xid, &req),
                (None, Some(gate)) => {
                    let slot = Slot::Read { conn, xid, req, auth: auth.to_vec(), gate: Some(gate) };
                    self.lines.insert(session_id, VecDeque::from([slot]));
                }
            }
            return;
        }
        // Behind a linearizable read of its session, a write waits: it must
        // not reach the log before that read is answered (FIFO per session).
        // So does every write on a leader not yet ready to prep.
        let behind = self.lines.get(&session_id).is_some_and(|line| line.iter().any(|s| matches!(s, Slot::Read { gate: Some(_), .. } | Slot::Held { .. })));
        if behind || (self.is_leader() && !self.ready_to_prep()) {
            self.lines.entry(session_id).or_default().push_back(Slot::Held { conn, xid, req, auth: auth.to_vec() });
            return;
        }
        self.submit(conn, session_id, auth, xid, req);
    }

    /// Sends a write of a session to the log: proposed here on the leader,
    /// forwarded to it on a follower. Its slot goes at the back of the line.
    fn submit(&mut self, conn: u64, session_id: i64, auth: &[Id], xid: i32, req: Request) {
        let leader = self.leader_id();
        if leader == 0 {
            self.fail_session(session_id, Some(conn));
        } else if self.is_leader() {
            let zxid = self.next_index() as i64;
            let ops = self.prep(Caller { session_id, auth }, &req, zxid);
            // Test bug only: the session's line is looked at only with it on.
            let early = self.bug(TestBug::EarlyAck) && self.lines.get(&session_id).is_none_or(VecDeque::is_empty);
            if let Some((err, body)) = early.then(|| early_create_reply(&req, &ops, zxid, self.now.wall_ms)).flatten() {
                let pid = self.pend(session_id, Proposal::Internal, 0);
                if self.propose_entry(session_id, xid, ops, context(self.id, self.incarnation, pid)).is_err() {
                    self.fail_session(session_id, Some(conn));
                    return;
                }
                self.reply(conn, xid, err, body);
                return;
            }
            self.propose(session_id, xid, ops, Proposal::Request { conn, xid, req });
        } else {
            let msg = PeerMessage::Forward { incarnation: self.incarnation, proposal: 0, session_id, cxid: xid, auth: auth.to_vec(), req: req.clone() };
            let pid = self.pend(session_id, Proposal::Request { conn, xid, req }, leader);
            let PeerMessage::Forward { incarnation, session_id, cxid, auth, req, .. } = msg else { unreachable!() };
            self.send(leader, PeerMessage::Forward { incarnation, proposal: pid, session_id, cxid, auth, req });
        }
    }

    /// The session's connection is gone: its watches go with it (they are
    /// local to the member a client is connected to).
    pub fn on_disconnect(&mut self, session_id: i64) {
        self.core.watches.remove_session(session_id);
    }

    /// A message from member `from`.
    pub fn on_message(&mut self, from: u64, msg: PeerMessage, now: Now) {
        self.now = now;
        match msg {
            PeerMessage::TermQuery => {
                let (term, last_index) = if self.recovering.is_some() { (0, 0) } else { (self.term(), self.node.raft.raft_log.last_index()) };
                self.send(from, PeerMessage::TermReply { term, last_index });
                // It has an empty log now, whatever it had acknowledged
                // before: forget that (raft-rs would ignore its rejections
                // as stale and never send it the snapshot it needs).
                let last = self.node.raft.raft_log.last_index();
                if self.is_leader() {
                    if let Some(p) = self.node.raft.mut_prs().get_mut(from) {
                        p.matched = 0;
                        p.next_idx = last + 1;
                        p.become_probe();
                    }
                }
            }
            PeerMessage::TermReply { term, last_index } => {
                if let Some(answers) = &mut self.recovering {
                    answers.insert(from, (term, last_index));
                    self.try_finish_recovery();
                }
            }
            // Nothing of raft before the term is known (see `try_finish_recovery`).
            PeerMessage::Raft(_) if self.recovering.is_some() => {}
            PeerMessage::Raft(mut m) => {
                let last = self.node.raft.raft_log.last_index();
                match m.get_msg_type() {
                    // A member whose data was wiped is remembered by the
                    // leader as having entries it no longer has: the leader's
                    // commit hint must not point past its log (raft-rs would
                    // stop the member); it catches up by snapshot instead.
                    MessageType::MsgHeartbeat if m.commit > last => m.commit = last,
                    // Nor may it vote before it holds what it may have held
                    // before it lost its data (see `vote_after_commit`).
                    MessageType::MsgRequestVote | MessageType::MsgRequestPreVote if self.vote_after_commit.is_some_and(|c| self.commit_index() < c) => {
                        tracing::info!(id = self.id, candidate = from, "no vote before this member has caught up");
                        return;
                    }
                    _ => {}
                }
                if let Err(e) = self.node.step(m) {
                    tracing::debug!("raft step: {e}");
                }
                self.pin();
            }
            // Only the leader orders writes. A member that is not (any more)
            // drops them: the origin gives up on them at its deadline or when
            // it sees the new leader.
            _ if !self.is_leader() => {}
            msg @ PeerMessage::Forward { .. } if !self.ready_to_prep() => {
                // Bounded by what followers send while this leader catches up.
                self.early_forwards.push((from, msg));
            }
            PeerMessage::Forward { incarnation, proposal, session_id, cxid, auth, req } => {
                if !self.core.sessions.contains(session_id) && !self.opening.contains_key(&session_id) {
                    return; // expired meanwhile: the origin closes the connection on the close txn
                }
                self.core.touch(session_id, now.mono_ms);
                let zxid = self.next_index() as i64;
                let ops = self.prep(Caller { session_id, auth: &auth }, &req, zxid);
                let _ = self.propose_entry(session_id, cxid, ops, context(from, incarnation, proposal));
            }
            PeerMessage::CreateSession { incarnation, proposal, session_id, timeout_ms } => {
                let op = TxnOp::new(Op::CreateSession(CreateSessionTxn { session_id, timeout_ms }));
                if self.propose_entry(session_id, 0, vec![op], context(from, incarnation, proposal)).is_ok() {
                    self.opening.insert(session_id, self.node.raft.raft_log.last_index());
                }
            }
            PeerMessage::Touch { sessions } => {
                for s in sessions {
                    self.core.touch(s, now.mono_ms);
                }
            }
        }
    }

    /// A member found with an empty log may have lost its data: it may have
    /// voted and acknowledged entries in a term it no longer knows, and a
    /// stale leader of an older term could then commit over entries the
    /// ensemble already committed. So before it takes part it learns the
    /// highest term of enough other members to meet every majority (all of
    /// them in an ensemble of 3), adopts it and counts its vote in that term
    /// as spent. A brand-new ensemble needs only a majority: if a
    /// majority never had a term, no leader ever existed. Its lowest member
    /// then stands at once rather than after an election timeout.
    fn try_finish_recovery(&mut self) {
        let Some(answers) = &self.recovering else { return };
        let n = self.cfg.voters.len();
        let majority = n / 2 + 1;
        let max = answers.values().map(|(t, _)| *t).max().unwrap_or(0);
        let longest = answers.values().map(|(_, l)| *l).max().unwrap_or(0);
        // Every majority that may hold committed entries has majority - 1
        // members besides this one; answers from more than n - majority
        // others meet each such set (all others when n = 3, 3 of 4 when 5).
        let enough = answers.len() > n - majority;
        let new_ensemble = answers.len() + 1 >= majority && max == 0;
        if !enough && !new_ensemble {
            return;
        }
        self.recovering = None;
        if max > 0 {
            tracing::info!(id = self.id, term = max, "empty log: joining at the ensemble's term, no vote in it");
            self.node.raft.become_follower(max, raft::INVALID_ID);
            self.node.raft.vote = self.id;
            self.vote_after_commit = Some(longest);
        } else if self.cfg.voters.iter().min() == Some(&self.id) {
            let _ = self.node.campaign();
        }
        self.pin();
    }

    /// A link to `peer` came up: a member still learning the ensemble's
    /// term asks it at once rather than on its next tick (a fresh embedded
    /// cluster elects in milliseconds instead of a tick later).
    pub fn on_peer_up(&mut self, peer: u64, now: Now) {
        self.now = now;
        if self.recovering.as_ref().is_some_and(|a| !a.contains_key(&peer)) {
            self.send(peer, PeerMessage::TermQuery);
        }
    }

    /// The link to `peer` broke (its TCP connection closed): writes
    /// forwarded to it may be lost, so their clients are told to retry. If
    /// it was the leader, an election starts at once instead of after an
    /// election timeout (pre-vote keeps a merely cut-off follower from
    /// disturbing a leader the others still hear).
    pub fn on_peer_down(&mut self, peer: u64, now: Now) {
        self.now = now;
        self.fail_forwarded_to(peer);
        // A snapshot in flight to it is lost with the link.
        self.on_unreachable(peer);
        if peer != self.id && peer == self.leader_id() && self.cfg.voters.len() > 1 && self.campaign_at_ms.is_none() {
            // Every follower sees the leader's links close at once; if all
            // stood at once they would split the vote and wait out a random
            // timeout. They take turns by id instead (the first at once);
            // pre-vote stops a later one if an earlier one has won.
            let rank = self.cfg.voters.iter().filter(|v| **v != peer && **v < self.id).count() as i64;
            // The leader is gone for this member too: forget it now, or
            // raft's leader lease makes it ignore the first candidate's
            // (pre-)votes until an election timeout has passed, and the
            // election waits for its own turn instead. Safety never rests
            // on the lease (linearizable reads use ReadIndex).
            self.node.raft.leader_id = raft::INVALID_ID;
            self.campaign_at_ms = Some((now.mono_ms + rank * CAMPAIGN_STAGGER_MS, peer));
            tracing::info!(id = self.id, leader = peer, after_ms = rank * CAMPAIGN_STAGGER_MS, "link to the leader lost; campaigning");
            self.campaign_when_due();
        }
    }

    /// A message to `peer` could not be sent (its link is down). Raft
    /// retransmits appends by itself, but a lost snapshot must be reported
    /// or the leader waits for it forever.
    pub fn on_unreachable(&mut self, peer: u64) {
        if self.is_leader() && peer != self.id {
            if self.node.raft.prs().get(peer).is_some_and(|p| p.state == raft::ProgressState::Snapshot) {
                self.node.report_snapshot(peer, raft::SnapshotStatus::Failure);
            }
            self.node.report_unreachable(peer);
        }
    }

    /// Stands for election if the turn taken on losing the leader has come
    /// and no leader has been heard of since.
    fn campaign_when_due(&mut self) {
        let Some((at, lost)) = self.campaign_at_ms else { return };
        let leader = self.node.raft.leader_id;
        if leader != 0 && leader != lost {
            self.campaign_at_ms = None; // a new leader is known: no election needed
            return;
        }
        if self.now.mono_ms < at || self.snapshot_applied.is_some() || self.in_ready {
            return;
        }
        self.campaign_at_ms = None;
        if self.is_leader() {
            return;
        }
        let _ = self.node.campaign();
        self.pin();
    }

    fn fail_forwarded_to(&mut self, peer: u64) {
        let lost: Vec<i64> = self.pending_sessions(|p| p.forwarded_to == peer);
        for s in lost {
            self.fail_session(s, None);
        }
    }

    /// Keeps every applied txn for [`Replica::take_applied`] (a simulator's
    /// check that replicas agree; not for production: it grows).
    pub fn record_applied(&mut self) {
        self.applied_log.get_or_insert_with(Vec::new);
    }

    /// The txns applied since the last call, with their log index.
    pub fn take_applied(&mut self) -> Vec<(u64, Txn)> {
        self.applied_log.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Time passes: raft ticks, session expiry, container cleanup.
    pub fn on_tick(&mut self, now: Now) {
        self.now = now;
        let ticks = ((now.mono_ms - self.last_tick_ms) / RAFT_TICK_MS).clamp(0, TICKS_PER_CALL_MAX);
        if ticks > 0 {
            self.last_tick_ms = now.mono_ms;
        }
        if let Some(answers) = &self.recovering {
            if ticks > 0 {
                let ask: Vec<u64> = self.cfg.voters.iter().copied().filter(|v| *v != self.id && !answers.contains_key(v)).collect();
                for peer in ask {
                    self.send(peer, PeerMessage::TermQuery);
                }
            }
            return;
        }
        self.campaign_when_due();
        // While an installed snapshot awaits its sync, raft's applied index
        // lags the log's start: an election now would read entries that are
        // gone (raft-rs looks for unapplied conf changes). Time resumes after.
        let ticks = if self.snapshot_applied.is_some() { 0 } else { ticks };
        for _ in 0..ticks {
            self.node.tick();
            self.pin();
        }
        let late = self.pending_sessions(|p| p.forwarded_to != 0 && p.deadline_ms <= now.mono_ms);
        for s in late {
            tracing::info!(session = format!("{s:#x}"), "forwarded write not applied in time; closing its connection");
            self.fail_session(s, None);
        }
        for s in self.gated_sessions(|g| g.index.is_none() && g.deadline_ms <= now.mono_ms) {
            tracing::info!(session = format!("{s:#x}"), "linearizable read not confirmed in time; closing its connection");
            self.fail_session(s, None);
        }
        // raft-rs drops a read index request a new leader cannot serve yet
        // (nothing committed in its term): ask again.
        let retry: Vec<u64> = self.gates.iter().filter(|(_, g)| g.index.is_none() && now.mono_ms - g.issued_ms >= 2 * RAFT_TICK_MS).map(|(id, _)| *id).collect();
        for id in retry {
            if let Some(g) = self.gates.get_mut(&id) {
                g.issued_ms = now.mono_ms;
            }
            self.node.read_index(context(self.id, self.incarnation, id));
        }
        if !self.is_leader() {
            if self.bug(TestBug::ExpireOnFollower) {
                self.expire_locally(now.mono_ms);
            }
            let leader = self.leader_id();
            if leader != 0 && !self.touched.is_empty() {
                let sessions = std::mem::take(&mut self.touched).into_iter().collect();
                self.send(leader, PeerMessage::Touch { sessions });
            }
            return;
        }
        self.touched.clear();
        self.retry_stuck_snapshots(now.mono_ms);
        if !self.ready_to_prep() {
            return;
        }
        for session_id in self.core.expired(now.mono_ms) {
            tracing::info!(session = format!("{session_id:#x}"), "session expired");
            let zxid = self.next_index() as i64;
            let ops = self.core.prep_close(session_id, zxid);
            self.propose(session_id, 0, ops, Proposal::Internal);
        }
        if now.mono_ms - self.last_container_check_ms >= self.cfg.container_check_interval_ms {
            self.last_container_check_ms = now.mono_ms;
            for path in self.core.expirable(now.wall_ms, EXPIRABLE_PER_CHECK_MAX) {
                let zxid = self.next_index() as i64;
                if let Some(op) = self.core.prep_delete_container(&path, zxid) {
                    self.propose(0, 0, vec![op], Proposal::Internal);
                }
            }
        }
    }

    /// When `on_tick` is next needed.
    pub fn next_tick_ms(&self) -> i64 {
        self.last_tick_ms + RAFT_TICK_MS
    }

    /// The writes of ready `number` (and every earlier one) are durable.
    pub fn on_persisted(&mut self, number: u64) {
        assert!(self.unpersisted.front().is_some_and(|n| *n <= number), "persisted {number}, but the oldest unpersisted is {:?}", self.unpersisted.front());
        while self.unpersisted.front().is_some_and(|n| *n <= number) {
            self.unpersisted.pop_front();
        }
        self.node.on_persist_ready(number);
        if let Some((n, index)) = self.snapshot_applied {
            if n <= number {
                self.snapshot_applied = None;
                self.node.advance_apply_to(index);
            }
        }
    }

    /// What must happen now. Call after every input until it is empty.
    /// Up to `READIES_IN_FLIGHT_MAX` readies may await their sync at once
    /// (the shell fsyncs one batch while the next is prepared); an installed
    /// snapshot is synced alone.
    pub fn poll(&mut self) -> Output {
        if self.unpersisted.len() < READIES_IN_FLIGHT_MAX && self.snapshot_applied.is_none() && self.node.has_ready() {
            self.handle_ready();
        }
        std::mem::take(&mut self.out)
    }

    fn handle_ready(&mut self) {
        self.in_ready = true;
        let mut rd = self.node.ready();
        if let Some(ss) = rd.ss() {
            self.soft_state_changed(ss.raft_state, ss.leader_id);
        }
        let from = self.id;
        let wrap = |m: Message| Envelope { from, to: m.to, msg: PeerMessage::Raft(m) };
        self.out.messages.extend(outbox::drop_covered_notices(rd.take_messages()).into_iter().map(wrap));
        let mut persist = Persist { number: rd.number(), must_sync: rd.must_sync(), ..Default::default() };
        if !rd.snapshot().is_empty() {
            match LogSnapshot::from_raft(rd.snapshot()) {
                Ok(snap) => {
                    self.core = Core::restore(self.cfg.core.clone(), self.core.sessions.secret(), self.core.sessions.next_id(), &snap.core);
                    self.node.mut_store().install(snap.clone());
                    // Pending reads and writes of this member saw a state that is gone.
                    self.fail_pending();
                    self.out.deliveries.push(Delivery::Resynced);
                    persist.snapshot = Some(snap);
                }
                // The leader sent what no member of this version writes: stop with context.
                Err(e) => panic!("undecodable snapshot at index {}: {e}", rd.snapshot().get_metadata().index),
            }
        }
        for rs in rd.take_read_states() {
            if let Some((member, incarnation, id)) = parse_context(&rs.request_ctx) {
                if member == self.id && incarnation == self.incarnation {
                    if let Some(g) = self.gates.get_mut(&id) {
                        g.index.get_or_insert(rs.index);
                    }
                }
            }
        }
        self.apply(rd.take_committed_entries());
        self.advance_gated_lines();
        if !rd.entries().is_empty() {
            self.node.mut_store().append(rd.entries());
            persist.entries = rd.take_entries();
        }
        if let Some(hs) = rd.hs() {
            self.node.mut_store().set_hard_state(hs.clone());
            persist.hard_state = Some(hs.clone());
        }
        self.out.messages_after_persist.extend(rd.take_persisted_messages().into_iter().map(wrap));
        if let Some(s) = &persist.snapshot {
            // The core holds the snapshot's state now; raft learns it is
            // applied once it is persisted (raft-rs checks that order).
            self.snapshot_applied = Some((persist.number, s.index));
        }
        self.node.advance_append_async(rd);
        self.in_ready = false;
        self.unpersisted.push_back(persist.number);
        self.out.persist = Some(persist);
        self.pin();
        for s in std::mem::take(&mut self.resume_after_ready) {
            self.advance_line(s);
        }
        if self.ready_to_prep() && (!self.early_forwards.is_empty() || self.lines.values().any(|l| matches!(l.front(), Some(Slot::Held { .. })))) {
            let held: Vec<i64> = self.lines.iter().filter(|(_, l)| matches!(l.front(), Some(Slot::Held { .. }))).map(|(s, _)| *s).collect();
            for s in held {
                self.advance_line(s);
            }
            let now = self.now;
            for (from, msg) in std::mem::take(&mut self.early_forwards) {
                self.on_message(from, msg, now);
            }
        }
        if self.is_leader() && self.core.sessions.secret() == 0 && self.secret_proposed_term != self.term() {
            // This leader's first txn, ahead of any session's (proposing
            // had to wait until the ready was advanced).
            self.secret_proposed_term = self.term();
            let op = TxnOp::new(Op::InitSecret(InitSecretTxn { secret: self.fresh_secret }));
            self.propose(0, 0, vec![op], Proposal::Internal);
        }
    }

    fn soft_state_changed(&mut self, role: StateRole, leader: u64) {
        let was_leader = self.role == StateRole::Leader;
        self.role = role;
        if role == StateRole::Leader && !was_leader {
            // A new leader gives every session a full timeout: their
            // clients could not reach a leader meanwhile.
            self.core.sessions.reset_deadlines(self.now.mono_ms);
            // Its log may hold entries of earlier terms it has not applied:
            // prep must not read the tree before they are (their changes
            // are in no overlay). Its own first entry, raft's empty one, is
            // the last in the log now.
            self.term_start = self.node.raft.raft_log.last_index();
            tracing::info!(id = self.id, term = self.node.raft.term, "leading");
        } else if was_leader && role != StateRole::Leader {
            tracing::info!(id = self.id, term = self.node.raft.term, "no longer leading");
            self.fail_pending();
        }
        if leader != self.leader {
            let old = self.leader;
            self.leader = leader;
            // Writes forwarded to the old leader may be lost with it.
            if old != 0 && old != self.id {
                self.fail_forwarded_to(old);
            }
            if leader == 0 {
                self.fail_pending();
                self.out.deliveries.push(Delivery::LeaderLost);
            }
        }
    }

    /// Leadership lost (or state replaced): proposals in flight may never
    /// commit. Their clients are disconnected (they retry elsewhere, as
    /// after ZooKeeper's leader loss) and prep forgets their changes.
    fn fail_pending(&mut self) {
        self.core.outstanding.clear();
        self.opening.clear();
        let sessions: Vec<i64> = self.lines.keys().copied().collect();
        for s in sessions {
            self.fail_session(s, None);
        }
        debug_assert!(self.proposals.is_empty(), "a pending proposal outside every line");
        self.proposals.clear();
    }

    /// Sessions with a pending proposal matching `f`.
    fn pending_sessions(&self, f: impl Fn(&Pending) -> bool) -> Vec<i64> {
        let mut out: Vec<i64> = self
            .lines
            .iter()
            .filter(|(_, line)| line.iter().any(|slot| matches!(slot, Slot::Write(pid) if self.proposals.get(pid).is_some_and(&f))))
            .map(|(s, _)| *s)
            .collect();
        out.sort_unstable();
        out
    }

    /// Gives up on everything in the session's line: its connection (and
    /// `conn`, if given) is closed, so the client retries what it must.
    fn fail_session(&mut self, session_id: i64, conn: Option<u64>) {
        let mut conns: Vec<u64> = conn.into_iter().collect();
        for slot in self.lines.remove(&session_id).unwrap_or_default() {
            match slot {
                Slot::Write(pid) => conns.extend(self.proposals.remove(&pid).and_then(|p| p.kind.conn())),
                Slot::Read { conn, gate, .. } => {
                    conns.push(conn);
                    if let Some(g) = gate {
                        self.gates.remove(&g);
                    }
                }
                Slot::Held { conn, .. } => conns.push(conn),
            }
        }
        conns.sort_unstable();
        conns.dedup();
        for conn in conns {
            self.out.deliveries.push(Delivery::Close { conn });
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        let Some(last) = entries.last().map(|e| e.index) else { return };
        self.applied_since_snapshot += entries.len() as u64;
        for entry in entries {
            if entry.get_entry_type() != EntryType::EntryNormal || entry.data.is_empty() {
                continue; // a new leader's empty entry (conf changes come with membership changes)
            }
            let txn = match Txn::decode(entry.data.as_ref()) {
                Ok(t) => t,
                Err(e) => panic!("undecodable txn at index {}: {e}", entry.index),
            };
            // Asserted on both sides: the proposer predicted this index.
            assert_eq!(txn.zxid, entry.index as i64, "txn zxid differs from its log index");
            let applied = self.core.apply(&txn);
            if let Some(log) = &mut self.applied_log {
                log.push((entry.index, txn.clone()));
            }
            self.out.deliveries.extend(applied.events.into_iter().map(Delivery::Event));
            if let Some((member, incarnation, pid)) = parse_context(&entry.context) {
                if member == self.id && incarnation == self.incarnation {
                    self.complete(pid, &txn, &applied.outcomes);
                }
            }
            for op in &txn.ops {
                match &op.op {
                    Some(Op::CloseSession(c)) => {
                        self.out.deliveries.push(Delivery::SessionClosed { session_id: c.session_id });
                        self.fail_session(c.session_id, None);
                    }
                    // A session's clock starts when it is created, not when
                    // its client is first answered: if that answer never
                    // comes (the client gave up, the proposer failed over),
                    // no one else would ever touch the session and the
                    // leader would keep it, ephemerals and all, forever.
                    Some(Op::CreateSession(c)) => {
                        self.core.touch(c.session_id, self.now.mono_ms);
                    }
                    _ => {}
                }
            }
        }
        self.node.advance_apply_to(last);
        self.opening.retain(|_, index| *index > last);
        if self.applied_since_snapshot >= self.cfg.snap_count {
            self.take_snapshot(last);
        }
    }

    fn take_snapshot(&mut self, index: u64) {
        self.applied_since_snapshot = 0;
        let term = match raft::Storage::term(self.node.store(), index) {
            Ok(t) => t,
            Err(_) => return,
        };
        let snap = LogSnapshot { index, term, conf_state: self.node.raft.prs().conf().to_conf_state(), core: self.core.snapshot() };
        self.node.mut_store().compact(snap.clone());
        self.out.snapshot = Some(snap);
    }

    /// A proposal of this member was applied: answer it, then the reads queued behind it.
    fn complete(&mut self, pid: u64, txn: &Txn, outcomes: &[core::Outcome]) {
        let Some(pending) = self.proposals.remove(&pid) else { return };
        let session_id = txn.session_id;
        let head = self.lines.get_mut(&session_id).and_then(|l| l.pop_front());
        let in_order = matches!(head, Some(Slot::Write(h)) if h == pid);
        if !in_order {
            // Only a forwarded write can overtake (one forward lost on the
            // way, a later one not): the line is given up, the client retries.
            assert!(pending.forwarded_to != 0, "session {session_id:#x}: local write {pid} applied out of its order ({head:?})");
            self.lines.entry(session_id).or_default().push_front(head.unwrap_or(Slot::Write(pid)));
            self.fail_session(session_id, pending.kind.conn());
            return;
        }
        match pending.kind {
            Proposal::Request { conn, xid, req } => {
                let (err, body) = core::reply(&req, outcomes);
                self.reply(conn, xid, err, body);
                if matches!(req, Request::CloseSession) {
                    self.out.deliveries.push(Delivery::Close { conn });
                }
            }
            Proposal::Connect { conn, session_id, timeout_ms } => {
                self.core.touch(session_id, self.now.mono_ms);
                self.touched.insert(session_id);
                let passwd = self.core.sessions.password(session_id);
                self.out.deliveries.push(Delivery::Connected { conn, session_id, timeout_ms, passwd });
            }
            Proposal::Internal => {}
        }
        self.advance_line(session_id);
    }

    /// Answers the reads at the head of a session's line that may go now:
    /// plain ones, and linearizable ones whose read index is applied here.
    fn advance_line(&mut self, session_id: i64) {
        let applied = self.applied_index();
        let waiting_to_prep = self.is_leader() && !self.ready_to_prep();
        loop {
            let Some(line) = self.lines.get_mut(&session_id) else { return };
            let ready = match line.front() {
                Some(Slot::Read { gate: None, .. }) => true,
                Some(Slot::Read { gate: Some(g), .. }) => self.gates.get(g).and_then(|g| g.index).is_some_and(|i| i <= applied),
                Some(Slot::Write(_)) => false,
                Some(Slot::Held { .. }) if waiting_to_prep => return,
                Some(Slot::Held { .. }) if self.in_ready => {
                    // Nothing may be proposed between a ready and its advance.
                    self.resume_after_ready.insert(session_id);
                    return;
                }
                Some(Slot::Held { .. }) => {
                    // Its turn: to the log, ahead of what waits behind it.
                    let Some(Slot::Held { conn, xid, req, auth }) = line.pop_front() else { unreachable!("checked above") };
                    let rest = self.lines.remove(&session_id).unwrap_or_default();
                    self.submit(conn, session_id, &auth, xid, req);
                    match self.lines.get_mut(&session_id) {
                        Some(line) => line.extend(rest),
                        // Failed (no leader): the rest goes with the connection.
                        None if rest.is_empty() => {}
                        None => {
                            self.lines.insert(session_id, rest);
                            self.fail_session(session_id, None);
                        }
                    }
                    return;
                }
                None => {
                    self.lines.remove(&session_id);
                    return;
                }
            };
            if !ready {
                return;
            }
            let Some(Slot::Read { conn, xid, req, auth, gate }) = line.pop_front() else { unreachable!("checked above") };
            if let Some(g) = gate {
                self.gates.remove(&g);
            }
            self.read(conn, session_id, &auth, xid, &req);
        }
    }

    /// Asks raft for a read index (through the leader, confirmed by a
    /// quorum's heartbeat); the answer comes as a ReadState in a ready.
    fn read_index(&mut self) -> u64 {
        let id = self.next_gate;
        self.next_gate += 1;
        let timeout = FORWARD_TIMEOUT_ELECTIONS * self.cfg.election_tick as i64 * 2 * RAFT_TICK_MS;
        self.gates.insert(id, ReadGate { index: None, issued_ms: self.now.mono_ms, deadline_ms: self.now.mono_ms + timeout });
        self.node.read_index(context(self.id, self.incarnation, id));
        id
    }

    /// Sessions whose line holds a linearizable read matching `f`.
    fn gated_sessions(&self, f: impl Fn(&ReadGate) -> bool) -> Vec<i64> {
        self.lines
            .iter()
            .filter(|(_, line)| line.iter().any(|slot| matches!(slot, Slot::Read { gate: Some(g), .. } if self.gates.get(g).is_some_and(&f))))
            .map(|(s, _)| *s)
            .collect()
    }

    /// After applying: lines whose head read is now satisfied move on.
    fn advance_gated_lines(&mut self) {
        if self.gates.is_empty() {
            return;
        }
        let applied = self.applied_index();
        for s in self.gated_sessions(|g| g.index.is_some_and(|i| i <= applied)) {
            self.advance_line(s);
        }
    }

    fn read(&mut self, conn: u64, session_id: i64, auth: &[Id], xid: i32, req: &Request) {
        let caller = Caller { session_id, auth };
        let (err, body, events) = match self.core.handle(caller, req, 0) {
            Handled::Reply { err, body, events } => (err, body, events),
            Handled::OverLimit(limit) => {
                tracing::warn!(session = format!("{session_id:#x}"), limit, "request over a limit ({limit}); disconnecting");
                // What the request registered before reaching the limit goes
                // too, as does everything else of the connection.
                self.on_disconnect(session_id);
                self.fail_session(session_id, Some(conn));
                return;
            }
            Handled::Write(_) => unreachable!("a read is answered"),
        };
        self.out.deliveries.extend(events.into_iter().map(Delivery::Event));
        let xid = if matches!(req, Request::Ping) { protocol::codes::xid::PING } else { xid };
        self.reply(conn, xid, err, body);
    }

    fn reply(&mut self, conn: u64, xid: i32, err: ErrorCode, body: Response) {
        self.out.deliveries.push(Delivery::Reply { conn, xid, zxid: self.core.last_zxid(), err, body });
    }

    fn send(&mut self, to: u64, msg: PeerMessage) {
        self.out.messages.push(Envelope { from: self.id, to, msg });
    }

    fn next_index(&self) -> u64 {
        self.node.raft.raft_log.last_index() + 1
    }

    /// A leader preps writes only once it has applied every entry of
    /// earlier terms in its log (ZooKeeper's new leader likewise serves only
    /// after synchronising): prep reads the tree plus its own outstanding
    /// changes, and an unapplied entry of a previous leader is in neither.
    fn ready_to_prep(&self) -> bool {
        self.is_leader() && self.applied_index() >= self.term_start
    }

    /// A follower sent a snapshot waits for it in raft-rs until it answers
    /// with an index at or past the snapshot, or until the shell reports the
    /// snapshot failed. A snapshot that reached a member which could not take
    /// it then (restarting, still learning the term) is neither: after
    /// `SNAPSHOT_WAIT_MS_MAX` the leader counts it failed and tries again.
    fn retry_stuck_snapshots(&mut self, now_ms: i64) {
        let waiting: Vec<u64> = self.node.raft.prs().iter().filter(|(_, p)| p.state == raft::ProgressState::Snapshot).map(|(id, _)| *id).collect();
        self.snapshot_since.retain(|id, _| waiting.contains(id));
        for id in waiting {
            let since = *self.snapshot_since.entry(id).or_insert(now_ms);
            if now_ms - since >= SNAPSHOT_WAIT_MS_MAX {
                tracing::info!(peer = id, "snapshot not taken in time; sending it again");
                self.snapshot_since.remove(&id);
                self.node.report_snapshot(id, raft::SnapshotStatus::Failure);
            }
        }
    }

    fn bug(&self, b: TestBug) -> bool {
        self.cfg.test_bugs.contains(&b)
    }

    /// The `expire-on-follower` bug: a follower drops sessions its own
    /// clock finds expired, outside the log, and so diverges.
    fn expire_locally(&mut self, now_ms: i64) {
        for session_id in self.core.sessions.expired(now_ms) {
            let paths: Vec<String> = self.core.tree.ephemerals(session_id).cloned().collect();
            let zxid = self.core.last_zxid();
            for p in paths {
                self.core.tree.delete(&p, zxid);
            }
            self.core.sessions.close(session_id);
            self.out.deliveries.push(Delivery::SessionClosed { session_id });
        }
    }

    /// Prepares a write (or a sync: an empty txn whose apply means the
    /// member has caught up with the leader as of the sync).
    fn prep(&mut self, caller: Caller, req: &Request, zxid: i64) -> Vec<TxnOp> {
        if self.bug(TestBug::OverlaySkip) {
            self.core.outstanding.clear();
        }
        if let Request::Sync(r) = req {
            return match core::path::validate(&r.path, false) {
                Ok(()) => Vec::new(),
                Err(e) => vec![TxnOp::new(Op::Error(ErrorTxn { err: e.as_i32() }))],
            };
        }
        match self.core.handle(caller, req, zxid) {
            Handled::Write(ops) => ops,
            Handled::Reply { .. } | Handled::OverLimit(_) => unreachable!("a write is prepped"),
        }
    }

    /// Records a pending proposal in its session's line.
    fn pend(&mut self, session_id: i64, kind: Proposal, forwarded_to: u64) -> u64 {
        let pid = self.next_proposal;
        self.next_proposal += 1;
        let timeout = FORWARD_TIMEOUT_ELECTIONS * self.cfg.election_tick as i64 * 2 * RAFT_TICK_MS;
        self.proposals.insert(pid, Pending { kind, forwarded_to, deadline_ms: self.now.mono_ms + timeout });
        // Internal proposals (an expiry, session 0's container removals) take
        // their place in line too: a read after an expiry sees it.
        self.lines.entry(session_id).or_default().push_back(Slot::Write(pid));
        pid
    }

    /// Proposes `ops` (prepared for the next index) as this member's own
    /// proposal; on failure the session's line is given up.
    fn propose(&mut self, session_id: i64, cxid: i32, ops: Vec<TxnOp>, kind: Proposal) {
        let pid = self.pend(session_id, kind, 0);
        if self.propose_entry(session_id, cxid, ops, context(self.id, self.incarnation, pid)).is_err() {
            self.fail_session(session_id, None);
        }
    }

    /// Appends the txn at the next index. On failure (not leader, or a
    /// leadership transfer), what prep recorded is forgotten with
    /// everything else outstanding.
    fn propose_entry(&mut self, session_id: i64, cxid: i32, ops: Vec<TxnOp>, ctx: Vec<u8>) -> Result<(), ReplicaError> {
        let zxid = self.next_index();
        debug_assert!(!ops.iter().any(|o| o.op.is_none()), "txn op missing");
        let txn = Txn { zxid: zxid as i64, session_id, cxid, time_ms: self.now.wall_ms, ops };
        if !self.is_leader() {
            self.core.outstanding.clear();
            return Err(ReplicaError::NotLeader);
        }
        if let Err(e) = self.node.propose(ctx, txn.encode_to_vec()) {
            tracing::warn!("proposal dropped: {e}");
            self.core.outstanding.clear();
            return Err(ReplicaError::NotLeader);
        }
        assert_eq!(self.node.raft.raft_log.last_index(), zxid, "a proposal takes the next index");
        Ok(())
    }
}

/// The `early-ack` test bug's reply to a plain create, made from its
/// prepped txn alone: what applying it at `zxid` will report (a new node,
/// version 0, no children). `None` for anything else, a refused create
/// included: the bug is the acknowledgement of a change.
fn early_create_reply(req: &Request, ops: &[TxnOp], zxid: i64, time_ms: i64) -> Option<(ErrorCode, Response)> {
    if !matches!(req, Request::Create(_) | Request::Create2(_) | Request::CreateContainer(_) | Request::CreateTtl(_)) {
        return None;
    }
    let [TxnOp { op: Some(Op::Create(c)) }] = ops else { return None };
    let stat = protocol::Stat {
        czxid: zxid,
        mzxid: zxid,
        ctime: time_ms,
        mtime: time_ms,
        version: 0,
        cversion: 0,
        aversion: 0,
        ephemeral_owner: if core::tree::owner::is_session(c.ephemeral_owner) { c.ephemeral_owner } else { 0 },
        data_length: c.data.as_ref().map_or(0, |d| d.len() as i32),
        num_children: 0,
        pzxid: zxid,
    };
    Some(core::reply(req, &[core::Outcome::Created { path: c.path.clone(), stat }]))
}

/// Whether a request goes through the log: writes, and sync (which waits
/// for an entry of its own to be applied here).
pub fn goes_through_log(req: &Request) -> bool {
    matches!(req, Request::Sync(_)) || is_write(req)
}

/// Whether a read returns replicated data (and so, with
/// `readConsistency=linearizable`, waits for a read index). Pings, watch
/// management and whoAmI are answered from the member's own state.
pub fn reads_data(req: &Request) -> bool {
    matches!(
        req,
        Request::GetData(_)
            | Request::Exists(_)
            | Request::GetChildren(_)
            | Request::GetChildren2(_)
            | Request::GetAcl(_)
            | Request::GetAllChildrenNumber(_)
            | Request::GetEphemerals(_)
            | Request::MultiRead(_)
    )
}

pub use crate::core::is_write;

/// The store's view of a newly created member: nothing yet.
pub fn fresh() -> Recovered {
    Recovered::default()
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica").field("id", &self.id).field("term", &self.term()).field("leader", &self.leader_id()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::{GetDataRequest, SetDataRequest};

    fn standalone() -> Replica {
        standalone_with(CoreConfig::default())
    }

    fn standalone_with(core: CoreConfig) -> Replica {
        let cfg = ReplicaConfig {
            id: 1,
            voters: vec![1],
            core,
            snap_count: 1_000,
            container_check_interval_ms: 60_000,
            election_tick: 10,
            heartbeat_tick: 2,
            test_bugs: Vec::new(),
            linearizable_reads: false,
        };
        let mut r = Replica::new(cfg, Recovered::default(), 7, 1 << 8, 1, Now::default()).unwrap();
        settle(&mut r);
        r
    }

    /// Persists every ready at once; returns the deliveries.
    fn settle(r: &mut Replica) -> Vec<Delivery> {
        let mut out = Vec::new();
        loop {
            let o = r.poll();
            if o.is_empty() {
                return out;
            }
            out.extend(o.deliveries);
            if let Some(p) = o.persist {
                r.on_persisted(p.number);
            }
        }
    }

    #[test]
    fn a_member_with_an_empty_log_recovers_whatever_its_hard_state() {
        let cfg = |id| ReplicaConfig {
            id,
            voters: vec![1, 2, 3],
            core: CoreConfig::default(),
            snap_count: 1_000,
            container_check_interval_ms: 60_000,
            election_tick: 10,
            heartbeat_tick: 2,
            test_bugs: Vec::new(),
            linearizable_reads: false,
        };
        // A wiped member that adopted term 2 (and spent its vote) while
        // recovering, then crashed before receiving any entry.
        let hs = HardState { term: 2, vote: 2, commit: 0, ..Default::default() };
        let recovered = Recovered { hard_state: hs, ..Default::default() };
        let r = Replica::new(cfg(2), recovered, 7, 2 << 56, 1, Now::default()).unwrap();
        assert!(r.is_recovering(), "no vote before it learns what it may have lost");
        let fresh = Replica::new(cfg(2), Recovered::default(), 7, 2 << 56, 1, Now::default()).unwrap();
        assert!(fresh.is_recovering());
    }

    #[test]
    fn a_session_cannot_queue_without_bound() {
        let mut r = standalone();
        r.on_connect(1, &ConnectRequest { time_out: 10_000, ..Default::default() }, Now::default());
        let session = settle(&mut r)
            .into_iter()
            .find_map(|d| match d {
                Delivery::Connected { session_id, .. } => Some(session_id),
                _ => None,
            })
            .expect("connected");
        // A write that is not yet durable, and reads piling up behind it.
        let set = Request::SetData(SetDataRequest { path: "/".into(), data: Some(b"x".to_vec()), version: -1 });
        r.on_request(1, session, &[], 1, set, Now::default());
        let get = || Request::GetData(GetDataRequest { path: "/".into(), watch: false });
        for xid in 2..(SESSION_PENDING_MAX as i32 + 1) {
            r.on_request(1, session, &[], xid, get(), Now::default());
        }
        assert!(!r.out.deliveries.iter().any(|d| matches!(d, Delivery::Close { .. })), "within the limit");
        r.on_request(1, session, &[], SESSION_PENDING_MAX as i32 + 1, get(), Now::default());
        assert!(r.out.deliveries.iter().any(|d| matches!(d, Delivery::Close { conn: 1 })), "over the limit: disconnected");
        assert!(r.lines.get(&session).is_none(), "its line is given up");
    }

    #[test]
    fn a_request_over_max_watches_per_session_leaves_no_watch_behind() {
        let mut cfg_core = CoreConfig::default();
        cfg_core.max_watches_per_session = 2;
        let mut r = standalone_with(cfg_core);
        r.on_connect(1, &ConnectRequest { time_out: 10_000, ..Default::default() }, Now::default());
        let session = settle(&mut r)
            .into_iter()
            .find_map(|d| match d {
                Delivery::Connected { session_id, .. } => Some(session_id),
                _ => None,
            })
            .expect("connected");
        // A reconnect's SetWatches for three missing nodes: two register,
        // the third is over the limit.
        let sw = Request::SetWatches(protocol::SetWatches {
            relative_zxid: 0,
            data_watches: Vec::new(),
            exist_watches: vec!["/a".into(), "/b".into(), "/c".into()],
            child_watches: Vec::new(),
        });
        r.on_request(1, session, &[], 1, sw, Now::default());
        let out = settle(&mut r);
        assert!(out.iter().any(|d| matches!(d, Delivery::Close { conn: 1 })), "over the limit: disconnected");
        assert!(!out.iter().any(|d| matches!(d, Delivery::Reply { .. })), "not answered");
        assert_eq!(r.core().watches.total(), 0, "the two it registered are gone too");
    }
}
