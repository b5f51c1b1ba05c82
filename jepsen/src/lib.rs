//! The Jepsen-style harness: starts real ensembles, injects faults, records
//! histories and checks them (`docs/jepsen.md`).

/// The checkers live in their own crate (`check/`), shared with the
/// simulator; re-exported so `crate::check::...` paths stay as they were.
pub use corral_check as check;
pub mod cluster;
pub mod grudge;
pub mod netns;
pub mod lazyfs;
pub mod report;
pub mod runner;
pub mod serve;
pub mod workload;
