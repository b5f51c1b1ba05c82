"""create/get/set/exists/delete, create modes, Stat semantics, children."""
import re
import time

import pytest
from kazoo.exceptions import (BadArgumentsError, BadVersionError, NoChildrenForEphemeralsError,
                              NodeExistsError, NoNodeError, NotEmptyError)
from kazoo.protocol.states import EventType

import rawzk as R
from helpers import Events


def test_create_get_exists_persistent(zk, root):
    p = zk.create(root + "/n", b"hello")
    assert p == root + "/n"
    data, st = zk.get(p)
    assert data == b"hello"
    assert st.dataLength == 5 and st.version == 0 and st.ephemeralOwner == 0
    assert zk.exists(p) == st
    assert zk.exists(root + "/missing") is None


def test_create_errors(zk, root):
    zk.create(root + "/n")
    with pytest.raises(NodeExistsError):
        zk.create(root + "/n")
    with pytest.raises(NoNodeError):
        zk.create(root + "/no/parent")
    with pytest.raises(NoNodeError):
        zk.get(root + "/missing")
    with pytest.raises(NoNodeError):
        zk.set(root + "/missing", b"x")
    with pytest.raises(NoNodeError):
        zk.delete(root + "/missing")
    with pytest.raises(NoNodeError):
        zk.get_children(root + "/missing")


def test_error_codes_raw(raw, root):
    c = raw()
    assert c.create(root + "/n").err == R.OK
    r = c.create(root + "/n")
    assert r.err == R.NODE_EXISTS and r.body.remaining() == 0
    assert c.create(root + "/x/y").err == R.NO_NODE
    assert c.delete(root + "/x").err == R.NO_NODE
    assert c.set_data(root + "/n", b"1", version=5).err == R.BAD_VERSION
    assert c.delete(root + "/n", version=5).err == R.BAD_VERSION
    assert c.create(root + "/n/c").err == R.OK
    assert c.delete(root + "/n").err == R.NOT_EMPTY
    assert c.create(root + "/e", mode=R.EPHEMERAL).err == R.OK
    assert c.create(root + "/e/c").err == R.NO_CHILDREN_FOR_EPHEMERALS
    assert c.create("relative").err == R.BAD_ARGUMENTS
    r = c.exists(root + "/missing")
    assert r.err == R.NO_NODE and r.body.remaining() == 0
    assert c.get_data(root + "/missing").err == R.NO_NODE


def test_makepath_and_binary_and_empty_data(zk, root):
    blob = bytes(range(256)) * 4
    zk.create(root + "/a/b/c", blob, makepath=True)
    assert zk.get(root + "/a/b/c")[0] == blob
    zk.create(root + "/empty")
    d, st = zk.get(root + "/empty")
    assert d == b"" and st.dataLength == 0


def test_large_data_roundtrip(zk, root):
    big = b"z" * (1000 * 1024)  # under the 1 MiB jute.maxbuffer default
    zk.create(root + "/big", big)
    d, st = zk.get(root + "/big")
    assert d == big and st.dataLength == len(big)


def test_unicode_path(zk, root):
    p = root + "/日本語-ünï"
    zk.create(p, "värde".encode())
    assert zk.get_children(root) == ["日本語-ünï"]
    assert zk.get(p)[0].decode() == "värde"


def test_ephemeral_owner_and_no_children(zk, root):
    p = zk.create(root + "/e", ephemeral=True)
    st = zk.exists(p)
    assert st.ephemeralOwner == zk.client_id[0]
    with pytest.raises(NoChildrenForEphemeralsError):
        zk.create(p + "/child")


SEQ = re.compile(r"^(.*?)(\d{10})$")


def test_sequential_suffix_format(zk, root):
    names = [zk.create(root + "/s-", sequence=True) for _ in range(3)]
    assert names == [root + "/s-%010d" % i for i in range(3)]
    e = zk.create(root + "/e-", ephemeral=True, sequence=True)
    assert e == root + "/e-0000000003"  # counter is per parent, shared by all children
    assert zk.exists(e).ephemeralOwner == zk.client_id[0]
    # sequence node whose name is only the counter ("parent/")
    only = zk.create(root + "/", sequence=True)
    assert only == root + "/0000000004"


def test_sequence_counter_vs_cversion(raw, root):
    """The sequence suffix counts child *creations* only; client-visible cversion
    counts creations + deletions. (ZooKeeper stores #creates internally and
    reports cversion = 2*#creates - numChildren.)"""
    c = raw()

    def stat():
        return c.exists(root).body.stat()
    assert stat().cversion == 0
    assert c.create(root + "/s-", mode=R.PERSISTENT_SEQUENTIAL).body.string() == root + "/s-0000000000"
    assert stat().cversion == 1
    c.create(root + "/a")
    assert stat().cversion == 2
    c.delete(root + "/a")
    st = stat()
    assert (st.cversion, st.numChildren) == (3, 1)
    assert c.create(root + "/s-", mode=R.PERSISTENT_SEQUENTIAL).body.string() == root + "/s-0000000002"
    for _ in range(2):
        c.create(root + "/b")
        c.delete(root + "/b")
    st = stat()
    assert (st.cversion, st.numChildren) == (8, 2)
    assert c.create(root + "/s-", mode=R.EPHEMERAL_SEQUENTIAL).body.string() == root + "/s-0000000005"
    # failed creates/deletes change nothing
    assert c.create(root + "/s-0000000005").err == R.NODE_EXISTS
    assert c.delete(root + "/nope").err == R.NO_NODE
    st = stat()
    assert (st.cversion, st.numChildren) == (9, 3)
    # invariant: next suffix == (cversion + numChildren) / 2
    nxt = (st.cversion + st.numChildren) // 2
    assert c.create(root + "/x-", mode=R.PERSISTENT_SEQUENTIAL).body.string() == root + "/x-%010d" % nxt


def test_set_versions(zk, root):
    p = zk.create(root + "/v", b"0")
    st = zk.set(p, b"1", version=0)
    assert st.version == 1
    with pytest.raises(BadVersionError):
        zk.set(p, b"2", version=0)
    st = zk.set(p, b"1", version=-1)  # same data still bumps version and mzxid
    assert st.version == 2
    assert zk.get(p)[0] == b"1"
    with pytest.raises(BadVersionError):
        zk.delete(p, version=1)
    zk.delete(p, version=2)
    assert zk.exists(p) is None


def test_delete_not_empty_and_recursive(zk, root):
    zk.create(root + "/d/e/f", makepath=True)
    with pytest.raises(NotEmptyError):
        zk.delete(root + "/d")
    zk.delete(root + "/d", recursive=True)
    assert zk.exists(root + "/d") is None


def test_stat_semantics(zk, kz, root):
    t0 = int(time.time() * 1000)
    p = zk.create(root + "/s", b"abc")
    st = zk.exists(p)
    t1 = int(time.time() * 1000)
    assert st.czxid == st.mzxid == st.pzxid  # fresh node: pzxid = czxid
    assert st.ctime == st.mtime
    assert t0 - 2000 <= st.ctime <= t1 + 2000  # milliseconds since epoch
    assert (st.version, st.cversion, st.aversion) == (0, 0, 0)
    assert st.ephemeralOwner == 0
    assert st.dataLength == 3 and st.numChildren == 0

    st2 = zk.set(p, b"abcdef")
    assert st2.czxid == st.czxid and st2.ctime == st.ctime
    assert st2.mzxid > st.mzxid and st2.mtime >= st.mtime
    assert st2.pzxid == st.pzxid          # data change does not touch pzxid
    assert st2.version == 1 and st2.dataLength == 6

    zk.create(p + "/c1", b"x")
    st3 = zk.exists(p)
    c1 = zk.exists(p + "/c1")
    assert st3.pzxid == c1.czxid          # child create sets pzxid
    assert st3.mzxid == st2.mzxid         # ... but not mzxid
    assert st3.cversion == 1 and st3.numChildren == 1 and st3.version == 1

    zk.set(p + "/c1", b"y")               # child data change: parent unchanged
    assert zk.exists(p) == st3

    zk.delete(p + "/c1")
    st4 = zk.exists(p)
    assert st4.pzxid > st3.pzxid and st4.cversion == 2 and st4.numChildren == 0

    zk.set_acls(p, zk.get_acls(p)[0])
    st5 = zk.exists(p)
    assert st5.aversion == 1 and st5.version == 1 and st5.mzxid == st4.mzxid

    other = kz()
    e = other.create(p + "/eph", ephemeral=True)
    assert zk.exists(e).ephemeralOwner == other.client_id[0]


def test_create2_returns_stat(raw, root):
    c = raw()
    r = c.create2(root + "/c2", b"data")
    assert r.err == 0
    assert r.body.string() == root + "/c2"
    st = r.body.stat()
    assert st.czxid == r.zxid and st.dataLength == 4 and st.version == 0
    assert c.exists(root + "/c2").body.stat() == st


def test_kazoo_create_include_data(zk, root):
    p, st = zk.create(root + "/inc", b"12", include_data=True)
    assert p == root + "/inc" and st.dataLength == 2 and st == zk.exists(p)


def test_get_children_and_children2(zk, root):
    for n in ["c", "a", "b"]:
        zk.create(root + "/" + n)
    kids = zk.get_children(root)
    assert sorted(kids) == ["a", "b", "c"]   # ZooKeeper does not sort children
    kids2, st = zk.get_children(root, include_data=True)  # getChildren2
    assert sorted(kids2) == ["a", "b", "c"]
    assert st.numChildren == 3 and st.cversion == 3
    assert zk.get_children(root + "/a") == []


def test_get_children2_raw(raw, root):
    c = raw()
    c.create(root + "/x")
    r = c.get_children(root, op=R.GET_CHILDREN2)
    assert r.err == 0
    assert r.body.strings() == ["x"]
    assert r.body.stat().numChildren == 1


def test_container_deleted_when_last_child_goes(raw, kz, root):
    c = raw()
    r = c.create(root + "/ctr", mode=R.CONTAINER, op=R.CREATE_CONTAINER)
    assert r.err == 0 and r.body.string() == root + "/ctr"
    st = r.body.stat()
    assert st.ephemeralOwner == 0  # containers look like plain nodes to clients
    assert c.create(root + "/ctr/child").err == 0
    zk = kz()
    ev = Events()
    assert zk.exists(root + "/ctr", watch=ev) is not None
    assert c.delete(root + "/ctr/child").err == 0
    # reaper runs every znode.container.checkIntervalMs (500 ms here)
    e = ev.get(timeout=15)
    assert e.type == EventType.DELETED and e.path == root + "/ctr"


def test_ttl_node_expires(raw, kz, root):
    c = raw()
    r = c.create(root + "/ttl", b"t", mode=R.PERSISTENT_WITH_TTL, op=R.CREATE_TTL, ttl=500)
    assert r.err == 0 and r.body.string() == root + "/ttl"
    assert r.body.stat().ephemeralOwner == 0  # TTL encoding is hidden from clients
    zk = kz()
    ev = Events()
    assert zk.exists(root + "/ttl", watch=ev) is not None
    e = ev.get(timeout=15)
    assert e.type == EventType.DELETED


def test_ttl_sequential(raw, root):
    c = raw()
    r = c.create(root + "/t-", mode=R.PERSISTENT_SEQUENTIAL_WITH_TTL, op=R.CREATE_TTL, ttl=60000)
    assert r.err == 0 and r.body.string() == root + "/t-0000000000"


def test_ttl_invalid(raw, root):
    c = raw()
    # createTTL with a non-TTL mode, TTL 0, and a TTL mode through plain create: BadArguments
    assert c.create(root + "/a", mode=R.PERSISTENT, op=R.CREATE_TTL, ttl=1000).err == R.BAD_ARGUMENTS
    assert c.create(root + "/b", mode=R.PERSISTENT_WITH_TTL, op=R.CREATE_TTL, ttl=0).err == R.BAD_ARGUMENTS
    assert c.create(root + "/c", mode=R.PERSISTENT_WITH_TTL, op=R.CREATE).err == R.BAD_ARGUMENTS
    assert c.exists(root + "/a").err == R.NO_NODE


def test_oversized_request_closes_connection(raw, root):
    c = raw()
    with pytest.raises(R.ConnectionClosed):
        r = c.create(root + "/huge", b"x" * (1024 * 1024 + 10))
        pytest.fail("server answered an over-jute.maxbuffer request: err %d" % r.err)


def test_many_children(zk, root):
    t = zk.transaction()
    for i in range(500):
        t.create("%s/child-%04d" % (root, i), b"x" * 10)
    assert all(isinstance(r, str) for r in t.commit())
    kids = zk.get_children(root)
    assert len(kids) == 500 and sorted(kids) == ["child-%04d" % i for i in range(500)]
    st = zk.exists(root)
    assert st.numChildren == 500 and st.cversion == 500
