//! Property tests of the core: random operation sequences against a tiny
//! in-memory model of ZooKeeper's semantics, and replay determinism (the
//! same txns on a fresh core give the same tree).

use std::collections::BTreeMap;

use proptest::prelude::*;
use protocol::{Acl, CreateRequest, DeleteRequest, ErrorCode, Id, Request, Response, SetDataRequest};

use super::txn::Txn;
use super::*;

#[derive(Debug, Clone)]
enum ModelOp {
    Create { path: String, ephemeral: bool, sequential: bool, data: Vec<u8> },
    Delete { path: String, version: i32 },
    SetData { path: String, version: i32, data: Vec<u8> },
    GetData { path: String },
    CloseSession,
}

#[derive(Debug, Clone, PartialEq)]
struct ModelNode {
    data: Vec<u8>,
    version: i32,
    ephemeral: bool,
    creates: i32,
}

fn path_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 1..4).prop_map(|s| format!("/{}", s.join("/")))
}

fn op_strategy() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        4 => (path_strategy(), any::<bool>(), prop::bool::weighted(0.2), proptest::collection::vec(any::<u8>(), 0..4))
            .prop_map(|(path, ephemeral, sequential, data)| ModelOp::Create { path, ephemeral, sequential, data }),
        2 => (path_strategy(), -1..2i32).prop_map(|(path, version)| ModelOp::Delete { path, version }),
        2 => (path_strategy(), -1..2i32, proptest::collection::vec(any::<u8>(), 0..4))
            .prop_map(|(path, version, data)| ModelOp::SetData { path, version, data }),
        1 => path_strategy().prop_map(|path| ModelOp::GetData { path }),
        1 => Just(ModelOp::CloseSession),
    ]
}

fn parent(p: &str) -> String {
    super::path::parent(p).to_owned()
}

/// The model: what ZooKeeper answers, written as plainly as possible.
fn model_apply(m: &mut BTreeMap<String, ModelNode>, op: &ModelOp) -> Result<Option<Vec<u8>>, ErrorCode> {
    match op {
        ModelOp::Create { path, ephemeral, sequential, data } => {
            let par = parent(path);
            let p = m.get(&par).ok_or(ErrorCode::NoNode)?.clone();
            let full = if *sequential { format!("{path}{:010}", p.creates) } else { path.clone() };
            if m.contains_key(&full) {
                return Err(ErrorCode::NodeExists);
            }
            if p.ephemeral {
                return Err(ErrorCode::NoChildrenForEphemerals);
            }
            m.get_mut(&par).unwrap().creates += 1;
            m.insert(full.clone(), ModelNode { data: data.clone(), version: 0, ephemeral: *ephemeral, creates: 0 });
            Ok(Some(full.into_bytes()))
        }
        ModelOp::Delete { path, version } => {
            let n = m.get(path).ok_or(ErrorCode::NoNode)?;
            if *version != -1 && *version != n.version {
                return Err(ErrorCode::BadVersion);
            }
            let prefix = format!("{path}/");
            if m.keys().any(|k| k.starts_with(&prefix)) {
                return Err(ErrorCode::NotEmpty);
            }
            m.remove(path);
            Ok(None)
        }
        ModelOp::SetData { path, version, data } => {
            let n = m.get_mut(path).ok_or(ErrorCode::NoNode)?;
            if *version != -1 && *version != n.version {
                return Err(ErrorCode::BadVersion);
            }
            n.version += 1;
            n.data = data.clone();
            Ok(None)
        }
        ModelOp::GetData { path } => Ok(Some(m.get(path).ok_or(ErrorCode::NoNode)?.data.clone())),
        ModelOp::CloseSession => {
            m.retain(|_, n| !n.ephemeral);
            Ok(None)
        }
    }
}

fn open() -> Vec<Acl> {
    vec![Acl { perms: 31, id: Id { scheme: "world".into(), id: "anyone".into() } }]
}

/// Drives a core the way the processor does: handle, then commit and apply writes.
struct Driver {
    core: Core,
    log: Vec<Txn>,
    session: i64,
    now: i64,
}

impl Driver {
    fn new() -> Driver {
        let mut d = Driver { core: Core::new(CoreConfig::default(), 1, 1000), log: Vec::new(), session: 0, now: 0 };
        d.new_session();
        d
    }

    fn commit(&mut self, session: i64, ops: Vec<txn::TxnOp>) -> Applied {
        self.now += 1;
        let txn = Txn { zxid: self.core.last_zxid() + 1, session_id: session, cxid: 0, time_ms: self.now, ops };
        let applied = self.core.apply(&txn);
        self.log.push(txn);
        applied
    }

    fn new_session(&mut self) {
        let req = protocol::ConnectRequest { time_out: 10_000, ..Default::default() };
        let Connect::New { session_id, op, .. } = self.core.connect(&req, self.now) else { panic!("new session") };
        self.commit(session_id, vec![op]);
        self.session = session_id;
    }

    fn request(op: &ModelOp) -> Request {
        match op {
            ModelOp::Create { path, ephemeral, sequential, data } => Request::Create(CreateRequest {
                path: path.clone(),
                data: Some(data.clone()),
                acl: open(),
                flags: (*ephemeral as i32) | ((*sequential as i32) << 1),
            }),
            ModelOp::Delete { path, version } => Request::Delete(DeleteRequest { path: path.clone(), version: *version }),
            ModelOp::SetData { path, version, data } => {
                Request::SetData(SetDataRequest { path: path.clone(), data: Some(data.clone()), version: *version })
            }
            ModelOp::GetData { path } => Request::GetData(protocol::GetDataRequest { path: path.clone(), watch: false }),
            ModelOp::CloseSession => Request::CloseSession,
        }
    }

    fn result(err: ErrorCode, body: Response) -> Result<Option<Vec<u8>>, ErrorCode> {
        if err != ErrorCode::Ok {
            return Err(err);
        }
        Ok(match body {
            Response::Create(c) => Some(c.path.into_bytes()),
            Response::GetData(g) => Some(g.data.unwrap_or_default()),
            _ => None,
        })
    }

    fn run(&mut self, op: &ModelOp) -> Result<Option<Vec<u8>>, ErrorCode> {
        let req = Self::request(op);
        let auth = [];
        let caller = Caller { session_id: self.session, auth: &auth };
        let (err, body) = match self.core.handle(caller, &req, self.core.last_zxid() + 1) {
            Handled::Reply { err, body, .. } => (err, body),
            Handled::OverLimit(limit) => panic!("the model stays far below {limit}"),
            Handled::Write(ops) => {
                let applied = self.commit(self.session, ops);
                reply(&req, &applied.outcomes)
            }
        };
        if matches!(op, ModelOp::CloseSession) {
            self.new_session();
        }
        Self::result(err, body)
    }
}

fn snapshot(core: &Core) -> BTreeMap<String, (Option<Vec<u8>>, protocol::Stat)> {
    core.tree.nodes().map(|(p, n)| (p.clone(), (n.data.clone(), n.stat()))).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn core_matches_the_model(ops in proptest::collection::vec(op_strategy(), 1..60)) {
        let mut model = BTreeMap::new();
        model.insert("/".to_string(), ModelNode { data: vec![], version: 0, ephemeral: false, creates: 0 });
        let mut d = Driver::new();
        for (i, op) in ops.iter().enumerate() {
            let want = model_apply(&mut model, op);
            let got = d.run(op);
            prop_assert_eq!(&got, &want, "op {} {:?}", i, op);
        }
        // Same nodes, data, versions and child counts.
        for (path, n) in &model {
            let node = d.core.tree.get(path).expect("model node in core");
            prop_assert_eq!(node.data.clone().unwrap_or_default(), n.data.clone(), "{}", path);
            prop_assert_eq!(node.version, n.version);
            let kids = model.keys().filter(|k| k.len() > path.len() && super::path::parent(k) == path.as_str()).count();
            prop_assert_eq!(node.stat().num_children as usize, kids + usize::from(path == "/"));
        }
        prop_assert_eq!(d.core.tree.len(), model.len() + 3, "plus /zookeeper, quota and config");

        // Replay determinism: the log alone rebuilds the identical tree.
        let mut fresh = Core::new(CoreConfig::default(), 1, 1000);
        for t in &d.log {
            fresh.apply(t);
        }
        prop_assert_eq!(snapshot(&fresh), snapshot(&d.core));
        prop_assert_eq!(fresh.last_zxid(), d.core.last_zxid());

        // A snapshot restores the same tree, indexes and sessions.
        let snap = d.core.snapshot();
        let restored = Core::restore(CoreConfig::default(), 1, 1000, &snap);
        prop_assert_eq!(snapshot(&restored), snapshot(&d.core));
        prop_assert_eq!(&restored.tree, &d.core.tree);
        prop_assert_eq!(restored.sessions.len(), d.core.sessions.len());
        prop_assert_eq!(restored.snapshot(), snap);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// With up to `window` writes prepped before any is applied (a leader's
    /// proposals in flight), every reply and the final tree are what one
    /// write at a time gives: prep reads through the outstanding changes.
    #[test]
    fn pipelined_prep_matches_one_at_a_time(ops in proptest::collection::vec(op_strategy(), 1..60), window in 1..8usize) {
        let mut serial = Driver::new();
        let want: Vec<_> = ops.iter().map(|op| serial.run(op)).collect();
        let mut d = Driver::new();
        let mut in_flight: Vec<(usize, Request, Txn)> = Vec::new();
        let mut got = vec![None; ops.len()];
        let flush = |d: &mut Driver, in_flight: &mut Vec<(usize, Request, Txn)>, got: &mut Vec<Option<Result<Option<Vec<u8>>, ErrorCode>>>| {
            for (i, req, txn) in in_flight.drain(..) {
                let applied = d.core.apply(&txn);
                d.log.push(txn);
                let (err, body) = reply(&req, &applied.outcomes);
                got[i] = Some(Driver::result(err, body));
            }
        };
        for (i, op) in ops.iter().enumerate() {
            let req = Driver::request(op);
            if !matches!(op, ModelOp::Create { .. } | ModelOp::Delete { .. } | ModelOp::SetData { .. }) || in_flight.len() >= window {
                flush(&mut d, &mut in_flight, &mut got);
            }
            if matches!(op, ModelOp::CloseSession | ModelOp::GetData { .. }) {
                got[i] = Some(d.run(op));
                continue;
            }
            let zxid = in_flight.last().map_or(d.core.last_zxid(), |(_, _, t)| t.zxid) + 1;
            let caller = Caller { session_id: d.session, auth: &[] };
            let Handled::Write(txn_ops) = d.core.handle(caller, &req, zxid) else { panic!("a write") };
            d.now += 1;
            in_flight.push((i, req, Txn { zxid, session_id: d.session, cxid: 0, time_ms: d.now, ops: txn_ops }));
        }
        flush(&mut d, &mut in_flight, &mut got);
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            prop_assert_eq!(g.as_ref(), Some(w), "op {} {:?}", i, ops[i]);
        }
        prop_assert_eq!(snapshot(&d.core), snapshot(&serial.core));
        prop_assert!(d.core.outstanding.is_empty(), "applying forgets every outstanding change");
    }
}

#[test]
fn outstanding_changes_are_seen_and_forgotten() {
    let mut d = Driver::new();
    let s = d.session;
    let caller = Caller { session_id: s, auth: &[] };
    let create = Driver::request(&ModelOp::Create { path: "/x".into(), ephemeral: true, sequential: false, data: vec![] });
    let z = d.core.last_zxid();
    // Two creates of /x in flight: the second fails at prep, not at apply.
    let Handled::Write(first) = d.core.handle(caller, &create, z + 1) else { panic!() };
    let Handled::Write(second) = d.core.handle(caller, &create, z + 2) else { panic!() };
    assert!(matches!(first[0].op, Some(txn::Op::Create(_))));
    assert_eq!(reply(&create, &[Outcome::Error(ErrorCode::NodeExists)]).0, ErrorCode::NodeExists);
    assert!(matches!(&second[0].op, Some(txn::Op::Error(e)) if e.err == ErrorCode::NodeExists.as_i32()));
    // A close in flight makes the ephemeral gone for prep, and refuses new ephemerals of that session.
    let close = d.core.prep_close(s, z + 3);
    assert!(matches!(close[0].op, Some(txn::Op::CloseSession(_))));
    let Handled::Write(third) = d.core.handle(caller, &create, z + 4) else { panic!() };
    assert!(matches!(&third[0].op, Some(txn::Op::Error(e)) if e.err == ErrorCode::SessionExpired.as_i32()));
    assert!(d.core.expired(i64::MAX).is_empty(), "a closing session is not expired twice");
    // Leadership lost: everything outstanding is forgotten.
    d.core.outstanding.clear();
    assert!(d.core.outstanding.is_empty());
    let Handled::Write(again) = d.core.handle(caller, &create, z + 1) else { panic!() };
    assert!(matches!(again[0].op, Some(txn::Op::Create(_))));
}

#[test]
fn sequential_suffix_wraps_like_java() {
    let mut d = Driver::new();
    d.run(&ModelOp::Create { path: "/q".into(), ephemeral: false, sequential: false, data: vec![] }).unwrap();
    // Force the create counter to the edge, as after 2^31 creates.
    for expected in [i32::MAX, i32::MIN] {
        set_creates(&mut d.core, "/q", expected);
        let got = d.run(&ModelOp::Create { path: "/q/n".into(), ephemeral: false, sequential: true, data: vec![] }).unwrap().unwrap();
        // Java's String.format("%010d", n): zero-padded to 10, sign included.
        assert_eq!(String::from_utf8(got).unwrap(), format!("/q/n{expected:010}"));
    }
}

fn set_creates(core: &mut Core, path: &str, creates: i32) {
    core.tree.force_cversion_for_test(path, creates);
}

#[test]
fn a_session_whose_close_is_proposed_cannot_be_resumed() {
    let mut d = Driver::new();
    let session = d.session;
    let resume = protocol::ConnectRequest { time_out: 10_000, session_id: session, passwd: d.core.sessions.password(session), ..Default::default() };
    assert!(matches!(d.core.connect(&resume, d.now), Connect::Resume { .. }));
    // The leader's expiry, proposed and not yet applied.
    let zxid = d.core.last_zxid() + 1;
    let ops = d.core.prep_close(session, zxid);
    assert!(matches!(d.core.connect(&resume, d.now), Connect::Expired), "resumed a session whose close is in flight");
    d.commit(session, ops);
    assert!(matches!(d.core.connect(&resume, d.now), Connect::Expired));
}
