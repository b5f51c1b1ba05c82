//! The peer transport on loopback: real sockets, ports picked by binding
//! 127.0.0.1:0, real members or hand-driven fake peers speaking raw bytes.
//! Synchronisation is by awaiting events (each with a timeout that only
//! turns a hang into a failure), never by sleeping.

use super::*;
use crate::replica::PeerMessage;
use std::collections::BTreeSet;
use tokio::time::timeout;

/// How long an expected event may take before the test fails (generous: CI is slow).
const WAIT: Duration = Duration::from_secs(10);
/// How quickly a closed link must be reported as `Down`.
const DOWN_WITHIN: Duration = Duration::from_secs(2);

struct Member {
    id: u64,
    net: PeerNet,
    events: mpsc::Receiver<PeerEvent>,
}

fn touch(from: u64, to: u64, n: i64) -> Envelope {
    Envelope { from, to, msg: PeerMessage::Touch { sessions: vec![n] } }
}

async fn listeners(n: usize) -> Vec<TcpListener> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    v
}

/// Members 1..=n on fresh loopback ports, each told about all the others.
async fn ensemble(n: usize) -> (Vec<Member>, Vec<(u64, SocketAddr)>) {
    let ls = listeners(n).await;
    let addrs: Vec<(u64, SocketAddr)> = ls.iter().enumerate().map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap())).collect();
    let members = ls
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let (net, events) = PeerNet::start_with_listener(i as u64 + 1, l, addrs.clone(), CancellationToken::new()).unwrap();
            Member { id: i as u64 + 1, net, events }
        })
        .collect();
    (members, addrs)
}

/// The next event matching `want`, skipping others; fails after `within`.
async fn wait_for(m: &mut Member, within: Duration, want: impl Fn(&PeerEvent) -> bool) -> PeerEvent {
    let id = m.id;
    timeout(within, async {
        loop {
            let e = m.events.recv().await.expect("event channel open");
            if want(&e) {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("member {id}: expected event did not come in time"))
}

/// Waits until `m`'s outgoing links to every one of `peers` are up.
async fn wait_up(m: &mut Member, peers: &[u64]) {
    let mut missing: BTreeSet<u64> = peers.iter().copied().collect();
    while !missing.is_empty() {
        if let PeerEvent::Up(p) = wait_for(m, WAIT, |e| matches!(e, PeerEvent::Up(_))).await {
            missing.remove(&p);
        }
    }
}

async fn all_up(ms: &mut [Member]) {
    let ids: Vec<u64> = ms.iter().map(|m| m.id).collect();
    for m in ms.iter_mut() {
        let others: Vec<u64> = ids.iter().copied().filter(|&i| i != m.id).collect();
        wait_up(m, &others).await;
    }
}

/// The next message, skipping Up/Down.
async fn next_message(m: &mut Member) -> Envelope {
    match wait_for(m, WAIT, |e| matches!(e, PeerEvent::Message(_))).await {
        PeerEvent::Message(env) => env,
        _ => unreachable!(),
    }
}

/// Reads until the other side closes; fails if it answers with data first or stays open.
async fn expect_closed(s: &mut TcpStream) {
    let mut b = [0u8; 64];
    match timeout(WAIT, s.read(&mut b)).await.expect("closed in time") {
        Ok(0) | Err(_) => {}
        Ok(n) => panic!("expected the connection closed, got {n} bytes"),
    }
}

#[tokio::test]
async fn three_members_exchange_messages_in_order() {
    let (mut ms, _) = ensemble(3).await;
    all_up(&mut ms).await;
    const N: i64 = 2000;
    for i in 0..N {
        for from in 1..=3u64 {
            for to in (1..=3u64).filter(|&t| t != from) {
                ms[from as usize - 1].net.send(touch(from, to, i));
            }
        }
    }
    // A raft message travels too.
    let raft = raft::eraftpb::Message { term: 9, ..Default::default() };
    ms[0].net.send(Envelope { from: 1, to: 2, msg: PeerMessage::Raft(raft.clone()) });
    for m in ms.iter_mut() {
        let mut next: BTreeMap<u64, i64> = BTreeMap::new();
        for _ in 0..2 * N {
            let env = next_message(m).await;
            assert_eq!(env.to, m.id);
            let PeerMessage::Touch { sessions } = env.msg else { panic!("unexpected {:?}", env.msg) };
            let want = next.entry(env.from).or_default();
            assert_eq!(sessions, vec![*want], "from {} to {}: in order, none lost", env.from, m.id);
            *want += 1;
        }
    }
    assert_eq!(next_message(&mut ms[1]).await, Envelope { from: 1, to: 2, msg: PeerMessage::Raft(raft) });
    for m in &ms {
        m.net.shutdown().await;
    }
}

#[tokio::test]
async fn a_stopped_member_is_reported_down_and_links_come_back_when_it_restarts() {
    let (mut ms, addrs) = ensemble(3).await;
    all_up(&mut ms).await;
    let third = ms.pop().unwrap();
    third.net.shutdown().await;
    // Every task ended: the listener is closed.
    assert!(TcpStream::connect(addrs[2].1).await.is_err(), "the quorum port of a stopped member is closed");
    for m in ms.iter_mut() {
        wait_for(m, DOWN_WITHIN, |e| *e == PeerEvent::Down(3)).await;
        // Messages for a member that is down are dropped, not queued.
        m.net.send(touch(m.id, 3, -1));
    }
    drop(third);

    // It restarts on the same address.
    let l = TcpListener::bind(addrs[2].1).await.unwrap();
    let (net, events) = PeerNet::start_with_listener(3, l, addrs.clone(), CancellationToken::new()).unwrap();
    ms.push(Member { id: 3, net, events });
    wait_up(&mut ms[0], &[3]).await;
    wait_up(&mut ms[1], &[3]).await;
    wait_up(&mut ms[2], &[1, 2]).await;
    for from in 1..=2u64 {
        ms[from as usize - 1].net.send(touch(from, 3, from as i64));
        ms[2].net.send(touch(3, from, 30 + from as i64));
    }
    let mut got: Vec<Envelope> = vec![next_message(&mut ms[2]).await, next_message(&mut ms[2]).await];
    got.sort_by_key(|e| e.from);
    assert_eq!(got, vec![touch(1, 3, 1), touch(2, 3, 2)], "nothing sent while it was down arrives");
    assert_eq!(next_message(&mut ms[0]).await, touch(3, 1, 31));
    assert_eq!(next_message(&mut ms[1]).await, touch(3, 2, 32));
    for m in &ms {
        m.net.shutdown().await;
    }
}

#[tokio::test]
async fn cancelling_the_callers_token_stops_everything() {
    let ls = listeners(2).await;
    let addrs: Vec<_> = ls.iter().enumerate().map(|(i, l)| (i as u64 + 1, l.local_addr().unwrap())).collect();
    let token = CancellationToken::new();
    let mut ms = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        let (net, events) = PeerNet::start_with_listener(i as u64 + 1, l, addrs.clone(), token.clone()).unwrap();
        ms.push(Member { id: i as u64 + 1, net, events });
    }
    all_up(&mut ms).await;
    token.cancel();
    for m in &ms {
        timeout(WAIT, m.net.shared.tracker.wait()).await.expect("every task ends");
    }
}

#[tokio::test]
async fn a_handshake_from_a_wrong_or_unknown_member_is_refused() {
    let (mut ms, addrs) = ensemble(2).await;
    all_up(&mut ms).await;
    let bad = [
        Hello { from: 9, to: 1 }.encode(), // not a member
        Hello { from: 2, to: 5 }.encode(), // a member, but it expects someone else
        Hello { from: 1, to: 1 }.encode(), // member 1 itself
    ];
    for hello in bad {
        let mut s = TcpStream::connect(addrs[0].1).await.unwrap();
        s.write_all(&hello).await.unwrap();
        expect_closed(&mut s).await;
    }
    // The real links are untouched.
    ms[1].net.send(touch(2, 1, 7));
    assert_eq!(wait_for(&mut ms[0], WAIT, |_| true).await, PeerEvent::Message(touch(2, 1, 7)));
    for m in &ms {
        m.net.shutdown().await;
    }
}

#[tokio::test]
async fn a_dialed_peer_that_answers_with_the_wrong_id_is_refused_and_redialed() {
    let fake = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peers = vec![(2, fake.local_addr().unwrap())];
    let (net, mut events) = PeerNet::start_with_listener(1, me, peers, CancellationToken::new()).unwrap();
    for _ in 0..2 {
        let (mut s, _) = timeout(WAIT, fake.accept()).await.unwrap().unwrap();
        let mut b = [0u8; HELLO_BYTES];
        s.read_exact(&mut b).await.unwrap();
        assert_eq!(Hello::decode(&b).unwrap(), Hello { from: 1, to: 2 });
        s.write_all(&Hello { from: 7, to: 1 }.encode()).await.unwrap();
        expect_closed(&mut s).await;
    }
    assert!(events.try_recv().is_err(), "no Up for an impostor");
    net.shutdown().await;
}

#[tokio::test]
async fn garbage_on_the_quorum_port_leaves_the_links_alone() {
    let (mut ms, addrs) = ensemble(2).await;
    all_up(&mut ms).await;
    let garbage: [&[u8]; 3] = [b"ruok", b"\x00\x00\x00\x2c\x00\x00\x00\x00 a zookeeper connect request", &[0xff; 4096]];
    for g in garbage {
        let mut s = TcpStream::connect(addrs[0].1).await.unwrap();
        s.write_all(g).await.unwrap();
        if g.len() < HELLO_BYTES {
            // Too short for a hello: the acceptor waits for more; hang up.
            drop(s);
        } else {
            expect_closed(&mut s).await;
        }
    }
    ms[1].net.send(touch(2, 1, 1));
    ms[0].net.send(touch(1, 2, 2));
    assert_eq!(wait_for(&mut ms[0], WAIT, |_| true).await, PeerEvent::Message(touch(2, 1, 1)), "no Down in between");
    assert_eq!(wait_for(&mut ms[1], WAIT, |_| true).await, PeerEvent::Message(touch(1, 2, 2)));
    for m in &ms {
        m.net.shutdown().await;
    }
}

/// A fake member 2 that dials member 1 and completes the handshake.
async fn fake_incoming(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&Hello { from: 2, to: 1 }.encode()).await.unwrap();
    let mut b = [0u8; HELLO_BYTES];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(Hello::decode(&b).unwrap(), Hello { from: 1, to: 2 });
    s
}

#[tokio::test]
async fn a_misaddressed_or_undecodable_frame_breaks_only_that_link() {
    let fake = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = me.local_addr().unwrap();
    let (net, events) = PeerNet::start_with_listener(1, me, vec![(2, fake.local_addr().unwrap())], CancellationToken::new()).unwrap();
    let mut m = Member { id: 1, net, events };
    let bad_frames: Vec<BytesMut> = vec![
        {
            let mut b = BytesMut::new();
            codec::encode_frame(&touch(3, 1, 0), &mut b).unwrap(); // not from the link's peer
            b
        },
        {
            let mut b = BytesMut::new();
            codec::encode_frame(&touch(2, 4, 0), &mut b).unwrap(); // not for this member
            b
        },
        BytesMut::from(&b"\x00\x00\x00\x03\xff\xff\xff"[..]), // not an envelope
        BytesMut::from(&u32::MAX.to_be_bytes()[..]),         // a hostile length
    ];
    for frame in bad_frames {
        let mut s = fake_incoming(addr).await;
        let mut good = BytesMut::new();
        codec::encode_frame(&touch(2, 1, 5), &mut good).unwrap();
        s.write_all(&good).await.unwrap();
        assert_eq!(next_message(&mut m).await, touch(2, 1, 5));
        s.write_all(&frame).await.unwrap();
        wait_for(&mut m, DOWN_WITHIN, |e| *e == PeerEvent::Down(2)).await;
        expect_closed(&mut s).await;
    }
    m.net.shutdown().await;
}

#[tokio::test]
async fn a_full_send_queue_breaks_the_link_and_it_is_redialed() {
    let fake = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (net, events) =
        PeerNet::start_inner(1, me, vec![(2, fake.local_addr().unwrap())], CancellationToken::new(), 4).unwrap();
    let mut m = Member { id: 1, net, events };
    // The fake peer handshakes, then never reads.
    let accept_one = || async {
        let (mut s, _) = timeout(WAIT, fake.accept()).await.unwrap().unwrap();
        let mut b = [0u8; HELLO_BYTES];
        s.read_exact(&mut b).await.unwrap();
        s.write_all(&Hello { from: 2, to: 1 }.encode()).await.unwrap();
        s
    };
    let mut s = accept_one().await;
    wait_up(&mut m, &[2]).await;
    let big = Envelope { from: 1, to: 2, msg: PeerMessage::Touch { sessions: vec![-1; 100_000] } };
    let mut down = false;
    for _ in 0..10_000 {
        m.net.send(big.clone());
        if let Ok(e) = m.events.try_recv() {
            assert_eq!(e, PeerEvent::Down(2));
            down = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(down, "a peer that never reads is reported down");
    expect_closed_after_reading(&mut s).await;
    // Redialed: a fresh link, which works.
    let mut s = accept_one().await;
    wait_up(&mut m, &[2]).await;
    m.net.send(touch(1, 2, 9));
    let mut codec = PeerCodec::default();
    let mut buf = BytesMut::new();
    let env = timeout(WAIT, async {
        loop {
            if let Some(env) = codec.decode(&mut buf).unwrap() {
                return env;
            }
            assert!(s.read_buf(&mut buf).await.unwrap() > 0);
        }
    })
    .await
    .unwrap();
    assert_eq!(env, touch(1, 2, 9));
    m.net.shutdown().await;
}

/// Drains what was written before the close, then expects EOF.
async fn expect_closed_after_reading(s: &mut TcpStream) {
    let mut b = vec![0u8; 1 << 20];
    timeout(WAIT, async {
        loop {
            match s.read(&mut b).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("closed in time");
}
