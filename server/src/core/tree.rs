//! The data tree: znodes, their stats, and the indexes apply keeps beside
//! them (ephemerals by session, containers, TTL nodes).
//!
//! Only `apply` mutates it, and each mutation asserts what prep guaranteed
//! (the parent exists, the node does not, ...): a violation is a bug in prep
//! or a diverged replica, so it panics with the path instead of guessing.

use std::collections::{BTreeMap, BTreeSet};

use protocol::codes::perms;
use protocol::{Acl, Id, Stat};

use super::path;

/// Special `ephemeral_owner` values, as ZooKeeper's `EphemeralType`.
pub mod owner {
    /// A container node (`EphemeralType.CONTAINER`).
    pub const CONTAINER: i64 = i64::MIN;
    /// High byte of a TTL node's owner; the low 40 bits are the TTL in ms.
    const EXTENDED_MASK: i64 = 0xff00_0000_0000_0000u64 as i64;
    const EXTENDED_TYPE_MASK: i64 = 0x00ff_ff00_0000_0000;
    /// The largest TTL a node can have, in milliseconds.
    pub const TTL_MAX_MS: i64 = 0x0000_00ff_ffff_ffff;

    pub fn ttl(ttl_ms: i64) -> i64 {
        debug_assert!(ttl_ms > 0 && ttl_ms <= TTL_MAX_MS);
        EXTENDED_MASK | ttl_ms
    }

    /// The TTL of a TTL node's owner value.
    pub fn ttl_ms(owner: i64) -> Option<i64> {
        (owner != CONTAINER && owner & EXTENDED_MASK == EXTENDED_MASK && owner & EXTENDED_TYPE_MASK == 0)
            .then_some(owner & TTL_MAX_MS)
    }

    /// Whether `owner` names a session (an ordinary ephemeral).
    pub fn is_session(owner: i64) -> bool {
        owner != 0 && owner != CONTAINER && ttl_ms(owner).is_none()
    }
}

/// One znode. `cversion` here counts child *creates*, as ZooKeeper's
/// `StatPersisted`; clients see `2 * creates - children` (see `stat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub data: Option<Vec<u8>>,
    pub acl: Vec<Acl>,
    pub czxid: i64,
    pub mzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub version: i32,
    pub cversion: i32,
    pub aversion: i32,
    pub ephemeral_owner: i64,
    pub pzxid: i64,
    pub children: BTreeSet<String>,
}

impl Node {
    fn new(data: Option<Vec<u8>>, acl: Vec<Acl>, owner: i64, zxid: i64, time_ms: i64) -> Node {
        Node {
            data,
            acl,
            czxid: zxid,
            mzxid: zxid,
            ctime: time_ms,
            mtime: time_ms,
            version: 0,
            cversion: 0,
            aversion: 0,
            ephemeral_owner: owner,
            pzxid: zxid,
            children: BTreeSet::new(),
        }
    }

    /// The Stat a client sees (`DataNode.copyStat`): cversion counts creates
    /// and deletes, and containers/TTL nodes show no ephemeral owner.
    pub fn stat(&self) -> Stat {
        let num_children = self.children.len() as i32;
        Stat {
            czxid: self.czxid,
            mzxid: self.mzxid,
            ctime: self.ctime,
            mtime: self.mtime,
            version: self.version,
            cversion: self.cversion.wrapping_mul(2).wrapping_sub(num_children),
            aversion: self.aversion,
            ephemeral_owner: if owner::is_session(self.ephemeral_owner) { self.ephemeral_owner } else { 0 },
            data_length: self.data.as_ref().map_or(0, |d| d.len() as i32),
            num_children,
            pzxid: self.pzxid,
        }
    }

    pub fn is_container(&self) -> bool {
        self.ephemeral_owner == owner::CONTAINER
    }
}

/// The ACL `world:anyone` with every permission.
pub fn open_acl() -> Vec<Acl> {
    vec![Acl { perms: perms::ALL, id: Id { scheme: "world".into(), id: "anyone".into() } }]
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataTree {
    nodes: BTreeMap<String, Node>,
    /// Session id → paths of its ephemerals.
    ephemerals: BTreeMap<i64, BTreeSet<String>>,
    /// Paths of container and TTL nodes, the candidates for server-side deletion.
    expirable: BTreeSet<String>,
}

impl Default for DataTree {
    fn default() -> Self {
        Self::new()
    }
}

impl DataTree {
    /// A fresh tree as ZooKeeper starts one: `/`, `/zookeeper`,
    /// `/zookeeper/quota` and `/zookeeper/config`, all at zxid 0 and added
    /// without counting as child creates (so `/` shows cversion -1).
    pub fn new() -> DataTree {
        let mut nodes = BTreeMap::new();
        let mut root = Node::new(Some(vec![]), open_acl(), 0, 0, 0);
        root.children.insert("zookeeper".into());
        let mut zk = Node::new(Some(vec![]), open_acl(), 0, 0, 0);
        zk.children.insert("config".into());
        zk.children.insert("quota".into());
        let read_only = vec![Acl { perms: perms::READ, id: Id { scheme: "world".into(), id: "anyone".into() } }];
        nodes.insert("/".into(), root);
        nodes.insert("/zookeeper".into(), zk);
        nodes.insert("/zookeeper/quota".into(), Node::new(Some(vec![]), open_acl(), 0, 0, 0));
        nodes.insert("/zookeeper/config".into(), Node::new(Some(vec![]), read_only, 0, 0, 0));
        DataTree { nodes, ephemerals: BTreeMap::new(), expirable: BTreeSet::new() }
    }

    /// Rebuilds a tree (children sets and indexes) from its nodes, as loaded
    /// from a snapshot. Panics on a node whose parent is missing.
    pub fn from_nodes(mut nodes: BTreeMap<String, Node>) -> DataTree {
        assert!(nodes.contains_key("/"), "snapshot without a root");
        let paths: Vec<String> = nodes.keys().filter(|p| p.as_str() != "/").cloned().collect();
        let mut ephemerals: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
        let mut expirable = BTreeSet::new();
        for n in nodes.values_mut() {
            n.children.clear();
        }
        for p in paths {
            let owner = nodes[&p].ephemeral_owner;
            let parent = nodes.get_mut(path::parent(&p)).unwrap_or_else(|| panic!("snapshot: {p} without its parent"));
            parent.children.insert(path::name(&p).to_owned());
            if owner::is_session(owner) {
                ephemerals.entry(owner).or_default().insert(p);
            } else if owner != 0 {
                expirable.insert(p);
            }
        }
        DataTree { nodes, ephemerals, expirable }
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub fn nodes(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.nodes.iter()
    }

    pub fn ephemerals(&self, session_id: i64) -> impl Iterator<Item = &String> {
        self.ephemerals.get(&session_id).into_iter().flatten()
    }

    pub fn ephemeral_count(&self) -> usize {
        self.ephemerals.values().map(BTreeSet::len).sum()
    }

    pub fn expirable(&self) -> impl Iterator<Item = (&String, &Node)> {
        self.expirable.iter().map(|p| (p, &self.nodes[p]))
    }

    /// Number of nodes below `path` (not counting it), as ZooKeeper's
    /// `getAllChildrenNumber`.
    pub fn descendant_count(&self, path: &str) -> usize {
        if path == "/" {
            return self.nodes.len() - 1;
        }
        let lo = format!("{path}/");
        let hi = format!("{path}0"); // '0' is the byte after '/'
        self.nodes.range(lo..hi).count()
    }

    /// Total bytes of node data, for `mntr`.
    pub fn data_bytes(&self) -> usize {
        self.nodes.iter().map(|(p, n)| p.len() + n.data.as_ref().map_or(0, Vec::len)).sum()
    }

    pub fn create(&mut self, path: &str, data: Option<Vec<u8>>, acl: Vec<Acl>, owner: i64, zxid: i64, time_ms: i64) -> Stat {
        assert!(!self.nodes.contains_key(path), "apply: create of existing node {path} at zxid {zxid:#x}");
        let parent_path = path::parent(path);
        let parent = self.nodes.get_mut(parent_path).unwrap_or_else(|| panic!("apply: create {path} without parent at zxid {zxid:#x}"));
        assert!(!owner::is_session(parent.ephemeral_owner), "apply: child {path} of an ephemeral");
        parent.children.insert(path::name(path).to_owned());
        parent.cversion = parent.cversion.wrapping_add(1);
        parent.pzxid = zxid;
        let node = Node::new(data, acl, owner, zxid, time_ms);
        let stat = node.stat();
        self.nodes.insert(path.to_owned(), node);
        if owner::is_session(owner) {
            self.ephemerals.entry(owner).or_default().insert(path.to_owned());
        } else if owner != 0 {
            self.expirable.insert(path.to_owned());
        }
        stat
    }

    pub fn delete(&mut self, path: &str, zxid: i64) {
        let node = self.nodes.remove(path).unwrap_or_else(|| panic!("apply: delete of missing node {path} at zxid {zxid:#x}"));
        assert!(node.children.is_empty(), "apply: delete of non-empty node {path} at zxid {zxid:#x}");
        let parent = self.nodes.get_mut(path::parent(path)).expect("a node's parent exists");
        parent.children.remove(path::name(path));
        if zxid > parent.pzxid {
            parent.pzxid = zxid;
        }
        if owner::is_session(node.ephemeral_owner) {
            let set = self.ephemerals.get_mut(&node.ephemeral_owner).expect("ephemeral index holds every ephemeral");
            set.remove(path);
            if set.is_empty() {
                self.ephemerals.remove(&node.ephemeral_owner);
            }
        } else if node.ephemeral_owner != 0 {
            self.expirable.remove(path);
        }
    }

    pub fn set_data(&mut self, path: &str, data: Option<Vec<u8>>, version: i32, zxid: i64, time_ms: i64) -> Stat {
        let node = self.nodes.get_mut(path).unwrap_or_else(|| panic!("apply: setData of missing node {path}"));
        node.data = data;
        node.version = version;
        node.mzxid = zxid;
        node.mtime = time_ms;
        node.stat()
    }

    pub fn set_acl(&mut self, path: &str, acl: Vec<Acl>, aversion: i32) -> Stat {
        let node = self.nodes.get_mut(path).unwrap_or_else(|| panic!("apply: setACL of missing node {path}"));
        node.acl = acl;
        node.aversion = aversion;
        node.stat()
    }
}

impl DataTree {
    /// Test hook: sets a node's create counter (to reach the int32 wrap).
    #[cfg(test)]
    pub fn force_cversion_for_test(&mut self, path: &str, creates: i32) {
        self.nodes.get_mut(path).expect("node").cversion = creates;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_tree_matches_zookeeper() {
        let t = DataTree::new();
        let root = t.get("/").unwrap().stat();
        assert_eq!(root.cversion, -1);
        assert_eq!(root.num_children, 1);
        assert_eq!(t.descendant_count("/"), 3);
    }

    #[test]
    fn cversion_counts_creates_and_deletes_but_stores_creates() {
        let mut t = DataTree::new();
        t.create("/a", None, open_acl(), 0, 5, 1);
        t.create("/a/x", Some(b"1".to_vec()), open_acl(), 0, 6, 2);
        t.delete("/a/x", 7);
        let a = t.get("/a").unwrap();
        assert_eq!(a.cversion, 1);
        assert_eq!(a.stat().cversion, 2);
        assert_eq!(a.stat().pzxid, 7);
        assert_eq!(t.descendant_count("/a"), 0);
    }

    #[test]
    fn owner_markers() {
        assert_eq!(owner::ttl_ms(owner::ttl(1000)), Some(1000));
        assert!(!owner::is_session(owner::ttl(5)));
        assert!(!owner::is_session(owner::CONTAINER));
        assert!(owner::is_session(0x0100_0000_0000_0001));
        assert_eq!(owner::ttl_ms(owner::CONTAINER), None);
    }
}
