//! The simulated world: members (replica + disk), links, clients, a clock
//! and an event queue, all driven from one seeded RNG.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use corral::core::CoreConfig;
use corral::replica::log::LogSnapshot;
use corral::replica::{Delivery, Envelope, Now, Persist, Recovered, Replica, ReplicaConfig};
use protocol::{ConnectRequest, ErrorCode, Request, Response};
use raft::eraftpb::{ConfState, Entry, HardState};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::check::Checker;
use crate::client::{self, Client, ClientState, InFlight, Served};
use crate::history::Recorder;

/// Test-only faults a run can turn on, to prove the checks catch them (the
/// server's own switches; `lost-ack` is played by the simulated shell).
pub use corral::testbug::TestBug as Bug;

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub clients: usize,
    /// Simulated milliseconds of the safety phase (faults on).
    pub safety_ms: i64,
    /// Simulated milliseconds the liveness phase may take at most.
    pub liveness_ms: i64,
    /// Mean simulated milliseconds between faults.
    pub fault_every_ms: i64,
    pub bug: Option<Bug>,
    /// `readConsistency=linearizable` on every member; `None`: drawn from the seed.
    pub linearizable: Option<bool>,
    /// Trace lines kept for a failure report.
    pub trace_lines: usize,
    /// Entries applied between snapshots (`snapCount`).
    pub snap_count: u64,
    /// The simulator's own checks stop the run at their first violation.
    /// Off, they only note it (`Report::own_violation`) and the run goes
    /// on, so the shared checker judges the whole history alone: the proof
    /// that it catches a bug by itself.
    pub own_checks: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig { nodes: 3, clients: 4, safety_ms: 6_000, liveness_ms: 20_000, fault_every_ms: 700, bug: None, linearizable: None, trace_lines: 400, snap_count: 300, own_checks: true }
    }
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub message: String,
    pub at_ms: i64,
    /// The last events before the violation, oldest first.
    pub trace: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub seed: u64,
    pub violation: Option<Violation>,
    /// A hash of every event of the run: the same seed gives the same hash.
    pub trace_hash: u64,
    pub events: u64,
    pub sim_ms: i64,
    pub ops_ok: u64,
    pub ops_indeterminate: u64,
    pub reads_checked: u64,
    pub watches_checked: u64,
    pub expiries: u64,
    pub crashes: u32,
    /// Crashes that also lost the whole disk.
    pub wipes: u32,
    pub partitions: u32,
    pub leaders: u32,
    pub log_len: usize,
    /// Whether the members served linearizable reads (so the history's
    /// reads were checked for linearizability, not by the read model).
    pub linearizable_reads: bool,
    /// The clients' register ops, in the shared history format (`corral-check`).
    pub history: Vec<corral_check::history::Op>,
    /// The shared checker's verdict on `history`, also when the run stopped
    /// early at one of the simulator's own checks (then it stands beside it).
    pub history_violation: Option<String>,
    /// With `own_checks` off: the first violation the simulator's own
    /// checks saw (the run went on past it).
    pub own_violation: Option<String>,
}

/// What the disk of a member holds after its last sync.
#[derive(Debug, Default, Clone)]
struct Disk {
    hard_state: HardState,
    snapshot: Option<LogSnapshot>,
    entries: BTreeMap<u64, Entry>,
}

impl Disk {
    fn write(&mut self, p: &Persist) {
        if let Some(s) = &p.snapshot {
            self.install(s);
        }
        if let Some(first) = p.entries.first() {
            let _ = self.entries.split_off(&first.index);
            for e in &p.entries {
                self.entries.insert(e.index, e.clone());
            }
        }
        if let Some(hs) = &p.hard_state {
            self.hard_state = hs.clone();
        }
    }

    fn install(&mut self, s: &LogSnapshot) {
        if self.snapshot.as_ref().is_some_and(|c| c.index >= s.index) {
            return;
        }
        self.entries = self.entries.split_off(&(s.index + 1));
        self.snapshot = Some(s.clone());
    }
}

struct Member {
    id: u64,
    replica: Option<Replica>,
    /// Bumped at every crash: events of an earlier life are dropped.
    life: u64,
    disk: Disk,
    /// Written but not yet synced: lost in a crash.
    unsynced: VecDeque<Persist>,
    /// Messages to send once the persist of that number is synced.
    after_sync: BTreeMap<u64, Vec<Envelope>>,
    paused_until_ms: i64,
    /// When the last scheduled sync completes (syncs complete in order).
    sync_tail_ms: i64,
    /// Scripted worlds: how long each of this member's syncs takes (ms).
    sync_ms: i64,
    /// Client connections here: conn → client.
    conns: BTreeMap<u64, usize>,
    session_conn: BTreeMap<i64, u64>,
    conn_session: BTreeMap<u64, i64>,
    was_leader: bool,
    /// When this member was last paused, crashed or lost a link: what it
    /// heard from clients just before may never have reached the leader.
    disturbed_ms: i64,
}

#[derive(Debug)]
enum Ev {
    Tick { node: usize, life: u64 },
    Deliver { from: usize, to: usize, link: u64, env: Envelope },
    Synced { node: usize, life: u64, number: u64 },
    /// The late fsync of the `lost-ack` bug: only the disk catches up.
    DiskCatchUp { node: usize, life: u64 },
    Connect { node: usize, life: u64, conn: u64, client: usize, req: ConnectRequest },
    Request { node: usize, life: u64, conn: u64, xid: i32, req: Request },
    Disconnect { node: usize, life: u64, conn: u64 },
    ToClient { client: usize, conn: u64, d: Delivery },
    ClientWake { client: usize },
    Fault,
    Restart { node: usize },
    Heal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Safety,
    Liveness,
}

pub(crate) struct World {
    cfg: SimConfig,
    rng: ChaCha8Rng,
    now_ms: i64,
    queue: BTreeMap<(i64, u64), Ev>,
    seq: u64,
    members: Vec<Member>,
    clients: Vec<Client>,
    /// Directed links (from, to) that are cut.
    cut: BTreeSet<(usize, usize)>,
    /// Per directed link, its current connection (bumped when it breaks).
    link_life: BTreeMap<(usize, usize), u64>,
    /// Per directed link, when its last message arrives (links are FIFO).
    link_tail_ms: BTreeMap<(usize, usize), i64>,
    next_conn: u64,
    checker: Checker,
    history: Recorder,
    phase: Phase,
    linearizable: bool,
    trace: VecDeque<String>,
    trace_hash: u64,
    events: u64,
    report: Report,
    violation: Option<String>,
    /// Driven by a script (`crate::script`): no random faults or clients,
    /// fixed latencies, and client deliveries kept for the script to print.
    scripted: bool,
    /// Scripted: every trace line (and its time) since the script last took them.
    pub(crate) script_notes: Vec<(i64, String)>,
    /// Scripted: per client, what it received since the script last looked.
    pub(crate) inbox: BTreeMap<usize, Vec<String>>,
    /// Scripted: extra latency of a directed link (a slow network path).
    slow: BTreeMap<(usize, usize), i64>,
}

/// Wall time at virtual time 0 (znode times, txn times).
const WALL_EPOCH_MS: i64 = 1_700_000_000_000;

fn mix(h: u64, v: u64) -> u64 {
    (h ^ v).wrapping_mul(0x0100_0000_01b3).rotate_left(17)
}

impl World {
    pub(crate) fn new(seed: u64, cfg: SimConfig) -> World {
        World::build(seed, cfg, false)
    }

    /// A world for a script: members start, nothing else happens unless a
    /// command asks (see [`crate::script`]).
    pub(crate) fn scripted(seed: u64, cfg: SimConfig) -> World {
        World::build(seed, SimConfig { clients: 0, ..cfg }, true)
    }

    fn build(seed: u64, cfg: SimConfig, scripted: bool) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let drawn = rng.gen_bool(0.5);
        // A stale leader's reads are wrong only where reads promise to be
        // linearizable, so the `split-brain` bug runs with them throughout.
        let linearizable = cfg.linearizable.unwrap_or(drawn || cfg.bug == Some(Bug::SplitBrain));
        let report = Report {
            seed,
            violation: None,
            trace_hash: 0,
            events: 0,
            sim_ms: 0,
            ops_ok: 0,
            ops_indeterminate: 0,
            reads_checked: 0,
            watches_checked: 0,
            expiries: 0,
            crashes: 0,
            wipes: 0,
            partitions: 0,
            leaders: 0,
            log_len: 0,
            linearizable_reads: linearizable,
            history: Vec::new(),
            history_violation: None,
            own_violation: None,
        };
        let mut w = World {
            rng,
            now_ms: 0,
            queue: BTreeMap::new(),
            seq: 0,
            members: Vec::new(),
            clients: (0..cfg.clients).map(Client::new).collect(),
            cut: BTreeSet::new(),
            link_life: BTreeMap::new(),
            link_tail_ms: BTreeMap::new(),
            next_conn: 1,
            checker: Checker::new(),
            history: Recorder::default(),
            phase: Phase::Safety,
            linearizable,
            trace: VecDeque::new(),
            trace_hash: 0xcbf2_9ce4_8422_2325,
            events: 0,
            report,
            violation: None,
            scripted,
            script_notes: Vec::new(),
            inbox: BTreeMap::new(),
            slow: BTreeMap::new(),
            cfg,
        };
        for i in 0..w.cfg.nodes {
            w.members.push(Member {
                id: i as u64 + 1,
                replica: None,
                life: 0,
                disk: Disk::default(),
                unsynced: VecDeque::new(),
                after_sync: BTreeMap::new(),
                paused_until_ms: 0,
                sync_tail_ms: 0,
                sync_ms: 1,
                conns: BTreeMap::new(),
                session_conn: BTreeMap::new(),
                conn_session: BTreeMap::new(),
                was_leader: false,
                disturbed_ms: i64::MIN,
            });
            w.start_member(i);
        }
        if scripted {
            return w;
        }
        for c in 0..w.cfg.clients {
            let at = w.rng.gen_range(0..200);
            w.schedule(at, Ev::ClientWake { client: c });
        }
        let first_fault = w.rng.gen_range(0..w.cfg.fault_every_ms * 2);
        w.schedule(first_fault, Ev::Fault);
        w.schedule(w.cfg.safety_ms, Ev::Heal);
        w
    }

    fn schedule(&mut self, after_ms: i64, ev: Ev) {
        self.seq += 1;
        self.queue.insert((self.now_ms + after_ms.max(0), self.seq), ev);
    }

    fn note(&mut self, line: String) {
        if self.scripted {
            self.script_notes.push((self.now_ms, line.clone()));
        }
        for b in line.as_bytes() {
            self.trace_hash = mix(self.trace_hash, *b as u64);
        }
        if self.trace.len() >= self.cfg.trace_lines {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{:>7}ms {line}", self.now_ms));
    }

    fn fail(&mut self, message: String) {
        if !self.cfg.own_checks {
            if self.report.own_violation.is_none() {
                self.note(format!("own check (not stopping the run): {message}"));
                self.report.own_violation = Some(message);
            }
            return;
        }
        self.violate(message);
    }

    fn violate(&mut self, message: String) {
        if self.violation.is_none() {
            self.note(format!("VIOLATION: {message}"));
            self.violation = Some(message);
        }
    }

    fn now(&self) -> Now {
        // Wall time moves with the virtual clock, from a fixed epoch.
        Now { mono_ms: self.now_ms, wall_ms: WALL_EPOCH_MS + self.now_ms }
    }

    fn start_member(&mut self, i: usize) {
        let now = self.now();
        let m = &mut self.members[i];
        let voters: Vec<u64> = (1..=self.cfg.nodes as u64).collect();
        let recovered = Recovered {
            hard_state: m.disk.hard_state.clone(),
            conf_state: Some(ConfState { voters: voters.clone(), ..Default::default() }),
            snapshot: m.disk.snapshot.clone(),
            entries: m.disk.entries.values().cloned().collect(),
        };
        let cfg = ReplicaConfig {
            id: m.id,
            voters,
            core: CoreConfig::default(),
            snap_count: self.cfg.snap_count,
            container_check_interval_ms: 1_000,
            election_tick: 10,
            heartbeat_tick: 2,
            test_bugs: self.cfg.bug.into_iter().filter(|b| *b != Bug::LostAck).collect(),
            linearizable_reads: self.linearizable,
        };
        m.life += 1;
        let life = m.life;
        let first_session_id = corral::core::session::Sessions::initial_session_id(now.wall_ms + life as i64, m.id as u8);
        let secret = self.rng.gen_range(1..u64::MAX);
        let incarnation = self.rng.gen();
        let mut r = match Replica::new(cfg, recovered, secret, first_session_id, incarnation, now) {
            Ok(r) => r,
            Err(e) => {
                self.fail(format!("member {} cannot restart: {e}", i + 1));
                return;
            }
        };
        // raft-rs draws election timeouts from its own RNG: pin them to the seed.
        let ticks: Vec<usize> = (0..64).map(|_| self.rng.gen_range(10..20)).collect();
        r.pin_election_timeouts(ticks);
        r.record_applied();
        let m = &mut self.members[i];
        m.replica = Some(r);
        m.was_leader = false;
        self.note(format!("member {} starts (life {life}, disk: {} entries)", i + 1, self.members[i].disk.entries.len()));
        let jitter = self.rng.gen_range(0..corral::replica::RAFT_TICK_MS);
        self.schedule(jitter, Ev::Tick { node: i, life });
        self.drive(i);
    }

    fn alive(&self, i: usize) -> bool {
        self.members[i].replica.is_some()
    }

    pub(crate) fn run(&mut self) {
        let end_ms = self.cfg.safety_ms + self.cfg.liveness_ms;
        while let Some(((at, _), ev)) = self.queue.pop_first() {
            if self.violation.is_some() {
                break;
            }
            if at > end_ms {
                let state = self.state_summary();
                self.fail(format!("no progress: the liveness phase did not finish within {} ms after healing; {state}", self.cfg.liveness_ms));
                break;
            }
            self.now_ms = at;
            self.events += 1;
            self.step(ev);
            if self.phase == Phase::Liveness && self.live_done() {
                self.finish();
                break;
            }
        }
        if self.violation.is_none() && !(self.phase == Phase::Liveness && self.live_done()) {
            self.fail("the run ended before the liveness phase completed".into());
        }
    }

    pub(crate) fn panicked(mut self, msg: String) -> Report {
        self.fail(format!("panic: {msg}"));
        self.report()
    }

    pub(crate) fn report(mut self) -> Report {
        if !self.scripted {
            self.check_history();
        }
        self.report.violation = self.violation.take().map(|message| Violation { message, at_ms: self.now_ms, trace: self.trace.iter().cloned().collect() });
        self.report.trace_hash = self.trace_hash;
        self.report.events = self.events;
        self.report.sim_ms = self.now_ms;
        self.report.reads_checked = self.checker.reads_checked;
        self.report.watches_checked = self.checker.watches_checked;
        self.report.expiries = self.checker.expiries;
        self.report.log_len = self.checker.log_len();
        self.report.history = std::mem::take(&mut self.history).into_ops();
        self.report
    }

    /// The shared linearizability checker on the recorded history: a
    /// violation of the run if nothing else failed first, and beside it if
    /// something did.
    fn check_history(&mut self) {
        let verdict = crate::history::check(self.history.ops(), self.linearizable);
        if let Some(why) = verdict.explain() {
            let reads = if verdict.reads_checked { "reads linearizable" } else { "writes linearizable, reads by ZooKeeper's read model" };
            let reads = if verdict.violation.is_none() { "ZooKeeper's read model: a session never goes back, and reads its own writes" } else { reads };
            let message = format!("shared checker (corral-check, {reads}): {} register ops not valid: {why}", verdict.ops);
            self.report.history_violation = Some(message.clone());
            self.violate(message);
        }
    }

    fn state_summary(&self) -> String {
        let members: Vec<String> = self
            .members
            .iter()
            .map(|m| match &m.replica {
                None => format!("member {}: down", m.id),
                Some(r) => format!(
                    "member {}: {} term {} leader {} commit {:#x} applied {:#x} zxid {:#x} pending {} [{}]",
                    m.id,
                    if r.is_leader() { "leader" } else { "follower" },
                    r.term(),
                    r.leader_id(),
                    r.commit_index(),
                    r.applied_index(),
                    r.core().last_zxid(),
                    r.pending_count(),
                    if r.is_leader() { r.progress() } else { String::new() }
                ),
            })
            .collect();
        let clients: Vec<String> = self
            .clients
            .iter()
            .map(|c| format!("client {}: {:?} session {:#x} live writes {} in flight {:?}", c.id, c.state, c.session_id, c.live_writes, c.in_flight.iter().map(|f| f.xid).collect::<Vec<_>>()))
            .collect();
        let abandoned: Vec<String> = self.abandoned_sessions().iter().map(|s| format!("{s:#x}")).collect();
        format!("{}; {}; abandoned sessions still open: [{}]", members.join("; "), clients.join("; "), abandoned.join(", "))
    }

    fn live_done(&self) -> bool {
        self.clients.iter().all(|c| c.live_writes >= 2) && self.converged() && self.abandoned_sessions().is_empty()
    }

    /// Sessions still open that no client holds (one whose connect reply
    /// was lost, say): they must expire, ephemerals and all, before a run
    /// can end.
    fn abandoned_sessions(&self) -> Vec<i64> {
        let held: BTreeSet<i64> = self.clients.iter().map(|c| c.session_id).collect();
        self.checker.open_sessions().into_iter().filter(|s| !held.contains(s)).collect()
    }

    fn converged(&self) -> bool {
        let Some(first) = self.members.iter().find_map(|m| m.replica.as_ref()) else { return false };
        let leader_commit = self.members.iter().filter_map(|m| m.replica.as_ref()).find(|r| r.is_leader()).map(|r| r.commit_index());
        let Some(commit) = leader_commit else { return false };
        let zxid = first.core().last_zxid();
        self.members.iter().all(|m| m.replica.as_ref().is_some_and(|r| r.applied_index() >= commit && r.core().last_zxid() == zxid))
    }

    fn finish(&mut self) {
        let cores: Vec<&corral::core::Core> = self.members.iter().filter_map(|m| m.replica.as_ref().map(|r| r.core())).collect();
        if let Err(e) = self.checker.finish(&cores) {
            self.fail(e);
        } else {
            self.note(format!("done: {} txns, {} acknowledged writes, {} reads checked", self.checker.log_len(), self.checker.acks(), self.checker.reads_checked));
        }
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Tick { node, life } => {
                if self.members[node].life != life || !self.alive(node) {
                    return;
                }
                if self.members[node].paused_until_ms <= self.now_ms {
                    let now = self.now();
                    if let Some(r) = self.members[node].replica.as_mut() {
                        r.on_tick(now);
                    }
                    self.drive(node);
                }
                let jitter = if self.scripted { 5 } else { self.rng.gen_range(0..10) };
                self.schedule(corral::replica::RAFT_TICK_MS - 5 + jitter, Ev::Tick { node, life });
            }
            Ev::Deliver { from, to, link, env } => {
                if self.link_life.get(&(from, to)).copied().unwrap_or(0) != link || !self.alive(to) {
                    return;
                }
                if self.members[to].paused_until_ms > self.now_ms {
                    // A paused process reads its socket later, in order.
                    let at = self.members[to].paused_until_ms - self.now_ms;
                    self.schedule(at, Ev::Deliver { from, to, link, env });
                    return;
                }
                assert_eq!((env.from, env.to), (from as u64 + 1, to as u64 + 1), "envelope on the wrong link");
                let now = self.now();
                if let Some(r) = self.members[to].replica.as_mut() {
                    r.on_message(env.from, env.msg, now);
                }
                self.drive(to);
            }
            Ev::Synced { node, life, number } => {
                if self.members[node].life != life {
                    return;
                }
                self.synced(node, number);
            }
            Ev::DiskCatchUp { node, life } => {
                if self.members[node].life == life {
                    if let Some(p) = self.members[node].unsynced.pop_front() {
                        self.members[node].disk.write(&p);
                    }
                }
            }
            Ev::Connect { node, life, conn, client, req } => {
                if self.members[node].life != life || !self.alive(node) {
                    self.to_client(client, conn, Delivery::Close { conn });
                    return;
                }
                self.members[node].conns.insert(conn, client);
                let now = self.now();
                if let Some(r) = self.members[node].replica.as_mut() {
                    r.on_connect(conn, &req, now);
                }
                self.drive(node);
            }
            Ev::Request { node, life, conn, xid, req } => {
                if self.members[node].life != life || !self.alive(node) {
                    return;
                }
                let Some(session) = self.members[node].conn_session.get(&conn).copied() else { return };
                let now = self.now();
                if let Some(r) = self.members[node].replica.as_mut() {
                    r.on_request(conn, session, &[], xid, req, now);
                }
                self.drive(node);
            }
            Ev::Disconnect { node, life, conn } => {
                if self.members[node].life != life {
                    return;
                }
                self.drop_conn(node, conn);
            }
            Ev::ToClient { client, conn, d } if self.scripted => self.script_receives(client, conn, d),
            Ev::ToClient { client, conn, d } => self.client_receives(client, conn, d),
            Ev::ClientWake { client } if self.scripted => self.script_wake(client),
            Ev::ClientWake { client } => self.client_wake(client),
            Ev::Fault => {
                if self.phase == Phase::Safety {
                    self.fault();
                    let next = self.rng.gen_range(1..self.cfg.fault_every_ms * 2);
                    self.schedule(next, Ev::Fault);
                }
            }
            Ev::Restart { node } => {
                if !self.alive(node) {
                    self.start_member(node);
                }
            }
            Ev::Heal => {
                self.note("heal: links restored, members restarted and resumed; liveness phase".into());
                self.phase = Phase::Liveness;
                self.cut.clear();
                for i in 0..self.members.len() {
                    self.members[i].paused_until_ms = self.members[i].paused_until_ms.min(self.now_ms);
                    if !self.alive(i) {
                        self.start_member(i);
                    }
                }
            }
        }
    }

    /// Member `i` is the first to apply the expiry of `session` (at
    /// `index`, proposed at `proposed_ms`). If it leads and proposed it in
    /// its own term, the session must not have been served shortly before
    /// by a member that followed it then: such a member passes on that it
    /// heard from the session (a touch batch per tick), so the leader's
    /// clock cannot run out before the timeout, once the touch has had time
    /// to arrive (`TOUCH_LAG_MS`: the follower's next tick and the link).
    /// Unless that member was cut off from the leader then, or it or the
    /// leader was paused, crashed or cut off since (the touch may be lost:
    /// the leader rightly knows nothing); the
    /// margin covers the time a member takes to notice that its leader is
    /// gone. Nor may the leader itself serve the session once it has
    /// proposed its close. (A follower may: it resumes sessions on its own,
    /// where ZooKeeper's asks the leader to revalidate them.)
    fn check_expiry(&mut self, i: usize, session: i64, index: u64, proposed_ms: i64) {
        const MARGIN_MS: i64 = 1_000;
        const TOUCH_LAG_MS: i64 = 250;
        let Some(r) = self.members[i].replica.as_ref() else { return };
        let (leader, term) = (i as u64 + 1, r.term());
        if !r.is_leader() || r.entry_term(index) != Some(term) {
            return;
        }
        for c in &self.clients {
            let Some(s) = c.served else { continue };
            if s.session_id != session || s.leader != leader || s.term != term {
                continue;
            }
            if s.at_ms >= proposed_ms {
                if s.member == i {
                    let msg = format!("leader {leader} (term {term}) served session {session:#x} of client {} at {} ms, after proposing its expiry (zxid {index:#x}) at {proposed_ms} ms", c.id, s.at_ms);
                    self.fail(msg);
                    return;
                }
                continue;
            }
            let disturbed = !s.linked || self.members[s.member].disturbed_ms.max(self.members[i].disturbed_ms) >= s.at_ms;
            let lag = if s.member == i { 0 } else { TOUCH_LAG_MS };
            if !disturbed && proposed_ms > s.at_ms + lag && proposed_ms < s.at_ms + c.timeout_ms as i64 - MARGIN_MS {
                let msg = format!(
                    "session {session:#x} of client {} expired (zxid {index:#x}, proposed at {proposed_ms} ms) by leader {leader} (term {term}) only {} ms after member {} following it served the session (timeout {} ms)",
                    c.id,
                    proposed_ms - s.at_ms,
                    s.member + 1,
                    c.timeout_ms
                );
                self.fail(msg);
                return;
            }
        }
    }

    /// Carries out what member `i`'s replica asks, until it has nothing more.
    fn drive(&mut self, i: usize) {
        loop {
            let Some(r) = self.members[i].replica.as_mut() else { return };
            let after = r.applied_index();
            let out = r.poll();
            let upto = r.applied_index();
            let applied = r.take_applied();
            let leader = r.is_leader();
            let term = r.term();
            if leader && !self.members[i].was_leader {
                self.report.leaders += 1;
                self.note(format!("member {} leads (term {term})", i + 1));
            }
            self.members[i].was_leader = leader;
            let from = out.persist.as_ref().and_then(|p| p.snapshot.as_ref()).map_or(after, |s| s.index);
            if upto > from || !applied.is_empty() {
                if let Err(e) = self.checker.applied(i as u64 + 1, from, upto, applied) {
                    self.fail(e);
                }
                for (session, index, wall_ms) in self.checker.take_expiries() {
                    self.note(format!("session {session:#x} expired (zxid {index:#x})"));
                    self.check_expiry(i, session, index, wall_ms - WALL_EPOCH_MS);
                }
            }
            if out.is_empty() {
                return;
            }
            for env in out.messages {
                if let corral::replica::PeerMessage::Raft(m) = &env.msg {
                    if m.get_msg_type() == raft::eraftpb::MessageType::MsgSnapshot {
                        self.note(format!("member {} sends a snapshot at {:#x} to member {}", env.from, m.get_snapshot().get_metadata().index, env.to));
                    }
                }
                self.send(env);
            }
            if let Some(s) = out.persist.as_ref().and_then(|p| p.snapshot.as_ref()) {
                self.note(format!("member {} installs a snapshot at {:#x}", i + 1, s.index));
            }
            if let Some(s) = out.snapshot {
                // Written in the background by the real shell; the log it
                // covers stays until then, so taking it as durable at once
                // loses nothing a crash could not.
                self.members[i].disk.install(&s);
            }
            for d in out.deliveries {
                self.deliver(i, d);
            }
            if let Some(p) = out.persist {
                let number = p.number;
                self.members[i].after_sync.insert(number, out.messages_after_persist);
                self.members[i].unsynced.push_back(p);
                if self.cfg.bug == Some(Bug::LostAck) {
                    // Reported durable before the fsync, which comes much
                    // later: a crash meanwhile loses acknowledged writes.
                    if let Some(r) = self.members[i].replica.as_mut() {
                        r.on_persisted(number);
                    }
                    for env in self.members[i].after_sync.remove(&number).unwrap_or_default() {
                        self.send(env);
                    }
                    let delay = self.rng.gen_range(1..30);
                    let life = self.members[i].life;
                    self.schedule(delay, Ev::DiskCatchUp { node: i, life });
                    continue;
                }
                // The disk syncs in order; the replica may prepare the next
                // ready meanwhile.
                let delay = if self.scripted {
                    self.members[i].sync_ms
                } else if self.rng.gen_bool(0.9) {
                    0
                } else {
                    self.rng.gen_range(1..5)
                };
                let at = (self.now_ms + delay).max(self.members[i].sync_tail_ms);
                self.members[i].sync_tail_ms = at;
                let life = self.members[i].life;
                self.schedule(at - self.now_ms, Ev::Synced { node: i, life, number });
                continue;
            }
        }
    }

    fn synced(&mut self, i: usize, number: u64) {
        let Some(p) = self.members[i].unsynced.pop_front() else { return };
        assert_eq!(p.number, number, "syncs complete in order");
        self.members[i].disk.write(&p);
        if let Some(r) = self.members[i].replica.as_mut() {
            r.on_persisted(number);
        }
        for env in self.members[i].after_sync.remove(&number).unwrap_or_default() {
            self.send(env);
        }
        self.drive(i);
    }

    fn send(&mut self, env: Envelope) {
        let (from, to) = (env.from as usize - 1, env.to as usize - 1);
        if self.cut.contains(&(from, to)) || !self.alive(to) {
            // The transport drops what it cannot send and says so.
            if let Some(r) = self.members[from].replica.as_mut() {
                r.on_unreachable(env.to);
            }
            return;
        }
        let link = *self.link_life.entry((from, to)).or_insert(1);
        let delay = if self.scripted {
            1 + self.slow.get(&(from, to)).copied().unwrap_or(0)
        } else if self.rng.gen_bool(0.95) {
            self.rng.gen_range(0..3)
        } else {
            self.rng.gen_range(3..40)
        };
        let tail = self.link_tail_ms.get(&(from, to)).copied().unwrap_or(0);
        let at = (self.now_ms + delay).max(tail);
        self.link_tail_ms.insert((from, to), at);
        self.schedule(at - self.now_ms, Ev::Deliver { from, to, link, env });
    }

    /// The link between `a` and `b` broke (both directions): what was in
    /// flight is lost and both ends learn of it, as TCP would tell them.
    fn break_link(&mut self, a: usize, b: usize) {
        self.members[a].disturbed_ms = self.now_ms;
        self.members[b].disturbed_ms = self.now_ms;
        for (x, y) in [(a, b), (b, a)] {
            *self.link_life.entry((x, y)).or_insert(1) += 1;
            self.link_tail_ms.remove(&(x, y));
        }
        let now = self.now();
        for (x, y) in [(a, b), (b, a)] {
            if let Some(r) = self.members[x].replica.as_mut() {
                r.on_peer_down(y as u64 + 1, now);
            }
        }
        self.drive(a);
        self.drive(b);
    }

    fn deliver(&mut self, i: usize, d: Delivery) {
        match d {
            Delivery::Reply { conn, .. } | Delivery::Connected { conn, .. } => {
                if let Delivery::Connected { session_id, .. } = &d {
                    if *session_id != 0 {
                        let m = &mut self.members[i];
                        if let Some(old) = m.session_conn.insert(*session_id, conn) {
                            if old != conn {
                                m.conn_session.remove(&old);
                                if let Some(c) = m.conns.remove(&old) {
                                    self.to_client(c, old, Delivery::Close { conn: old });
                                }
                            }
                        }
                        self.members[i].conn_session.insert(conn, *session_id);
                    }
                }
                if let Some(c) = self.members[i].conns.get(&conn).copied() {
                    let session = match &d {
                        Delivery::Connected { session_id, .. } => *session_id,
                        _ => self.members[i].conn_session.get(&conn).copied().unwrap_or(0),
                    };
                    if let (Some(r), true) = (self.members[i].replica.as_ref(), session != 0) {
                        let leader = r.leader_id();
                        // Whether what this member heard can reach the leader at all.
                        let l = leader as usize;
                        let linked = leader != 0 && (l - 1 == i || (!self.cut.contains(&(i, l - 1)) && self.alive(l - 1)));
                        self.clients[c].served = Some(Served { at_ms: self.now_ms, member: i, session_id: session, leader, term: r.term(), linked });
                    }
                    self.to_client(c, conn, d);
                }
            }
            Delivery::Event(e) => {
                if let Some(conn) = self.members[i].session_conn.get(&e.session_id).copied() {
                    if let Some(c) = self.members[i].conns.get(&conn).copied() {
                        self.to_client(c, conn, Delivery::Event(e));
                    }
                }
            }
            Delivery::Close { conn } => self.close_conn(i, conn),
            Delivery::SessionClosed { session_id } => {
                if let Some(conn) = self.members[i].session_conn.get(&session_id).copied() {
                    self.close_conn(i, conn);
                }
            }
            Delivery::LeaderLost | Delivery::Resynced => {
                let conns: Vec<u64> = self.members[i].conns.keys().copied().collect();
                for conn in conns {
                    self.close_conn(i, conn);
                }
            }
        }
    }

    /// The server closes a connection: the client learns it after what was sent before.
    fn close_conn(&mut self, i: usize, conn: u64) {
        if let Some(c) = self.members[i].conns.get(&conn).copied() {
            self.to_client(c, conn, Delivery::Close { conn });
        }
        self.drop_conn(i, conn);
    }

    fn drop_conn(&mut self, i: usize, conn: u64) {
        let m = &mut self.members[i];
        m.conns.remove(&conn);
        if let Some(s) = m.conn_session.remove(&conn) {
            if m.session_conn.get(&s) == Some(&conn) {
                m.session_conn.remove(&s);
                if let Some(r) = m.replica.as_mut() {
                    r.on_disconnect(s);
                }
            }
        }
    }

    fn to_client(&mut self, client: usize, conn: u64, d: Delivery) {
        // Client connections are ordered and fast; their latency is small.
        self.schedule(0, Ev::ToClient { client, conn, d });
    }

    // ---- faults ----

    fn fault(&mut self) {
        let n = self.members.len();
        let i = self.rng.gen_range(0..n);
        match self.rng.gen_range(0..10) {
            0..=2 => {
                // Crash (kill -9): what was not synced is gone.
                if !self.alive(i) {
                    return;
                }
                self.crash(i);
                let down = self.rng.gen_range(50..2_000);
                self.schedule(down, Ev::Restart { node: i });
            }
            9 if self.rng.gen_bool(0.3) => {
                // A member loses its whole disk and comes back empty. Raft
                // (like ZooKeeper) survives a minority of lost disks, so a
                // wipe happens only while every member is up and caught up.
                if !self.fully_redundant() {
                    return;
                }
                self.crash(i);
                self.report.wipes += 1;
                self.note(format!("member {} wiped", i + 1));
                self.members[i].disk = Disk::default();
                let down = self.rng.gen_range(50..2_000);
                self.schedule(down, Ev::Restart { node: i });
            }
            3..=4 => {
                // Isolate one member.
                self.report.partitions += 1;
                self.note(format!("partition: member {} isolated", i + 1));
                for j in 0..n {
                    if j != i {
                        self.cut_link(i, j);
                    }
                }
            }
            5 => {
                // Isolate the leader, if there is one.
                if let Some(l) = (0..n).find(|j| self.members[*j].replica.as_ref().is_some_and(|r| r.is_leader())) {
                    self.report.partitions += 1;
                    self.note(format!("partition: leader {} isolated", l + 1));
                    for j in 0..n {
                        if j != l {
                            self.cut_link(l, j);
                        }
                    }
                }
            }
            6 => {
                // Random halves.
                self.report.partitions += 1;
                let side: Vec<bool> = (0..n).map(|_| self.rng.gen_bool(0.5)).collect();
                self.note(format!("partition: halves {side:?}"));
                for a in 0..n {
                    for b in a + 1..n {
                        if side[a] != side[b] {
                            self.cut_link(a, b);
                        }
                    }
                }
            }
            8 if self.rng.gen_bool(0.3) => {
                // Asymmetric: one direction of one link fails (members use
                // one connection per direction, so this can happen).
                let j = (i + self.rng.gen_range(1..n)) % n;
                self.report.partitions += 1;
                self.note(format!("partition: link {} -> {} cut", i + 1, j + 1));
                if self.cut.insert((i, j)) {
                    self.members[i].disturbed_ms = self.now_ms;
                    self.members[j].disturbed_ms = self.now_ms;
                    *self.link_life.entry((i, j)).or_insert(1) += 1;
                    self.link_tail_ms.remove(&(i, j));
                    let now = self.now();
                    if let Some(r) = self.members[i].replica.as_mut() {
                        r.on_peer_down(j as u64 + 1, now);
                    }
                    if let Some(r) = self.members[j].replica.as_mut() {
                        r.on_peer_down(i as u64 + 1, now);
                    }
                    self.drive(i);
                    self.drive(j);
                }
            }
            7 => {
                // Pause (SIGSTOP): time passes, nothing is processed.
                let until = self.now_ms + self.rng.gen_range(100..3_000);
                self.note(format!("member {} paused until {until}ms", i + 1));
                self.members[i].paused_until_ms = until;
                self.members[i].disturbed_ms = self.now_ms;
            }
            _ => {
                if !self.cut.is_empty() {
                    self.note("links restored".into());
                    self.cut.clear();
                }
            }
        }
    }

    /// Every member up, done recovering and applied up to the leader's commit.
    fn fully_redundant(&self) -> bool {
        let replicas: Vec<&Replica> = self.members.iter().filter_map(|m| m.replica.as_ref()).collect();
        let Some(commit) = replicas.iter().find(|r| r.is_leader()).map(|r| r.commit_index()) else { return false };
        replicas.len() == self.members.len() && replicas.iter().all(|r| !r.is_recovering() && r.applied_index() >= commit)
    }

    fn cut_link(&mut self, a: usize, b: usize) {
        if self.cut.insert((a, b)) | self.cut.insert((b, a)) {
            self.break_link(a, b);
        }
    }

    fn crash(&mut self, i: usize) {
        self.members[i].disturbed_ms = self.now_ms;
        self.report.crashes += 1;
        let lost = self.members[i].unsynced.len();
        self.note(format!("member {} crashes ({lost} unsynced writes lost)", i + 1));
        let m = &mut self.members[i];
        m.replica = None;
        m.life += 1;
        m.unsynced.clear();
        m.after_sync.clear();
        m.paused_until_ms = 0;
        let conns: Vec<(u64, usize)> = std::mem::take(&mut m.conns).into_iter().collect();
        m.session_conn.clear();
        m.conn_session.clear();
        for (conn, c) in conns {
            self.to_client(c, conn, Delivery::Close { conn });
        }
        for j in 0..self.members.len() {
            if j != i {
                self.break_link(i, j);
            }
        }
    }

    // ---- clients ----

    fn client_wake(&mut self, c: usize) {
        let now = self.now_ms;
        match self.clients[c].state.clone() {
            ClientState::Disconnected { retry_at_ms } => {
                if retry_at_ms > now {
                    return;
                }
                let node = self.rng.gen_range(0..self.members.len());
                let conn = self.next_conn;
                self.next_conn += 1;
                let cl = &mut self.clients[c];
                cl.state = ClientState::Connecting { node, conn };
                cl.last_heard_ms = now;
                let req = ConnectRequest {
                    protocol_version: 0,
                    last_zxid_seen: cl.last_zxid,
                    time_out: client::SESSION_TIMEOUT_MS,
                    session_id: cl.session_id,
                    passwd: cl.passwd.clone(),
                    read_only: Some(false),
                };
                let life = self.members[node].life;
                self.schedule(1, Ev::Connect { node, life, conn, client: c, req });
                self.schedule(client::SESSION_TIMEOUT_MS as i64 / 3, Ev::ClientWake { client: c });
            }
            ClientState::Connecting { node, conn } => {
                if now - self.clients[c].last_heard_ms > self.clients[c].timeout_ms as i64 * 2 / 3 {
                    self.client_lost(c, node, conn, "connect timed out");
                } else {
                    self.schedule(client::SESSION_TIMEOUT_MS as i64 / 3, Ev::ClientWake { client: c });
                }
            }
            ClientState::Connected { node, conn } => {
                let cl = &self.clients[c];
                if now - cl.last_heard_ms > cl.timeout_ms as i64 * 2 / 3 {
                    self.client_lost(c, node, conn, "no reply in 2/3 of the session timeout");
                    return;
                }
                if cl.in_flight.len() < client::IN_FLIGHT_MAX {
                    match self.phase {
                        Phase::Liveness if cl.live_writes < 2 => {
                            let req = client::liveness_write(cl, cl.live_writes);
                            self.client_send(c, node, conn, req);
                        }
                        Phase::Liveness => {
                            if now - cl.last_sent_ms > cl.timeout_ms as i64 / 3 {
                                self.client_send(c, node, conn, Request::Ping);
                            }
                        }
                        Phase::Safety => {
                            let req = client::random_request(&mut self.rng, &mut self.clients[c]);
                            self.client_send(c, node, conn, req);
                        }
                    }
                } else if now - cl.last_sent_ms > cl.timeout_ms as i64 / 3 {
                    self.client_send(c, node, conn, Request::Ping);
                }
                let think = self.rng.gen_range(1..25);
                self.schedule(think, Ev::ClientWake { client: c });
            }
        }
    }

    fn client_send(&mut self, c: usize, node: usize, conn: u64, req: Request) {
        // No new request while a liveness write is in flight: one at a time then.
        if self.phase == Phase::Liveness && !self.clients[c].in_flight.is_empty() && !matches!(req, Request::Ping) {
            return;
        }
        let cl = &mut self.clients[c];
        let xid = if matches!(req, Request::Ping) { protocol::codes::xid::PING } else { cl.take_xid() };
        let acked_before = self.checker.acked_upto();
        self.history.invoke(self.now_ms, c, node, self.clients[c].session_id, xid, &req);
        let cl = &mut self.clients[c];
        cl.in_flight.push_back(InFlight { xid, req: req.clone(), invoked_ms: self.now_ms, acked_before });
        cl.last_sent_ms = self.now_ms;
        let life = self.members[node].life;
        // A connection is ordered: every request takes the same 1 ms.
        let delay = 1;
        self.note(format!("client {c} -> member {} xid {xid} {}", node + 1, describe(&req)));
        self.schedule(delay, Ev::Request { node, life, conn, xid, req });
    }

    /// The client gives up on its connection (or learns it closed).
    fn client_lost(&mut self, c: usize, node: usize, conn: u64, why: &str) {
        self.checker.watches_lost(c);
        let cl = &mut self.clients[c];
        let unknown = cl.in_flight.iter().filter(|f| corral::replica::goes_through_log(&f.req)).count();
        self.report.ops_indeterminate += unknown as u64;
        self.history.lost(c, cl.in_flight.drain(..).map(|f| f.xid));
        let backoff = self.rng.gen_range(20..200);
        let cl = &mut self.clients[c];
        cl.state = ClientState::Disconnected { retry_at_ms: self.now_ms + backoff };
        let session = cl.session_id;
        self.note(format!("client {c} (session {session:#x}) leaves member {}: {why}", node + 1));
        let life = self.members[node].life;
        self.schedule(1, Ev::Disconnect { node, life, conn });
        self.schedule(backoff, Ev::ClientWake { client: c });
    }

    fn client_receives(&mut self, c: usize, conn: u64, d: Delivery) {
        let (node, current) = match self.clients[c].state {
            ClientState::Connecting { node, conn: k } | ClientState::Connected { node, conn: k } => (node, k),
            ClientState::Disconnected { .. } => return,
        };
        if current != conn {
            return; // an old connection's leftovers
        }
        self.clients[c].last_heard_ms = self.now_ms;
        match d {
            Delivery::Connected { session_id, timeout_ms, passwd, .. } => {
                let old = self.clients[c].session_id;
                if session_id == 0 {
                    // Expired: start afresh with a new session.
                    self.note(format!("client {c}: session {old:#x} expired"));
                    let cl = &mut self.clients[c];
                    cl.session_id = 0;
                    cl.passwd = vec![0; 16];
                    cl.state = ClientState::Disconnected { retry_at_ms: self.now_ms + 5 };
                    self.schedule(5, Ev::ClientWake { client: c });
                    return;
                }
                if old != 0 && old != session_id {
                    self.fail(format!("client {c} resumed session {old:#x} but got {session_id:#x}"));
                    return;
                }
                let cl = &mut self.clients[c];
                if cl.session_id == 0 {
                    cl.sessions_started += 1;
                }
                cl.session_id = session_id;
                cl.passwd = passwd;
                cl.timeout_ms = timeout_ms;
                cl.state = ClientState::Connected { node, conn };
                self.note(format!("client {c} connected to member {} (session {session_id:#x})", node + 1));
            }
            Delivery::Reply { xid, zxid, err, body, .. } => self.client_reply(c, xid, zxid, err, body),
            Delivery::Event(e) => {
                if let Err(e) = self.checker.watch_event(c, &e.path) {
                    self.fail(e);
                }
            }
            Delivery::Close { .. } => self.client_lost(c, node, conn, "connection closed by the server"),
            Delivery::SessionClosed { .. } | Delivery::LeaderLost | Delivery::Resynced => {}
        }
    }

    fn client_reply(&mut self, c: usize, xid: i32, zxid: i64, err: ErrorCode, body: Response) {
        self.note(format!("client {c} <- xid {xid} zxid {zxid:#x} {err:?}"));
        // Recorded by xid before the simulator's own checks judge the
        // reply (its order, its zxid), so the history holds it whichever
        // check objects.
        self.history.complete(self.now_ms, c, xid, err, &body);
        let Some(f) = self.clients[c].in_flight.pop_front() else {
            self.fail(format!("client {c} got a reply (xid {xid}) with nothing in flight"));
            return;
        };
        if f.xid != xid {
            self.fail(format!("client {c}: reply xid {xid} out of order (expected {})", f.xid));
            return;
        }
        let cl = &mut self.clients[c];
        if zxid < cl.last_zxid {
            let msg = format!("client {c} (session {:#x}): zxid went back from {:#x} to {zxid:#x} (xid {xid})", cl.session_id, cl.last_zxid);
            self.fail(msg);
            return;
        }
        cl.last_zxid = zxid;
        if !matches!(f.req, Request::Ping) {
            self.report.ops_ok += 1;
        }
        if self.phase == Phase::Liveness && matches!(f.req, Request::SetData(_)) && err == ErrorCode::Ok {
            cl.live_writes += 1;
        }
        let session = cl.session_id;
        if matches!(f.req, Request::CloseSession) {
            cl.session_id = 0;
            cl.passwd = vec![0; 16];
        }
        if let Err(e) = self.checker.reply(c, session, xid, &f.req, zxid, err, &body) {
            self.fail(e);
        }
        if self.linearizable {
            if let Err(e) = self.checker.linearizable(c, xid, &f.req, zxid, f.acked_before) {
                self.fail(e);
            }
        }
    }
}

fn describe(req: &Request) -> String {
    match req {
        Request::Create(r) => format!("create {} flags {}", r.path, r.flags),
        Request::SetData(r) => format!("setData {} v{}", r.path, r.version),
        Request::Delete(r) => format!("delete {} v{}", r.path, r.version),
        Request::GetData(r) => format!("getData {}", r.path),
        Request::Exists(r) => format!("exists {}", r.path),
        Request::GetChildren(r) => format!("getChildren {}", r.path),
        Request::Sync(r) => format!("sync {}", r.path),
        other => format!("{:?}", other.op_code()),
    }
}

/// Scripted driving: the commands of `crate::script`, as plain calls.
impl World {
    pub(crate) fn now_ms(&self) -> i64 {
        self.now_ms
    }

    pub(crate) fn violation(&self) -> Option<&str> {
        self.violation.as_deref()
    }

    pub(crate) fn nodes(&self) -> usize {
        self.members.len()
    }

    /// Runs every event due within `ms` and moves the clock to the end.
    pub(crate) fn run_for(&mut self, ms: i64) {
        let end = self.now_ms + ms;
        self.run_while(end, |_| true);
        self.now_ms = self.now_ms.max(end);
    }

    /// Runs events until `done` holds (checked after each) or `max_ms`
    /// passes; the milliseconds taken, `None` if it never held.
    pub(crate) fn run_until(&mut self, max_ms: i64, done: impl Fn(&World) -> bool) -> Option<i64> {
        let start = self.now_ms;
        if done(self) {
            return Some(0);
        }
        let end = start + max_ms;
        let held = self.run_while(end, |w| !done(w));
        if held {
            return Some(self.now_ms - start);
        }
        self.now_ms = self.now_ms.max(end);
        None
    }

    /// Runs events due by `end` while `go` holds; true if it stopped because `go` failed.
    fn run_while(&mut self, end: i64, go: impl Fn(&World) -> bool) -> bool {
        while let Some(entry) = self.queue.first_entry() {
            if entry.key().0 > end {
                return false;
            }
            let ((at, _), ev) = entry.remove_entry();
            self.now_ms = at;
            self.events += 1;
            self.step(ev);
            if !go(self) {
                return true;
            }
        }
        false
    }

    pub(crate) fn knows_leader(&self, i: usize) -> bool {
        self.members[i].replica.as_ref().is_some_and(|r| r.leader_id() != 0)
    }

    pub(crate) fn leader(&self) -> Option<usize> {
        self.members.iter().position(|m| m.replica.as_ref().is_some_and(|r| r.is_leader()))
    }

    /// Every member up and following one leader that has committed all it
    /// proposed (the ensemble's secret included), and applied it all.
    pub(crate) fn all_converged(&self) -> bool {
        let Some(l) = self.leader().and_then(|l| self.members[l].replica.as_ref()) else { return false };
        let (leader, term, commit) = (l.id(), l.term(), l.commit_index());
        l.core().sessions.secret() != 0
            && l.last_index() == commit
            && self.members.iter().all(|m| {
                m.replica.as_ref().is_some_and(|r| r.leader_id() == leader && r.term() == term && r.applied_index() == commit && r.core().last_zxid() == l.core().last_zxid())
            })
    }

    pub(crate) fn script_crash(&mut self, i: usize, wipe: bool) {
        if self.alive(i) {
            self.crash(i);
        }
        if wipe {
            self.note(format!("member {} wiped", i + 1));
            self.members[i].disk = Disk::default();
        }
    }

    pub(crate) fn script_restart(&mut self, i: usize) {
        if !self.alive(i) {
            self.start_member(i);
        }
    }

    /// Cuts every link between members of different groups.
    pub(crate) fn partition(&mut self, groups: &[Vec<usize>]) {
        for (g, a_side) in groups.iter().enumerate() {
            for b_side in &groups[g + 1..] {
                for a in a_side {
                    for b in b_side {
                        self.cut_link(*a, *b);
                    }
                }
            }
        }
    }

    pub(crate) fn heal(&mut self) {
        self.cut.clear();
    }

    pub(crate) fn set_slow(&mut self, from: usize, to: usize, ms: i64) {
        if ms == 0 {
            self.slow.remove(&(from, to));
        } else {
            self.slow.insert((from, to), ms);
        }
    }

    /// Scripted worlds: member `i`'s syncs take `ms` from now on.
    pub(crate) fn set_sync_ms(&mut self, i: usize, ms: i64) {
        self.members[i].sync_ms = ms.max(1);
    }

    pub(crate) fn add_client(&mut self) -> usize {
        let c = self.clients.len();
        self.clients.push(Client::new(c));
        self.schedule(client::SESSION_TIMEOUT_MS as i64 / 3, Ev::ClientWake { client: c });
        c
    }

    pub(crate) fn client(&self, c: usize) -> &Client {
        &self.clients[c]
    }

    /// The client connects to member `node`, resuming its session if it has one.
    pub(crate) fn script_connect(&mut self, c: usize, node: usize) {
        let conn = self.next_conn;
        self.next_conn += 1;
        let cl = &mut self.clients[c];
        cl.state = ClientState::Connecting { node, conn };
        cl.last_heard_ms = self.now_ms;
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: cl.last_zxid,
            time_out: client::SESSION_TIMEOUT_MS,
            session_id: cl.session_id,
            passwd: cl.passwd.clone(),
            read_only: Some(false),
        };
        let life = self.members[node].life;
        self.schedule(1, Ev::Connect { node, life, conn, client: c, req });
    }

    /// Sends a request on the client's connection; its xid, or `None` if it has none.
    pub(crate) fn script_send(&mut self, c: usize, req: Request) -> Option<i32> {
        let ClientState::Connected { node, conn } = self.clients[c].state else { return None };
        self.client_send(c, node, conn, req);
        Some(self.clients[c].next_xid - 1)
    }

    /// The client drops its connection (its session lives on until it expires).
    pub(crate) fn script_disconnect(&mut self, c: usize) {
        if let ClientState::Connecting { node, conn } | ClientState::Connected { node, conn } = self.clients[c].state {
            self.script_lost(c, node, conn);
        }
    }

    fn script_lost(&mut self, c: usize, node: usize, conn: u64) {
        self.checker.watches_lost(c);
        let lost: Vec<i32> = self.clients[c].in_flight.drain(..).filter(|f| !matches!(f.req, Request::Ping)).map(|f| f.xid).collect();
        self.history.lost(c, lost.iter().copied());
        for xid in lost {
            self.inbox.entry(c).or_default().push(format!("xid {xid}: no reply (connection lost)"));
        }
        self.clients[c].state = ClientState::Disconnected { retry_at_ms: i64::MAX };
        let life = self.members[node].life;
        self.schedule(1, Ev::Disconnect { node, life, conn });
    }

    /// A scripted client pings while connected, as a real one does.
    fn script_wake(&mut self, c: usize) {
        if let ClientState::Connected { node, conn } = self.clients[c].state {
            let cl = &self.clients[c];
            if cl.in_flight.is_empty() && self.now_ms - cl.last_sent_ms >= cl.timeout_ms as i64 / 3 {
                self.client_send(c, node, conn, Request::Ping);
            }
        }
        self.schedule(100, Ev::ClientWake { client: c });
    }

    fn script_receives(&mut self, c: usize, conn: u64, d: Delivery) {
        let node = match self.clients[c].state {
            ClientState::Connecting { node, conn: k } | ClientState::Connected { node, conn: k } if k == conn => node,
            _ => return, // an old connection's leftovers
        };
        self.clients[c].last_heard_ms = self.now_ms;
        let line = match d {
            Delivery::Connected { session_id: 0, .. } => {
                self.clients[c].session_id = 0;
                self.clients[c].passwd = vec![0; 16];
                Some("session expired: refused".to_string())
            }
            Delivery::Connected { session_id, timeout_ms, passwd, .. } => {
                let cl = &mut self.clients[c];
                let resumed = cl.session_id == session_id;
                if cl.session_id == 0 {
                    cl.sessions_started += 1;
                }
                cl.session_id = session_id;
                cl.passwd = passwd;
                cl.timeout_ms = timeout_ms;
                cl.state = ClientState::Connected { node, conn };
                Some(format!("connected to member {} ({} session)", node + 1, if resumed { "resumed" } else { "new" }))
            }
            Delivery::Reply { xid, zxid, err, body, .. } => {
                let req = self.clients[c].in_flight.front().map(|f| f.req.clone());
                self.client_reply(c, xid, zxid, err, body.clone());
                match req {
                    Some(Request::Ping) | None => None,
                    Some(req) => Some(format!("xid {xid} {}: {err:?} at zxid {zxid:#x}{}", describe(&req), render(&body))),
                }
            }
            Delivery::Event(e) => {
                if let Err(f) = self.checker.watch_event(c, &e.path) {
                    self.fail(f);
                }
                Some(format!("event {:?} {}", e.event_type, e.path))
            }
            Delivery::Close { .. } => {
                self.inbox.entry(c).or_default().push(format!("connection to member {} closed", node + 1));
                self.script_lost(c, node, conn);
                None
            }
            Delivery::SessionClosed { .. } | Delivery::LeaderLost | Delivery::Resynced => None,
        };
        if let Some(line) = line {
            self.inbox.entry(c).or_default().push(line);
        }
    }

    /// One line per member: role, term, leader, last log index, commit, applied, sessions.
    pub(crate) fn member_lines(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| match &m.replica {
                None => format!("member {}: down", m.id),
                Some(r) if r.is_recovering() => format!("member {}: recovering (learning the term)", m.id),
                Some(r) => format!(
                    "member {}: {} term {} leader {} log {:#x} commit {:#x} applied {:#x} sessions {}",
                    m.id,
                    if r.is_leader() { "leader" } else { "follower" },
                    r.term(),
                    r.leader_id(),
                    r.last_index(),
                    r.commit_index(),
                    r.applied_index(),
                    r.core().sessions.len()
                ),
            })
            .collect()
    }

    /// The tree of each running member: (member, path, node).
    pub(crate) fn cores(&self) -> Vec<(usize, &corral::core::Core)> {
        self.members.iter().enumerate().filter_map(|(i, m)| m.replica.as_ref().map(|r| (i, r.core()))).collect()
    }

    /// The end-of-run checks, now: acknowledged writes in the log, reads
    /// checked, every member equal to the reference.
    pub(crate) fn script_check(&mut self) -> Result<(), String> {
        let cores: Vec<&corral::core::Core> = self.members.iter().filter_map(|m| m.replica.as_ref().map(|r| r.core())).collect();
        self.checker.finish(&cores)
    }
}

fn render(body: &Response) -> String {
    match body {
        Response::Create(r) => format!(" path {}", r.path),
        Response::GetData(r) => format!(" data {:?} version {}", String::from_utf8_lossy(r.data.as_deref().unwrap_or_default()), r.stat.version),
        Response::Stat(s) => format!(" version {}", s.version),
        Response::GetChildren(r) => format!(" children {:?}", r.children),
        _ => String::new(),
    }
}
