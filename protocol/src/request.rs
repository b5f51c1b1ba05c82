//! Typed client requests and replies: the body that follows a
//! `RequestHeader`, chosen by its opcode, and the body that follows a
//! `ReplyHeader`.

use bytes::BufMut;

use crate::codes::{ErrorCode, OpCode};
use crate::jute::{DecodeError, Jute};
use crate::records::*;

/// One operation inside a multi or multiRead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MultiOp {
    Create(CreateRequest),
    Create2(CreateRequest),
    CreateContainer(CreateRequest),
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    SetData(SetDataRequest),
    Check(CheckVersionRequest),
    GetChildren(GetChildrenRequest),
    GetData(GetDataRequest),
}

impl MultiOp {
    pub fn op_code(&self) -> OpCode {
        match self {
            MultiOp::Create(_) => OpCode::Create,
            MultiOp::Create2(_) => OpCode::Create2,
            MultiOp::CreateContainer(_) => OpCode::CreateContainer,
            MultiOp::CreateTtl(_) => OpCode::CreateTtl,
            MultiOp::Delete(_) => OpCode::Delete,
            MultiOp::SetData(_) => OpCode::SetData,
            MultiOp::Check(_) => OpCode::Check,
            MultiOp::GetChildren(_) => OpCode::GetChildren,
            MultiOp::GetData(_) => OpCode::GetData,
        }
    }

    pub fn path(&self) -> &str {
        match self {
            MultiOp::Create(r) | MultiOp::Create2(r) | MultiOp::CreateContainer(r) => &r.path,
            MultiOp::CreateTtl(r) => &r.path,
            MultiOp::Delete(r) => &r.path,
            MultiOp::SetData(r) => &r.path,
            MultiOp::Check(r) => &r.path,
            MultiOp::GetChildren(r) => &r.path,
            MultiOp::GetData(r) => &r.path,
        }
    }

    pub fn is_read(&self) -> bool {
        matches!(self, MultiOp::GetChildren(_) | MultiOp::GetData(_))
    }

    fn encode_body(&self, buf: &mut impl BufMut) {
        match self {
            MultiOp::Create(r) | MultiOp::Create2(r) | MultiOp::CreateContainer(r) => r.encode(buf),
            MultiOp::CreateTtl(r) => r.encode(buf),
            MultiOp::Delete(r) => r.encode(buf),
            MultiOp::SetData(r) => r.encode(buf),
            MultiOp::Check(r) => r.encode(buf),
            MultiOp::GetChildren(r) => r.encode(buf),
            MultiOp::GetData(r) => r.encode(buf),
        }
    }

    fn decode_body(op: i32, buf: &mut &[u8]) -> Result<Self, DecodeError> {
        Ok(match OpCode::from_i32(op) {
            Some(OpCode::Create) => MultiOp::Create(CreateRequest::decode(buf)?),
            Some(OpCode::Create2) => MultiOp::Create2(CreateRequest::decode(buf)?),
            Some(OpCode::CreateContainer) => MultiOp::CreateContainer(CreateRequest::decode(buf)?),
            Some(OpCode::CreateTtl) => MultiOp::CreateTtl(CreateTtlRequest::decode(buf)?),
            Some(OpCode::Delete) => MultiOp::Delete(DeleteRequest::decode(buf)?),
            Some(OpCode::SetData) => MultiOp::SetData(SetDataRequest::decode(buf)?),
            Some(OpCode::Check) => MultiOp::Check(CheckVersionRequest::decode(buf)?),
            Some(OpCode::GetChildren) => MultiOp::GetChildren(GetChildrenRequest::decode(buf)?),
            Some(OpCode::GetData) => MultiOp::GetData(GetDataRequest::decode(buf)?),
            _ => return Err(DecodeError::UnknownOpCode(op)),
        })
    }
}

const MULTI_END: MultiHeader = MultiHeader { r#type: -1, done: true, err: -1 };

/// `MultiOperationRecord` / `MultiTransactionRecord`: headed ops ending in a done header.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiRequest {
    pub ops: Vec<MultiOp>,
}

impl Jute for MultiRequest {
    fn encode(&self, buf: &mut impl BufMut) {
        for op in &self.ops {
            MultiHeader { r#type: op.op_code().as_i32(), done: false, err: -1 }.encode(buf);
            op.encode_body(buf);
        }
        MULTI_END.encode(buf);
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        // Bounded by the input: each op consumes at least a 9-byte header.
        let mut ops = Vec::new();
        loop {
            let h = MultiHeader::decode(buf)?;
            if h.done {
                return Ok(MultiRequest { ops });
            }
            ops.push(MultiOp::decode_body(h.r#type, buf)?);
        }
    }
    fn encoded_len(&self) -> usize {
        let mut v = Vec::new();
        self.encode(&mut v);
        v.len()
    }
}

/// The result of one op of a multi, as `OpResult` in ZooKeeper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpResult {
    Create(String),
    /// create2, createContainer and createTTL all answer with a path and Stat.
    Create2(String, Stat),
    Delete,
    SetData(Stat),
    Check,
    GetChildren(Vec<String>),
    GetData(Option<Vec<u8>>, Stat),
    /// In a failed multi: `Ok` for ops before the failing one, the cause for
    /// it, `RuntimeInconsistency` for the ops after it.
    Error(ErrorCode),
}

/// `MultiResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MultiResponse {
    pub results: Vec<OpResult>,
}

impl Jute for MultiResponse {
    fn encode(&self, buf: &mut impl BufMut) {
        for r in &self.results {
            let header = |op: OpCode| MultiHeader { r#type: op.as_i32(), done: false, err: 0 };
            match r {
                OpResult::Create(path) => {
                    header(OpCode::Create).encode(buf);
                    path.encode(buf);
                }
                OpResult::Create2(path, stat) => {
                    header(OpCode::Create2).encode(buf);
                    path.encode(buf);
                    stat.encode(buf);
                }
                OpResult::Delete => header(OpCode::Delete).encode(buf),
                OpResult::SetData(stat) => {
                    header(OpCode::SetData).encode(buf);
                    stat.encode(buf);
                }
                OpResult::Check => header(OpCode::Check).encode(buf),
                OpResult::GetChildren(children) => {
                    header(OpCode::GetChildren).encode(buf);
                    children.encode(buf);
                }
                OpResult::GetData(data, stat) => {
                    header(OpCode::GetData).encode(buf);
                    data.encode(buf);
                    stat.encode(buf);
                }
                OpResult::Error(e) => {
                    MultiHeader { r#type: OpCode::Error.as_i32(), done: false, err: e.as_i32() }.encode(buf);
                    e.as_i32().encode(buf);
                }
            }
        }
        MULTI_END.encode(buf);
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        let mut results = Vec::new();
        loop {
            let h = MultiHeader::decode(buf)?;
            if h.done {
                return Ok(MultiResponse { results });
            }
            results.push(match OpCode::from_i32(h.r#type) {
                Some(OpCode::Create) => OpResult::Create(String::decode(buf)?),
                Some(OpCode::Create2) => OpResult::Create2(String::decode(buf)?, Stat::decode(buf)?),
                Some(OpCode::Delete) => OpResult::Delete,
                Some(OpCode::SetData) => OpResult::SetData(Stat::decode(buf)?),
                Some(OpCode::Check) => OpResult::Check,
                Some(OpCode::GetChildren) => OpResult::GetChildren(Vec::decode(buf)?),
                Some(OpCode::GetData) => OpResult::GetData(Option::decode(buf)?, Stat::decode(buf)?),
                Some(OpCode::Error) => {
                    let err = i32::decode(buf)?;
                    OpResult::Error(ErrorCode::from_i32(err).ok_or(DecodeError::InvalidValue("error code"))?)
                }
                _ => return Err(DecodeError::UnknownOpCode(h.r#type)),
            });
        }
    }
    fn encoded_len(&self) -> usize {
        let mut v = Vec::new();
        self.encode(&mut v);
        v.len()
    }
}

/// A client request body, typed by the opcode of its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Create(CreateRequest),
    Create2(CreateRequest),
    CreateContainer(CreateRequest),
    CreateTtl(CreateTtlRequest),
    Delete(DeleteRequest),
    Exists(ExistsRequest),
    GetData(GetDataRequest),
    SetData(SetDataRequest),
    GetAcl(GetAclRequest),
    SetAcl(SetAclRequest),
    GetChildren(GetChildrenRequest),
    GetChildren2(GetChildren2Request),
    GetAllChildrenNumber(GetAllChildrenNumberRequest),
    GetEphemerals(GetEphemeralsRequest),
    Sync(SyncRequest),
    Check(CheckVersionRequest),
    Ping,
    Multi(MultiRequest),
    MultiRead(MultiRequest),
    Reconfig(ReconfigRequest),
    CheckWatches(CheckWatchesRequest),
    RemoveWatches(RemoveWatchesRequest),
    SetWatches(SetWatches),
    SetWatches2(SetWatches2),
    AddWatch(AddWatchRequest),
    WhoAmI,
    Auth(AuthPacket),
    Sasl(GetSaslRequest),
    CloseSession,
}

impl Request {
    /// Decodes the body that follows a header with opcode `op`; the body
    /// must be consumed exactly (closeSession and ping bodies are empty, but
    /// some clients send trailing bytes for them, which are ignored).
    pub fn decode(op: i32, mut body: &[u8]) -> Result<Request, DecodeError> {
        let buf = &mut body;
        let code = OpCode::from_i32(op).ok_or(DecodeError::UnknownOpCode(op))?;
        let req = match code {
            OpCode::Create => Request::Create(CreateRequest::decode(buf)?),
            OpCode::Create2 => Request::Create2(CreateRequest::decode(buf)?),
            OpCode::CreateContainer => Request::CreateContainer(CreateRequest::decode(buf)?),
            OpCode::CreateTtl => Request::CreateTtl(CreateTtlRequest::decode(buf)?),
            OpCode::Delete => Request::Delete(DeleteRequest::decode(buf)?),
            OpCode::Exists => Request::Exists(ExistsRequest::decode(buf)?),
            OpCode::GetData => Request::GetData(GetDataRequest::decode(buf)?),
            OpCode::SetData => Request::SetData(SetDataRequest::decode(buf)?),
            OpCode::GetAcl => Request::GetAcl(GetAclRequest::decode(buf)?),
            OpCode::SetAcl => Request::SetAcl(SetAclRequest::decode(buf)?),
            OpCode::GetChildren => Request::GetChildren(GetChildrenRequest::decode(buf)?),
            OpCode::GetChildren2 => Request::GetChildren2(GetChildren2Request::decode(buf)?),
            OpCode::GetAllChildrenNumber => Request::GetAllChildrenNumber(GetAllChildrenNumberRequest::decode(buf)?),
            OpCode::GetEphemerals => Request::GetEphemerals(GetEphemeralsRequest::decode(buf)?),
            OpCode::Sync => Request::Sync(SyncRequest::decode(buf)?),
            OpCode::Check => Request::Check(CheckVersionRequest::decode(buf)?),
            OpCode::Ping => return Ok(Request::Ping),
            OpCode::Multi => Request::Multi(MultiRequest::decode(buf)?),
            OpCode::MultiRead => Request::MultiRead(MultiRequest::decode(buf)?),
            OpCode::Reconfig => Request::Reconfig(ReconfigRequest::decode(buf)?),
            OpCode::CheckWatches => Request::CheckWatches(CheckWatchesRequest::decode(buf)?),
            OpCode::RemoveWatches => Request::RemoveWatches(RemoveWatchesRequest::decode(buf)?),
            OpCode::SetWatches => Request::SetWatches(SetWatches::decode(buf)?),
            OpCode::SetWatches2 => Request::SetWatches2(SetWatches2::decode(buf)?),
            OpCode::AddWatch => Request::AddWatch(AddWatchRequest::decode(buf)?),
            OpCode::WhoAmI => return Ok(Request::WhoAmI),
            OpCode::Auth => Request::Auth(AuthPacket::decode(buf)?),
            OpCode::Sasl => Request::Sasl(GetSaslRequest::decode(buf)?),
            OpCode::CloseSession => return Ok(Request::CloseSession),
            OpCode::Notification | OpCode::DeleteContainer | OpCode::CreateSession | OpCode::Error => {
                return Err(DecodeError::UnknownOpCode(op))
            }
        };
        if !buf.is_empty() {
            return Err(DecodeError::TrailingBytes(buf.len()));
        }
        Ok(req)
    }

    pub fn op_code(&self) -> OpCode {
        match self {
            Request::Create(_) => OpCode::Create,
            Request::Create2(_) => OpCode::Create2,
            Request::CreateContainer(_) => OpCode::CreateContainer,
            Request::CreateTtl(_) => OpCode::CreateTtl,
            Request::Delete(_) => OpCode::Delete,
            Request::Exists(_) => OpCode::Exists,
            Request::GetData(_) => OpCode::GetData,
            Request::SetData(_) => OpCode::SetData,
            Request::GetAcl(_) => OpCode::GetAcl,
            Request::SetAcl(_) => OpCode::SetAcl,
            Request::GetChildren(_) => OpCode::GetChildren,
            Request::GetChildren2(_) => OpCode::GetChildren2,
            Request::GetAllChildrenNumber(_) => OpCode::GetAllChildrenNumber,
            Request::GetEphemerals(_) => OpCode::GetEphemerals,
            Request::Sync(_) => OpCode::Sync,
            Request::Check(_) => OpCode::Check,
            Request::Ping => OpCode::Ping,
            Request::Multi(_) => OpCode::Multi,
            Request::MultiRead(_) => OpCode::MultiRead,
            Request::Reconfig(_) => OpCode::Reconfig,
            Request::CheckWatches(_) => OpCode::CheckWatches,
            Request::RemoveWatches(_) => OpCode::RemoveWatches,
            Request::SetWatches(_) => OpCode::SetWatches,
            Request::SetWatches2(_) => OpCode::SetWatches2,
            Request::AddWatch(_) => OpCode::AddWatch,
            Request::WhoAmI => OpCode::WhoAmI,
            Request::Auth(_) => OpCode::Auth,
            Request::Sasl(_) => OpCode::Sasl,
            Request::CloseSession => OpCode::CloseSession,
        }
    }

    /// Encodes the body (the client side of the wire; used by tests and tools).
    pub fn encode_body(&self, buf: &mut impl BufMut) {
        match self {
            Request::Create(r) | Request::Create2(r) | Request::CreateContainer(r) => r.encode(buf),
            Request::CreateTtl(r) => r.encode(buf),
            Request::Delete(r) => r.encode(buf),
            Request::Exists(r) => r.encode(buf),
            Request::GetData(r) => r.encode(buf),
            Request::SetData(r) => r.encode(buf),
            Request::GetAcl(r) => r.encode(buf),
            Request::SetAcl(r) => r.encode(buf),
            Request::GetChildren(r) => r.encode(buf),
            Request::GetChildren2(r) => r.encode(buf),
            Request::GetAllChildrenNumber(r) => r.encode(buf),
            Request::GetEphemerals(r) => r.encode(buf),
            Request::Sync(r) => r.encode(buf),
            Request::Check(r) => r.encode(buf),
            Request::Multi(r) | Request::MultiRead(r) => r.encode(buf),
            Request::Reconfig(r) => r.encode(buf),
            Request::CheckWatches(r) => r.encode(buf),
            Request::RemoveWatches(r) => r.encode(buf),
            Request::SetWatches(r) => r.encode(buf),
            Request::SetWatches2(r) => r.encode(buf),
            Request::AddWatch(r) => r.encode(buf),
            Request::Auth(r) => r.encode(buf),
            Request::Sasl(r) => r.encode(buf),
            Request::Ping | Request::WhoAmI | Request::CloseSession => {}
        }
    }
}

/// A successful reply body. Errors carry no body: the code is in the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// delete, ping, setWatches, addWatch, removeWatches, checkWatches, auth, closeSession.
    Empty,
    Create(CreateResponse),
    Create2(Create2Response),
    /// exists, setData, setACL: all encode a bare Stat.
    Stat(Stat),
    GetData(GetDataResponse),
    GetAcl(GetAclResponse),
    GetChildren(GetChildrenResponse),
    GetChildren2(GetChildren2Response),
    GetAllChildrenNumber(GetAllChildrenNumberResponse),
    GetEphemerals(GetEphemeralsResponse),
    Sync(SyncResponse),
    Multi(MultiResponse),
    WhoAmI(WhoAmIResponse),
    Sasl(SetSaslResponse),
    /// addWatch answers with an `ErrorResponse` body holding 0, and the Java
    /// client reads it: an empty body makes it drop the connection.
    AddWatch(ErrorResponse),
}

impl Response {
    pub fn encode(&self, buf: &mut impl BufMut) {
        match self {
            Response::Empty => {}
            Response::Create(r) => r.encode(buf),
            Response::Create2(r) => r.encode(buf),
            Response::Stat(r) => r.encode(buf),
            Response::GetData(r) => r.encode(buf),
            Response::GetAcl(r) => r.encode(buf),
            Response::GetChildren(r) => r.encode(buf),
            Response::GetChildren2(r) => r.encode(buf),
            Response::GetAllChildrenNumber(r) => r.encode(buf),
            Response::GetEphemerals(r) => r.encode(buf),
            Response::Sync(r) => r.encode(buf),
            Response::Multi(r) => r.encode(buf),
            Response::WhoAmI(r) => r.encode(buf),
            Response::Sasl(r) => r.encode(buf),
            Response::AddWatch(r) => r.encode(buf),
        }
    }

    pub fn encoded_len(&self) -> usize {
        let mut v = Vec::new();
        self.encode(&mut v);
        v.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn multi_op() -> impl Strategy<Value = MultiOp> {
        prop_oneof![
            any::<CreateRequest>().prop_map(MultiOp::Create),
            any::<CreateRequest>().prop_map(MultiOp::Create2),
            any::<CreateRequest>().prop_map(MultiOp::CreateContainer),
            any::<CreateTtlRequest>().prop_map(MultiOp::CreateTtl),
            any::<DeleteRequest>().prop_map(MultiOp::Delete),
            any::<SetDataRequest>().prop_map(MultiOp::SetData),
            any::<CheckVersionRequest>().prop_map(MultiOp::Check),
            any::<GetChildrenRequest>().prop_map(MultiOp::GetChildren),
            any::<GetDataRequest>().prop_map(MultiOp::GetData),
        ]
    }

    fn op_result() -> impl Strategy<Value = OpResult> {
        prop_oneof![
            any::<String>().prop_map(OpResult::Create),
            (any::<String>(), any::<Stat>()).prop_map(|(p, s)| OpResult::Create2(p, s)),
            Just(OpResult::Delete),
            any::<Stat>().prop_map(OpResult::SetData),
            Just(OpResult::Check),
            any::<Vec<String>>().prop_map(OpResult::GetChildren),
            (any::<Option<Vec<u8>>>(), any::<Stat>()).prop_map(|(d, s)| OpResult::GetData(d, s)),
            proptest::sample::select(ErrorCode::ALL).prop_map(OpResult::Error),
        ]
    }

    proptest! {
        #[test]
        fn multi_request_round_trips(ops in proptest::collection::vec(multi_op(), 0..8)) {
            let m = MultiRequest { ops };
            let mut b = Vec::new();
            m.encode(&mut b);
            prop_assert_eq!(Request::decode(OpCode::Multi.as_i32(), &b).unwrap(), Request::Multi(m));
        }

        #[test]
        fn multi_response_round_trips(results in proptest::collection::vec(op_result(), 0..8)) {
            let m = MultiResponse { results };
            prop_assert_eq!(MultiResponse::from_bytes(&m.to_bytes()).unwrap(), m);
        }

        /// The fuzz-style property: any opcode with any body decodes or fails
        /// cleanly, never panics.
        #[test]
        fn arbitrary_bodies_never_panic(op in -12i32..110, body in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = Request::decode(op, &body);
        }
    }

    #[test]
    fn every_request_round_trips_through_its_opcode() {
        let reqs = vec![
            Request::Create(CreateRequest { path: "/a".into(), data: Some(b"x".to_vec()), acl: vec![], flags: 2 }),
            Request::CreateTtl(CreateTtlRequest { path: "/t".into(), data: None, acl: vec![], flags: 5, ttl: 100 }),
            Request::Ping,
            Request::WhoAmI,
            Request::CloseSession,
            Request::SetWatches2(SetWatches2 { relative_zxid: 7, data_watches: vec!["/d".into()], ..Default::default() }),
            Request::AddWatch(AddWatchRequest { path: "/w".into(), mode: 1 }),
        ];
        for r in reqs {
            let mut b = Vec::new();
            r.encode_body(&mut b);
            assert_eq!(Request::decode(r.op_code().as_i32(), &b).unwrap(), r);
        }
        assert_eq!(Request::decode(10, &[]), Err(DecodeError::UnknownOpCode(10)));
    }
}
