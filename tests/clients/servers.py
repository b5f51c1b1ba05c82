#!/usr/bin/env python3
"""Start/stop the server under test (Apache ZooKeeper 3.8 or Corral):
one standalone Server, or an Ensemble of members with server.N lines.

Selection: env TARGET=zookeeper (default) | corral.
  zookeeper: java -cp <Debian jars> org.apache.zookeeper.server.quorum.QuorumPeerMain zoo.cfg
  corral:    $CORRAL_BIN server zoo.cfg

Both get the *same* zoo.cfg (written by write_cfg). Readiness is awaited by
polling the `ruok` four-letter word until `imok`, then `srvr` until it
reports a `Mode:` line (bounded deadline). Only the
process we started is ever signalled, by its PID.

Also usable as a CLI (see zk.sh):
  servers.py run   --port P [--dir D]   foreground; stops the server on SIGINT/SIGTERM
  servers.py start --port P --dir D     background; writes D/server.pid, waits ready
  servers.py stop  --dir D              stops the PID recorded in D/server.pid
  servers.py 4lw   --port P CMD         prints a four-letter-word reply
  servers.py classpath                  prints the ZooKeeper classpath
  servers.py version                    starts the target briefly, prints its envi version X.Y.Z
  servers.py exec-zk CFG                execs Apache ZooKeeper on CFG
"""
import argparse
import base64
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))

SUPER_USER = "super"
SUPER_PASSWORD = "test"


def zk_digest(user, password):
    """ZooKeeper's DigestAuthenticationProvider.generateDigest:
    user:base64(sha1("user:password"))."""
    raw = hashlib.sha1(("%s:%s" % (user, password)).encode()).digest()
    return "%s:%s" % (user, base64.b64encode(raw).decode())


SUPER_DIGEST = zk_digest(SUPER_USER, SUPER_PASSWORD)  # super:D/InIHSb7yEEbrWz8b9l71RjZJU=

# SASL DIGEST-MD5 users of the test servers (JAAS `Server` section, as
# ZooKeeper's DigestLoginModule reads it).
SASL_USERS = {"bob": "bobsecret", "alice": "alicesecret"}


def write_jaas_server(path, users=None):
    """A JAAS file with ZooKeeper's `Server` section for `users`."""
    opts = "\n".join('    user_%s="%s"' % (u, p) for u, p in sorted((users or SASL_USERS).items()))
    with open(path, "w") as f:
        f.write("Server {\n    org.apache.zookeeper.server.auth.DigestLoginModule required\n%s;\n};\n" % opts)
    return path


def sasl_cfg(jaas_path):
    """zoo.cfg lines that turn SASL on for either target: ZooKeeper reads the
    JAAS path from the JVM property (server_command passes this line as -D),
    Corral from the zoo.cfg key; both register the sasl ACL scheme's
    provider as ZooKeeper's zoo.cfg does."""
    return ["java.security.auth.login.config=%s" % jaas_path,
            "authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider"]

JAVA_DIR = "/usr/share/java"
# Debian bookworm package names (libzookeeper-java and deps), verified on disk.
ZK_JARS = [
    "zookeeper.jar",
    "zookeeper-jute.jar",
    "slf4j-api.jar",
    "slf4j-log4j12.jar",
    "log4j-1.2.jar",
    "netty-buffer.jar",
    "netty-codec.jar",
    "netty-common.jar",
    "netty-handler.jar",
    "netty-resolver.jar",
    "netty-transport.jar",
    "netty-transport-native-epoll.jar",
    "netty-transport-native-unix-common.jar",
    "commons-cli.jar",
    "metrics-core.jar",
    "snappy-java.jar",
]
# Optional: only used by the interactive CLI (not installed on Debian by default).
ZK_OPTIONAL_JARS = ["jline.jar"]


def target():
    t = os.environ.get("TARGET", "zookeeper")
    if t not in ("zookeeper", "corral"):
        raise SystemExit("TARGET must be 'zookeeper' or 'corral', got %r" % t)
    return t


def zk_classpath():
    if os.environ.get("ZK_CLASSPATH"):
        return os.environ["ZK_CLASSPATH"]
    missing = [j for j in ZK_JARS if not os.path.exists(os.path.join(JAVA_DIR, j))]
    if missing:
        raise RuntimeError(
            "missing ZooKeeper jars in %s: %s (run tests/clients/install-deps.sh)"
            % (JAVA_DIR, missing))
    jars = [os.path.join(JAVA_DIR, j) for j in ZK_JARS]
    jars += [os.path.join(JAVA_DIR, j) for j in ZK_OPTIONAL_JARS
             if os.path.exists(os.path.join(JAVA_DIR, j))]
    return ":".join(jars)


def corral_bin():
    b = os.environ.get("CORRAL_BIN")
    if not b:
        for cand in ("target/release/corral", "target/debug/corral"):
            p = os.path.join(REPO, cand)
            if os.path.exists(p):
                b = p
                break
    if not b or not os.access(b, os.X_OK):
        raise RuntimeError("TARGET=corral needs CORRAL_BIN=/path/to/corral (got %r)" % b)
    return b


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_port_block(n=5, lo=20000, hi=45000, tries=200):
    """First port of n consecutive free ports (checked on 0.0.0.0, since kazoo's
    harness binds all interfaces). Random start, so parallel runs rarely collide."""
    import random
    for _ in range(tries):
        base = random.randrange(lo, hi - n) // 10 * 10
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.bind(("0.0.0.0", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no block of %d free ports found" % n)


def four_letter(port, cmd, host="127.0.0.1", timeout=5.0):
    """Send a four-letter word, read until the server closes. Returns str."""
    if isinstance(cmd, str):
        cmd = cmd.encode()
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.settimeout(timeout)
        s.sendall(cmd)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            d = s.recv(65536)
            if not d:
                break
            chunks.append(d)
        return b"".join(chunks).decode("utf-8", "replace")


def write_cfg(workdir, port, tick_time=1000, extra=()):
    data = os.path.join(workdir, "data")
    os.makedirs(data, exist_ok=True)
    lines = [
        "tickTime=%d" % tick_time,
        "dataDir=%s" % data,
        "clientPort=%d" % port,
        "clientPortAddress=127.0.0.1",
        "admin.enableServer=false",
        "4lw.commands.whitelist=*",
        "extendedTypesEnabled=true",
        # Unknown zoo.cfg keys become Java system properties "zookeeper.<key>",
        # so this is exactly -Dzookeeper.DigestAuthenticationProvider.superDigest=...
        "DigestAuthenticationProvider.superDigest=%s" % SUPER_DIGEST,
        # Container/TTL reaper period (ZooKeeper default 60000 ms). ZooKeeper reads
        # this only as a JVM property *without* the zookeeper. prefix, so
        # server_command() also passes it as -D; Corral should read it from zoo.cfg.
        "znode.container.checkIntervalMs=500",
    ]
    lines += list(extra)
    cfg = os.path.join(workdir, "zoo.cfg")
    with open(cfg, "w") as f:
        f.write("\n".join(lines) + "\n")
    return cfg


def server_command(cfg, workdir, tgt=None):
    if (tgt or target()) == "corral":
        return [corral_bin(), "server", cfg]
    log4j = os.path.join(workdir, "log4j.properties")
    with open(log4j, "w") as f:
        f.write(
            "log4j.rootLogger=INFO, CONSOLE\n"
            "log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n\n")
    jprops = []
    with open(cfg) as f:
        for line in f:
            k, _, v = line.strip().partition("=")
            if k.startswith("znode.container.") or k == "java.security.auth.login.config":
                jprops.append("-D%s=%s" % (k, v))
    return [
        os.environ.get("REAL_JAVA") or os.environ.get("JAVA") or "java",
        "-Xms32m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
        "-Djava.net.preferIPv4Stack=true",
        "-Dfile.encoding=UTF-8",
        "-Dzookeeper.log.dir=%s" % workdir,
        "-Dlog4j.configuration=file:%s" % log4j,
    ] + jprops + [
        "-cp", zk_classpath(),
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        cfg,
    ]


class Server:
    """One server process on 127.0.0.1:port with its own dataDir."""

    def __init__(self, port=None, workdir=None, tick_time=1000, extra_cfg=(), myid=None):
        self.port = port or free_port()
        self._own_dir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="corral-clients-")
        self.tick_time = tick_time
        self.extra_cfg = list(extra_cfg)
        self.proc = None
        self.log_path = os.path.join(self.workdir, "server.log")
        self.cfg = write_cfg(self.workdir, self.port, tick_time, self.extra_cfg)
        if myid is not None:  # an ensemble member: dataDir/myid names its server.N line
            with open(os.path.join(self.workdir, "data", "myid"), "w") as f:
                f.write("%d\n" % myid)

    @property
    def hosts(self):
        return "127.0.0.1:%d" % self.port

    def start(self, timeout=60.0):
        self.spawn()
        self.wait_ready(timeout)
        return self

    def spawn(self):
        """Starts the process without waiting for it to serve (an ensemble
        member serves only once a quorum of its peers runs)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        cmd = server_command(self.cfg, self.workdir)
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir)
        logf.close()

    def mode(self):
        """srvr's Mode (standalone, leader, follower), or None when the
        process is down or does not serve requests."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        try:
            out = four_letter(self.port, "srvr", timeout=2.0)
        except OSError:
            return None
        for line in out.splitlines():
            if line.startswith("Mode: "):
                return line[len("Mode: "):].strip()
        return None

    def wait_ready(self, timeout=60.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("server exited with %s before ready; log tail:\n%s"
                                   % (self.proc.returncode, self.log_tail()))
            try:
                r = four_letter(self.port, "ruok", timeout=1.0)
                if r == "imok":
                    # ZooKeeper answers imok before it serves requests (srvr then
                    # says "not currently serving requests"): require srvr Mode too.
                    r = four_letter(self.port, "srvr", timeout=1.0)
                    if "Mode: " in r:
                        return
                last = r
            except OSError as e:
                last = e
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("server not ready (ruok) within %ss: %r; log tail:\n%s"
                           % (timeout, last, self.log_tail()))

    def log_tail(self, n=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-n:]).decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def stop(self, timeout=15.0):
        """Graceful stop (SIGTERM) of *our* PID, escalating to SIGKILL."""
        p = self.proc
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout)

    def kill(self):
        """Crash stop (SIGKILL) of our PID."""
        p = self.proc
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(15)

    def cleanup(self):
        self.stop()
        if self._own_dir:
            import shutil
            shutil.rmtree(self.workdir, ignore_errors=True)


class Ensemble:
    """n members of the target on 127.0.0.1, each a Server with its own
    dataDir and myid, all given the same server.N lines
    (127.0.0.1:quorumPort:electionPort) and initLimit/syncLimit (ZooKeeper
    needs them; Corral accepts and ignores them)."""

    def __init__(self, n=3, tick_time=1000, extra_cfg=()):
        lines = ["server.%d=127.0.0.1:%d:%d" % (i, free_port(), free_port()) for i in range(1, n + 1)]
        lines += ["initLimit=10", "syncLimit=5"]
        self.members = [Server(tick_time=tick_time, extra_cfg=lines + list(extra_cfg), myid=i)
                        for i in range(1, n + 1)]

    @property
    def hosts(self):
        """The connect string of every member, in member order."""
        return ",".join(m.hosts for m in self.members)

    def hosts_from(self, first):
        """A connect string starting with member `first`, then the others
        in order (for clients told not to shuffle it)."""
        order = [first] + [i for i in range(len(self.members)) if i != first]
        return ",".join(self.members[i].hosts for i in order)

    def start(self, timeout=60.0):
        for m in self.members:
            m.spawn()
        for m in self.members:
            m.wait_ready(timeout)
        self.leader(timeout)
        return self

    def leader(self, timeout=30.0):
        """The index of the member whose srvr says Mode: leader."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for i, m in enumerate(self.members):
                if m.mode() == "leader":
                    return i
            time.sleep(0.02)
        raise RuntimeError("no leader within %ss; modes %r" % (timeout, [m.mode() for m in self.members]))

    def zxids(self):
        """srvr's Zxid of every live member."""
        out = []
        for m in self.members:
            if m.proc is None or m.proc.poll() is not None:
                continue
            try:
                r = four_letter(m.port, "srvr", timeout=2.0)
            except OSError:
                r = ""
            z = [l.split(":", 1)[1].strip() for l in r.splitlines() if l.startswith("Zxid:")]
            out.append(int(z[0], 16) if z else None)
        return out

    def wait_synced(self, timeout=30.0):
        """Waits until every live member has applied the same zxid, so a
        kill finds no member behind. (Corral today: a member that has no
        log entry yet refuses to vote, so a leader killed before every
        follower got an entry leaves the other two leaderless for good.)"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            z = self.zxids()
            if None not in z and len(set(z)) == 1:
                return z[0]
            time.sleep(0.02)
        raise RuntimeError("members not in sync within %ss: zxids %r" % (timeout, self.zxids()))

    def kill(self, i):
        """kill -9 of member i."""
        self.members[i].kill()

    def log_tails(self, n=40):
        return "\n".join("--- member %d (%s)\n%s" % (i + 1, m.workdir, m.log_tail(n))
                         for i, m in enumerate(self.members))

    def cleanup(self):
        for m in self.members:
            m.cleanup()


def _cli():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--port", type=int, default=2181)
    r.add_argument("--dir")
    r.add_argument("--tick", type=int, default=1000)
    s = sub.add_parser("start")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--dir", required=True)
    s.add_argument("--tick", type=int, default=1000)
    t = sub.add_parser("stop")
    t.add_argument("--dir", required=True)
    f = sub.add_parser("4lw")
    f.add_argument("--port", type=int, default=2181)
    f.add_argument("word")
    e = sub.add_parser("exec-zk", help="exec Apache ZooKeeper on CFG (used by fake-corral-zookeeper.sh)")
    e.add_argument("cfg")
    sub.add_parser("classpath", help="print the ZooKeeper classpath")
    pb = sub.add_parser("port-block", help="print the first of N (default 5) consecutive free ports")
    pb.add_argument("--n", type=int, default=5)
    sub.add_parser("version", help="start the target briefly, print X.Y.Z from its `envi`")
    a = ap.parse_args()

    if a.cmd == "classpath":
        print(zk_classpath())
        return 0
    if a.cmd == "port-block":
        print(free_port_block(a.n))
        return 0
    if a.cmd == "version":
        import re
        srv = Server(tick_time=1000)
        try:
            srv.start()
            m = re.search(r"^zookeeper\.version=(\d+\.\d+\.\d+)", four_letter(srv.port, "envi"), re.M)
        finally:
            srv.cleanup()
        if not m:
            print("no zookeeper.version=X.Y.Z in envi", file=sys.stderr)
            return 1
        print(m.group(1))
        return 0
    if a.cmd == "exec-zk":
        cfg = os.path.abspath(a.cfg)
        cmd = server_command(cfg, os.path.dirname(cfg), tgt="zookeeper")
        os.execvp(cmd[0], cmd)

    if a.cmd == "4lw":
        sys.stdout.write(four_letter(a.port, a.word))
        return 0
    if a.cmd == "run":
        if a.dir:
            os.makedirs(a.dir, exist_ok=True)
        srv = Server(a.port, a.dir, a.tick)
        stop = {"flag": False}

        def on_sig(*_):
            stop["flag"] = True
        signal.signal(signal.SIGTERM, on_sig)
        signal.signal(signal.SIGINT, on_sig)
        try:
            srv.start()
            print("ready: %s (%s pid %d, dir %s)" % (srv.hosts, target(), srv.proc.pid,
                                                      srv.workdir), flush=True)
            while not stop["flag"] and srv.proc.poll() is None:
                time.sleep(0.2)
        finally:
            srv.cleanup()
        return 0
    if a.cmd == "start":
        os.makedirs(a.dir, exist_ok=True)
        pidf = os.path.join(a.dir, "server.pid")
        srv = Server(a.port, a.dir, a.tick)
        srv.start()
        with open(pidf, "w") as f:
            f.write("%d\n" % srv.proc.pid)
        print("ready: %s (%s pid %d, dir %s)" % (srv.hosts, target(), srv.proc.pid, a.dir))
        return 0
    if a.cmd == "stop":
        pidf = os.path.join(a.dir, "server.pid")
        try:
            pid = int(open(pidf).read().strip())
        except (OSError, ValueError):
            print("no pid file in %s" % a.dir)
            return 1
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            os.unlink(pidf)
            return 0
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os.unlink(pidf)
        print("stopped pid %d" % pid)
        return 0


if __name__ == "__main__":
    sys.exit(_cli())
