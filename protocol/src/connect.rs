//! The session handshake. Irregular because clients older than 3.4 omit the
//! trailing `readOnly` byte, so it is optional on decode.

use bytes::BufMut;

use crate::jute::{DecodeError, Jute};

/// The first frame a client sends on a connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    pub protocol_version: i32,
    pub last_zxid_seen: i64,
    /// Requested session timeout in milliseconds.
    pub time_out: i32,
    /// 0 for a new session, else the session to resume.
    pub session_id: i64,
    pub passwd: Vec<u8>,
    /// `None` when the client did not send the byte at all.
    pub read_only: Option<bool>,
}

impl Jute for ConnectRequest {
    fn encode(&self, buf: &mut impl BufMut) {
        self.protocol_version.encode(buf);
        self.last_zxid_seen.encode(buf);
        self.time_out.encode(buf);
        self.session_id.encode(buf);
        self.passwd.encode(buf);
        if let Some(ro) = self.read_only {
            ro.encode(buf);
        }
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        Ok(ConnectRequest {
            protocol_version: i32::decode(buf)?,
            last_zxid_seen: i64::decode(buf)?,
            time_out: i32::decode(buf)?,
            session_id: i64::decode(buf)?,
            passwd: Vec::<u8>::decode(buf)?,
            read_only: if buf.is_empty() { None } else { Some(bool::decode(buf)?) },
        })
    }
    fn encoded_len(&self) -> usize {
        4 + 8 + 4 + 8 + self.passwd.encoded_len() + self.read_only.map_or(0, |_| 1)
    }
}

/// The server's answer to a `ConnectRequest`. A `time_out` of 0 tells the
/// client its session is expired (or the password was wrong).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    pub protocol_version: i32,
    /// Negotiated session timeout in milliseconds.
    pub time_out: i32,
    pub session_id: i64,
    pub passwd: Vec<u8>,
    pub read_only: bool,
}

impl Jute for ConnectResponse {
    fn encode(&self, buf: &mut impl BufMut) {
        self.protocol_version.encode(buf);
        self.time_out.encode(buf);
        self.session_id.encode(buf);
        self.passwd.encode(buf);
        self.read_only.encode(buf);
    }
    fn decode(buf: &mut &[u8]) -> Result<Self, DecodeError> {
        Ok(ConnectResponse {
            protocol_version: i32::decode(buf)?,
            time_out: i32::decode(buf)?,
            session_id: i64::decode(buf)?,
            passwd: Vec::<u8>::decode(buf)?,
            read_only: if buf.is_empty() { false } else { bool::decode(buf)? },
        })
    }
    fn encoded_len(&self) -> usize {
        4 + 4 + 8 + self.passwd.encoded_len() + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn connect_request_round_trips(pv: i32, z: i64, t: i32, s: i64, p in proptest::collection::vec(any::<u8>(), 0..32), ro: Option<bool>) {
            let r = ConnectRequest { protocol_version: pv, last_zxid_seen: z, time_out: t, session_id: s, passwd: p, read_only: ro };
            let b = r.to_bytes();
            prop_assert_eq!(b.len(), r.encoded_len());
            prop_assert_eq!(ConnectRequest::from_bytes(&b).unwrap(), r);
        }

        #[test]
        fn connect_response_round_trips(pv: i32, t: i32, s: i64, p in proptest::collection::vec(any::<u8>(), 0..32), ro: bool) {
            let r = ConnectResponse { protocol_version: pv, time_out: t, session_id: s, passwd: p, read_only: ro };
            prop_assert_eq!(ConnectResponse::from_bytes(&r.to_bytes()).unwrap(), r);
        }
    }

    #[test]
    fn old_clients_omit_read_only() {
        let r = ConnectRequest { time_out: 30000, passwd: vec![0; 16], read_only: None, ..Default::default() };
        let b = r.to_bytes();
        assert_eq!(b.len(), 4 + 8 + 4 + 8 + 4 + 16);
        assert_eq!(ConnectRequest::from_bytes(&b).unwrap().read_only, None);
    }
}
