//! Corral: a ZooKeeper-compatible coordination server.
//!
//! - [`core`]: the deterministic state machine (tree, sessions, watches,
//!   ACLs, prep and apply). No I/O, no clock.
//! - [`replica`]: the sans-IO replica driver (raft-rs and the core).
//! - [`store`]: the durable raft log (a write-ahead log) and snapshots (sled).
//! - [`net`]: the tokio shell: client connections, TLS, four-letter words,
//!   and the processor that drives the core in log order.
//! - [`config`]: `zoo.cfg` parsing.
//! - [`embed`]: a server ([`Server`]) or a whole ensemble ([`Cluster`])
//!   inside a Rust process.
//!
//! # The path of one create
//!
//! `net::client` decodes a frame into a [`protocol::Request`]; the processor
//! hands it to [`core::Core::handle`], which prepares a write into txn ops
//! (or answers a read at once); the processor wraps the ops into a txn with
//! the next zxid, [`core::Core::apply`] executes it, the store makes the
//! batch durable, and only then do the reply and watch events go out. The
//! same steps, driven by hand, with no socket, disk or clock:
//!
//! ```
//! use corral::core::{reply, txn::Txn, Caller, Connect, Core, CoreConfig, Handled};
//! use protocol::{Acl, ConnectRequest, CreateRequest, ErrorCode, GetDataRequest, Id, Request, Response};
//!
//! let mut core = Core::new(CoreConfig::default(), /* secret */ 7, /* first session id */ 1);
//! let now_ms = 0; // time is an input
//!
//! // A client connects: a new session is a txn too.
//! let Connect::New { session_id, op, .. } = core.connect(&ConnectRequest { time_out: 30_000, ..Default::default() }, now_ms)
//! else { unreachable!() };
//! let txn = Txn { zxid: 1, session_id, cxid: 0, time_ms: now_ms, ops: vec![op] };
//! core.apply(&txn);
//!
//! // It creates /app: prep decides, apply executes.
//! let caller = Caller { session_id, auth: &[] };
//! let open = vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }];
//! let create = Request::Create(CreateRequest { path: "/app".into(), data: Some(b"v1".to_vec()), acl: open, flags: 0 });
//! // The zxid is the txn's log position, known before it is proposed.
//! let Handled::Write(ops) = core.handle(caller, &create, 2) else { unreachable!() };
//! let txn = Txn { zxid: 2, session_id, cxid: 1, time_ms: /* the leader's wall clock */ 1_700_000_000_000, ops };
//! let applied = core.apply(&txn); // a replica, or a restart replaying the log, does the same
//! let (err, body) = reply(&create, &applied.outcomes);
//! assert_eq!(err, ErrorCode::Ok);
//! assert!(matches!(body, Response::Create(ref c) if c.path == "/app"));
//!
//! // A read is answered from the tree, in order after the write.
//! let get = Request::GetData(GetDataRequest { path: "/app".into(), watch: true });
//! let Handled::Reply { err, body: Response::GetData(data), .. } = core.handle(caller, &get, 3) else { unreachable!() };
//! assert_eq!((err, data.data.as_deref()), (ErrorCode::Ok, Some(&b"v1"[..])));
//! assert_eq!(data.stat.czxid, txn.zxid);
//!
//! // A failed write is still a txn (it takes a zxid and keeps session order).
//! let Handled::Write(ops) = core.handle(caller, &create, 3) else { unreachable!() };
//! let txn = Txn { zxid: 3, session_id, cxid: 2, time_ms: 1_700_000_000_001, ops };
//! assert_eq!(reply(&create, &core.apply(&txn).outcomes).0, ErrorCode::NodeExists);
//! ```

pub mod config;
pub mod core;
pub mod embed;
pub mod net;
pub mod replica;
pub mod store;
pub mod testbug;

pub use embed::{Cluster, ClusterBuilder, Server, ServerBuilder};

/// The README's Rust examples, compiled and run as doc tests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// docs/embedding.md's examples, compiled (not run) as doc tests.
#[doc = include_str!("../../docs/embedding.md")]
#[cfg(doctest)]
pub struct EmbeddingDocDoctests;
