"""Shared fixtures for tests/clients (python/, zkcli/, cclient/).

One server per pytest session, selected by TARGET=zookeeper|corral (see servers.py);
tests under ensemble/ get a fresh 3-member ensemble each instead.
Every test works under its own unique root path, removed afterwards as the
super user (so ACL-protected leftovers are removed too).
"""
import os
import sys
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "python"))

import servers  # noqa: E402
from kazoo.client import KazooClient  # noqa: E402

TICK_MS = 1000  # => minSessionTimeout 2000 ms, maxSessionTimeout 20000 ms


def pytest_report_header(config):
    return "clients target: %s" % servers.target()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    # SASL DIGEST-MD5 on (servers.SASL_USERS): clients that do not use it
    # are not affected, on either target.
    jaas = servers.write_jaas_server(str(tmp_path_factory.mktemp("jaas") / "jaas.conf"))
    srv = servers.Server(tick_time=TICK_MS, extra_cfg=servers.sasl_cfg(jaas))
    try:
        srv.start()
        yield srv
    finally:
        srv.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the test item (item.rep_call), so a
    fixture can tell whether its test failed."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def ensemble(request):
    """A fresh 3-member ensemble of the target (servers.Ensemble), for tests
    that kill members; the members' log tails are printed if the test fails."""
    ens = servers.Ensemble(3, tick_time=TICK_MS)
    try:
        ens.start()
        yield ens
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            print(ens.log_tails())
    finally:
        ens.cleanup()


@pytest.fixture(scope="session")
def port(server):
    return server.port


@pytest.fixture(scope="session")
def hosts(server):
    return server.hosts


@pytest.fixture
def kz(hosts):
    """Factory: kz(**KazooClient kwargs) -> started client; all stopped at teardown."""
    made = []

    def make(chroot="", start=True, **kw):
        kw.setdefault("timeout", 10.0)
        c = KazooClient(hosts=hosts + chroot, **kw)
        made.append(c)
        if start:
            c.start(timeout=15)
        return c

    yield make
    for c in made:
        try:
            c.stop()
        finally:
            c.close()


@pytest.fixture
def zk(kz):
    return kz()


@pytest.fixture
def raw(port):
    """Factory: raw(**RawZK kwargs) -> raw protocol client; sockets closed at teardown."""
    from rawzk import RawZK
    made = []

    def make(**kw):
        c = RawZK(port, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        try:
            c.sock.close()
        except OSError:
            pass


@pytest.fixture
def root(request, hosts):
    """A fresh unique persistent node for this test, e.g. /t-test_foo-1a2b3c4d."""
    name = request.node.name.replace("[", "_").replace("]", "").replace("/", "_")[:60]
    path = "/t-%s-%s" % (name, uuid.uuid4().hex[:8])
    admin = KazooClient(hosts=hosts, timeout=10.0,
                        auth_data=[("digest", "%s:%s" % (servers.SUPER_USER, servers.SUPER_PASSWORD))])
    admin.start(timeout=15)
    try:
        admin.create(path)
        yield path
        try:
            admin.delete(path, recursive=True)
        except Exception:
            pass
    finally:
        admin.stop()
        admin.close()


@pytest.fixture
def super_auth():
    return ("digest", "%s:%s" % (servers.SUPER_USER, servers.SUPER_PASSWORD))
