//! Server frames as a client decodes them: `ReplyHeader`, then the body.
//! The first byte picks the body's record (a client knows it from the
//! request the xid answers); watch events (xid -1) are `WatcherEvent`s.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::*;

fn check<T: Jute + PartialEq + std::fmt::Debug>(body: &[u8]) {
    if let Ok(v) = T::from_bytes(body) {
        let bytes = v.to_bytes();
        assert_eq!(bytes.len(), v.encoded_len(), "encoded_len of {v:?}");
        assert_eq!(T::from_bytes(&bytes).as_ref(), Ok(&v));
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, mut buf)) = data.split_first() else { return };
    let Ok(header) = ReplyHeader::decode(&mut buf) else { return };
    if header.xid == -1 {
        return check::<WatcherEvent>(buf);
    }
    match which % 17 {
        0 => check::<CreateResponse>(buf),
        1 => check::<Create2Response>(buf),
        2 => check::<Stat>(buf),
        3 => check::<GetDataResponse>(buf),
        4 => check::<GetAclResponse>(buf),
        5 => check::<GetChildrenResponse>(buf),
        6 => check::<GetChildren2Response>(buf),
        7 => check::<GetAllChildrenNumberResponse>(buf),
        8 => check::<GetEphemeralsResponse>(buf),
        9 => check::<SyncResponse>(buf),
        10 => check::<MultiResponse>(buf),
        11 => check::<WhoAmIResponse>(buf),
        12 => check::<SetSaslResponse>(buf),
        13 => check::<ErrorResponse>(buf),
        14 => check::<ExistsResponse>(buf),
        15 => check::<SetDataResponse>(buf),
        _ => check::<ConnectResponse>(buf),
    }
});
