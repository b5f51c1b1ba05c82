//! A client request frame as `net::client` reads it: `RequestHeader`
//! (xid, then the opcode, which chooses the body) and `Request::decode` for
//! every opcode. A decoded request re-encodes to a body that decodes to the
//! same request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::{Jute, Request, RequestHeader};

fuzz_target!(|data: &[u8]| {
    let mut buf = data;
    let Ok(header) = RequestHeader::decode(&mut buf) else { return };
    let Ok(req) = Request::decode(header.r#type, buf) else { return };
    assert_eq!(req.op_code().as_i32(), header.r#type);
    let mut again = Vec::new();
    req.encode_body(&mut again);
    assert_eq!(Request::decode(header.r#type, &again).as_ref(), Ok(&req), "re-encoded {req:?}");
});
