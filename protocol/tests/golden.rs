//! Golden bytes: a real session of Apache ZooKeeper 3.8.0's Java client
//! (`ZooKeeperMain`: create, sequential create, get -s, set, ls, delete,
//! quit) against Apache ZooKeeper 3.8.0, captured frame by frame on
//! loopback. Every frame must decode into our records and encode back to the
//! identical bytes, so wire compatibility is a unit test.

use protocol::*;

/// (direction, frame body in hex): C = client to server, S = server to client.
const SESSION: &[(&str, &str)] = &[
    ("C", "000000000000000000000000000075300000000000000000000000100000000000000000000000000000000000"),
    ("S", "00000000000075300100005be9490000000000105d774b942692b06d032a85aedfddd7dc00"),
    ("C", "0000000100000001000000022f670000000568656c6c6f000000010000001f00000005776f726c6400000006616e796f6e6500000000"),
    ("S", "00000001000000000000000200000000000000022f67"),
    ("C", "0000000200000001000000052f672f732d0000000178000000010000001f00000005776f726c6400000006616e796f6e6500000002"),
    ("S", "000000020000000000000003000000000000000f2f672f732d30303030303030303030"),
    ("C", "0000000300000004000000022f6700"),
    ("S", "000000030000000000000003000000000000000568656c6c6f00000000000000020000000000000002000001a21067aeed000001a21067aeed000000000000000100000000000000000000000000000005000000010000000000000003"),
    ("C", "0000000400000005000000022f6700000005776f726c64ffffffff"),
    ("S", "0000000400000000000000040000000000000000000000020000000000000004000001a21067aeed000001a21067af21000000010000000100000000000000000000000000000005000000010000000000000003"),
    ("C", "000000050000000c000000022f6700"),
    ("S", "00000005000000000000000400000000000000010000000c732d3030303030303030303000000000000000020000000000000004000001a21067aeed000001a21067af21000000010000000100000000000000000000000000000005000000010000000000000003"),
    ("C", "00000006000000020000000f2f672f732d30303030303030303030ffffffff"),
    ("S", "00000006000000000000000500000000"),
    ("C", "00000007fffffff5"),
    ("S", "00000007000000000000000600000000"),
];

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn java_client_session_round_trips_byte_for_byte() {
    let frames: Vec<(&str, Vec<u8>)> = SESSION.iter().map(|(d, h)| (*d, unhex(h))).collect();
    // The handshake.
    let connect = ConnectRequest::from_bytes(&frames[0].1).unwrap();
    assert_eq!((connect.time_out, connect.session_id, connect.read_only), (30000, 0, Some(false)));
    assert_eq!(connect.to_bytes(), frames[0].1);
    let accepted = ConnectResponse::from_bytes(&frames[1].1).unwrap();
    assert_eq!((accepted.time_out, accepted.passwd.len()), (30000, 16));
    assert_eq!(accepted.to_bytes(), frames[1].1);

    // Then request/reply pairs, matched by xid.
    let mut pending = std::collections::BTreeMap::new();
    let mut checked = 0;
    for (dir, bytes) in &frames[2..] {
        let mut b = &bytes[..];
        if *dir == "C" {
            let header = RequestHeader::decode(&mut b).unwrap();
            let req = Request::decode(header.r#type, b).unwrap();
            let mut again = Vec::new();
            header.encode(&mut again);
            req.encode_body(&mut again);
            assert_eq!(&again, bytes, "request {req:?}");
            pending.insert(header.xid, req);
        } else {
            let header = ReplyHeader::decode(&mut b).unwrap();
            assert_eq!(header.err, 0);
            let req = pending.remove(&header.xid).expect("a reply answers a request");
            let body = match req {
                Request::Create(_) => Response::Create(CreateResponse::from_bytes(b).unwrap()),
                Request::GetData(_) => Response::GetData(GetDataResponse::from_bytes(b).unwrap()),
                Request::SetData(_) => Response::Stat(Stat::from_bytes(b).unwrap()),
                Request::GetChildren2(_) => Response::GetChildren2(GetChildren2Response::from_bytes(b).unwrap()),
                Request::Delete(_) | Request::CloseSession => {
                    assert!(b.is_empty());
                    Response::Empty
                }
                other => panic!("unexpected request in the capture: {other:?}"),
            };
            let mut again = Vec::new();
            header.encode(&mut again);
            body.encode(&mut again);
            assert_eq!(&again, bytes, "reply {body:?}");
            checked += 1;
        }
    }
    assert!(pending.is_empty());
    assert_eq!(checked, 7);
}

#[test]
fn captured_values_are_what_zookeeper_said() {
    let reply = unhex(SESSION[5].1);
    let mut b = &reply[..];
    ReplyHeader::decode(&mut b).unwrap();
    // The first sequential child of a fresh parent.
    assert_eq!(CreateResponse::from_bytes(b).unwrap().path, "/g/s-0000000000");
    let get = unhex(SESSION[7].1);
    let mut b = &get[..];
    ReplyHeader::decode(&mut b).unwrap();
    let r = GetDataResponse::from_bytes(b).unwrap();
    assert_eq!(r.data.as_deref(), Some(&b"hello"[..]));
    // One child created: cversion 1, numChildren 1, pzxid = the child's zxid.
    assert_eq!((r.stat.cversion, r.stat.num_children, r.stat.version), (1, 1, 0));
    assert!(r.stat.pzxid > r.stat.czxid);
}
