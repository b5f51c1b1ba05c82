"""Four-letter words: assert on the key lines of each format, not exact values."""
import re

import pytest

import rawzk as R
from servers import four_letter


def lines(port, w):
    return four_letter(port, w).splitlines()


def test_ruok(port):
    assert four_letter(port, "ruok") == "imok"


SRVR_KEYS = ["Zookeeper version: ", "Latency min/avg/max: ", "Received: ", "Sent: ",
             "Connections: ", "Outstanding: ", "Zxid: 0x", "Mode: standalone", "Node count: "]


def test_srvr(port):
    out = four_letter(port, "srvr")
    for k in SRVR_KEYS:
        assert re.search("^" + re.escape(k), out, re.M), k
    assert re.search(r"^Latency min/avg/max: \d+/[\d.]+/\d+$", out, re.M)
    assert re.search(r"^Zxid: 0x[0-9a-f]+$", out, re.M)
    assert re.search(r"^Node count: \d+$", out, re.M)


def test_stat_lists_clients(port, raw):
    c = raw()
    local = c.sock.getsockname()[1]
    out = four_letter(port, "stat")
    for k in SRVR_KEYS:
        assert k in out, k
    assert out.splitlines()[1] == "Clients:"
    assert re.search(r"^ /127\.0\.0\.1:%d\[1\]\(queued=\d+,recved=\d+,sent=\d+\)$" % local, out, re.M)


def test_mntr(port, raw):
    c = raw()
    c.create("/mntr-eph-%x" % c.session_id, mode=R.EPHEMERAL)
    kv = dict(l.split("\t", 1) for l in lines(port, "mntr"))
    for k in ["zk_version", "zk_server_state", "zk_avg_latency", "zk_max_latency", "zk_min_latency",
              "zk_packets_received", "zk_packets_sent", "zk_num_alive_connections",
              "zk_outstanding_requests", "zk_znode_count", "zk_watch_count", "zk_ephemerals_count",
              "zk_approximate_data_size"]:
        assert k in kv, k
    assert kv["zk_server_state"] == "standalone"
    assert int(kv["zk_znode_count"]) >= 3
    assert int(kv["zk_ephemerals_count"]) >= 1
    assert int(kv["zk_num_alive_connections"]) >= 1


def test_conf(port):
    kv = dict(l.split("=", 1) for l in lines(port, "conf") if "=" in l)
    assert kv["clientPort"] == str(port)
    assert kv["tickTime"] == "1000"
    assert kv["minSessionTimeout"] == "2000"
    assert kv["maxSessionTimeout"] == "20000"
    assert "dataDir" in kv and "maxClientCnxns" in kv
    assert kv["serverId"] == "0"


def test_cons(port, raw):
    c = raw(timeout_ms=6000)
    c.exists("/")
    local = c.sock.getsockname()[1]
    out = four_letter(port, "cons")
    m = re.search(r"^ /127\.0\.0\.1:%d\[1\]\((.*)\)$" % local, out, re.M)
    assert m, out
    fields = dict(f.split("=", 1) for f in m.group(1).split(","))
    for k in ["queued", "recved", "sent", "sid", "lop", "est", "to", "lcxid", "lzxid", "lresp",
              "llat", "minlat", "avglat", "maxlat"]:
        assert k in fields, k
    assert fields["sid"] == "0x%x" % c.session_id
    assert fields["to"] == "6000"
    assert fields["lop"] == "EXIS"
    # the 4lw connection itself is listed too, with [0] (no session)
    assert re.search(r"^ /127\.0\.0\.1:\d+\[0\]\(queued=\d+,recved=\d+,sent=\d+\)$", out, re.M)


def test_envi(port):
    ls = lines(port, "envi")
    assert ls[0] == "Environment:"
    keys = {l.split("=", 1)[0] for l in ls[1:] if "=" in l}
    for k in ["zookeeper.version", "host.name", "java.version", "os.name", "user.dir"]:
        assert k in keys, k


def test_watch_words(port, raw, root):
    c = raw()
    c.create(root + "/w")
    c.get_data(root + "/w", watch=True)
    c.get_children(root, watch=True)
    sid = "0x%x" % c.session_id
    wchs = four_letter(port, "wchs")
    assert re.match(r"^\d+ connections watching \d+ paths\nTotal watches:\d+\n$", wchs), wchs
    wchc = four_letter(port, "wchc")
    blk = wchc.split(sid + "\n", 1)
    assert len(blk) == 2, wchc
    mine = set()
    for l in blk[1].splitlines():
        if not l.startswith("\t"):
            break
        mine.add(l[1:])
    # ZooKeeper 3.8's wchc/wchp/wchs dump only the data-watch table (getData/exists
    # and persistent watches); plain child watches are not listed
    assert mine == {root + "/w"}
    wchp = four_letter(port, "wchp")
    assert re.search("^%s\n\t%s$" % (re.escape(root + "/w"), sid), wchp, re.M), wchp


def test_dump(port, raw, root):
    c = raw(timeout_ms=6000)
    c.create(root + "/eph", mode=R.EPHEMERAL)
    out = four_letter(port, "dump")
    assert out.startswith("SessionTracker dump:\n")
    assert "ephemeral nodes dump:" in out
    sid = "0x%x" % c.session_id
    assert re.search("^%s:\n\t%s$" % (sid, re.escape(root + "/eph")), out, re.M), out


def test_isro(port):
    assert four_letter(port, "isro") == "rw"


def test_crst_srst(port, raw):
    c = raw()
    for _ in range(3):
        c.exists("/")
    assert four_letter(port, "crst") == "Connection stats reset.\n"
    assert four_letter(port, "srst") == "Server stats reset.\n"
    out = four_letter(port, "srvr")
    # right after srst the counters restart (the srvr request itself may count)
    assert int(re.search(r"^Received: (\d+)$", out, re.M).group(1)) <= 2


def test_unknown_word_closes_silently(port):
    assert four_letter(port, "xyzw") == ""
