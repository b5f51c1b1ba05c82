"""The C client shell cli_mt (Debian zookeeper-bin, /usr/lib/zookeeper/bin/cli_mt,
libzookeeper-mt) in batch mode: `cli_mt -h HOST:PORT -c "CMD"` runs one command
and exits. (`exists` and `whoami`/`addWatch` do not terminate in batch mode in
3.8.0's cli_mt, so they are not used.) Output is cli_mt's own format on stderr."""
import os
import re
import subprocess

import pytest

CLI_MT = os.environ.get("CLI_MT", "/usr/lib/zookeeper/bin/cli_mt")

pytestmark = pytest.mark.skipif(not os.access(CLI_MT, os.X_OK), reason="cli_mt not installed")


@pytest.fixture
def cmt(hosts):
    def run(cmd, timeout=30):
        p = subprocess.run([CLI_MT, "-h", hosts, "-c", cmd], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, text=True,
                           stdin=subprocess.DEVNULL)
        assert "Got a new session id: 0x" in p.stdout, p.stdout
        return p.returncode, p.stdout
    return run


def test_create_and_get(cmt, zk, root):
    rc, out = cmt("create %s/c" % root)
    assert rc == 0
    assert re.search(r"^\[%s/c\]: rc = 0$" % re.escape(root), out, re.M)
    assert re.search(r"^\tname = %s/c$" % re.escape(root), out, re.M)
    assert zk.exists(root + "/c") is not None
    zk.set(root + "/c", b"from-kazoo")
    rc, out = cmt("get %s/c" % root)
    assert re.search(r"^%s/c: rc = 0$" % re.escape(root), out, re.M)
    assert re.search(r"^ value_len = 10$", out, re.M)
    assert re.search(r"^from-kazoo$", out, re.M)
    assert re.search(r"^\tversion=1\taversion=0$", out, re.M)


def test_set(cmt, zk, root):
    zk.create(root + "/s", b"a")
    rc, out = cmt("set %s/s hello" % root)
    assert re.search(r"^%s/s: rc = 0 Stat:$" % re.escape(root), out, re.M)
    czxid = zk.exists(root + "/s").czxid  # cli_mt prints zxids in hex without 0x
    assert re.search(r"^\tczxid=%x$" % czxid, out, re.M)
    assert re.search(r"^\tversion=1\taversion=0$", out, re.M)
    assert zk.get(root + "/s")[0] == b"hello"


def test_ls_and_ls2(cmt, zk, root):
    for n in ("x", "y"):
        zk.create(root + "/" + n)
    rc, out = cmt("ls %s" % root)
    assert re.search(r"^%s: rc = 0$" % re.escape(root), out, re.M)
    kids = sorted(re.findall(r"^\t([xy])$", out, re.M))
    assert kids == ["x", "y"]
    rc, out = cmt("ls2 %s" % root)
    assert sorted(re.findall(r"^\t([xy])$", out, re.M)) == ["x", "y"]
    assert re.search(r"^\tczxid=%x$" % zk.exists(root).czxid, out, re.M)


def test_create_sequential_and_ephemeral(cmt, zk, root):
    rc, out = cmt("create +s %s/q-" % root)
    assert re.search(r"^\tname = %s/q-0000000000$" % re.escape(root), out, re.M)
    rc, out = cmt("create +e %s/e" % root)
    assert re.search(r"^\[%s/e\]: rc = 0$" % re.escape(root), out, re.M)
    # cli_mt closed its session on exit: the ephemeral is gone
    assert zk.exists(root + "/e") is None
    assert zk.exists(root + "/q-0000000000") is not None


def test_delete_and_errors(cmt, zk, root):
    zk.create(root + "/d/k", makepath=True)
    rc, out = cmt("delete %s/d" % root)
    assert re.search(r"^%s/d: rc = -111$" % re.escape(root), out, re.M)  # ZNOTEMPTY
    rc, out = cmt("delete %s/d/k" % root)
    assert re.search(r"^%s/d/k: rc = 0$" % re.escape(root), out, re.M)
    assert zk.exists(root + "/d/k") is None
    rc, out = cmt("get %s/missing" % root)
    assert re.search(r"^%s/missing: rc = -101$" % re.escape(root), out, re.M)  # ZNONODE
    rc, out = cmt("create %s/d" % root)
    assert re.search(r"rc = -110$", out, re.M)  # ZNODEEXISTS
