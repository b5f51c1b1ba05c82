"""multi / transactions, multiRead: all-or-nothing and the exact reply format."""
import pytest
from kazoo.exceptions import (BadVersionError, NoNodeError, NodeExistsError, RolledBackError,
                              RuntimeInconsistency)
from kazoo.protocol.states import EventType

import rawzk as R
from helpers import Events


def test_kazoo_transaction_success(zk, root):
    zk.create(root + "/a", b"1")
    t = zk.transaction()
    t.create(root + "/b", b"2")
    t.set_data(root + "/a", b"11", version=0)
    t.check(root + "/a", 1)  # sees the set_data earlier in the same multi
    t.create(root + "/s-", sequence=True)
    t.delete(root + "/b")
    res = t.commit()
    assert res[0] == root + "/b"
    assert res[1].version == 1
    assert res[2] is True
    assert res[3] == root + "/s-0000000002"
    assert res[4] is True
    assert zk.get(root + "/a")[0] == b"11"
    assert zk.exists(root + "/b") is None


def test_kazoo_transaction_failure_all_or_nothing(zk, root):
    zk.create(root + "/a", b"1")
    before = zk.exists(root)
    t = zk.transaction()
    t.create(root + "/new", b"x")
    t.set_data(root + "/a", b"2")
    t.delete(root + "/missing")          # fails: NoNode
    t.create(root + "/new2")
    res = t.commit()
    assert isinstance(res[0], RolledBackError)
    assert isinstance(res[1], RolledBackError)
    assert isinstance(res[2], NoNodeError)
    assert isinstance(res[3], RuntimeInconsistency)
    assert zk.exists(root + "/new") is None and zk.exists(root + "/new2") is None
    assert zk.get(root + "/a")[0] == b"1"
    after = zk.exists(root)
    assert (after.cversion, after.pzxid, after.numChildren) == \
        (before.cversion, before.pzxid, before.numChildren)


@pytest.mark.parametrize("bad_op,code,exc", [
    ("check", R.BAD_VERSION, BadVersionError),
    ("create", R.NODE_EXISTS, NodeExistsError),
])
def test_kazoo_transaction_failure_kinds(zk, root, bad_op, code, exc):
    zk.create(root + "/a")
    t = zk.transaction()
    if bad_op == "check":
        t.check(root + "/a", 5)
    else:
        t.create(root + "/a")
    res = t.commit()
    assert len(res) == 1 and isinstance(res[0], exc)


def test_raw_failed_multi_reply_format(raw, root):
    """ReplyHeader.err is 0 (OK) for a failed multi; the failure is only in the
    per-op results: every result is an ErrorResult (type -1): ops before the
    failing one carry err 0, the failing op its code, later ops -2
    (RuntimeInconsistency). A failed multi still consumes a zxid."""
    c = raw()
    assert c.create(root + "/p").err == 0
    rep, res = c.multi([
        R.op_create(root + "/p/m1"),
        R.op_create(root + "/p/missing/x"),
        R.op_set(root + "/p", b"x"),
        R.op_check(root + "/p", 7),
    ])
    assert rep.err == R.OK
    assert rep.xid == c.xid
    assert [(t, e) for t, e, _ in res] == [(-1, 0), (-1, R.NO_NODE), (-1, R.RUNTIME_INCONSISTENCY),
                                           (-1, R.RUNTIME_INCONSISTENCY)]
    nxt = c.create(root + "/after")
    assert nxt.zxid == rep.zxid + 1   # the failed multi had its own zxid
    assert c.exists(root + "/p/m1").err == R.NO_NODE
    assert c.get_data(root + "/p").body.buffer() == b""


def test_raw_failed_multi_on_first_and_last_op(raw, root):
    c = raw()
    rep, res = c.multi([R.op_check(root, 99), R.op_create(root + "/x")])
    assert rep.err == 0
    assert [(t, e) for t, e, _ in res] == [(-1, R.BAD_VERSION), (-1, R.RUNTIME_INCONSISTENCY)]
    rep, res = c.multi([R.op_create(root + "/x"), R.op_delete(root + "/nope")])
    assert [(t, e) for t, e, _ in res] == [(-1, 0), (-1, R.NO_NODE)]
    assert c.exists(root + "/x").err == R.NO_NODE


def test_raw_successful_multi_results(raw, root):
    c = raw()
    c.create(root + "/p")
    rep, res = c.multi([
        R.op_create(root + "/p/m1", b"a"),
        R.op_create2(root + "/p/m2", b"bb"),
        R.op_set(root + "/p", b"x"),
        R.op_check(root + "/p", 1),
        R.op_delete(root + "/p/m1"),
    ])
    assert rep.err == 0
    types = [t for t, _, _ in res]
    # create2 inside a multi is answered as a plain create (type 1, path only)
    assert types == [R.CREATE, R.CREATE, R.SET_DATA, R.CHECK, R.DELETE]
    assert all(e == 0 for _, e, _ in res)
    assert res[0][2][0] == root + "/p/m1" and res[1][2][0] == root + "/p/m2"
    set_stat = res[2][2]
    assert set_stat.version == 1 and set_stat.mzxid == rep.zxid
    # the whole multi is one transaction: one zxid for every op
    m2 = c.exists(root + "/p/m2").body.stat()
    assert m2.czxid == rep.zxid
    # stat returned for set_data reflects the state at that point of the multi
    assert set_stat.numChildren == 2
    assert c.exists(root + "/p").body.stat().numChildren == 1


def test_raw_empty_multi(raw):
    c = raw()
    z0 = c.exists("/").zxid
    rep, res = c.multi([])
    assert rep.err == 0 and res == []
    assert rep.zxid == z0 + 1  # even an empty multi is a transaction


def test_raw_multi_read(raw, root):
    c = raw()
    c.create(root + "/a", b"va")
    c.create(root + "/a/k")
    rep, res = c.multi([R.op_get_data(root + "/a"), R.op_get_children(root + "/a"),
                        R.op_get_data(root + "/missing"), R.op_get_data(root + "/a/k")],
                       op=R.MULTI_READ)
    assert rep.err == 0
    assert res[0][0] == R.GET_DATA and res[0][2][0] == b"va" and res[0][2][1].numChildren == 1
    assert res[1][0] == R.GET_CHILDREN and res[1][2] == ["k"]
    assert res[2][:2] == (-1, R.NO_NODE)
    assert res[3][0] == R.GET_DATA and res[3][1] == 0   # reads are independent: no rollback


def test_multi_fires_watches_after_commit(zk, kz, root):
    zk.create(root + "/a", b"1")
    other = kz()
    dev, cev = Events(), Events()
    other.get(root + "/a", watch=dev)
    other.get_children(root, watch=cev)
    t = zk.transaction()
    t.set_data(root + "/a", b"2")
    t.create(root + "/b")
    t.commit()
    assert dev.get().type == EventType.CHANGED
    assert cev.get().type == EventType.CHILD


def test_failed_multi_fires_no_watches(zk, kz, root):
    zk.create(root + "/a", b"1")
    other = kz()
    dev = Events()
    other.get(root + "/a", watch=dev)
    t = zk.transaction()
    t.set_data(root + "/a", b"2")
    t.check(root + "/a", 42)
    t.commit()
    dev.none_within(0.5)
    assert other.get(root + "/a")[0] == b"1"


def test_multi_ephemeral_and_sequential(zk, root):
    t = zk.transaction()
    t.create(root + "/e", ephemeral=True)
    t.create(root + "/q-", sequence=True)
    t.create(root + "/q-", sequence=True)
    res = t.commit()
    assert res[1:] == [root + "/q-0000000001", root + "/q-0000000002"]
    assert zk.exists(root + "/e").ephemeralOwner == zk.client_id[0]
