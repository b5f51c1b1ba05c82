//! The Jepsen-style harness: starts real ensembles, injects faults, records
//! histories and checks them (`docs/jepsen.md`).

pub mod check;
pub mod cluster;
pub mod grudge;
pub mod netns;
pub mod lazyfs;
pub mod report;
pub mod runner;
pub mod serve;
pub mod workload;
