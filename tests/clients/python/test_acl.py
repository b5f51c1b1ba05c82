"""ACLs: world, auth, digest, ip, super digest; permission bits; auth errors; whoAmI."""
import pytest
from kazoo.exceptions import AuthFailedError, BadVersionError, InvalidACLError, NoAuthError
from kazoo.security import (ACL, OPEN_ACL_UNSAFE, READ_ACL_UNSAFE, Id, Permissions,
                            make_acl, make_digest_acl, make_digest_acl_credential)

import rawzk as R
import servers


def test_default_acl_is_world_anyone(zk, root):
    zk.create(root + "/n")
    acls, st = zk.get_acls(root + "/n")
    assert acls == OPEN_ACL_UNSAFE
    assert st.aversion == 0


def test_digest_acl(kz, root):
    owner = kz(auth_data=[("digest", "alice:secret")])
    p = owner.create(root + "/d", b"x", acl=[make_digest_acl("alice", "secret", all=True)])
    acls, _ = owner.get_acls(p)
    assert acls == [ACL(Permissions.ALL, Id("digest", make_digest_acl_credential("alice", "secret")))]
    anon = kz()
    with pytest.raises(NoAuthError):
        anon.get(p)
    with pytest.raises(NoAuthError):
        anon.set(p, b"y")
    wrong = kz(auth_data=[("digest", "alice:nope")])
    with pytest.raises(NoAuthError):
        wrong.get(p)
    late = kz()
    late.add_auth("digest", "alice:secret")
    assert late.get(p)[0] == b"x"
    # exists is not ACL-checked
    assert anon.exists(p) is not None


def test_digest_credential_matches_zookeeper_formula():
    # base64(sha1("user:password")), as ZooKeeper's DigestAuthenticationProvider
    assert servers.zk_digest("super", "test") == "super:D/InIHSb7yEEbrWz8b9l71RjZJU="
    assert make_digest_acl_credential("super", "test") == servers.SUPER_DIGEST


def test_auth_scheme_acl(kz, raw, root):
    c = raw()
    # "auth" ACL without any authenticated identity: InvalidACL
    assert c.create(root + "/a", acl=[(R.PERM_ALL, "auth", "")]).err == R.INVALID_ACL
    assert c.add_auth("digest", b"bob:pw").err == 0
    assert c.create(root + "/a", acl=[(R.PERM_ALL, "auth", "")]).err == 0
    r = c.get_acl(root + "/a")
    assert r.err == 0
    # expanded to the session's authenticated ids (the ip id is not added)
    assert r.body.acls() == [(R.PERM_ALL, "digest", make_digest_acl_credential("bob", "pw"))]
    bob = kz(auth_data=[("digest", "bob:pw")])
    assert bob.get(root + "/a")[0] == b""
    with pytest.raises(NoAuthError):
        kz().get(root + "/a")


def test_ip_acl(zk, kz, root):
    p1 = zk.create(root + "/ip", acl=[make_acl("ip", "127.0.0.1", all=True)])
    assert zk.get(p1)[0] == b""
    p2 = zk.create(root + "/cidr", acl=[make_acl("ip", "127.0.0.0/8", read=True)])
    assert zk.get(p2)[0] == b""
    with pytest.raises(NoAuthError):
        zk.set(p2, b"x")  # only READ granted
    p3 = zk.create(root + "/other", acl=[make_acl("ip", "10.1.2.3", all=True)])  # just an ACL id
    with pytest.raises(NoAuthError):
        zk.get(p3)


def test_super_digest_bypasses_acls(kz, root, super_auth):
    owner = kz(auth_data=[("digest", "carol:pw")])
    p = owner.create(root + "/locked", b"s", acl=[make_digest_acl("carol", "pw", read=True)])
    with pytest.raises(NoAuthError):
        owner.set(p, b"t")
    su = kz(auth_data=[super_auth])
    assert su.get(p)[0] == b"s"
    su.set(p, b"t")
    su.set_acls(p, OPEN_ACL_UNSAFE)
    assert kz().get(p)[0] == b"t"
    # wrong super password is just another digest identity
    bad = kz(auth_data=[("digest", "super:wrong")])
    q = owner.create(root + "/locked2", acl=[make_digest_acl("carol", "pw", all=True)])
    with pytest.raises(NoAuthError):
        bad.get(q)


def test_permission_bits(raw, root):
    c = raw()
    ro = root + "/ro"
    assert c.create(ro, acl=[(R.PERM_READ, "world", "anyone")]).err == 0
    assert c.set_data(ro, b"x").err == R.NO_AUTH
    assert c.create(ro + "/k").err == R.NO_AUTH
    assert c.set_acl(ro, R.OPEN_ACL_UNSAFE).err == R.NO_AUTH
    assert c.get_data(ro).err == 0
    co = root + "/co"
    assert c.create(co, acl=[(R.PERM_CREATE | R.PERM_READ, "world", "anyone")]).err == 0
    assert c.create(co + "/k").err == 0
    assert c.delete(co + "/k").err == R.NO_AUTH      # DELETE is checked on the parent
    nr = root + "/nr"
    assert c.create(nr, acl=[(R.PERM_WRITE, "world", "anyone")]).err == 0
    assert c.get_data(nr).err == R.NO_AUTH
    assert c.get_children(nr).err == R.NO_AUTH
    assert c.get_acl(nr).err == R.NO_AUTH            # getACL needs READ or ADMIN
    assert c.exists(nr).err == 0                     # exists: no ACL check
    assert c.set_data(nr, b"w").err == 0
    ad = root + "/ad"
    assert c.create(ad, acl=[(R.PERM_ADMIN, "world", "anyone")]).err == 0
    assert c.get_acl(ad).err == 0
    assert c.set_acl(ad, R.OPEN_ACL_UNSAFE).err == 0
    # deleting a node needs DELETE on its parent, not on itself
    assert c.delete(ro).err == 0


def test_set_acl_versions(zk, root):
    p = zk.create(root + "/v")
    ra = [ACL(Permissions.READ | Permissions.ADMIN, Id("world", "anyone"))]
    st = zk.set_acls(p, ra, version=0)
    assert st.aversion == 1 and st.version == 0
    with pytest.raises(BadVersionError):
        zk.set_acls(p, OPEN_ACL_UNSAFE, version=0)
    assert zk.get_acls(p)[0] == ra
    zk.set_acls(p, READ_ACL_UNSAFE, version=1)
    with pytest.raises(NoAuthError):   # ADMIN is checked before the version
        zk.set_acls(p, OPEN_ACL_UNSAFE, version=99)


def test_invalid_acls(raw, root):
    c = raw()
    assert c.create(root + "/e", acl=[]).err == R.INVALID_ACL
    assert c.create(root + "/d", acl=[(R.PERM_ALL, "digest", "no-colon")]).err == R.INVALID_ACL
    assert c.create(root + "/s", acl=[(R.PERM_ALL, "nosuchscheme", "x")]).err == R.INVALID_ACL
    assert c.create(root + "/x").err == 0
    assert c.set_acl(root + "/x", []).err == R.INVALID_ACL


def test_unknown_auth_scheme_fails_and_closes(raw):
    c = raw()
    r = c.add_auth("nosuchscheme", b"x")
    assert r.xid == -4 and r.err == R.AUTH_FAILED
    with pytest.raises(R.ConnectionClosed):
        c.exists("/")


def test_kazoo_auth_failed(kz):
    c = kz()
    with pytest.raises(AuthFailedError):
        c.add_auth("nosuchscheme", "x")


def test_auth_reply_header(raw):
    c = raw()
    r = c.add_auth("digest", b"u:p")
    assert (r.xid, r.zxid, r.err) == (-4, 0, 0)
    # a digest credential without ':' is accepted by ZooKeeper 3.8 (it is just an odd id)
    r = c.add_auth("digest", b"nocolon")
    assert r.err == 0
    assert c.exists("/").err == 0


def _who(c):
    r = c.who_am_i()
    assert r.err == 0
    n = r.body.int()
    return [(r.body.string(), r.body.string()) for _ in range(n)]


def test_who_am_i(raw):
    c = raw()
    assert _who(c) == [("ip", "127.0.0.1")]
    c.add_auth("digest", b"dave:pw")
    # order of the ids is not specified (ZooKeeper keeps them in a set)
    assert sorted(_who(c)) == [("digest", "dave"), ("ip", "127.0.0.1")]
    s = raw()
    s.add_auth("digest", ("%s:%s" % (servers.SUPER_USER, servers.SUPER_PASSWORD)).encode())
    who = _who(s)
    assert ("digest", "super") in who
