//! The Jepsen-style harness: starts real ensembles, injects faults, records
//! histories and checks them. It arrives with its own issue; this crate holds
//! its place in the workspace so the layout matches `docs/architecture.md`.
