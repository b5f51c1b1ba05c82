"""Connect / session negotiation, reconnect, expiry, close."""
import time

import pytest
from kazoo.client import KazooClient
from kazoo.protocol.states import EventType, KazooState

import rawzk as R
import servers
from helpers import Events, StateWaiter, WAIT

TICK = 1000  # conftest TICK_MS


@pytest.mark.parametrize("asked,granted", [
    (1000, 2 * TICK),      # below min (2 ticks) -> clamped up
    (100000, 20 * TICK),   # above max (20 ticks) -> clamped down
    (5000, 5000),          # inside -> granted as asked
    (2 * TICK, 2 * TICK),
    (20 * TICK, 20 * TICK),
])
def test_session_timeout_negotiation(raw, asked, granted):
    c = raw(timeout_ms=asked)
    assert c.connect_response.timeout == granted
    assert c.connect_response.protocol_version == 0


def test_connect_response_fields(raw):
    a, b = raw(), raw()
    for c in (a, b):
        assert c.session_id != 0
        assert len(c.passwd) == 16
        assert c.connect_response.read_only is False
    assert a.session_id != b.session_id


def test_kazoo_negotiated_timeout_visible_in_cons(kz, port):
    import servers
    c = kz(timeout=1.0)  # kazoo asks 1000 ms -> server grants min (2 ticks)
    line = [l for l in servers.four_letter(port, "cons").splitlines()
            if "sid=0x%x," % c.client_id[0] in l]
    assert len(line) == 1, line
    assert ",to=%d," % (2 * TICK) in line[0]


def test_new_session_sees_zxid_in_replies(raw, root):
    c = raw()
    r1 = c.create(root + "/a")
    r2 = c.create(root + "/b")
    assert r1.err == 0 and r2.err == 0
    assert r2.zxid == r1.zxid + 1          # each write is one transaction
    r3 = c.exists(root + "/a")
    assert r3.zxid >= r2.zxid               # reads report the last committed zxid
    assert r3.xid == c.xid


def test_reconnect_same_session_keeps_ephemerals(raw, root):
    a = raw(timeout_ms=10000)
    assert a.create(root + "/eph", mode=R.EPHEMERAL).err == 0
    sid, pw = a.session_id, a.passwd
    a.drop()  # TCP gone, session alive
    b = raw(session_id=sid, passwd=pw, timeout_ms=10000, last_zxid=a.last_zxid)
    assert b.session_id == sid
    assert b.passwd == pw
    assert b.connect_response.timeout == 10000
    r = b.exists(root + "/eph")
    assert r.err == 0
    assert r.body.stat().ephemeralOwner == sid


def test_session_takeover_closes_old_connection(raw, root):
    a = raw(timeout_ms=10000)
    b = raw(session_id=a.session_id, passwd=a.passwd, timeout_ms=10000)
    assert b.session_id == a.session_id
    with pytest.raises(R.ConnectionClosed):
        a.exists("/")  # server closed the superseded connection
    assert b.exists("/").err == 0


def test_wrong_password_rejected_raw(raw):
    a = raw(timeout_ms=10000)
    bad = bytes((x ^ 0xFF) for x in a.passwd)
    b = raw(session_id=a.session_id, passwd=bad)
    # ZooKeeper answers a ConnectResponse with timeOut=0, sessionId=0, 16 zero bytes ...
    assert b.connect_response.timeout == 0
    assert b.connect_response.session_id == 0
    assert b.connect_response.passwd == bytes(16)
    # ... and then closes the connection.
    with pytest.raises(R.ConnectionClosed):
        b.exists("/")
    # Surprise: ZooKeeper closes the *legitimate* connection of that session too
    # (it drops existing connections of the session id before checking the password) ...
    if servers.target() == "corral":
        # Deliberate difference (README): anyone who can read a session id
        # from `cons` could disconnect its owner that way, so Corral leaves
        # the legitimate connection alone.
        assert a.exists("/").err == 0
    else:
        with pytest.raises(R.ConnectionClosed):
            a.exists("/")
    # ... but the session itself survives and the right password resumes it.
    c = raw(session_id=a.session_id, passwd=a.passwd, timeout_ms=10000)
    assert c.session_id == a.session_id
    assert c.exists("/").err == 0


def test_wrong_password_kazoo_gets_new_session(kz, zk):
    sid, pw = zk.client_id
    bad = bytes((x ^ 0xFF) for x in pw)
    c = kz(client_id=(sid, bad))
    # the rejected resume surfaces as SessionExpired inside kazoo, which then
    # silently creates a brand-new session
    assert c.connected
    assert c.client_id[0] not in (0, sid)


def test_close_session_deletes_ephemerals_and_fires_watches(kz, root):
    a = kz()
    b = kz()
    a.create(root + "/e", b"x", ephemeral=True)
    assert b.exists(root + "/e").ephemeralOwner == a.client_id[0]
    ev, cev = Events(), Events()
    b.get(root + "/e", watch=ev)
    b.get_children(root, watch=cev)
    a.stop()
    e = ev.get()
    assert e.type == EventType.DELETED and e.path == root + "/e"
    assert cev.get().type == EventType.CHILD
    assert b.exists(root + "/e") is None


def test_close_session_reply_and_reconnect_rejected(raw):
    a = raw()
    before = raw().exists("/").zxid
    rep = a.close_session()
    assert rep.err == 0
    assert rep.xid == a.xid
    assert rep.zxid > before  # closeSession is a transaction
    b = raw(session_id=a.session_id, passwd=a.passwd)
    assert b.connect_response.timeout == 0 and b.connect_response.session_id == 0
    with pytest.raises(R.ConnectionClosed):
        b.exists("/")


def test_expire_via_second_connection(kz, port, root):
    """Classic expiry trick: connect a 2nd client with the same id+password, close it."""
    a = kz()
    b = kz()
    states = StateWaiter(a)
    a.create(root + "/eph", ephemeral=True)
    ev = Events()
    b.exists(root + "/eph", watch=ev)
    sid, pw = a.client_id
    other = R.RawZK(port, session_id=sid, passwd=pw)
    try:
        assert other.session_id == sid
        assert other.close_session().err == 0
    finally:
        other.drop()
    e = ev.get()
    assert e.type == EventType.DELETED
    states.wait_for(KazooState.LOST)
    assert b.exists(root + "/eph") is None
    # kazoo then makes a fresh session automatically
    states.wait_for(KazooState.CONNECTED, after=states.seen.index(KazooState.LOST))
    assert a.client_id[0] != sid


def test_session_expires_after_timeout_without_pings(raw, root):
    a = raw(timeout_ms=2 * TICK)
    assert a.create(root + "/eph", mode=R.EPHEMERAL).err == 0
    w = raw(timeout_ms=20000)
    assert w.exists(root + "/eph", watch=True).err == 0
    t0 = time.monotonic()
    a.drop()
    ev = w.wait_event(timeout=15)
    elapsed = time.monotonic() - t0
    assert ev == R.Event(R.EV_DELETED, R.ST_SYNC_CONNECTED, root + "/eph")
    # not before the session timeout (less the time since the last packet), and
    # within a bound that still allows for tick-bucket rounding and a loaded machine
    assert 2 * TICK / 1000.0 - 1.0 <= elapsed <= 2 * TICK / 1000.0 + 8.0, elapsed
    b = raw(session_id=a.session_id, passwd=a.passwd)
    assert b.connect_response.timeout == 0  # expired session cannot be resumed


def test_pings_keep_session_alive(raw, root):
    a = raw(timeout_ms=2 * TICK)
    assert a.create(root + "/eph", mode=R.EPHEMERAL).err == 0
    deadline = time.monotonic() + 3 * 2 * TICK / 1000.0
    while time.monotonic() < deadline:
        rep = a.ping()
        assert rep.xid == -2 and rep.err == 0
        time.sleep(0.3)  # pacing the heartbeat, not synchronisation
    assert a.exists(root + "/eph").err == 0


def test_connect_with_future_zxid_refused(raw, port):
    cur = raw().exists("/").zxid
    with pytest.raises(R.ConnectionClosed):
        R.RawZK(port, last_zxid=cur + 1000000)


def test_kazoo_reconnect_with_client_id(kz, raw, root):
    a = raw(timeout_ms=10000)
    assert a.create(root + "/eph", mode=R.EPHEMERAL).err == 0
    sid, pw = a.session_id, a.passwd
    a.drop()
    b = kz(client_id=(sid, pw))
    assert b.client_id[0] == sid
    assert b.exists(root + "/eph").ephemeralOwner == sid


def test_configured_min_max_session_timeout():
    import servers
    srv = servers.Server(tick_time=1000,
                         extra_cfg=["minSessionTimeout=3000", "maxSessionTimeout=9000"])
    try:
        srv.start()
        got = []
        for t in (1000, 5000, 60000):
            c = R.RawZK(srv.port, timeout_ms=t)
            got.append(c.timeout)
            c.drop()
        assert got == [3000, 5000, 9000]
        conf = servers.four_letter(srv.port, "conf")
        assert "minSessionTimeout=3000" in conf and "maxSessionTimeout=9000" in conf
    finally:
        srv.cleanup()


def test_read_only_flag_on_rw_server(raw, root):
    c = raw(read_only=True)
    # a read-write server answers readOnly=false and accepts writes
    assert c.connect_response.read_only is False
    assert c.create(root + "/w").err == 0
