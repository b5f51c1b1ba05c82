//! Transactions: what prep decides and apply executes. Self-contained (final
//! sequential path, time, versions, ephemeral owner) so that every replica
//! applying the same txns reaches the same tree. Encoded with prost for the
//! log.

/// One logged transaction, with its zxid and the session that caused it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Txn {
    #[prost(int64, tag = "1")]
    pub zxid: i64,
    #[prost(int64, tag = "2")]
    pub session_id: i64,
    #[prost(int32, tag = "3")]
    pub cxid: i32,
    /// Wall-clock milliseconds chosen by prep: ctime/mtime come from here,
    /// never from the applying replica's clock.
    #[prost(int64, tag = "4")]
    pub time_ms: i64,
    /// One op for a plain request; several for a multi (all-or-nothing).
    #[prost(message, repeated, tag = "5")]
    pub ops: Vec<TxnOp>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TxnOp {
    #[prost(oneof = "Op", tags = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10")]
    pub op: Option<Op>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Op {
    #[prost(message, tag = "1")]
    CreateSession(CreateSessionTxn),
    #[prost(message, tag = "2")]
    CloseSession(CloseSessionTxn),
    #[prost(message, tag = "3")]
    Create(CreateTxn),
    #[prost(message, tag = "4")]
    Delete(DeleteTxn),
    #[prost(message, tag = "5")]
    SetData(SetDataTxn),
    #[prost(message, tag = "6")]
    SetAcl(SetAclTxn),
    #[prost(message, tag = "7")]
    Check(CheckTxn),
    /// A failed request (or a failed multi's op): it changes nothing but
    /// still takes a zxid and a place in the log, as in ZooKeeper.
    #[prost(message, tag = "8")]
    Error(ErrorTxn),
    /// Server-initiated removal of an empty container or expired TTL node;
    /// applies only if the node is still empty.
    #[prost(message, tag = "9")]
    DeleteContainer(DeleteTxn),
    /// The secret that keys session passwords, proposed once by the first
    /// leader so that every member derives the same passwords (a session
    /// resumes on any member).
    #[prost(message, tag = "10")]
    InitSecret(InitSecretTxn),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InitSecretTxn {
    #[prost(uint64, tag = "1")]
    pub secret: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateSessionTxn {
    #[prost(int64, tag = "1")]
    pub session_id: i64,
    #[prost(int32, tag = "2")]
    pub timeout_ms: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CloseSessionTxn {
    #[prost(int64, tag = "1")]
    pub session_id: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct AclEntry {
    #[prost(int32, tag = "1")]
    pub perms: i32,
    #[prost(string, tag = "2")]
    pub scheme: String,
    #[prost(string, tag = "3")]
    pub id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CreateTxn {
    /// Final path, with any sequential suffix already appended.
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
    #[prost(message, repeated, tag = "3")]
    pub acl: Vec<AclEntry>,
    /// Session id for ephemerals; the container/TTL markers otherwise (see `tree::owner`).
    #[prost(int64, tag = "4")]
    pub ephemeral_owner: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DeleteTxn {
    #[prost(string, tag = "1")]
    pub path: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SetDataTxn {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(bytes = "vec", optional, tag = "2")]
    pub data: Option<Vec<u8>>,
    /// The node's version after the change.
    #[prost(int32, tag = "3")]
    pub version: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SetAclTxn {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(message, repeated, tag = "2")]
    pub acl: Vec<AclEntry>,
    /// The node's aversion after the change.
    #[prost(int32, tag = "3")]
    pub version: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckTxn {
    #[prost(string, tag = "1")]
    pub path: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ErrorTxn {
    #[prost(int32, tag = "1")]
    pub err: i32,
}

impl TxnOp {
    pub fn new(op: Op) -> Self {
        TxnOp { op: Some(op) }
    }
}

impl AclEntry {
    pub fn from_acl(a: &protocol::Acl) -> Self {
        AclEntry { perms: a.perms, scheme: a.id.scheme.clone(), id: a.id.id.clone() }
    }

    pub fn to_acl(&self) -> protocol::Acl {
        protocol::Acl { perms: self.perms, id: protocol::Id { scheme: self.scheme.clone(), id: self.id.clone() } }
    }
}
