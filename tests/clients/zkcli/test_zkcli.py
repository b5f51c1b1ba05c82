"""Apache ZooKeeper's Java CLI (org.apache.zookeeper.ZooKeeperMain) against the
server under test. Two modes: one command on the command line (non-interactive,
exit code 0/1), or a batch of commands piped on stdin (no jline on the classpath,
so the CLI reads plain lines); stdout and stderr are merged in order."""
import os
import re
import subprocess
import tempfile

import pytest
from kazoo.protocol.states import EventType

import servers
from helpers import Events

JAVA_OPTS = ["-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1"]


@pytest.fixture(scope="module")
def log4j_off():
    fd, path = tempfile.mkstemp(suffix=".properties")
    os.write(fd, b"log4j.rootLogger=OFF\n")
    os.close(fd)
    yield path
    os.unlink(path)


@pytest.fixture
def cli(hosts, log4j_off):
    java = os.environ.get("REAL_JAVA") or "java"

    def run(*args, stdin=None, timeout=60, jvm=()):
        cmd = [java] + JAVA_OPTS + list(jvm) + ["-Dlog4j.configuration=file:" + log4j_off,
                                    "-cp", servers.zk_classpath(),
                                    "org.apache.zookeeper.ZooKeeperMain", "-server", hosts] + list(args)
        p = subprocess.run(cmd, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, text=True)
        return p.returncode, p.stdout

    def batch(*lines, timeout=60, jvm=()):
        # exit status in stdin mode is that of the last failing/succeeding command,
        # so callers assert on the output instead
        rc, out = run(stdin="\n".join(list(lines) + ["quit"]) + "\n", timeout=timeout, jvm=jvm)
        assert "Welcome to ZooKeeper!" in out and "state:SyncConnected type:None" in out, out
        return out

    run.batch = batch
    return run


def test_single_command_mode(cli, zk, root):
    rc, out = cli("create", root + "/n", "hello")
    assert rc == 0 and "Created %s/n" % root in out
    assert zk.get(root + "/n")[0] == b"hello"
    rc, out = cli("get", root + "/n")
    assert rc == 0 and out.rstrip().splitlines()[-1] == "hello"
    rc, out = cli("get", root + "/missing")
    assert rc == 1 and "Node does not exist: %s/missing" % root in out
    rc, out = cli("ls", root)
    assert rc == 0 and "[n]" in out


def test_create_get_set_stat_delete(cli, zk, root):
    out = cli.batch(
        "create %s/a v1" % root,
        "get %s/a" % root,
        "set %s/a v2" % root,
        "get -s %s/a" % root,
        "stat %s/a" % root,
        "set -v 0 %s/a stale" % root,
        "create %s/a dup" % root,
        "create %s/a/b" % root,
        "delete %s/a" % root,
        "delete %s/a/b" % root,
    )
    # (in stdin mode ZooKeeperMain stops reading after a failed `delete -v`,
    #  so that one runs as a single command)
    rc, out2 = cli("delete", "-v", "7", root + "/a")
    assert rc == 1 and "version No is not valid : %s/a" % root in out2
    out += cli.batch(
        "delete %s/a" % root,
        "stat %s/a" % root,
    )
    assert "Created %s/a" % root in out
    assert re.search(r"^v1$", out, re.M) and re.search(r"^v2$", out, re.M)
    assert re.search(r"^dataVersion = 1$", out, re.M)
    assert re.search(r"^cZxid = 0x[0-9a-f]+$", out, re.M)
    assert re.search(r"^ephemeralOwner = 0x0$", out, re.M)
    assert re.search(r"^dataLength = 2$", out, re.M)
    assert "version No is not valid : %s/a" % root in out      # set -v 0 after a set
    assert "Node already exists: %s/a" % root in out
    assert "Node not empty: %s/a" % root in out
    assert "Node does not exist: %s/a" % root in out            # final stat
    assert zk.exists(root + "/a") is None


def test_create_flags(cli, zk, root):
    ev = Events()
    zk.exists(root + "/t", watch=ev)
    out = cli.batch(
        "create -s %s/s- x" % root,
        "create -s %s/s- x" % root,
        "create -e %s/e x" % root,
        "create -s -e %s/se- x" % root,
        "create -c %s/c" % root,
        "create -t 300 %s/t" % root,
        "stat %s/e" % root,
        "getEphemerals %s" % root,
        "getAllChildrenNumber %s" % root,
    )
    assert "Created %s/s-0000000000" % root in out
    assert "Created %s/s-0000000001" % root in out
    assert "Created %s/se-0000000003" % root in out
    assert "Created %s/c" % root in out and "Created %s/t" % root in out
    owner = re.search(r"^ephemeralOwner = (0x[0-9a-f]+)$", out, re.M).group(1)
    assert int(owner, 16) != 0
    eph = re.search(r"^\[(.*)\]$", out, re.M).group(1).split(", ")
    assert sorted(eph) == [root + "/e", root + "/se-0000000003"]
    assert re.search(r"^6$", out, re.M)
    # CLI exited -> its session closed -> ephemerals are gone
    assert zk.exists(root + "/e") is None and zk.exists(root + "/se-0000000003") is None
    assert zk.exists(root + "/c") is not None
    # the TTL node is reaped after its TTL
    assert ev.get(timeout=20).type == EventType.CREATED
    gone = Events()
    if zk.exists(root + "/t", watch=gone) is not None:
        assert gone.get(timeout=20).type == EventType.DELETED


def test_ls_variants_and_deleteall(cli, zk, root):
    zk.create(root + "/tree/x/y", makepath=True)
    zk.create(root + "/tree/z")
    out = cli.batch("ls %s/tree" % root, "ls -s %s/tree" % root, "ls -R %s/tree" % root,
                    "deleteall %s/tree" % root, "ls %s/tree" % root)
    assert "[x, z]" in out
    assert re.search(r"^numChildren = 2$", out, re.M)
    for p in ["/tree", "/tree/x", "/tree/x/y", "/tree/z"]:
        assert re.search("^%s$" % re.escape(root + p), out, re.M), p
    assert "Node does not exist: %s/tree" % root in out
    assert zk.exists(root + "/tree") is None


def test_acl_commands(cli, zk, root):
    zk.create(root + "/a", b"secret")
    digest = servers.zk_digest("u", "p").split(":", 1)[1]
    out = cli.batch(
        "getAcl %s/a" % root,
        "setAcl %s/a digest:u:%s:cdrwa" % (root, digest),
        "get %s/a" % root,
        "addauth digest u:p",
        "getAcl %s/a" % root,
        "get %s/a" % root,
        "setAcl %s/a world:anyone:r" % root,
        "set %s/a nope" % root,
    )
    assert "'world,'anyone\n: cdrwa" in out
    assert "'digest,'u:%s\n: cdrwa" % digest in out
    assert "Insufficient permission : %s/a" % root in out
    assert re.search(r"^secret$", out, re.M)
    assert out.count("Insufficient permission : %s/a" % root) == 2  # get before auth, set after r-only
    from kazoo.security import READ_ACL_UNSAFE
    assert zk.get_acls(root + "/a")[0] == READ_ACL_UNSAFE


def test_whoami_sync(cli):
    out = cli.batch("whoami", "addauth digest someone:pw", "whoami", "sync /")
    assert out.count("Auth scheme: User") == 2
    assert "ip: 127.0.0.1" in out
    assert "digest: someone" in out
    assert "Sync is OK" in out


def test_watches(cli, root):
    out = cli.batch(
        "create %s/w a" % root,
        "get -w %s/w" % root,
        "set %s/w b" % root,
        "ls -w %s" % root,
        "create %s/w2" % root,
        "addWatch -m PERSISTENT_RECURSIVE %s" % root,
        "create %s/w2/deep" % root,
        "set %s/w2/deep x" % root,
        "addWatch %s/p" % root,
        "create %s/p" % root,
    )
    ev = lambda t, p: "WatchedEvent state:SyncConnected type:%s path:%s" % (t, root + p)
    assert ev("NodeDataChanged", "/w") in out
    assert ev("NodeChildrenChanged", "") in out
    assert ev("NodeCreated", "/w2/deep") in out
    assert ev("NodeDataChanged", "/w2/deep") in out
    assert ev("NodeCreated", "/p") in out


def test_stat_missing_and_bad_command_exit_codes(cli, root):
    rc, out = cli("stat", root + "/missing")
    assert rc == 1 and "Node does not exist" in out
    rc, out = cli("delete", root + "/missing")
    assert rc == 1 and "Node does not exist" in out


def sasl_jvm(tmp_path, user, password):
    """JVM options for a Java client that logs in with SASL DIGEST-MD5 (the
    JAAS `Client` section ZooKeeper's client reads)."""
    jaas = tmp_path / ("client-%s.jaas" % user)
    jaas.write_text('Client {\n    org.apache.zookeeper.server.auth.DigestLoginModule required\n'
                    '    username="%s"\n    password="%s";\n};\n' % (user, password))
    return ["-Djava.security.auth.login.config=%s" % jaas, "-Dzookeeper.sasl.client=true"]


def test_sasl_digest_md5_login_and_acl(cli, zk, root, tmp_path):
    from kazoo.exceptions import NoAuthError
    out = cli.batch(
        "create %s/s secret sasl:bob:cdrwa" % root,
        "getAcl %s/s" % root,
        "get %s/s" % root,
        "whoami",
        jvm=sasl_jvm(tmp_path, "bob", "bobsecret"),
    )
    assert "state:SaslAuthenticated" in out, out
    assert "Created %s/s" % root in out, out
    assert "'sasl,'bob\n: cdrwa" in out, out
    assert "\nsecret\n" in out, out
    assert "\nsasl: bob\n" in out, out  # whoami
    with pytest.raises(NoAuthError):
        zk.get(root + "/s")
    # Another SASL user is refused too.
    rc, out = cli("get", root + "/s", jvm=sasl_jvm(tmp_path, "alice", "alicesecret"))
    assert rc == 1 and "Insufficient permission : %s/s" % root in out, out


def test_sasl_wrong_password_is_refused(cli, root, tmp_path):
    rc, out = cli("create", root + "/never", jvm=sasl_jvm(tmp_path, "bob", "wrong"), timeout=60)
    assert "state:AuthFailed" in out, out
    assert "Created" not in out, out
