//! A history: every operation a client attempted, with when it was invoked,
//! when (if ever) its result came back, and what that result was. One JSON
//! object a line, so a run's history can be read, diffed and re-checked
//! (`corral-jepsen check HISTORY`) without the harness.
//!
//! One op type serves every workload: `f` says what the op did (register
//! ops; a set's add; a counter's increment; a unique id's generation; a
//! lock's acquire and release; a queue's put, take and ack; a watcher's
//! reads and events; a session's create, check and close), `value` its
//! number and `values` what a
//! set's read returned.

use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};

/// The process id of the setup writes (before any worker starts).
pub const SETUP_PROCESS: u64 = 1_000_000;
/// The process id of a workload's final read, made after the workers have
/// stopped and every fault has been undone.
pub const FINAL_PROCESS: u64 = 1_000_001;

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// getData: `value` is what it returned (`None`: no such node). A set's
    /// read (getChildren): `values` holds the elements. A queue's drain
    /// ends with its stats: `value` the depth, `values` [enqueued_total,
    /// removed_total, redeliveries].
    Read,
    /// setData without a version: `value` is what it wrote.
    Write,
    /// setData with the version a read returned: `expected` is the value that
    /// read saw, `value` what it writes. Writes carry unique values, so the
    /// value identifies the version.
    Cas,
    /// Set: create the element `value` (a child of the set's node).
    Add,
    /// Counter: add one, by a CAS loop (getData, setData with its version,
    /// again on BadVersion). `expected` is the value the last read saw,
    /// `value` the value it wrote.
    Incr,
    /// Unique ids: create a sequential node; `value` is its sequence number.
    Generate,
    /// Lock: take the lock (an ephemeral sequential node, lowest holds);
    /// ok when this client knows it holds it. `value` is its node's number.
    Acquire,
    /// Lock: delete the node; ok proves the node, so the session, lived until then.
    Release,
    /// Queue: put the message whose payload is `value` (keyed by it; not
    /// in the total-queue workload).
    Put,
    /// Queue: take a message; `value` is the payload delivered (a take
    /// that found none is `fail`; one that erred is `info`, no payload,
    /// and `expected` how many messages it asked for). A batch take is
    /// one op per message delivered, with the batch's times.
    Take,
    /// Queue: ack the delivery of payload `value` (`fail`: the claim was lost).
    Ack,
    /// Watch: getData with a watch; `value` is the data, `expected` its version.
    Observe,
    /// Watch: the watch set when the process last read the key fired
    /// (invoked when it was set, completed when it fired); `error` names
    /// any event but NodeDataChanged.
    Event,
    /// Session: create the ephemeral node `value` in the op's session.
    Create,
    /// Session: exists on node `value`; `expected` is its ephemeralOwner
    /// (none: the node was absent).
    Check,
    /// Session: the session closed (`error: SessionExpired`: it expired).
    Close,
}

/// How an operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It took effect (a read: it returned `value`).
    Ok,
    /// It did not take effect. For a CAS: the compare failed (BadVersion),
    /// which also says the register did not hold `expected` then.
    Fail,
    /// Unknown (connection lost, timed out, the run ended): it may have
    /// taken effect at any time after its invocation, or never.
    Info,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history file (assigned when recorded).
    pub index: usize,
    /// The worker; one operation at a time per process.
    pub process: u64,
    /// The member (1-based) the worker is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<u32>,
    /// The session id the operation went out on, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    pub key: String,
    pub f: Kind,
    #[serde(default)]
    pub value: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<i64>,
    /// What a set's read returned (sorted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<i64>>,
    /// Monotonic nanoseconds since the test began.
    pub invoke_ns: u64,
    /// `None` for an operation whose result never came (`Info`).
    #[serde(default)]
    pub complete_ns: Option<u64>,
    #[serde(rename = "type")]
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Op {
    /// An op with no member, session or error, for hand-written histories.
    #[allow(clippy::too_many_arguments)]
    pub fn new(process: u64, key: &str, f: Kind, value: Option<i64>, expected: Option<i64>, invoke_ns: u64, complete_ns: Option<u64>, outcome: Outcome) -> Op {
        Op { index: 0, process, member: None, session: None, key: key.to_owned(), f, value, expected, values: None, invoke_ns, complete_ns, outcome, error: None }
    }

    pub fn describe(&self) -> String {
        let v = |x: Option<i64>| x.map(|x| x.to_string()).unwrap_or_else(|| "nil".into());
        let what = match self.f {
            Kind::Read => format!("read -> {}", v(self.value)),
            Kind::Write => format!("write {}", v(self.value)),
            Kind::Cas => format!("cas {} -> {}", v(self.expected), v(self.value)),
            Kind::Add => format!("add {}", v(self.value)),
            Kind::Incr => format!("incr {} -> {}", v(self.expected), v(self.value)),
            Kind::Generate => format!("generate -> {}", v(self.value)),
            Kind::Acquire => format!("acquire {}", v(self.value)),
            Kind::Release => format!("release {}", v(self.value)),
            Kind::Put => format!("put {}", v(self.value)),
            Kind::Take => format!("take -> {}", v(self.value)),
            Kind::Ack => format!("ack {}", v(self.value)),
            Kind::Observe => format!("observe -> {} (version {})", v(self.value), v(self.expected)),
            Kind::Event => "watch fired".to_string(),
            Kind::Create => format!("create e{} in {}", v(self.value), self.session.as_deref().unwrap_or("?")),
            Kind::Check => format!("check e{} -> owner {}", v(self.value), self.expected.map(|o| format!("{o:#x}")).unwrap_or_else(|| "none (absent)".into())),
            Kind::Close => format!("close {}", self.session.as_deref().unwrap_or("?")),
        };
        let what = match (&self.values, self.f) {
            (Some(vs), Kind::Read) => format!("read -> {} elements", vs.len()),
            _ => what,
        };
        let end = match self.complete_ns {
            Some(c) => format!("{:.3}s", c as f64 / 1e9),
            None => "never".into(),
        };
        let member = self.member.map(|m| format!(" member {m}")).unwrap_or_default();
        format!(
            "#{} p{}{member} {} {what} {:?} [{:.3}s .. {end}]{}",
            self.index,
            self.process,
            self.key,
            self.outcome,
            self.invoke_ns as f64 / 1e9,
            self.error.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
        )
    }
}

/// Writes ops as JSON lines.
pub fn write_jsonl(ops: &[Op], mut out: impl Write) -> std::io::Result<()> {
    for op in ops {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Reads JSON lines (blank lines skipped); errors name the line.
pub fn read_jsonl(input: impl BufRead) -> Result<Vec<Op>, String> {
    let mut ops = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        ops.push(serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    Ok(ops)
}
