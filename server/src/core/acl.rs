//! ACLs: checking permissions, fixing up `auth` ids, and authenticating
//! `digest` credentials, as ZooKeeper's `ZooKeeperServer.checkACL`,
//! `PrepRequestProcessor.fixupACL` and `DigestAuthenticationProvider`.

use std::net::IpAddr;

use base64::Engine;
use protocol::{Acl, ErrorCode, Id};
use sha1::{Digest, Sha1};

/// `user:base64(sha1("user:password"))`, the id a digest ACL names.
pub fn digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or_default();
    let hash = Sha1::digest(user_password.as_bytes());
    format!("{user}:{}", base64::engine::general_purpose::STANDARD.encode(hash))
}

/// The ids an `addauth` grants, or AuthFailed. `super_digest` is the value
/// of `zookeeper.DigestAuthenticationProvider.superDigest`.
pub fn authenticate(scheme: &str, auth: &[u8], super_digest: Option<&str>) -> Result<Vec<Id>, ErrorCode> {
    match scheme {
        "digest" => {
            let cred = std::str::from_utf8(auth).map_err(|_| ErrorCode::AuthFailed)?;
            let d = digest(cred);
            let mut ids = Vec::new();
            if super_digest == Some(d.as_str()) {
                ids.push(Id { scheme: "super".into(), id: String::new() });
            }
            ids.push(Id { scheme: "digest".into(), id: d });
            Ok(ids)
        }
        _ => Err(ErrorCode::AuthFailed),
    }
}

/// Whether `addr` lies in the `ip` ACL expression `expr` ("a.b.c.d" or "a.b.c.d/bits").
fn ip_matches(addr: &str, expr: &str) -> bool {
    let (net, bits) = match expr.split_once('/') {
        Some((n, b)) => match b.parse::<u32>() {
            Ok(b) => (n, Some(b)),
            Err(_) => return false,
        },
        None => (expr, None),
    };
    let (Ok(a), Ok(n)) = (addr.parse::<IpAddr>(), net.parse::<IpAddr>()) else { return false };
    match (a, n) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let bits = bits.unwrap_or(32).min(32);
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let bits = bits.unwrap_or(128).min(128);
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn ip_valid(expr: &str) -> bool {
    let (net, bits) = match expr.split_once('/') {
        Some((n, b)) => (n, Some(b)),
        None => (expr, None),
    };
    match net.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => bits.is_none_or(|b| b.parse::<u32>().is_ok_and(|b| b <= 32)),
        Ok(IpAddr::V6(_)) => bits.is_none_or(|b| b.parse::<u32>().is_ok_and(|b| b <= 128)),
        Err(_) => false,
    }
}

/// Checks that `auth` grants any bit of `perm` on a node with `acl`.
pub fn check(acl: &[Acl], perm: i32, auth: &[Id]) -> Result<(), ErrorCode> {
    if acl.is_empty() || auth.iter().any(|id| id.scheme == "super") {
        return Ok(());
    }
    for a in acl.iter().filter(|a| a.perms & perm != 0) {
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => return Ok(()),
            "digest" if auth.iter().any(|id| id.scheme == "digest" && id.id == a.id.id) => return Ok(()),
            "ip" if auth.iter().any(|id| id.scheme == "ip" && ip_matches(&id.id, &a.id.id)) => return Ok(()),
            "x509" if auth.iter().any(|id| id.scheme == "x509" && id.id == a.id.id) => return Ok(()),
            "sasl" if auth.iter().any(|id| id.scheme == "sasl" && id.id == a.id.id) => return Ok(()),
            _ => {}
        }
    }
    Err(ErrorCode::NoAuth)
}

/// Validates an ACL from a create/setACL and replaces `auth` entries with
/// the caller's authenticated ids; duplicates are dropped.
pub fn fixup(acl: &[Acl], auth: &[Id]) -> Result<Vec<Acl>, ErrorCode> {
    if acl.is_empty() {
        return Err(ErrorCode::InvalidAcl);
    }
    let mut out: Vec<Acl> = Vec::new();
    let mut push = |a: Acl| {
        if !out.contains(&a) {
            out.push(a);
        }
    };
    for a in acl {
        match a.id.scheme.as_str() {
            "world" if a.id.id == "anyone" => push(a.clone()),
            "auth" => {
                let mut any = false;
                // Only providers whose ids are real identities count (not ip).
                for id in auth.iter().filter(|id| matches!(id.scheme.as_str(), "digest" | "x509" | "sasl")) {
                    push(Acl { perms: a.perms, id: id.clone() });
                    any = true;
                }
                if !any {
                    return Err(ErrorCode::InvalidAcl);
                }
            }
            // Java's split(":") drops trailing empties: exactly "user:hash".
            "digest" if a.id.id.split(':').filter(|s| !s.is_empty()).count() == 2 && a.id.id.matches(':').count() == 1 => {
                push(a.clone())
            }
            "ip" if ip_valid(&a.id.id) => push(a.clone()),
            "x509" if !a.id.id.is_empty() => push(a.clone()),
            "sasl" if sasl_id_valid(&a.id.id) => push(a.clone()),
            _ => return Err(ErrorCode::InvalidAcl),
        }
    }
    Ok(out)
}

/// `SASLAuthenticationProvider.isValid`: Hadoop's `KerberosName` parses it,
/// so a name with `@` must be `primary[/instance]@REALM`; any other name is
/// a short name.
fn sasl_id_valid(id: &str) -> bool {
    let Some((principal, realm)) = id.split_once('@') else { return true };
    !realm.contains(['@', '/']) && principal.split('/').count() <= 2
}

/// getACL hides digest hashes from callers without ADMIN (`FinalRequestProcessor`).
pub fn redact(acl: &[Acl]) -> Vec<Acl> {
    acl.iter()
        .map(|a| {
            let mut a = a.clone();
            if a.id.scheme == "digest" {
                if let Some((user, _)) = a.id.id.split_once(':') {
                    a.id.id = format!("{user}:x");
                }
            }
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::codes::perms;

    fn id(scheme: &str, id: &str) -> Id {
        Id { scheme: scheme.into(), id: id.into() }
    }

    #[test]
    fn digest_matches_zookeeper() {
        // From ZooKeeper's documentation: super:test.
        assert_eq!(digest("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }

    #[test]
    fn checks_each_scheme() {
        let me = vec![id("ip", "127.0.0.1"), id("digest", &digest("u:p"))];
        let acl = |s: &str, i: &str, p: i32| vec![Acl { perms: p, id: id(s, i) }];
        assert!(check(&acl("world", "anyone", perms::READ), perms::READ, &[]).is_ok());
        assert_eq!(check(&acl("world", "anyone", perms::READ), perms::WRITE, &[]), Err(ErrorCode::NoAuth));
        assert!(check(&acl("digest", &digest("u:p"), perms::ALL), perms::WRITE, &me).is_ok());
        assert!(check(&acl("digest", &digest("u:q"), perms::ALL), perms::WRITE, &me).is_err());
        assert!(check(&acl("ip", "127.0.0.0/8", perms::ALL), perms::WRITE, &me).is_ok());
        assert!(check(&acl("ip", "10.0.0.1", perms::ALL), perms::WRITE, &me).is_err());
        assert!(check(&acl("ip", "10.0.0.1", perms::ALL), perms::WRITE, &[id("super", "")]).is_ok());
    }

    #[test]
    fn fixup_replaces_auth_and_rejects_invalid() {
        let me = vec![id("ip", "127.0.0.1"), id("digest", "u:h")];
        let auth = vec![Acl { perms: perms::ALL, id: id("auth", "") }];
        assert_eq!(fixup(&auth, &me).unwrap(), vec![Acl { perms: perms::ALL, id: id("digest", "u:h") }]);
        assert_eq!(fixup(&auth, &me[..1]), Err(ErrorCode::InvalidAcl));
        assert_eq!(fixup(&[], &me), Err(ErrorCode::InvalidAcl));
        for bad in [("world", "someone"), ("digest", "nocolon"), ("digest", "a:"), ("ip", "1.2.3"), ("foo", "x")] {
            let acl = vec![Acl { perms: perms::ALL, id: id(bad.0, bad.1) }];
            assert_eq!(fixup(&acl, &me), Err(ErrorCode::InvalidAcl), "{bad:?}");
        }
    }

    #[test]
    fn authenticate_grants_super() {
        let ids = authenticate("digest", b"super:test", Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU=")).unwrap();
        assert_eq!(ids[0], id("super", ""));
        assert_eq!(authenticate("nope", b"x", None), Err(ErrorCode::AuthFailed));
    }
}
