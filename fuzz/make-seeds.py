#!/usr/bin/env python3
"""Writes the seed corpora in fuzz/seeds/<target>/ (checked in; run again to
regenerate): the golden Java session of protocol/tests/golden.rs split into
frames, hand-encoded requests for every opcode, multi bodies, certificate
chains, JKS, PKCS#12 and PEM stores made with openssl and keytool, and a few
zoo.cfg files. Needs python3, openssl and a JDK's keytool."""

import os, re, shutil, struct, subprocess, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SEEDS = os.path.join(HERE, "seeds")

def i32(n): return struct.pack(">i", n)
def i64(n): return struct.pack(">q", n)
def bool_(b): return b"\x01" if b else b"\x00"
def string(s): b = s.encode(); return i32(len(b)) + b
def buf(b): return i32(-1) if b is None else i32(len(b)) + b
def vec(items, enc): return i32(len(items)) + b"".join(enc(x) for x in items)
def acl(perms, scheme, ident): return i32(perms) + string(scheme) + string(ident)
OPEN = vec([(31, "world", "anyone")], lambda a: acl(*a))
STAT = i64(2) + i64(3) + i64(1700000000000) + i64(1700000000001) + i32(1) + i32(2) + i32(0) + i64(0) + i32(5) + i32(1) + i64(4)

def write(target, name, data):
    d = os.path.join(SEEDS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def golden():
    """(direction, bytes) frames from protocol/tests/golden.rs."""
    src = open(os.path.join(HERE, "..", "protocol", "tests", "golden.rs")).read()
    return [(d, bytes.fromhex(h)) for d, h in re.findall(r'\("([CS])", "([0-9a-f]+)"\)', src)]

def protocol_seeds():
    frames = golden()
    assert len(frames) == 16, len(frames)
    client = [b for d, b in frames if d == "C"]
    server = [b for d, b in frames if d == "S"]
    # connect: the Java client's, an old client's (no readOnly byte), a resume.
    write("connect", "java-3.8", client[0])
    write("connect", "old-client", client[0][:-1])
    write("connect", "resume", i32(0) + i64(77) + i32(30000) + i64(0x100005be9490000) + buf(bytes(range(16))) + bool_(True))
    write("connect", "java-3.8-response", server[0])
    # request: every golden request frame, then one per opcode.
    for n, f in enumerate(client[1:]):
        write("request", f"golden-{n}", f)
    create = string("/app/node") + buf(b"data") + OPEN + i32(0)
    bodies = {
        1: create, 15: create, 19: create,
        21: string("/ttl") + buf(b"x") + OPEN + i32(5) + i64(60000),
        2: string("/a") + i32(-1), 3: string("/a") + bool_(True), 4: string("/a") + bool_(True),
        5: string("/a") + buf(b"v2") + i32(3), 6: string("/a"),
        7: string("/a") + vec([(1, "digest", "u:hash="), (31, "x509", "CN=alice,O=Corral")], lambda a: acl(*a)) + i32(-1),
        8: string("/a") + bool_(False), 12: string("/a") + bool_(True), 104: string("/a"), 103: string("/app"),
        9: string("/"), 13: string("/a") + i32(2), 11: b"", 107: b"", -11: b"",
        16: string("server.4=h:2888:3888") + string("3") + string("") + i64(-1),
        17: string("/a") + i32(1), 18: string("/a") + i32(3),
        101: i64(9) + vec(["/a"], string) + vec(["/b"], string) + vec(["/c"], string),
        105: i64(9) + vec(["/a"], string) + vec([], string) + vec(["/c"], string) + vec(["/p"], string) + vec(["/r"], string),
        106: string("/w") + i32(1),
        100: i32(0) + string("digest") + buf(b"user:password"),
        102: buf(b"sasl-token"),
    }
    for op, body in bodies.items():
        xid = -4 if op == 100 else (-2 if op == 11 else 1)
        write("request", f"op{op}", i32(xid) + i32(op) + body)
    multi_ops = [(1, create), (5, string("/a") + buf(b"v") + i32(-1)), (13, string("/a") + i32(1)),
                 (2, string("/a") + i32(-1)), (21, bodies[21]), (19, create)]
    multi = b"".join(i32(op) + bool_(False) + i32(-1) + body for op, body in multi_ops) + i32(-1) + bool_(True) + i32(-1)
    multi_read = b"".join(i32(op) + bool_(False) + i32(-1) + string("/a") + bool_(False) for op in (4, 8)) + i32(-1) + bool_(True) + i32(-1)
    write("request", "op14", i32(1) + i32(14) + multi)
    write("request", "op22", i32(1) + i32(22) + multi_read)
    write("multi", "multi", multi)
    write("multi", "multi-read", multi_read)
    write("multi", "empty", i32(-1) + bool_(True) + i32(-1))
    ok = lambda op: i32(op) + bool_(False) + i32(0)
    response = (ok(1) + string("/a") + ok(15) + string("/b") + STAT + ok(2) + ok(5) + STAT + ok(13)
                + ok(8) + vec(["x", "y"], string) + ok(4) + buf(b"d") + STAT
                + i32(-1) + bool_(False) + i32(-101) + i32(-101) + i32(-1) + bool_(True) + i32(-1))
    write("multi", "response", response)
    # reply: a selector byte (the body's record), ReplyHeader, body.
    selectors = {1: 0, 2: 3, 3: 15, 4: 6}
    for n, f in enumerate(server[1:]):
        write("reply", f"golden-{n}", bytes([selectors.get(n, 13)]) + f)
    header = i32(5) + i64(9) + i32(0)
    write("reply", "multi", bytes([10]) + header + response)
    write("reply", "acl", bytes([4]) + header + OPEN + STAT)
    write("reply", "whoami", bytes([11]) + header + vec([("digest", "u"), ("x509", "CN=a")], lambda c: string(c[0]) + string(c[1])))
    write("reply", "event", bytes([0]) + i32(-1) + i64(-1) + i32(0) + i32(3) + i32(3) + string("/a"))
    write("reply", "error", bytes([13]) + i32(5) + i64(9) + i32(-101))
    # frame: a chunk-size byte, then the client stream.
    stream = b"".join(i32(len(f)) + f for f in client)
    write("frame", "java-session-1", b"\x00" + stream)
    write("frame", "java-session-64", b"\x3f" + stream)
    write("frame", "four-letter-word", b"\x03" + b"ruok")

def run(*cmd, cwd):
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def der(path, cwd):
    return subprocess.run(["openssl", "x509", "-outform", "DER", "-in", path], cwd=cwd, check=True, capture_output=True).stdout

def store_seeds():
    t = tempfile.mkdtemp()
    try:
        days = ["-days", "36500"]
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", *days, "-subj", "/CN=Fuzz CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=t)
        def issue(name, subj, ext, issuer, key="rsa:2048"):
            run("openssl", "req", "-newkey", key, "-nodes", "-subj", subj, "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=t)
            cmd = ["openssl", "x509", "-req", *days, "-CAcreateserial", "-in", f"{name}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key", "-out", f"{name}.pem"]
            if ext:
                open(os.path.join(t, f"{name}.ext"), "w").write(ext + "\n")
                cmd += ["-extfile", f"{name}.ext"]
            run(*cmd, cwd=t)
        issue("inter", "/O=Fuzz/CN=Fuzz Intermediate", "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign", "ca")
        issue("alice", "/O=Fuzz/CN=alice", "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\nsubjectAltName=DNS:alice.example,IP:127.0.0.1", "inter")
        issue("v1", "/C=DE/O=Fuzz, Inc./OU=a+CN=v1 client", None, "ca")
        run("openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ec.key", cwd=t)
        run("openssl", "req", "-new", "-key", "ec.key", "-subj", "/CN=ec client", "-out", "ec.csr", cwd=t)
        run("openssl", "x509", "-req", *days, "-CAcreateserial", "-in", "ec.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-out", "ec.pem", cwd=t)
        issue("forged", "/O=Fuzz/CN=admin", None, "alice")
        d = {n: der(f"{n}.pem", t) for n in ["ca", "inter", "alice", "v1", "ec", "forged"]}
        write("x509", "v3-chain", d["alice"] + d["inter"] + d["ca"])
        write("x509", "v1-client", d["v1"] + d["ca"])
        write("x509", "ec-client", d["ec"] + d["ca"])
        write("x509", "forged-v1", d["forged"] + d["alice"] + d["inter"] + d["ca"])
        write("x509", "ca-only", d["ca"])
        # PEM stores.
        pem = lambda *names: b"".join(open(os.path.join(t, n), "rb").read() for n in names)
        write("pem", "key-and-chain", pem("alice.key", "alice.pem", "inter.pem"))
        write("pem", "certs-only", pem("ca.pem", "inter.pem"))
        write("pem", "ec-key", pem("ec.key", "ec.pem"))
        run("openssl", "rsa", "-traditional", "-in", "v1.key", "-out", "v1-pkcs1.key", cwd=t)
        write("pem", "pkcs1-key", pem("v1-pkcs1.key", "v1.pem"))
        # JKS and PKCS#12 stores, password "changeit" (what the targets use).
        pw = "changeit"
        kt = ["keytool", "-noprompt", "-storepass", pw, "-keypass", pw]
        for kind, ext in [("JKS", "jks"), ("PKCS12", "p12")]:
            run(*kt, "-genkeypair", "-alias", "server", "-keyalg", "RSA", "-keysize", "2048", "-dname", "CN=127.0.0.1",
                "-validity", "36500", "-storetype", kind, "-keystore", f"keytool.{ext}", cwd=t)
            run(*kt, "-genkeypair", "-alias", "ec", "-keyalg", "EC", "-dname", "CN=ec", "-validity", "36500",
                "-storetype", kind, "-keystore", f"keytool.{ext}", cwd=t)
            run(*kt, "-importcert", "-alias", "ca", "-file", "ca.pem", "-storetype", kind, "-keystore", f"trust.{ext}", cwd=t)
        for name in ["keytool.jks", "trust.jks"]:
            write("jks", name, open(os.path.join(t, name), "rb").read())
        for name in ["keytool.p12", "trust.p12"]:
            write("pkcs12", name, open(os.path.join(t, name), "rb").read())
        op = ["openssl", "pkcs12", "-export", "-passout", f"pass:{pw}"]
        run(*op, "-inkey", "alice.key", "-in", "alice.pem", "-certfile", "inter.pem", "-out", "default.p12", cwd=t)
        run(*op, "-legacy", "-inkey", "alice.key", "-in", "alice.pem", "-out", "legacy.p12", cwd=t)
        run(*op, "-nokeys", "-in", "ca.pem", "-out", "nokeys.p12", cwd=t)
        for name in ["default.p12", "legacy.p12", "nokeys.p12"]:
            write("pkcs12", name, open(os.path.join(t, name), "rb").read())
    finally:
        shutil.rmtree(t)

def zoocfg_seeds():
    write("zoocfg", "minimal", b"dataDir=/var/lib/zookeeper\n")
    write("zoocfg", "standalone", b"""# The number of milliseconds of each tick
tickTime=2000
initLimit=10
syncLimit=5
dataDir=/var/lib/zookeeper
clientPort=2181
clientPortAddress=127.0.0.1
maxClientCnxns=60
minSessionTimeout=4000
maxSessionTimeout=40000
4lw.commands.whitelist=ruok, srvr, mntr
extendedTypesEnabled=true
jute.maxbuffer=1048575
snapCount=100000
znode.container.checkIntervalMs=60000
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
admin.enableServer=false
""")
    write("zoocfg", "tls", b"""dataDir=/data
clientPort=2181
secureClientPort=2281
secureClientPortAddress=0.0.0.0
serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
ssl.keyStore.location=/etc/zk/server.p12
ssl.keyStore.password=changeit
ssl.keyStore.type=PKCS12
ssl.trustStore.location=/etc/zk/trust.jks
ssl.trustStore.password=changeit
ssl.clientAuth=want
authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider
X509AuthenticationProvider.superUser=CN=admin,O=Corral
zookeeper.DigestAuthenticationProvider.superDigest=super:D/InIHSb7yEEbrWz8b9l71RjZJU=
""")
    write("zoocfg", "ensemble", b"""tickTime=2000
dataDir=/data
dataLogDir=/log
clientPort=2181
initLimit=5
syncLimit=2
standaloneEnabled=false
reconfigEnabled=false
server.1=zk1:2888:3888
server.2=zk2:2888:3888:participant;2181
server.3=10.0.0.3:2888:3888:observer
""")

if __name__ == "__main__":
    shutil.rmtree(SEEDS, ignore_errors=True)
    protocol_seeds()
    store_seeds()
    zoocfg_seeds()
    for t in sorted(os.listdir(SEEDS)):
        print(t, len(os.listdir(os.path.join(SEEDS, t))))
