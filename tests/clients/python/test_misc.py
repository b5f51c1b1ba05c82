"""sync, chroot, getAllChildrenNumber, getEphemerals, server_version, persistence."""
import pytest
from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

import rawzk as R
import servers


def test_sync(zk, raw, root):
    assert zk.sync(root) == root
    c = raw()
    z = c.exists("/").zxid
    r = c.sync(root)
    assert r.err == 0 and r.body.string() == root and r.zxid >= z
    # sync does not check that the path exists
    r = c.sync(root + "/does-not-exist")
    assert r.err == 0 and r.body.string() == root + "/does-not-exist"


def test_chroot(zk, kz, root):
    zk.create(root + "/app")
    c = kz(chroot=root + "/app")
    assert c.create("/a", b"1") == "/a"
    assert zk.get(root + "/app/a")[0] == b"1"
    assert c.get_children("/") == ["a"]
    assert c.create("/s-", sequence=True) == "/s-0000000001"
    t = c.transaction()
    t.create("/m")
    t.check("/a", 0)
    assert t.commit() == ["/m", True]
    assert c.exists("/m") is not None and zk.exists(root + "/app/m") is not None
    assert c.sync("/") == "/"
    c.delete("/a")
    assert zk.exists(root + "/app/a") is None


def test_chroot_missing(kz, root):
    c = kz(chroot=root + "/nope")
    with pytest.raises(NoNodeError):
        c.create("/x")
    with pytest.raises(NoNodeError):
        c.get("/")


def test_get_all_children_number(raw, root):
    c = raw()
    for p in ["/a", "/a/b", "/a/b/c", "/d"]:
        assert c.create(root + p).err == 0
    r = c.get_all_children_number(root)
    assert r.err == 0 and r.body.int() == 4  # all descendants, not the node itself
    r = c.get_all_children_number(root + "/a/b/c")
    assert r.body.int() == 0
    assert c.get_all_children_number(root + "/missing").err == R.NO_NODE


def test_get_ephemerals(raw, root):
    a, b = raw(), raw()
    assert a.create(root + "/e1", mode=R.EPHEMERAL).err == 0
    assert a.create(root + "/x-e2", mode=R.EPHEMERAL).err == 0
    assert b.create(root + "/e3", mode=R.EPHEMERAL).err == 0
    r = a.get_ephemerals(root)
    assert r.err == 0
    assert sorted(r.body.strings()) == [root + "/e1", root + "/x-e2"]  # only this session's
    r = a.get_ephemerals(root + "/x")   # plain string-prefix match
    assert r.body.strings() == [root + "/x-e2"]
    r = a.get_ephemerals(root + "/none")
    assert r.err == 0 and r.body.strings() == []
    r = a.get_ephemerals("/")
    assert sorted(r.body.strings()) == [root + "/e1", root + "/x-e2"]


def test_server_version_via_kazoo(zk):
    # kazoo parses the `envi` four-letter word and gates 3.5+ features on it
    v = zk.server_version()
    assert isinstance(v, tuple) and v >= (3, 5)


def test_kazoo_command(zk):
    assert zk.command(b"ruok") == "imok"


def test_data_survives_restart(tmp_path):
    srv = servers.Server(workdir=str(tmp_path), tick_time=1000)
    try:
        srv.start()
        c = KazooClient(srv.hosts, timeout=10)
        c.start(timeout=15)
        try:
            c.create("/persist/a", b"keep", makepath=True)
            c.create("/persist/s-", sequence=True)
            st = c.exists("/persist/a")
        finally:
            c.stop()
            c.close()
        srv.stop()
        srv.start()
        c = KazooClient(srv.hosts, timeout=10)
        c.start(timeout=15)
        try:
            d, st2 = c.get("/persist/a")
            assert d == b"keep" and st2 == st
            assert sorted(c.get_children("/persist")) == ["a", "s-0000000001"]
            # the sequence counter (child creations of /persist: a, s-) survives
            assert c.create("/persist/s-", sequence=True) == "/persist/s-0000000002"
            # zxids continue after the restart
            c.create("/persist/b")
            assert c.exists("/persist/b").czxid > st.czxid
        finally:
            c.stop()
            c.close()
    finally:
        srv.stop()


def test_unknown_opcode(raw):
    c = raw()
    r = c.call(999, b"")
    # Unimplemented, echoing the xid (ZooKeeper sends zxid -1; not asserted);
    # then the server drops the connection
    assert (r.xid, r.err) == (c.xid, R.UNIMPLEMENTED)
    with pytest.raises(R.ConnectionClosed):
        c.exists("/")


def test_reconfig_disabled(raw):
    c = raw()
    body = R.Buf().string("server.9=127.0.0.1:1:2;3").string(None).string(None).long(-1).bytes()
    assert c.call(R.RECONFIG, body).err == -123  # ReconfigDisabled (reconfigEnabled=false)


def test_zookeeper_system_subtree(raw):
    c = raw()
    r = c.get_children("/zookeeper")
    assert r.err == 0 and sorted(r.body.strings()) == ["config", "quota"]
    r = c.get_data("/zookeeper/config")
    assert r.err == 0 and r.body.buffer() == b""   # standalone: empty dynamic config
    assert c.delete("/zookeeper/quota").err == R.BAD_ARGUMENTS
