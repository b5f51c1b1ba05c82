//! Prep: the only place that decides. A write request is checked against the
//! tree plus every change that is proposed but not yet applied, and plus the
//! changes of earlier ops of the same multi (ZooKeeper's `outstandingChanges`
//! of `ChangeRecord`s), and becomes a self-contained txn, or an error txn. User errors are data here, not Rust errors: a failed request still
//! takes a zxid and a log slot so replies keep session order.
//!
//! Check order follows `PrepRequestProcessor` so that a request that breaks
//! several rules fails with the same code as on ZooKeeper.

use std::collections::{BTreeMap, BTreeSet};

use protocol::codes::perms;
use protocol::{Acl, CreateMode, ErrorCode, Id, MultiOp};

use super::acl;
use super::path;
use super::tree::{owner, DataTree};
use super::txn::*;

/// What prep needs to know of a node, current as of the ops before it.
#[derive(Debug, Clone)]
struct Record {
    version: i32,
    aversion: i32,
    /// Child creates, for the sequential suffix.
    cversion: i32,
    children: usize,
    ephemeral_owner: i64,
    acl: Vec<Acl>,
}

/// What the proposed-but-unapplied txns will leave behind, per path: prep of
/// the next request reads through it, so two in-flight `create /x` cannot
/// both succeed and a sequential suffix is never handed out twice. Applying
/// a txn forgets the changes it made; losing leadership forgets them all
/// (the proposals may never commit).
#[derive(Debug, Default, Clone)]
pub struct Outstanding {
    /// path → (zxid of the latest proposed txn that changed it, the record after it; `None`: deleted).
    changes: BTreeMap<String, (i64, Option<Record>)>,
    /// zxid → the paths its txn changed, so applying it can forget them.
    by_zxid: BTreeMap<i64, Vec<String>>,
    /// Sessions with a proposed close → the zxid of that close.
    closing: BTreeMap<i64, i64>,
}

impl Outstanding {
    /// Forgets what the txns up to `zxid` changed: the tree has it now.
    pub fn applied(&mut self, zxid: i64) {
        let rest = self.by_zxid.split_off(&(zxid + 1));
        for (_, paths) in std::mem::replace(&mut self.by_zxid, rest) {
            for p in paths {
                if self.changes.get(&p).is_some_and(|(z, _)| *z <= zxid) {
                    self.changes.remove(&p);
                }
            }
        }
        self.closing.retain(|_, z| *z > zxid);
    }

    /// Forgets everything (leadership lost: the proposals may never commit).
    pub fn clear(&mut self) {
        *self = Outstanding::default();
    }

    /// Paths with a proposed, unapplied change.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.closing.is_empty()
    }

    pub fn is_closing(&self, session_id: i64) -> bool {
        self.closing.contains_key(&session_id)
    }

    pub fn is_changing(&self, path: &str) -> bool {
        self.changes.contains_key(path)
    }

    fn commit(&mut self, zxid: i64, scratch: BTreeMap<String, Option<Record>>) {
        assert!(self.by_zxid.last_key_value().map_or(true, |(z, _)| *z < zxid), "outstanding: zxid {zxid:#x} not after the last proposed");
        let paths: Vec<String> = scratch.keys().cloned().collect();
        for (p, r) in scratch {
            self.changes.insert(p, (zxid, r));
        }
        if !paths.is_empty() {
            self.by_zxid.insert(zxid, paths);
        }
    }
}

/// The tree as seen after the outstanding txns and the earlier ops of the
/// request being prepped.
struct Overlay<'a> {
    tree: &'a DataTree,
    outstanding: &'a Outstanding,
    /// This request's own changes, kept apart until it is known to succeed.
    changes: BTreeMap<String, Option<Record>>,
}

impl<'a> Overlay<'a> {
    fn new(tree: &'a DataTree, outstanding: &'a Outstanding) -> Self {
        Overlay { tree, outstanding, changes: BTreeMap::new() }
    }

    fn get(&self, path: &str) -> Option<Record> {
        if let Some(change) = self.changes.get(path) {
            return change.clone();
        }
        if let Some((_, change)) = self.outstanding.changes.get(path) {
            return change.clone();
        }
        self.tree.get(path).map(|n| Record {
            version: n.version,
            aversion: n.aversion,
            cversion: n.cversion,
            children: n.children.len(),
            ephemeral_owner: n.ephemeral_owner,
            acl: n.acl.clone(),
        })
    }

    fn require(&self, path: &str) -> Result<Record, ErrorCode> {
        self.get(path).ok_or(ErrorCode::NoNode)
    }

    fn put(&mut self, path: &str, record: Option<Record>) {
        self.changes.insert(path.to_owned(), record);
    }

    /// Removes `path` (known to exist) and counts it out of its parent.
    fn remove(&mut self, path: &str) {
        let parent_path = path::parent(path);
        if let Some(mut parent) = self.get(parent_path) {
            parent.children = parent.children.saturating_sub(1);
            self.put(parent_path, Some(parent));
        }
        self.put(path, None);
    }
}

/// Who is asking: the session and the ids its connection has authenticated.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub session_id: i64,
    pub auth: &'a [Id],
}

/// Limits and switches prep enforces.
#[derive(Debug, Clone)]
pub struct PrepConfig {
    /// `extendedTypesEnabled`: TTL nodes are refused (UNIMPLEMENTED) without it.
    pub extended_types: bool,
}

/// A write request in the shape prep works on.
pub enum Write<'a> {
    Create { req: &'a protocol::CreateRequest, container: bool },
    CreateTtl(&'a protocol::CreateTtlRequest),
    Delete(&'a protocol::DeleteRequest),
    SetData(&'a protocol::SetDataRequest),
    SetAcl(&'a protocol::SetAclRequest),
    Check(&'a protocol::CheckVersionRequest),
    Multi(&'a [MultiOp]),
    /// The session's end (by the client or by expiry): its ephemerals go.
    CloseSession,
}

fn check_version(current: i32, expected: i32) -> Result<i32, ErrorCode> {
    if expected != -1 && expected != current {
        return Err(ErrorCode::BadVersion);
    }
    Ok(current.wrapping_add(1))
}

#[allow(clippy::too_many_arguments)]
fn prep_create(
    o: &mut Overlay,
    cfg: &PrepConfig,
    caller: Caller,
    path: &str,
    data: &Option<Vec<u8>>,
    acl_in: &[Acl],
    flags: i32,
    ttl: Option<i64>,
    container_op: bool,
) -> Result<Op, ErrorCode> {
    let mode = CreateMode::from_i32(flags).ok_or(ErrorCode::BadArguments)?;
    if mode.is_ttl() && !cfg.extended_types {
        return Err(ErrorCode::Unimplemented);
    }
    // EphemeralType.validateTTL: a TTL mode needs a TTL in range, other modes none.
    match (mode.is_ttl(), ttl) {
        (true, Some(t)) if t > 0 && t <= owner::TTL_MAX_MS => {}
        (false, None) => {}
        (false, Some(t)) if t < 0 => {}
        _ => return Err(ErrorCode::BadArguments),
    }
    if container_op && !mode.is_container() {
        return Err(ErrorCode::BadArguments);
    }
    path::validate(path, mode.is_sequential())?;
    let acl = acl::fixup(acl_in, caller.auth)?;
    if path == "/" {
        return Err(ErrorCode::NodeExists);
    }
    // A sequential path may end in '/': its parent is what precedes the suffix.
    let probe = if mode.is_sequential() { format!("{path}0") } else { path.to_owned() };
    let parent_path = path::parent(&probe).to_owned();
    let mut parent = o.require(&parent_path)?;
    acl::check(&parent.acl, perms::CREATE, caller.auth)?;
    let final_path = if mode.is_sequential() { format!("{path}{:010}", parent.cversion) } else { path.to_owned() };
    path::validate(&final_path, false)?;
    if o.get(&final_path).is_some() {
        return Err(ErrorCode::NodeExists);
    }
    if owner::is_session(parent.ephemeral_owner) {
        return Err(ErrorCode::NoChildrenForEphemerals);
    }
    // PrepRequestProcessor checks the session first; a closing session's
    // ephemeral would outlive it.
    if mode.is_ephemeral() && o.outstanding.is_closing(caller.session_id) {
        return Err(ErrorCode::SessionExpired);
    }
    let ephemeral_owner = if mode.is_ephemeral() {
        caller.session_id
    } else if mode.is_container() {
        owner::CONTAINER
    } else if mode.is_ttl() {
        owner::ttl(ttl.expect("validated above"))
    } else {
        0
    };
    parent.cversion = parent.cversion.wrapping_add(1);
    parent.children += 1;
    o.put(&parent_path, Some(parent));
    o.put(
        &final_path,
        Some(Record { version: 0, aversion: 0, cversion: 0, children: 0, ephemeral_owner, acl: acl.clone() }),
    );
    Ok(Op::Create(CreateTxn {
        path: final_path,
        data: data.clone(),
        acl: acl.iter().map(AclEntry::from_acl).collect(),
        ephemeral_owner,
    }))
}

fn prep_delete(o: &mut Overlay, caller: Caller, path: &str, version: i32) -> Result<Op, ErrorCode> {
    path::validate(path, false)?;
    // DataTree.isSpecialPath: the root and ZooKeeper's own nodes cannot be deleted.
    if matches!(path, "/" | "/zookeeper" | "/zookeeper/quota" | "/zookeeper/config") {
        return Err(ErrorCode::BadArguments);
    }
    let parent_path = path::parent(path);
    let parent = o.require(parent_path)?;
    acl::check(&parent.acl, perms::DELETE, caller.auth)?;
    let node = o.require(path)?;
    check_version(node.version, version)?;
    if node.children > 0 {
        return Err(ErrorCode::NotEmpty);
    }
    o.remove(path);
    Ok(Op::Delete(DeleteTxn { path: path.to_owned() }))
}

fn prep_set_data(o: &mut Overlay, caller: Caller, req: &protocol::SetDataRequest) -> Result<Op, ErrorCode> {
    path::validate(&req.path, false)?;
    let mut node = o.require(&req.path)?;
    acl::check(&node.acl, perms::WRITE, caller.auth)?;
    let version = check_version(node.version, req.version)?;
    node.version = version;
    o.put(&req.path, Some(node));
    Ok(Op::SetData(SetDataTxn { path: req.path.clone(), data: req.data.clone(), version }))
}

fn prep_set_acl(o: &mut Overlay, caller: Caller, req: &protocol::SetAclRequest) -> Result<Op, ErrorCode> {
    path::validate(&req.path, false)?;
    let acl = acl::fixup(&req.acl, caller.auth)?;
    let mut node = o.require(&req.path)?;
    acl::check(&node.acl, perms::ADMIN, caller.auth)?;
    let version = check_version(node.aversion, req.version)?;
    node.aversion = version;
    node.acl = acl.clone();
    o.put(&req.path, Some(node));
    Ok(Op::SetAcl(SetAclTxn { path: req.path.clone(), acl: acl.iter().map(AclEntry::from_acl).collect(), version }))
}

fn prep_check(o: &mut Overlay, caller: Caller, path: &str, version: i32) -> Result<Op, ErrorCode> {
    path::validate(path, false)?;
    let node = o.require(path)?;
    acl::check(&node.acl, perms::READ, caller.auth)?;
    check_version(node.version, version)?;
    Ok(Op::Check(CheckTxn { path: path.to_owned() }))
}

fn prep_one(o: &mut Overlay, cfg: &PrepConfig, caller: Caller, w: &Write) -> Result<Op, ErrorCode> {
    match w {
        Write::Create { req, container } => {
            prep_create(o, cfg, caller, &req.path, &req.data, &req.acl, req.flags, None, *container)
        }
        Write::CreateTtl(req) => {
            prep_create(o, cfg, caller, &req.path, &req.data, &req.acl, req.flags, Some(req.ttl), false)
        }
        Write::Delete(req) => prep_delete(o, caller, &req.path, req.version),
        Write::SetData(req) => prep_set_data(o, caller, req),
        Write::SetAcl(req) => prep_set_acl(o, caller, req),
        Write::Check(req) => prep_check(o, caller, &req.path, req.version),
        Write::CloseSession => Ok(prep_close_session(o, caller.session_id)),
        Write::Multi(_) => unreachable!("multi is flattened by prep"),
    }
}

/// The session's ephemerals, applied or proposed, are gone after its close
/// (`PrepRequestProcessor`'s closeSession change records).
fn prep_close_session(o: &mut Overlay, session_id: i64) -> Op {
    let mut ephemerals: BTreeSet<String> = o.tree.ephemerals(session_id).cloned().collect();
    ephemerals.extend(
        o.outstanding
            .changes
            .iter()
            .filter(|(_, (_, r))| r.as_ref().is_some_and(|r| r.ephemeral_owner == session_id))
            .map(|(p, _)| p.clone()),
    );
    for p in ephemerals {
        if o.get(&p).is_some_and(|r| r.ephemeral_owner == session_id) {
            o.remove(&p);
        }
    }
    Op::CloseSession(CloseSessionTxn { session_id })
}

/// A server-initiated delete of an empty container or expired TTL node.
/// `None` if a proposed change already touches it (it is re-examined once
/// that is applied).
pub fn prep_delete_container(tree: &DataTree, outstanding: &mut Outstanding, path: &str, zxid: i64) -> Option<TxnOp> {
    if outstanding.is_changing(path) || outstanding.changes.contains_key(path::parent(path)) {
        return None;
    }
    let mut o = Overlay::new(tree, outstanding);
    o.get(path)?;
    o.remove(path);
    let scratch = o.changes;
    outstanding.commit(zxid, scratch);
    Some(TxnOp::new(Op::DeleteContainer(DeleteTxn { path: path.to_owned() })))
}

fn multi_op_write(op: &MultiOp) -> Option<Write<'_>> {
    Some(match op {
        MultiOp::Create(r) | MultiOp::Create2(r) => Write::Create { req: r, container: false },
        MultiOp::CreateContainer(r) => Write::Create { req: r, container: true },
        MultiOp::CreateTtl(r) => Write::CreateTtl(r),
        MultiOp::Delete(r) => Write::Delete(r),
        MultiOp::SetData(r) => Write::SetData(r),
        MultiOp::Check(r) => Write::Check(r),
        MultiOp::GetChildren(_) | MultiOp::GetData(_) => return None,
    })
}

fn error_op(code: ErrorCode) -> TxnOp {
    TxnOp::new(Op::Error(ErrorTxn { err: code.as_i32() }))
}

/// Prepares `w`, to be logged as the txn at `zxid`, into its ops, and
/// records what it changes in `outstanding` under that zxid. A failed plain
/// request is one error op; a failed multi is all error ops: OK before the
/// failing op, its code for it, RUNTIMEINCONSISTENCY after it
/// (`DataTree.processTxn`). A failure changes nothing.
pub fn prep(tree: &DataTree, outstanding: &mut Outstanding, cfg: &PrepConfig, caller: Caller, w: &Write, zxid: i64) -> Vec<TxnOp> {
    let mut o = Overlay::new(tree, outstanding);
    let ops = match w {
        Write::Multi(ops) => {
            let mut out = Vec::with_capacity(ops.len());
            for (i, op) in ops.iter().enumerate() {
                let result = match multi_op_write(op) {
                    Some(w) => prep_one(&mut o, cfg, caller, &w),
                    None => Err(ErrorCode::BadArguments),
                };
                match result {
                    Ok(op) => out.push(TxnOp::new(op)),
                    Err(code) => {
                        let mut failed: Vec<TxnOp> = (0..i).map(|_| error_op(ErrorCode::Ok)).collect();
                        failed.push(error_op(code));
                        failed.extend((i + 1..ops.len()).map(|_| error_op(ErrorCode::RuntimeInconsistency)));
                        return failed;
                    }
                }
            }
            out
        }
        w => match prep_one(&mut o, cfg, caller, w) {
            Ok(op) => vec![TxnOp::new(op)],
            Err(code) => return vec![error_op(code)],
        },
    };
    let scratch = o.changes;
    outstanding.commit(zxid, scratch);
    if matches!(w, Write::CloseSession) {
        outstanding.closing.insert(caller.session_id, zxid);
    }
    ops
}
