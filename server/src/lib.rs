//! Corral: a ZooKeeper-compatible coordination server.
//!
//! - [`core`]: the deterministic state machine (tree, sessions, watches,
//!   ACLs, prep and apply). No I/O, no clock.
//! - [`store`]: the durable txn log and snapshots in sled.
//! - [`net`]: the tokio shell: client connections, four-letter words, and
//!   the processor that drives the core in log order.
//! - [`config`]: `zoo.cfg` parsing.

pub mod config;
pub mod core;
pub mod net;
pub mod store;
