//! multi and multiRead bodies (`MultiRequest`), and the `MultiResponse` a
//! client reads back: decode, re-encode, decode again to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{Jute, MultiRequest, MultiResponse};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = MultiRequest::from_bytes(data) {
        assert_eq!(MultiRequest::from_bytes(&req.to_bytes()).as_ref(), Ok(&req));
    }
    if let Ok(resp) = MultiResponse::from_bytes(data) {
        assert_eq!(MultiResponse::from_bytes(&resp.to_bytes()).as_ref(), Ok(&resp));
    }
});
