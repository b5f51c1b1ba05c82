//! The peer wire: one [`Envelope`] per frame, and the handshake that opens a link.
//!
//! A frame is a 4-byte big-endian length, then a prost [`WireEnvelope`]:
//! the sender and receiver ids and a oneof with one arm per
//! [`PeerMessage`] variant. Raft messages travel as raft-rs's own
//! rust-protobuf encoding inside a `bytes` field (no second schema to keep
//! in step with raft-rs); a forwarded client request as its opcode and jute
//! body, exactly as the client sent it; auth ids as (scheme, id) pairs.
//!
//! Adding a [`PeerMessage`] variant: give the oneof a new tag and a record,
//! and add one arm to [`to_wire`] and one to [`from_wire`] (both matches are
//! exhaustive, so the compiler points at them). A frame whose oneof arm this
//! build does not know decodes to [`PeerCodecError::MissingMessage`].
//!
//! Decoding never panics: the length prefix is checked against
//! [`PEER_FRAME_BYTES_MAX`] before any byte of the body is buffered, and
//! every nested decoder (prost, rust-protobuf, jute) returns errors on
//! malformed input.

use bytes::{BufMut, BytesMut};
use protocol::{FrameCodec, FrameError, Id, Request};
use tokio_util::codec::{Decoder, Encoder};

use crate::replica::{Envelope, PeerMessage};

/// The largest peer frame, in bytes, both sent and accepted (256 MiB).
///
/// Most frames are small (a heartbeat, an append of a few entries), but a
/// raft `MsgSnapshot` carries the whole tree and session table in one
/// frame, so the limit bounds the state a follower can be caught up with by
/// snapshot. A frame over it is never sent (the encoder refuses it, raft
/// retries) and closes the link when received.
pub const PEER_FRAME_BYTES_MAX: usize = 256 << 20;

/// The first four bytes of every handshake: ASCII `CRLP` (Corral peer).
pub const PEER_PROTOCOL_MAGIC: u32 = u32::from_be_bytes(*b"CRLP");
/// The peer protocol version: bumped on any incompatible change to the
/// frame or handshake; a link between two versions is refused.
pub const PEER_PROTOCOL_VERSION: u32 = 1;
/// Bytes of a handshake: magic, version, sender id, receiver id.
pub const HELLO_BYTES: usize = 4 + 4 + 8 + 8;

/// Why a frame or handshake could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum PeerCodecError {
    #[error("frame of {len} bytes exceeds the peer frame limit of {max} bytes")]
    FrameTooLarge { len: u64, max: usize },
    #[error("negative frame length {0}")]
    NegativeLength(i32),
    #[error("envelope: {0}")]
    Envelope(#[from] prost::DecodeError),
    #[error("envelope carries no message (unknown variant from a newer member?)")]
    MissingMessage,
    #[error("raft message: {0}")]
    Raft(#[from] protobuf::ProtobufError),
    #[error("forwarded request: {0}")]
    Request(#[from] protocol::DecodeError),
    #[error("handshake: bad magic {0:#010x} (not a Corral peer)")]
    BadMagic(u32),
    #[error("handshake: peer protocol version {0}, this member speaks {PEER_PROTOCOL_VERSION}")]
    BadVersion(u32),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<FrameError> for PeerCodecError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { len, max } => PeerCodecError::FrameTooLarge { len: len as u64, max },
            FrameError::NegativeLength(n) => PeerCodecError::NegativeLength(n),
            FrameError::Io(e) => PeerCodecError::Io(e),
        }
    }
}

/// The frame body: who sends, to whom, and what.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireEnvelope {
    #[prost(uint64, tag = "1")]
    pub from: u64,
    #[prost(uint64, tag = "2")]
    pub to: u64,
    #[prost(oneof = "WireMessage", tags = "3, 4, 5, 6, 7, 8")]
    pub msg: Option<WireMessage>,
}

/// One arm per [`PeerMessage`] variant; tags are never reused.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum WireMessage {
    /// A `raft::eraftpb::Message` in rust-protobuf encoding.
    #[prost(bytes, tag = "3")]
    Raft(Vec<u8>),
    #[prost(message, tag = "4")]
    Forward(WireForward),
    #[prost(message, tag = "5")]
    CreateSession(WireCreateSession),
    #[prost(message, tag = "6")]
    Touch(WireTouch),
    #[prost(message, tag = "7")]
    TermQuery(WireTermQuery),
    #[prost(message, tag = "8")]
    TermReply(WireTermReply),
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireTermQuery {}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireTermReply {
    #[prost(uint64, tag = "1")]
    pub term: u64,
    #[prost(uint64, tag = "2")]
    pub last_index: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireForward {
    #[prost(uint64, tag = "1")]
    pub incarnation: u64,
    #[prost(uint64, tag = "2")]
    pub proposal: u64,
    #[prost(int64, tag = "3")]
    pub session_id: i64,
    #[prost(int32, tag = "4")]
    pub cxid: i32,
    #[prost(message, repeated, tag = "5")]
    pub auth: Vec<WireId>,
    /// The request's opcode (ZooKeeper's `OpCode`).
    #[prost(int32, tag = "6")]
    pub op: i32,
    /// The request body in jute, as after a client's `RequestHeader`.
    #[prost(bytes = "vec", tag = "7")]
    pub body: Vec<u8>,
}

/// An auth identity (`protocol::Id`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct WireId {
    #[prost(string, tag = "1")]
    pub scheme: String,
    #[prost(string, tag = "2")]
    pub id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireCreateSession {
    #[prost(uint64, tag = "1")]
    pub incarnation: u64,
    #[prost(uint64, tag = "2")]
    pub proposal: u64,
    #[prost(int64, tag = "3")]
    pub session_id: i64,
    #[prost(int32, tag = "4")]
    pub timeout_ms: i32,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct WireTouch {
    #[prost(int64, repeated, tag = "1")]
    pub sessions: Vec<i64>,
}

/// The envelope as its wire record.
pub fn to_wire(env: &Envelope) -> Result<WireEnvelope, PeerCodecError> {
    let msg = match &env.msg {
        PeerMessage::Raft(m) => WireMessage::Raft(protobuf::Message::write_to_bytes(m)?),
        PeerMessage::Forward { incarnation, proposal, session_id, cxid, auth, req } => {
            let mut body = Vec::new();
            req.encode_body(&mut body);
            WireMessage::Forward(WireForward {
                incarnation: *incarnation,
                proposal: *proposal,
                session_id: *session_id,
                cxid: *cxid,
                auth: auth.iter().map(|i| WireId { scheme: i.scheme.clone(), id: i.id.clone() }).collect(),
                op: req.op_code().as_i32(),
                body,
            })
        }
        PeerMessage::CreateSession { incarnation, proposal, session_id, timeout_ms } => {
            WireMessage::CreateSession(WireCreateSession {
                incarnation: *incarnation,
                proposal: *proposal,
                session_id: *session_id,
                timeout_ms: *timeout_ms,
            })
        }
        PeerMessage::Touch { sessions } => WireMessage::Touch(WireTouch { sessions: sessions.clone() }),
        PeerMessage::TermQuery => WireMessage::TermQuery(WireTermQuery {}),
        PeerMessage::TermReply { term, last_index } => WireMessage::TermReply(WireTermReply { term: *term, last_index: *last_index }),
    };
    Ok(WireEnvelope { from: env.from, to: env.to, msg: Some(msg) })
}

/// The envelope a wire record stands for.
pub fn from_wire(wire: WireEnvelope) -> Result<Envelope, PeerCodecError> {
    let msg = match wire.msg.ok_or(PeerCodecError::MissingMessage)? {
        WireMessage::Raft(bytes) => PeerMessage::Raft(protobuf::Message::parse_from_bytes(&bytes)?),
        WireMessage::Forward(f) => PeerMessage::Forward {
            incarnation: f.incarnation,
            proposal: f.proposal,
            session_id: f.session_id,
            cxid: f.cxid,
            auth: f.auth.into_iter().map(|i| Id { scheme: i.scheme, id: i.id }).collect(),
            req: Request::decode(f.op, &f.body)?,
        },
        WireMessage::CreateSession(c) => PeerMessage::CreateSession {
            incarnation: c.incarnation,
            proposal: c.proposal,
            session_id: c.session_id,
            timeout_ms: c.timeout_ms,
        },
        WireMessage::Touch(t) => PeerMessage::Touch { sessions: t.sessions },
        WireMessage::TermQuery(_) => PeerMessage::TermQuery,
        WireMessage::TermReply(t) => PeerMessage::TermReply { term: t.term, last_index: t.last_index },
    };
    Ok(Envelope { from: wire.from, to: wire.to, msg })
}

/// Appends `env` to `dst` as one frame. On error nothing is appended.
pub fn encode_frame(env: &Envelope, dst: &mut BytesMut) -> Result<(), PeerCodecError> {
    let wire = to_wire(env)?;
    let len = prost::Message::encoded_len(&wire);
    if len > PEER_FRAME_BYTES_MAX {
        return Err(PeerCodecError::FrameTooLarge { len: len as u64, max: PEER_FRAME_BYTES_MAX });
    }
    dst.reserve(4 + len);
    // Fits: PEER_FRAME_BYTES_MAX < u32::MAX, checked just above.
    dst.put_u32(len as u32);
    let before = dst.len();
    // Cannot fail: the space was reserved (BytesMut also grows on demand).
    prost::Message::encode(&wire, dst).map_err(|_| PeerCodecError::FrameTooLarge { len: len as u64, max: PEER_FRAME_BYTES_MAX })?;
    debug_assert_eq!(dst.len() - before, len, "prost's encoded_len and encode agree");
    Ok(())
}

/// Decodes one frame body (what follows the length prefix).
pub fn decode_body(body: &[u8]) -> Result<Envelope, PeerCodecError> {
    from_wire(<WireEnvelope as prost::Message>::decode(body)?)
}

/// [`Envelope`] frames for `tokio_util`'s `Framed`: check-then-parse, so an
/// incomplete frame is `Ok(None)` ("read more") and a bad length is an error
/// before its body is buffered.
#[derive(Debug)]
pub struct PeerCodec {
    frames: FrameCodec,
}

impl Default for PeerCodec {
    fn default() -> Self {
        PeerCodec { frames: FrameCodec::new(PEER_FRAME_BYTES_MAX) }
    }
}

impl Decoder for PeerCodec {
    type Item = Envelope;
    type Error = PeerCodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Envelope>, PeerCodecError> {
        match self.frames.decode(src)? {
            None => Ok(None),
            Some(body) => decode_body(&body).map(Some),
        }
    }
}

impl Encoder<&Envelope> for PeerCodec {
    type Error = PeerCodecError;

    fn encode(&mut self, env: &Envelope, dst: &mut BytesMut) -> Result<(), PeerCodecError> {
        encode_frame(env, dst)
    }
}

/// The handshake that opens every link, sent by the dialer and echoed
/// (with the ids swapped) by the acceptor. A fixed 24 bytes with no length
/// prefix, so garbage is refused after at most 24 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The sender's id (`myid`).
    pub from: u64,
    /// The id the sender expects the receiver to have.
    pub to: u64,
}

impl Hello {
    pub fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut b = [0u8; HELLO_BYTES];
        b[0..4].copy_from_slice(&PEER_PROTOCOL_MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&PEER_PROTOCOL_VERSION.to_be_bytes());
        b[8..16].copy_from_slice(&self.from.to_be_bytes());
        b[16..24].copy_from_slice(&self.to.to_be_bytes());
        b
    }

    /// Checks magic and version; the ids are the caller's to check.
    pub fn decode(b: &[u8; HELLO_BYTES]) -> Result<Hello, PeerCodecError> {
        let word = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let id = |i: usize| u64::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3], b[i + 4], b[i + 5], b[i + 6], b[i + 7]]);
        if word(0) != PEER_PROTOCOL_MAGIC {
            return Err(PeerCodecError::BadMagic(word(0)));
        }
        if word(4) != PEER_PROTOCOL_VERSION {
            return Err(PeerCodecError::BadVersion(word(4)));
        }
        Ok(Hello { from: id(8), to: id(16) })
    }
}

#[cfg(test)]
mod tests {
    //! Every variant survives a round trip (requests drawn by proptest from
    //! the protocol crate's record strategies), and no input makes the
    //! decoder panic or allocate past the limit.

    use super::*;
    use proptest::prelude::*;
    use protocol::*;
    use raft::eraftpb::{Entry, Message, MessageType, Snapshot};

    fn roundtrip(env: &Envelope) -> Envelope {
        let mut buf = BytesMut::new();
        PeerCodec::default().encode(env, &mut buf).expect("encodes");
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        assert_eq!(len + 4, buf.len(), "one frame, exactly");
        let got = PeerCodec::default().decode(&mut buf).expect("decodes").expect("a whole frame");
        assert!(buf.is_empty(), "the frame is consumed");
        got
    }

    fn raft_message() -> Message {
        let e = Entry { index: 42, term: 7, data: b"txn".to_vec().into(), context: b"ctx".to_vec().into(), ..Default::default() };
        let mut m =
            Message { from: 1, to: 2, term: 7, index: 41, log_term: 6, commit: 40, entries: vec![e].into(), ..Default::default() };
        m.set_msg_type(MessageType::MsgAppend);
        m
    }

    #[test]
    fn raft_snapshot_and_heartbeat_roundtrip() {
        let env = Envelope { from: 1, to: 2, msg: PeerMessage::Raft(raft_message()) };
        assert_eq!(roundtrip(&env), env);
        let mut snap = Message::default();
        snap.set_msg_type(MessageType::MsgSnapshot);
        let mut s = Snapshot { data: vec![0xab; 100_000].into(), ..Default::default() };
        s.mut_metadata().index = 99;
        s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        snap.set_snapshot(s);
        let env = Envelope { from: 3, to: 1, msg: PeerMessage::Raft(snap) };
        assert_eq!(roundtrip(&env), env);
        // An empty raft message (all defaults) still carries its arm.
        let env = Envelope { from: 2, to: 3, msg: PeerMessage::Raft(Message::default()) };
        assert_eq!(roundtrip(&env), env);
    }

    #[test]
    fn session_messages_roundtrip() {
        let env = Envelope {
            from: 2,
            to: 1,
            msg: PeerMessage::CreateSession { incarnation: u64::MAX, proposal: 5, session_id: -1, timeout_ms: 30_000 },
        };
        assert_eq!(roundtrip(&env), env);
        for sessions in [vec![], vec![i64::MIN, 0, 1, i64::MAX]] {
            let env = Envelope { from: 2, to: 1, msg: PeerMessage::Touch { sessions } };
            assert_eq!(roundtrip(&env), env);
        }
    }

    #[test]
    fn a_frame_arrives_in_pieces() {
        let env = Envelope { from: 1, to: 2, msg: PeerMessage::Raft(raft_message()) };
        let mut whole = BytesMut::new();
        encode_frame(&env, &mut whole).unwrap();
        encode_frame(&env, &mut whole).unwrap();
        let mut codec = PeerCodec::default();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in whole.iter() {
            buf.put_u8(*b);
            if let Some(e) = codec.decode(&mut buf).unwrap() {
                got.push(e);
            }
        }
        assert_eq!(got, vec![env.clone(), env]);
    }

    #[test]
    fn oversized_length_is_refused_before_the_body_arrives() {
        let mut codec = PeerCodec::default();
        let mut buf = BytesMut::from(&((PEER_FRAME_BYTES_MAX as u32) + 1).to_be_bytes()[..]);
        let cap = buf.capacity();
        assert!(matches!(codec.decode(&mut buf), Err(PeerCodecError::FrameTooLarge { .. })));
        assert_eq!(buf.capacity(), cap, "nothing reserved for the refused body");
        let mut buf = BytesMut::from(&u32::MAX.to_be_bytes()[..]);
        assert!(matches!(codec.decode(&mut buf), Err(PeerCodecError::NegativeLength(-1))));
    }

    #[test]
    fn an_oversized_message_is_not_sent() {
        let env = Envelope { from: 1, to: 2, msg: PeerMessage::Touch { sessions: vec![-1; PEER_FRAME_BYTES_MAX / 10 + 1] } };
        let mut buf = BytesMut::new();
        assert!(matches!(encode_frame(&env, &mut buf), Err(PeerCodecError::FrameTooLarge { .. })));
        assert!(buf.is_empty());
    }

    #[test]
    fn an_unknown_arm_or_bad_request_is_an_error() {
        // Tag 15 (a varint) is no arm this build knows.
        let body = [0x08, 0x01, 0x10, 0x02, 0x78, 0x01];
        assert!(matches!(decode_body(&body), Err(PeerCodecError::MissingMessage)));
        let wire = WireEnvelope {
            from: 1,
            to: 2,
            msg: Some(WireMessage::Forward(WireForward { op: 4242, ..Default::default() })),
        };
        let body = prost::Message::encode_to_vec(&wire);
        assert!(matches!(decode_body(&body), Err(PeerCodecError::Request(DecodeError::UnknownOpCode(4242)))));
        let wire = WireEnvelope { from: 1, to: 2, msg: Some(WireMessage::Raft(vec![0xff; 3])) };
        assert!(matches!(decode_body(&prost::Message::encode_to_vec(&wire)), Err(PeerCodecError::Raft(_))));
    }

    #[test]
    fn hello_checks_magic_and_version() {
        let h = Hello { from: 3, to: u64::MAX };
        assert_eq!(Hello::decode(&h.encode()).unwrap(), h);
        let mut b = h.encode();
        b[0] = b'X';
        assert!(matches!(Hello::decode(&b), Err(PeerCodecError::BadMagic(_))));
        let mut b = h.encode();
        b[7] = 9;
        assert!(matches!(Hello::decode(&b), Err(PeerCodecError::BadVersion(9))));
        // A ZooKeeper client's first bytes are not a handshake.
        let mut b = [0u8; HELLO_BYTES];
        b[..4].copy_from_slice(b"ruok");
        assert!(Hello::decode(&b).is_err());
    }

    fn request() -> impl Strategy<Value = Request> {
        let multi_op = prop_oneof![
            any::<CreateRequest>().prop_map(MultiOp::Create),
            any::<CreateRequest>().prop_map(MultiOp::Create2),
            any::<CreateTtlRequest>().prop_map(MultiOp::CreateTtl),
            any::<DeleteRequest>().prop_map(MultiOp::Delete),
            any::<SetDataRequest>().prop_map(MultiOp::SetData),
            any::<CheckVersionRequest>().prop_map(MultiOp::Check),
            any::<GetDataRequest>().prop_map(MultiOp::GetData),
        ];
        prop_oneof![
            any::<CreateRequest>().prop_map(Request::Create),
            any::<CreateRequest>().prop_map(Request::Create2),
            any::<CreateRequest>().prop_map(Request::CreateContainer),
            any::<CreateTtlRequest>().prop_map(Request::CreateTtl),
            any::<DeleteRequest>().prop_map(Request::Delete),
            any::<SetDataRequest>().prop_map(Request::SetData),
            any::<SetAclRequest>().prop_map(Request::SetAcl),
            any::<SyncRequest>().prop_map(Request::Sync),
            any::<CheckVersionRequest>().prop_map(Request::Check),
            any::<ReconfigRequest>().prop_map(Request::Reconfig),
            proptest::collection::vec(multi_op, 0..4).prop_map(|ops| Request::Multi(MultiRequest { ops })),
            Just(Request::CloseSession),
        ]
    }

    proptest! {
        #[test]
        fn forward_roundtrips(
            incarnation in any::<u64>(), proposal in any::<u64>(), session_id in any::<i64>(), cxid in any::<i32>(),
            auth in proptest::collection::vec(any::<Id>(), 0..3), req in request(),
        ) {
            let env = Envelope { from: 2, to: 1, msg: PeerMessage::Forward { incarnation, proposal, session_id, cxid, auth, req } };
            prop_assert_eq!(roundtrip(&env), env);
        }

        /// Random bytes (with a plausible length prefix or none) give frames
        /// or errors, never a panic.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), prefix in any::<bool>()) {
            let mut buf = BytesMut::new();
            if prefix {
                buf.put_u32(bytes.len() as u32);
            }
            buf.extend_from_slice(&bytes);
            let mut codec = PeerCodec::default();
            while let Ok(Some(_)) = codec.decode(&mut buf) {}
            let _ = decode_body(&bytes);
        }

        /// Every cut of a valid frame is "read more", never an error or an envelope.
        #[test]
        fn truncated_frames_wait(cut in 0usize..200, sessions in proptest::collection::vec(any::<i64>(), 0..20)) {
            let env = Envelope { from: 1, to: 3, msg: PeerMessage::Touch { sessions } };
            let mut whole = BytesMut::new();
            encode_frame(&env, &mut whole).unwrap();
            let mut part = BytesMut::from(&whole[..cut.min(whole.len() - 1)]);
            prop_assert!(PeerCodec::default().decode(&mut part).unwrap().is_none());
            // A truncated body is an error: the message arm is encoded last.
            let body = &whole[4..];
            if cut < body.len() {
                prop_assert!(decode_body(&body[..cut]).is_err());
            }
        }
    }
}
