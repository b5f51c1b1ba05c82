//! Checkers for recorded histories, one per workload, each a pure function
//! of the ops: the Jepsen harness (`corral-jepsen`) checks the histories of
//! real ensembles with them, the simulator (`corral-sim`) the histories of
//! its simulated clients, so both hold Corral to one definition of each
//! guarantee. The register's: linearizability of registers (read, write,
//! compare-and-set), checked per key — a history is linearizable iff each
//! key's sub-history is (Herlihy and Wing's locality, Porcupine's
//! P-compositionality), which turns one search exponential in the number of
//! keys into one small search per key; with reads not checked for
//! linearizability, ZooKeeper's per-session read model (`read_model`). The others: `set`, `counter`,
//! `unique_ids`, `lock`, `queue`, `total_queue`, `watch`, `session` (each module says what
//! it checks).

pub mod brute;
pub mod counter;
pub mod gen;
pub mod history;
pub mod linear;
pub mod lock;
pub mod model;
pub mod queue;
pub mod read_model;
pub mod session;
pub mod set;
pub mod total_queue;
pub mod unique_ids;
pub mod watch;

use history::Op;
pub use model::Options;
use serde::Serialize;
use std::collections::BTreeMap;

/// What a history was recorded by, so what it is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    Register,
    Set,
    Counter,
    UniqueIds,
    Lock,
    Queue,
    TotalQueue,
    Watch,
    Session,
}

impl Workload {
    pub const ALL: [Workload; 9] = [Workload::Register, Workload::Set, Workload::Counter, Workload::UniqueIds, Workload::Lock, Workload::Queue, Workload::TotalQueue, Workload::Watch, Workload::Session];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Set => "set",
            Workload::Counter => "counter",
            Workload::UniqueIds => "unique-ids",
            Workload::Lock => "lock",
            Workload::Queue => "queue",
            Workload::TotalQueue => "total-queue",
            Workload::Watch => "watch",
            Workload::Session => "session",
        }
    }

    /// The workload whose ops a history holds (register if only reads,
    /// writes and CAS).
    pub fn infer(history: &[Op]) -> Workload {
        use history::Kind;
        for o in history {
            match o.f {
                Kind::Add => return Workload::Set,
                Kind::Incr => return Workload::Counter,
                Kind::Generate => return Workload::UniqueIds,
                Kind::Acquire | Kind::Release => return Workload::Lock,
                Kind::Put | Kind::Take | Kind::Ack if o.key == total_queue::KEY => return Workload::TotalQueue,
                Kind::Put | Kind::Take | Kind::Ack => return Workload::Queue,
                Kind::Observe | Kind::Event => return Workload::Watch,
                Kind::Create | Kind::Check | Kind::Close => return Workload::Session,
                Kind::Read | Kind::Write | Kind::Cas => {}
            }
        }
        Workload::Register
    }
}

impl std::str::FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Workload, String> {
        Workload::ALL.into_iter().find(|w| w.name() == s).ok_or_else(|| {
            format!("unknown workload {s:?} ({})", Workload::ALL.map(Workload::name).join(", "))
        })
    }
}

/// A workload's verdict; serialized as the workload's own report.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Checked {
    Register(Report),
    Set(set::Report),
    Counter(counter::Report),
    UniqueIds(unique_ids::Report),
    Lock(lock::Report),
    Queue(queue::Report),
    TotalQueue(total_queue::Report),
    Watch(watch::Report),
    Session(session::Report),
}

impl Checked {
    /// Whether the ops already prove a violation when the final read did
    /// not come (a run's outage can be the bug's doing). Only checkers
    /// whose every finding stands without the final read say so; the
    /// others' missing final read would read as everything lost.
    pub fn proven_without_final_read(&self) -> bool {
        match self {
            Checked::Session(r) => r.violated(),
            _ => false,
        }
    }

    pub fn valid(&self) -> bool {
        match self {
            Checked::Register(r) => r.valid,
            Checked::Set(r) => r.valid,
            Checked::Counter(r) => r.valid,
            Checked::UniqueIds(r) => r.valid,
            Checked::Lock(r) => r.valid,
            Checked::Queue(r) => r.valid,
            Checked::TotalQueue(r) => r.valid,
            Checked::Watch(r) => r.valid,
            Checked::Session(r) => r.valid,
        }
    }

    /// One line: what was checked.
    pub fn summary(&self) -> String {
        match self {
            Checked::Register(r) => format!("checked {} ops on {} keys (reads {})", r.checked_ops, r.keys, if r.reads_checked { "linearizable" } else { "checked per session: sequential consistency" }),
            Checked::Set(r) => r.summary(),
            Checked::Counter(r) => r.summary(),
            Checked::UniqueIds(r) => r.summary(),
            Checked::Lock(r) => r.summary(),
            Checked::Queue(r) => r.summary(),
            Checked::TotalQueue(r) => r.summary(),
            Checked::Watch(r) => r.summary(),
            Checked::Session(r) => r.summary(),
        }
    }

    /// What is wrong, when it is not valid.
    pub fn explain(&self) -> Option<String> {
        if self.valid() {
            return None;
        }
        Some(match self {
            Checked::Register(r) => r.explain().unwrap_or_default(),
            Checked::Set(r) => r.explain(),
            Checked::Counter(r) => r.explain(),
            Checked::UniqueIds(r) => r.explain(),
            Checked::Lock(r) => r.explain(),
            Checked::Queue(r) => r.explain(),
            Checked::TotalQueue(r) => r.explain(),
            Checked::Watch(r) => r.explain(),
            Checked::Session(r) => r.explain(),
        })
    }
}

/// Checks a history as `workload` records it. `opts.reads`: whether reads
/// are held to linearizability (register, counter).
pub fn check_workload(workload: Workload, history: &[Op], opts: Options) -> Checked {
    match workload {
        Workload::Register => Checked::Register(check(history, opts)),
        Workload::Set => Checked::Set(set::check(history)),
        Workload::Counter => Checked::Counter(counter::check(history, opts.reads)),
        Workload::UniqueIds => Checked::UniqueIds(unique_ids::check(history)),
        Workload::Lock => Checked::Lock(lock::check(history)),
        Workload::Queue => Checked::Queue(queue::check(history)),
        Workload::TotalQueue => Checked::TotalQueue(total_queue::check(history)),
        Workload::Watch => Checked::Watch(watch::check(history)),
        Workload::Session => Checked::Session(session::check(history)),
    }
}

/// The verdict on a whole history.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub valid: bool,
    pub ops: usize,
    /// Ops the search considered (the others say nothing: failed or
    /// unanswered reads, failed writes, and reads when they are not checked).
    pub checked_ops: usize,
    pub keys: usize,
    pub reads_checked: bool,
    /// The first key (in key order) that does not linearize.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub violation: Option<Violation>,
    /// With reads not checked for linearizability: the first read that
    /// breaks ZooKeeper's per-session read model (`read_model`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_violation: Option<read_model::Violation>,
    /// Keys whose search gave up before deciding (only with a budget:
    /// `check_within`); nothing is known of them either way.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub undecided: Vec<String>,
}

impl Report {
    /// What is wrong, when it is not valid.
    pub fn explain(&self) -> Option<String> {
        self.violation.as_ref().map(Violation::explain).or_else(|| self.read_violation.as_ref().map(read_model::Violation::explain))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Violation {
    pub key: String,
    /// The op that cannot be linearized, as recorded.
    pub op: Op,
    /// The last ops of the longest linearization found before it got stuck.
    pub linearized_before: Vec<Op>,
    /// What the register could hold at that point.
    pub model_states: Vec<Option<i64>>,
    /// Ops of the key invoked around the stuck op (by invocation time).
    pub window: Vec<Op>,
}

impl Violation {
    pub fn explain(&self) -> String {
        let v = |x: &Option<i64>| x.map(|x| x.to_string()).unwrap_or_else(|| "nil".into());
        let mut s = format!("key {}: no linearization places\n  {}\n", self.key, self.op.describe());
        s += &format!(
            "  the register could hold only {} there, after:\n",
            self.model_states.iter().map(v).collect::<Vec<_>>().join(" or ")
        );
        for op in &self.linearized_before {
            s += &format!("    {}\n", op.describe());
        }
        s += "  ops of this key around it:\n";
        for op in &self.window {
            let mark = if op.index == self.op.index { ">>" } else { "  " };
            s += &format!("  {mark}{}\n", op.describe());
        }
        s
    }
}

/// How many ops before and after the stuck one a violation shows.
const WINDOW: usize = 6;

/// Checks a history for linearizability, key by key.
pub fn check(history: &[Op], opts: Options) -> Report {
    check_within(history, opts, usize::MAX)
}

/// `check`, with each key's search bounded (`linear::check_within`): a
/// key it gives up on is listed in `undecided`, not held against the history.
pub fn check_within(history: &[Op], opts: Options, max_configurations: usize) -> Report {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    let mut checked_ops = 0;
    for op in history.iter().filter(|o| model::included(o, opts)) {
        by_key.entry(&op.key).or_default().push(op);
        checked_ops += 1;
    }
    let keys = history.iter().map(|o| o.key.as_str()).collect::<std::collections::BTreeSet<_>>().len();
    let mut violation = None;
    let mut undecided = Vec::new();
    for (key, ops) in &by_key {
        let stuck = match linear::check_within(ops, max_configurations) {
            Ok(()) => continue,
            Err(None) => {
                undecided.push(key.to_string());
                continue;
            }
            Err(Some(stuck)) => stuck,
        };
        let op = ops[stuck.op];
        let mut all: Vec<&Op> = history.iter().filter(|o| o.key == *key).collect();
        all.sort_by_key(|o| o.invoke_ns);
        let at = all.iter().position(|o| std::ptr::eq(*o, op)).unwrap_or(0);
        let window = all[at.saturating_sub(WINDOW)..(at + WINDOW + 1).min(all.len())].iter().map(|o| (*o).clone()).collect();
        violation = Some(Violation {
            key: key.to_string(),
            op: op.clone(),
            linearized_before: stuck.prefix.iter().map(|&i| ops[i].clone()).collect(),
            model_states: stuck.states,
            window,
        });
        break;
    }
    // Reads held to linearizability imply the read model; otherwise it is
    // what ZooKeeper promises of them.
    let read_violation = if opts.reads { None } else { read_model::check(history) };
    Report { valid: violation.is_none() && read_violation.is_none(), ops: history.len(), checked_ops, keys, reads_checked: opts.reads, violation, read_violation, undecided }
}

#[cfg(test)]
mod tests;
