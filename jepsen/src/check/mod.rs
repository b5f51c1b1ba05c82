//! Checkers for recorded histories. Today: linearizability of registers
//! (read, write, compare-and-set), checked per key — a history is
//! linearizable iff each key's sub-history is (Herlihy and Wing's locality,
//! Porcupine's P-compositionality), which turns one search exponential in
//! the number of keys into one small search per key.

pub mod brute;
pub mod gen;
pub mod history;
pub mod linear;
pub mod model;

use history::Op;
pub use model::Options;
use serde::Serialize;
use std::collections::BTreeMap;

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
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    let mut checked_ops = 0;
    for op in history.iter().filter(|o| model::included(o, opts)) {
        by_key.entry(&op.key).or_default().push(op);
        checked_ops += 1;
    }
    let keys = history.iter().map(|o| o.key.as_str()).collect::<std::collections::BTreeSet<_>>().len();
    let mut violation = None;
    for (key, ops) in &by_key {
        if let Err(stuck) = linear::check(ops) {
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
    }
    Report { valid: violation.is_none(), ops: history.len(), checked_ops, keys, reads_checked: opts.reads, violation }
}

#[cfg(test)]
mod tests;
