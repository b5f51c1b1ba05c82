//! Snapshots: the core's replicated state as plain records, so the store can
//! persist it and truncate the log, and a restarted (or, later, lagging)
//! replica can start from it instead of replaying every txn.

use std::collections::BTreeMap;

use super::session::Sessions;
use super::tree::{DataTree, Node};
use super::txn::AclEntry;
use super::{Core, CoreConfig};

/// One znode, with its persisted stat (cversion counts creates).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NodeRecord {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
    #[prost(message, repeated, tag = "3")]
    pub acl: Vec<AclEntry>,
    #[prost(int64, tag = "4")]
    pub czxid: i64,
    #[prost(int64, tag = "5")]
    pub mzxid: i64,
    #[prost(int64, tag = "6")]
    pub ctime: i64,
    #[prost(int64, tag = "7")]
    pub mtime: i64,
    #[prost(int32, tag = "8")]
    pub version: i32,
    #[prost(int32, tag = "9")]
    pub cversion: i32,
    #[prost(int32, tag = "10")]
    pub aversion: i32,
    #[prost(int64, tag = "11")]
    pub ephemeral_owner: i64,
    #[prost(int64, tag = "12")]
    pub pzxid: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionRecord {
    #[prost(int64, tag = "1")]
    pub session_id: i64,
    #[prost(int32, tag = "2")]
    pub timeout_ms: i32,
}

/// The state as of `zxid`: applying the log's later txns to it gives the current state.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Snapshot {
    #[prost(int64, tag = "1")]
    pub zxid: i64,
    #[prost(message, repeated, tag = "2")]
    pub nodes: Vec<NodeRecord>,
    #[prost(message, repeated, tag = "3")]
    pub sessions: Vec<SessionRecord>,
    /// The replicated secret that keys session passwords (0: not yet set).
    #[prost(uint64, tag = "4")]
    pub secret: u64,
}

impl Core {
    /// The replicated state (tree and session table), not watches or deadlines.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            zxid: self.last_zxid,
            nodes: self
                .tree
                .nodes()
                .map(|(path, n)| NodeRecord {
                    path: path.clone(),
                    data: n.data.clone(),
                    acl: n.acl.iter().map(AclEntry::from_acl).collect(),
                    czxid: n.czxid,
                    mzxid: n.mzxid,
                    ctime: n.ctime,
                    mtime: n.mtime,
                    version: n.version,
                    cversion: n.cversion,
                    aversion: n.aversion,
                    ephemeral_owner: n.ephemeral_owner,
                    pzxid: n.pzxid,
                })
                .collect(),
            sessions: self
                .sessions
                .iter()
                .map(|(id, s)| SessionRecord { session_id: *id, timeout_ms: s.timeout_ms })
                .collect(),
            secret: self.sessions.secret(),
        }
    }

    /// A core holding `snap`'s state (`secret` only for a snapshot that
    /// has none). Panics if the snapshot is not a tree (a node without its
    /// parent): that is corruption, not a user error.
    pub fn restore(cfg: CoreConfig, secret: u64, first_session_id: i64, snap: &Snapshot) -> Core {
        let secret = if snap.secret != 0 { snap.secret } else { secret };
        let mut core = Core::new(cfg, secret, first_session_id);
        let mut nodes = BTreeMap::new();
        for r in &snap.nodes {
            let node = Node {
                data: r.data.clone(),
                acl: r.acl.iter().map(AclEntry::to_acl).collect(),
                czxid: r.czxid,
                mzxid: r.mzxid,
                ctime: r.ctime,
                mtime: r.mtime,
                version: r.version,
                cversion: r.cversion,
                aversion: r.aversion,
                ephemeral_owner: r.ephemeral_owner,
                pzxid: r.pzxid,
                children: Default::default(),
            };
            nodes.insert(r.path.clone(), node);
        }
        core.tree = DataTree::from_nodes(nodes);
        let mut sessions = Sessions::new(secret, first_session_id);
        for s in &snap.sessions {
            sessions.open(s.session_id, s.timeout_ms);
        }
        core.sessions = sessions;
        core.last_zxid = snap.zxid;
        core
    }
}
