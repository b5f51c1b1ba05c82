"""Minimal synchronous ZooKeeper wire-protocol client (jute encoding).

Used where kazoo 2.11 has no API (TTL/container create, addWatch,
removeWatches, getEphemerals, getAllChildrenNumber, whoAmI, setWatches) and
where tests must see the exact reply header (xid/zxid/err) and per-op multi
results that kazoo hides. No threads: every call reads frames until its reply
arrives; watch notifications (xid -1) seen meanwhile are queued in .events.
"""
import socket
import struct
import time
from collections import namedtuple

# opcodes
CREATE, DELETE, EXISTS, GET_DATA, SET_DATA, GET_ACL, SET_ACL, GET_CHILDREN = 1, 2, 3, 4, 5, 6, 7, 8
SYNC, PING, GET_CHILDREN2, CHECK, MULTI, CREATE2, RECONFIG = 9, 11, 12, 13, 14, 15, 16
CHECK_WATCHES, REMOVE_WATCHES, CREATE_CONTAINER, DELETE_CONTAINER, CREATE_TTL, MULTI_READ = 17, 18, 19, 20, 21, 22
AUTH, SET_WATCHES, SASL, GET_EPHEMERALS, GET_ALL_CHILDREN_NUMBER, SET_WATCHES2 = 100, 101, 102, 103, 104, 105
ADD_WATCH, WHO_AM_I, CLOSE = 106, 107, -11
ERROR_OP = -1

# error codes
OK = 0
SYSTEM_ERROR, RUNTIME_INCONSISTENCY, MARSHALLING_ERROR, UNIMPLEMENTED, BAD_ARGUMENTS = -1, -2, -5, -6, -8
API_ERROR, NO_NODE, NO_AUTH, BAD_VERSION, NO_CHILDREN_FOR_EPHEMERALS = -100, -101, -102, -103, -108
NODE_EXISTS, NOT_EMPTY, SESSION_EXPIRED, INVALID_ACL, AUTH_FAILED = -110, -111, -112, -114, -115
NO_WATCHER = -121
ERR_NAMES = {0: "OK", -1: "SystemError", -2: "RuntimeInconsistency", -5: "MarshallingError",
             -6: "Unimplemented", -8: "BadArguments", -100: "APIError", -101: "NoNode",
             -102: "NoAuth", -103: "BadVersion", -108: "NoChildrenForEphemerals",
             -110: "NodeExists", -111: "NotEmpty", -112: "SessionExpired", -114: "InvalidACL",
             -115: "AuthFailed", -121: "NoWatcher"}

# create modes
PERSISTENT, EPHEMERAL, PERSISTENT_SEQUENTIAL, EPHEMERAL_SEQUENTIAL = 0, 1, 2, 3
CONTAINER, PERSISTENT_WITH_TTL, PERSISTENT_SEQUENTIAL_WITH_TTL = 4, 5, 6

# watcher event types / states
EV_NONE, EV_CREATED, EV_DELETED, EV_DATA_CHANGED, EV_CHILDREN_CHANGED = -1, 1, 2, 3, 4
EV_DATA_WATCH_REMOVED, EV_CHILD_WATCH_REMOVED, EV_PERSISTENT_WATCH_REMOVED = 5, 6, 7
ST_SYNC_CONNECTED = 3

# addWatch modes, removeWatches/checkWatches types
ADD_WATCH_PERSISTENT, ADD_WATCH_PERSISTENT_RECURSIVE = 0, 1
WATCHER_CHILDREN, WATCHER_DATA, WATCHER_ANY = 1, 2, 3

PERM_READ, PERM_WRITE, PERM_CREATE, PERM_DELETE, PERM_ADMIN, PERM_ALL = 1, 2, 4, 8, 16, 31
OPEN_ACL_UNSAFE = [(PERM_ALL, "world", "anyone")]

Stat = namedtuple("Stat", "czxid mzxid ctime mtime version cversion aversion "
                          "ephemeralOwner dataLength numChildren pzxid")
Reply = namedtuple("Reply", "xid zxid err body")
Event = namedtuple("Event", "type state path")
ConnectResponse = namedtuple("ConnectResponse", "protocol_version timeout session_id passwd read_only")


class Buf:
    def __init__(self):
        self.b = bytearray()

    def int(self, v):
        self.b += struct.pack(">i", v); return self

    def long(self, v):
        self.b += struct.pack(">q", v); return self

    def bool(self, v):
        self.b += b"\x01" if v else b"\x00"; return self

    def buffer(self, v):
        if v is None:
            return self.int(-1)
        self.int(len(v)); self.b += v; return self

    def string(self, s):
        return self.buffer(None if s is None else s.encode())

    def strings(self, xs):
        self.int(len(xs))
        for x in xs:
            self.string(x)
        return self

    def acls(self, acl):
        self.int(len(acl))
        for perms, scheme, ident in acl:
            self.int(perms).string(scheme).string(ident)
        return self

    def bytes(self):
        return bytes(self.b)


class Reader:
    def __init__(self, data, off=0):
        self.d, self.o = data, off

    def int(self):
        v = struct.unpack_from(">i", self.d, self.o)[0]; self.o += 4; return v

    def long(self):
        v = struct.unpack_from(">q", self.d, self.o)[0]; self.o += 8; return v

    def bool(self):
        v = self.d[self.o] != 0; self.o += 1; return v

    def buffer(self):
        n = self.int()
        if n < 0:
            return None
        v = self.d[self.o:self.o + n]; self.o += n; return bytes(v)

    def string(self):
        v = self.buffer()
        return None if v is None else v.decode()

    def strings(self):
        n = self.int()
        return None if n < 0 else [self.string() for _ in range(n)]

    def stat(self):
        return Stat(self.long(), self.long(), self.long(), self.long(), self.int(), self.int(),
                    self.int(), self.long(), self.int(), self.int(), self.long())

    def acls(self):
        n = self.int()
        return [(self.int(), self.string(), self.string()) for _ in range(n)]

    def remaining(self):
        return len(self.d) - self.o


class ConnectionClosed(Exception):
    pass


class RawZK:
    def __init__(self, port, host="127.0.0.1", timeout_ms=10000, session_id=0, passwd=b"\0" * 16,
                 last_zxid=0, read_only=False, io_timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=io_timeout)
        self.sock.settimeout(io_timeout)
        self.xid = 0
        self.events = []
        self.last_zxid = last_zxid
        req = (Buf().int(0).long(last_zxid).int(timeout_ms).long(session_id).buffer(passwd)
               .bool(read_only).bytes())
        self._send(req)
        r = Reader(self._recv_frame())
        proto, to, sid = r.int(), r.int(), r.long()
        pw = r.buffer()
        ro = r.bool() if r.remaining() else None
        self.connect_response = ConnectResponse(proto, to, sid, pw, ro)
        self.session_id, self.passwd, self.timeout = sid, pw, to

    # -- framing
    def _send(self, payload):
        # A server that refuses a frame by its length header closes while the
        # rest is still being sent: the client then sees EPIPE or ECONNRESET,
        # which is the same answer as an orderly close.
        try:
            self.sock.sendall(struct.pack(">i", len(payload)) + payload)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise ConnectionClosed("server closed the connection while we sent: %s" % e)

    def _recv_exact(self, n):
        out = bytearray()
        while len(out) < n:
            try:
                d = self.sock.recv(n - len(out))
            except ConnectionResetError as e:
                raise ConnectionClosed("server reset the connection: %s" % e)
            if not d:
                raise ConnectionClosed("server closed the connection")
            out += d
        return bytes(out)

    def _recv_frame(self):
        (n,) = struct.unpack(">i", self._recv_exact(4))
        return self._recv_exact(n)

    def _read_reply(self):
        """Read one frame: returns ('event', Event) or ('reply', Reply)."""
        d = self._recv_frame()
        r = Reader(d)
        xid, zxid, err = r.int(), r.long(), r.int()
        if xid == -1:
            ev = Event(r.int(), r.int(), r.string())
            return "event", ev
        if zxid > 0:
            self.last_zxid = max(self.last_zxid, zxid)
        return "reply", Reply(xid, zxid, err, Reader(d, r.o))

    # -- requests
    def call(self, op, body=b"", xid=None):
        if xid is None:
            self.xid += 1
            xid = self.xid
        self._send(struct.pack(">ii", xid, op) + body)
        while True:
            kind, v = self._read_reply()
            if kind == "event":
                self.events.append(v)
                continue
            if v.xid == -2 and xid != -2:  # stray ping reply
                continue
            if v.xid != xid:
                raise AssertionError("reply xid %d != request xid %d" % (v.xid, xid))
            return v

    def wait_event(self, pred=lambda e: True, timeout=10.0):
        """Return the first queued/arriving event matching pred (removed from queue)."""
        for i, e in enumerate(self.events):
            if pred(e):
                return self.events.pop(i)
        deadline = time.monotonic() + timeout
        old = self.sock.gettimeout()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.sock.settimeout(left)
                try:
                    kind, v = self._read_reply()
                except socket.timeout:
                    return None
                if kind == "event":
                    if pred(v):
                        return v
                    self.events.append(v)
        finally:
            self.sock.settimeout(old)

    def no_event(self, timeout=0.5):
        """True if no event arrives within timeout (used only to check absence)."""
        return self.wait_event(timeout=timeout) is None

    def ping(self):
        return self.call(PING, b"", xid=-2)

    # convenience wrappers returning Reply (err checked by the caller)
    def create(self, path, data=b"", acl=OPEN_ACL_UNSAFE, mode=PERSISTENT, op=CREATE, ttl=None):
        b = Buf().string(path).buffer(data).acls(acl).int(mode)
        if ttl is not None:
            b.long(ttl)
        return self.call(op, b.bytes())

    def create2(self, path, data=b"", acl=OPEN_ACL_UNSAFE, mode=PERSISTENT):
        return self.create(path, data, acl, mode, op=CREATE2)

    def delete(self, path, version=-1):
        return self.call(DELETE, Buf().string(path).int(version).bytes())

    def exists(self, path, watch=False):
        return self.call(EXISTS, Buf().string(path).bool(watch).bytes())

    def get_data(self, path, watch=False):
        return self.call(GET_DATA, Buf().string(path).bool(watch).bytes())

    def set_data(self, path, data, version=-1):
        return self.call(SET_DATA, Buf().string(path).buffer(data).int(version).bytes())

    def get_children(self, path, watch=False, op=GET_CHILDREN):
        return self.call(op, Buf().string(path).bool(watch).bytes())

    def get_acl(self, path):
        return self.call(GET_ACL, Buf().string(path).bytes())

    def set_acl(self, path, acl, version=-1):
        return self.call(SET_ACL, Buf().string(path).acls(acl).int(version).bytes())

    def sync(self, path):
        return self.call(SYNC, Buf().string(path).bytes())

    def add_auth(self, scheme, auth):
        return self.call(AUTH, Buf().int(0).string(scheme).buffer(auth).bytes(), xid=-4)

    def add_watch(self, path, mode):
        return self.call(ADD_WATCH, Buf().string(path).int(mode).bytes())

    def remove_watches(self, path, wtype, op=REMOVE_WATCHES):
        return self.call(op, Buf().string(path).int(wtype).bytes())

    def get_ephemerals(self, prefix):
        return self.call(GET_EPHEMERALS, Buf().string(prefix).bytes())

    def get_all_children_number(self, path):
        return self.call(GET_ALL_CHILDREN_NUMBER, Buf().string(path).bytes())

    def who_am_i(self):
        return self.call(WHO_AM_I, b"")

    def set_watches(self, rel_zxid, data=(), exist=(), child=(), persistent=None,
                    persistent_recursive=None):
        b = Buf().long(rel_zxid).strings(list(data)).strings(list(exist)).strings(list(child))
        if persistent is None and persistent_recursive is None:
            return self.call(SET_WATCHES, b.bytes(), xid=-8)
        b.strings(list(persistent or ())).strings(list(persistent_recursive or ()))
        return self.call(SET_WATCHES2, b.bytes(), xid=-8)

    def multi(self, ops, op=MULTI):
        """ops: list of (opcode, body_bytes). Returns (Reply, results) where results
        is a list of (type, err, Reader-positioned-at-body)."""
        b = Buf()
        for t, body in ops:
            b.int(t).bool(False).int(-1)
            b.b += body
        b.int(-1).bool(True).int(-1)
        rep = self.call(op, b.bytes())
        results = []
        r = rep.body
        if r.remaining() == 0:
            return rep, results
        while True:
            t, done, err = r.int(), r.bool(), r.int()
            if done:
                break
            if t == ERROR_OP:
                results.append((t, r.int(), None))
                continue
            if t in (CREATE, CREATE2, CREATE_CONTAINER, CREATE_TTL):
                path = r.string()
                stat = r.stat() if t != CREATE else None
                results.append((t, err, (path, stat)))
            elif t == SET_DATA:
                results.append((t, err, r.stat()))
            elif t in (DELETE, CHECK):
                results.append((t, err, None))
            elif t == GET_DATA:
                results.append((t, err, (r.buffer(), r.stat())))
            elif t == GET_CHILDREN:
                results.append((t, err, r.strings()))
            else:
                raise AssertionError("unexpected multi result type %d" % t)
        return rep, results

    def close_session(self):
        rep = self.call(CLOSE, b"")
        self.sock.close()
        return rep

    def drop(self):
        """Close the TCP connection without closing the session."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        try:
            self.sock.close()
        except OSError:
            pass


# multi op bodies
def op_create(path, data=b"", acl=OPEN_ACL_UNSAFE, mode=PERSISTENT):
    return CREATE, Buf().string(path).buffer(data).acls(acl).int(mode).bytes()


def op_create2(path, data=b"", acl=OPEN_ACL_UNSAFE, mode=PERSISTENT):
    return CREATE2, Buf().string(path).buffer(data).acls(acl).int(mode).bytes()


def op_delete(path, version=-1):
    return DELETE, Buf().string(path).int(version).bytes()


def op_set(path, data, version=-1):
    return SET_DATA, Buf().string(path).buffer(data).int(version).bytes()


def op_check(path, version):
    return CHECK, Buf().string(path).int(version).bytes()


def op_get_data(path):
    return GET_DATA, Buf().string(path).bool(False).bytes()


def op_get_children(path):
    return GET_CHILDREN, Buf().string(path).bool(False).bytes()
