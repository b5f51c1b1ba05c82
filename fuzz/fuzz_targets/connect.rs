//! The session handshake: `ConnectRequest` (old clients omit the trailing
//! readOnly byte) and, for the client side, `ConnectResponse`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{ConnectRequest, ConnectResponse, Jute};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = ConnectRequest::from_bytes(data) {
        let bytes = req.to_bytes();
        assert_eq!(bytes.len(), req.encoded_len());
        assert_eq!(ConnectRequest::from_bytes(&bytes).as_ref(), Ok(&req));
    }
    if let Ok(resp) = ConnectResponse::from_bytes(data) {
        assert_eq!(ConnectResponse::from_bytes(&resp.to_bytes()).as_ref(), Ok(&resp));
    }
});
