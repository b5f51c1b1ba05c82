//! The register model: one value per key, `None` before anything is written.

use super::history::{Kind, Op, Outcome};

pub type State = Option<i64>;

/// Which ops a check considers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Check reads too. Off for ZooKeeper's default (sequentially
    /// consistent) reads, which may be stale by contract: then only writes
    /// and CAS must linearize.
    pub reads: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { reads: true }
    }
}

/// Whether `op` constrains the search. A failed read or write did nothing
/// and says nothing; a read without a result says nothing either.
pub fn included(op: &Op, opts: Options) -> bool {
    match (op.f, op.outcome) {
        (Kind::Read, Outcome::Ok) => opts.reads,
        (Kind::Read, _) => false,
        (Kind::Write, Outcome::Fail) => false,
        (Kind::Write | Kind::Cas, _) => true,
        // Another workload's ops: not register ops.
        (Kind::Add | Kind::Incr | Kind::Generate | Kind::Acquire | Kind::Release | Kind::Put | Kind::Take | Kind::Ack | Kind::Observe | Kind::Event | Kind::Create | Kind::Check | Kind::Close, _) => false,
    }
}

/// Whether `op` may be left out of a linearization (it may never have happened).
pub fn optional(op: &Op) -> bool {
    op.outcome == Outcome::Info
}

/// Whether `op`, when it takes effect, leaves the register as it was: an
/// ok read, a failed CAS.
pub fn preserves(op: &Op) -> bool {
    matches!((op.f, op.outcome), (Kind::Read, Outcome::Ok) | (Kind::Cas, Outcome::Fail))
}

/// The states the register may be in after `op` takes effect in `state`
/// (empty: it cannot take effect there). At most two.
pub fn step(op: &Op, state: State) -> impl Iterator<Item = State> {
    let applied = match (op.f, op.outcome) {
        (Kind::Read, _) => (state == op.value).then_some(state),
        (Kind::Write, _) => Some(op.value),
        (Kind::Cas, Outcome::Fail) => (state != op.expected).then_some(state),
        (Kind::Cas, _) => (state == op.expected).then_some(op.value),
        (Kind::Add | Kind::Incr | Kind::Generate | Kind::Acquire | Kind::Release | Kind::Put | Kind::Take | Kind::Ack | Kind::Observe | Kind::Event | Kind::Create | Kind::Check | Kind::Close, _) => None,
    };
    // An indeterminate write may also have done nothing.
    let skipped = (op.outcome == Outcome::Info).then_some(state);
    applied.into_iter().chain(skipped.filter(|s| Some(*s) != applied))
}
