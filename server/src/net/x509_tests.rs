//! Tests of `x509.rs`: certificates are built here, DER by hand and signed
//! with ring (ECDSA P-256), so every field (version, extensions, critical
//! flags, dates, names) is under the test's control; and a differential test
//! against the JDK's PKIX validation (server/testdata/PkixCheck.java).

use super::*;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use std::sync::atomic::{AtomicU64, Ordering};

const DAY: i64 = 86_400;

fn now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

// ---- DER building -------------------------------------------------------

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let n = content.len();
    let mut v = vec![tag];
    match n {
        0..=0x7f => v.push(n as u8),
        0x80..=0xff => v.extend([0x81, n as u8]),
        _ => v.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    v.extend_from_slice(content);
    v
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

fn oid(o: &[u8]) -> Vec<u8> {
    tlv(0x06, o)
}

/// Name with one CN (UTF8String).
fn name(cn: &str) -> Vec<u8> {
    seq(&[&tlv(0x31, &seq(&[&oid(&[0x55, 0x04, 0x03]), &tlv(0x0c, cn.as_bytes())]))])
}

/// Civil date of a day count since 1970-01-01 (Hinnant's inverse).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// UTCTime for 1950–2049, else GeneralizedTime, as RFC 5280 wants.
fn der_time(t: i64) -> Vec<u8> {
    let (y, m, d) = civil_from_days(t.div_euclid(DAY));
    let s = t.rem_euclid(DAY);
    let hms = format!("{m:02}{d:02}{:02}{:02}{:02}Z", s / 3600, s / 60 % 60, s % 60);
    if (1950..2050).contains(&y) {
        tlv(0x17, format!("{:02}{hms}", y % 100).as_bytes())
    } else {
        tlv(0x18, format!("{y:04}{hms}").as_bytes())
    }
}

struct Key {
    pair: EcdsaKeyPair,
}

impl Key {
    fn new() -> Key {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap().as_ref().to_vec();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, &rng).unwrap();
        Key { pair }
    }

    fn spki(&self) -> Vec<u8> {
        let mut bits = vec![0];
        bits.extend_from_slice(self.pair.public_key().as_ref());
        seq(&[&seq(&[&oid(EC), &oid(P256)]), &tlv(0x03, &bits)])
    }
}

/// One extension: (OID, critical, extnValue contents).
type Ext = (Vec<u8>, bool, Vec<u8>);

fn basic_constraints(ca: bool, path_len: Option<u8>) -> Ext {
    let mut v = Vec::new();
    if ca {
        v.extend(tlv(0x01, &[0xff]));
    }
    if let Some(n) = path_len {
        v.extend(tlv(0x02, &[n]));
    }
    (OID_BASIC_CONSTRAINTS.to_vec(), true, tlv(0x30, &v))
}

/// keyUsage with bits `1 << n` (n < 8), DER named-bit encoding.
fn key_usage(bits: u16) -> Ext {
    let byte = (0..8).filter(|n| bits & (1 << n) != 0).fold(0u8, |b, n| b | (0x80 >> n));
    let unused = if byte == 0 { 0 } else { byte.trailing_zeros() as u8 };
    let content = if byte == 0 { vec![0] } else { vec![unused, byte] };
    (OID_KEY_USAGE.to_vec(), true, tlv(0x03, &content))
}

const KP_SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
const KU_KEY_ENCIPHERMENT: u16 = 1 << 2;
const KU_CRL_SIGN: u16 = 1 << 6;

fn ext_key_usage(purposes: &[&[u8]]) -> Ext {
    let body: Vec<u8> = purposes.iter().flat_map(|p| oid(p)).collect();
    (OID_EXT_KEY_USAGE.to_vec(), false, tlv(0x30, &body))
}

fn ca_exts() -> Vec<Ext> {
    vec![basic_constraints(true, None), key_usage(KU_KEY_CERT_SIGN | KU_CRL_SIGN)]
}

fn ca_pathlen(n: u8) -> Vec<Ext> {
    vec![basic_constraints(true, Some(n)), key_usage(KU_KEY_CERT_SIGN | KU_CRL_SIGN)]
}

/// What an ordinary CA issues to a client: CA:FALSE, digitalSignature, clientAuth.
fn client_exts() -> Vec<Ext> {
    vec![basic_constraints(false, None), key_usage(KU_DIGITAL_SIGNATURE), ext_key_usage(&[OID_KP_CLIENT_AUTH])]
}

static SERIAL: AtomicU64 = AtomicU64::new(1);

/// A certificate to issue.
#[derive(Clone)]
struct Tbs {
    /// Contents of the version INTEGER; `None` omits the field (v1).
    version: Option<Vec<u8>>,
    subject: String,
    issuer: String,
    not_before: i64,
    not_after: i64,
    exts: Vec<Ext>,
    /// A subject Name other than one CN.
    raw_subject: Option<Vec<u8>>,
}

impl Tbs {
    fn v1(subject: &str, issuer: &str) -> Tbs {
        Tbs { version: None, subject: subject.into(), issuer: issuer.into(), not_before: now() - DAY, not_after: now() + DAY, exts: vec![], raw_subject: None }
    }

    fn v3(subject: &str, issuer: &str, exts: Vec<Ext>) -> Tbs {
        Tbs { version: Some(vec![2]), exts, ..Tbs::v1(subject, issuer) }
    }

    fn valid(mut self, not_before: i64, not_after: i64) -> Tbs {
        (self.not_before, self.not_after) = (not_before, not_after);
        self
    }

    /// DER of the certificate for `key`, signed by `by`.
    fn sign(&self, key: &Key, by: &Key) -> Vec<u8> {
        let alg = seq(&[&oid(ECDSA_SHA256)]);
        let serial = SERIAL.fetch_add(1, Ordering::Relaxed).to_be_bytes();
        let mut tbs = Vec::new();
        if let Some(v) = &self.version {
            tbs.extend(tlv(0xa0, &tlv(0x02, v)));
        }
        tbs.extend(tlv(0x02, &[&[0x01][..], &serial].concat()));
        tbs.extend(&alg);
        tbs.extend(name(&self.issuer));
        tbs.extend(seq(&[&der_time(self.not_before), &der_time(self.not_after)]));
        tbs.extend(self.raw_subject.clone().unwrap_or_else(|| name(&self.subject)));
        tbs.extend(key.spki());
        if !self.exts.is_empty() {
            let exts: Vec<u8> = self
                .exts
                .iter()
                .flat_map(|(o, critical, value)| {
                    let crit = if *critical { tlv(0x01, &[0xff]) } else { vec![] };
                    seq(&[&oid(o), &crit, &tlv(0x04, value)])
                })
                .collect();
            tbs.extend(tlv(0xa3, &tlv(0x30, &exts)));
        }
        let tbs = tlv(0x30, &tbs);
        let sig = by.pair.sign(&SystemRandom::new(), &tbs).unwrap();
        let mut bits = vec![0];
        bits.extend_from_slice(sig.as_ref());
        seq(&[&tbs, &alg, &tlv(0x03, &bits)])
    }
}

fn self_signed(tbs: &Tbs, key: &Key) -> Vec<u8> {
    tbs.sign(key, key)
}

// ---- the cases ----------------------------------------------------------

const CA: &str = "Corral Test CA";
const SUPER: &str = "super";

/// One chain to validate: what Corral must decide and, if Java decides
/// otherwise, why that difference is deliberate.
struct Case {
    name: &'static str,
    /// End entity first.
    chain: Vec<Vec<u8>>,
    anchors: Vec<Vec<u8>>,
    accept: bool,
    java_differs: Option<&'static str>,
}

fn case(name: &'static str, chain: Vec<Vec<u8>>, anchors: &[&Vec<u8>], accept: bool) -> Case {
    Case { name, chain, anchors: anchors.iter().map(|a| a.to_vec()).collect(), accept, java_differs: None }
}

fn cases() -> Vec<Case> {
    let t = now();
    let (ca_key, i1_key, i2_key, leaf_key, ee_key, new_ca_key) = (Key::new(), Key::new(), Key::new(), Key::new(), Key::new(), Key::new());
    let ca = self_signed(&Tbs::v3(CA, CA, ca_exts()), &ca_key);
    let v1_ca = self_signed(&Tbs::v1("V1 CA", "V1 CA"), &ca_key);
    let expired_ca = self_signed(&Tbs::v3(CA, CA, ca_exts()).valid(t - 10 * DAY, t - DAY), &ca_key);
    let leaf_ca = self_signed(&Tbs::v3(CA, CA, vec![basic_constraints(false, None), key_usage(KU_DIGITAL_SIGNATURE)]), &ca_key);
    let ku_ca = self_signed(&Tbs::v3(CA, CA, vec![basic_constraints(true, None), key_usage(KU_DIGITAL_SIGNATURE)]), &ca_key);
    let no_bc_ca = self_signed(&Tbs::v3(CA, CA, vec![key_usage(KU_KEY_CERT_SIGN)]), &ca_key);
    let other_ca = self_signed(&Tbs::v3("Other CA", "Other CA", ca_exts()), &Key::new());

    let ee = |issuer: &str, by: &Key| Tbs::v1("alice", issuer).sign(&ee_key, by);
    let int = |subject: &str, issuer: &str, exts: Vec<Ext>, by: &Key| Tbs::v3(subject, issuer, exts).sign(&i1_key, by);
    // An ordinary client certificate, and a v1 "super" one its holder signs.
    let leaf = Tbs::v3("alice", CA, client_exts()).sign(&leaf_key, &ca_key);
    let forged = Tbs::v1(SUPER, "alice").sign(&ee_key, &leaf_key);
    let i1 = int("Int 1", CA, ca_exts(), &ca_key);
    let mut unknown_critical = ca_exts();
    unknown_critical.push((vec![0x2a, 0x03, 0x04], true, tlv(0x05, &[])));
    let mut unknown_noncritical = ca_exts();
    unknown_noncritical.push((vec![0x2a, 0x03, 0x04], false, tlv(0x05, &[])));
    let mut critical_aki = ca_exts();
    critical_aki.push((vec![0x55, 0x1d, 0x23], true, seq(&[&tlv(0x80, &[1, 2, 3, 4])])));
    let mut name_constraints = ca_exts();
    let permitted = seq(&[&tlv(0xa4, &name("alice"))]);
    name_constraints.push((OID_NAME_CONSTRAINTS.to_vec(), true, seq(&[&tlv(0xa0, &permitted)])));
    let mut eku_server = ca_exts();
    eku_server.push(ext_key_usage(&[KP_SERVER_AUTH]));

    let mut out = vec![
        case("v1_client_issued_by_ca", vec![ee(CA, &ca_key)], &[&ca], true),
        case("v1_client_issued_by_v1_ca", vec![ee("V1 CA", &ca_key)], &[&v1_ca], true),
        case("v1_superuser_issued_by_ca", vec![Tbs::v1(SUPER, CA).sign(&ee_key, &ca_key)], &[&ca], true),
        case("v1_client_via_ca_intermediate", vec![ee("Int 1", &i1_key), i1.clone()], &[&ca], true),
        case(
            "v1_client_via_intermediate_without_key_usage",
            vec![ee("Int 1", &i1_key), int("Int 1", CA, vec![basic_constraints(true, None)], &ca_key)],
            &[&ca],
            true,
        ),
        case("v3_client_issued_by_ca", vec![leaf.clone()], &[&ca], true),
        // The attack of issue 14.
        case("forged_v1_signed_by_ca_false_leaf", vec![forged, leaf.clone()], &[&ca], false),
        case(
            "forged_v1_signed_by_leaf_without_basic_constraints",
            vec![
                Tbs::v1(SUPER, "alice").sign(&ee_key, &leaf_key),
                Tbs::v3("alice", CA, vec![ext_key_usage(&[OID_KP_CLIENT_AUTH])]).sign(&leaf_key, &ca_key),
            ],
            &[&ca],
            false,
        ),
        case(
            "forged_v1_signed_by_v1_leaf",
            vec![Tbs::v1(SUPER, "alice").sign(&ee_key, &leaf_key), Tbs::v1("alice", CA).sign(&leaf_key, &ca_key)],
            &[&ca],
            false,
        ),
        case(
            "non_ca_intermediate",
            vec![ee("Int 1", &i1_key), int("Int 1", CA, vec![basic_constraints(false, None)], &ca_key)],
            &[&ca],
            false,
        ),
        case(
            "pathlen_0_then_another_ca",
            vec![
                ee("Int 2", &i2_key),
                Tbs::v3("Int 2", "Int 1", ca_exts()).sign(&i2_key, &i1_key),
                int("Int 1", CA, ca_pathlen(0), &ca_key),
            ],
            &[&ca],
            false,
        ),
        case(
            "pathlen_1_then_another_ca",
            vec![
                ee("Int 2", &i2_key),
                Tbs::v3("Int 2", "Int 1", ca_exts()).sign(&i2_key, &i1_key),
                int("Int 1", CA, ca_pathlen(1), &ca_key),
            ],
            &[&ca],
            true,
        ),
        case(
            "pathlen_0_then_self_issued_ca",
            vec![
                ee("Int 1", &i2_key),
                Tbs::v3("Int 1", "Int 1", ca_exts()).sign(&i2_key, &i1_key),
                int("Int 1", CA, ca_pathlen(0), &ca_key),
            ],
            &[&ca],
            true,
        ),
        // Java's one v1 intermediate: self-issued by the anchor (key rollover).
        case(
            "v1_self_issued_intermediate_under_anchor",
            vec![ee(CA, &new_ca_key), Tbs::v1(CA, CA).sign(&new_ca_key, &ca_key)],
            &[&ca],
            true,
        ),
        case(
            "v1_intermediate_not_self_issued",
            vec![ee("Int 1", &i1_key), Tbs::v1("Int 1", CA).sign(&i1_key, &ca_key)],
            &[&ca],
            false,
        ),
        case(
            "v1_self_issued_intermediate_below_another",
            vec![ee("Int 1", &i2_key), Tbs::v1("Int 1", "Int 1").sign(&i2_key, &i1_key), i1.clone()],
            &[&ca],
            false,
        ),
        case(
            "intermediate_key_usage_without_key_cert_sign",
            vec![
                ee("Int 1", &i1_key),
                int("Int 1", CA, vec![basic_constraints(true, None), key_usage(KU_DIGITAL_SIGNATURE)], &ca_key),
            ],
            &[&ca],
            false,
        ),
        case(
            "expired_intermediate",
            vec![ee("Int 1", &i1_key), Tbs::v3("Int 1", CA, ca_exts()).valid(t - 10 * DAY, t - DAY).sign(&i1_key, &ca_key)],
            &[&ca],
            false,
        ),
        case("expired_client", vec![Tbs::v1("alice", CA).valid(t - 10 * DAY, t - DAY).sign(&ee_key, &ca_key)], &[&ca], false),
        case("client_not_yet_valid", vec![Tbs::v1("alice", CA).valid(t + DAY, t + 10 * DAY).sign(&ee_key, &ca_key)], &[&ca], false),
        // Java's PKIX does not check the trust anchor's own validity.
        case("expired_anchor", vec![ee(CA, &ca_key)], &[&expired_ca], true),
        // JSSE (not the CertPathValidator) refuses a v3 anchor that is not a CA.
        case("anchor_not_a_ca", vec![ee(CA, &ca_key)], &[&leaf_ca], false),
        case("anchor_key_usage_without_key_cert_sign", vec![ee(CA, &ca_key)], &[&ku_ca], false),
        case("anchor_without_basic_constraints", vec![ee(CA, &ca_key)], &[&no_bc_ca], false),
        case("issuer_name_mismatch", vec![ee("Somebody Else", &ca_key)], &[&ca], false),
        case("issuer_name_mismatch_with_intermediate", vec![ee("Int X", &i1_key), i1.clone()], &[&ca], false),
        case("unknown_critical_extension_on_intermediate", vec![ee("Int 1", &i1_key), int("Int 1", CA, unknown_critical, &ca_key)], &[&ca], false),
        case("unknown_noncritical_extension_on_intermediate", vec![ee("Int 1", &i1_key), int("Int 1", CA, unknown_noncritical, &ca_key)], &[&ca], true),
        case("critical_authority_key_id_on_intermediate", vec![ee("Int 1", &i1_key), int("Int 1", CA, critical_aki, &ca_key)], &[&ca], false),
        // Java checks no extKeyUsage on intermediates.
        case("intermediate_eku_server_auth_only", vec![ee("Int 1", &i1_key), int("Int 1", CA, eku_server, &ca_key)], &[&ca], true),
        case(
            "v3_client_eku_server_auth_only",
            vec![Tbs::v3("alice", CA, vec![ext_key_usage(&[KP_SERVER_AUTH])]).sign(&ee_key, &ca_key)],
            &[&ca],
            false,
        ),
        case(
            "v3_client_key_usage_without_digital_signature",
            vec![Tbs::v3("alice", CA, vec![key_usage(KU_KEY_ENCIPHERMENT)]).sign(&ee_key, &ca_key)],
            &[&ca],
            false,
        ),
        case("unknown_anchor", vec![ee(CA, &ca_key)], &[&other_ca], false),
        case("wrong_key_for_anchor_name", vec![ee(CA, &i1_key)], &[&ca], false),
        case("self_signed_v1_client_trusted_itself", vec![self_signed(&Tbs::v1("bob", "bob"), &ee_key)], &[&self_signed(&Tbs::v1("bob", "bob"), &ee_key)], true),
        case("self_signed_v1_client_not_trusted", vec![self_signed(&Tbs::v1("bob", "bob"), &ee_key)], &[&ca], false),
    ];
    // Two anchors: the right one is found whatever the order.
    out.push(case("second_of_two_anchors", vec![ee(CA, &ca_key)], &[&other_ca, &ca], true));
    // Intermediates in the wrong order are still put in order.
    out.push(case(
        "intermediates_out_of_order",
        vec![ee("Int 2", &i2_key), int("Int 1", CA, ca_exts(), &ca_key), Tbs::v3("Int 2", "Int 1", ca_exts()).sign(&i2_key, &i1_key)],
        &[&ca],
        true,
    ));
    out.push(Case {
        java_differs: Some("nameConstraints are not implemented here: a path that has them is refused"),
        ..case("name_constraints_on_intermediate", vec![ee("Int 1", &i1_key), int("Int 1", CA, name_constraints, &ca_key)], &[&ca], false)
    });
    // Five CA intermediates: a path of seven, past CHAIN_MAX.
    let keys: Vec<Key> = (0..5).map(|_| Key::new()).collect();
    let mut deep = vec![Tbs::v1("alice", "Int 4").sign(&ee_key, &keys[4])];
    for i in (0..5).rev() {
        let issuer = if i == 0 { CA.to_string() } else { format!("Int {}", i - 1) };
        let by = if i == 0 { &ca_key } else { &keys[i - 1] };
        deep.push(Tbs::v3(&format!("Int {i}"), &issuer, ca_exts()).sign(&keys[i], by));
    }
    let mut four = deep.clone();
    four.remove(1);
    four[0] = Tbs::v1("alice", "Int 3").sign(&ee_key, &keys[3]);
    out.push(case("four_intermediates", four, &[&ca], true));
    out.push(Case { java_differs: Some("paths are limited to CHAIN_MAX (6) certificates"), ..case("five_intermediates", deep, &[&ca], false) });
    out
}

fn verify(c: &Case, now: i64) -> bool {
    let inters: Vec<&[u8]> = c.chain[1..].iter().map(Vec::as_slice).collect();
    let anchors: Vec<&[u8]> = c.anchors.iter().map(Vec::as_slice).collect();
    verify_chain(&c.chain[0], &inters, &anchors, now)
}

#[test]
fn chains_are_validated_as_pkix() {
    let t = now();
    let mut wrong = Vec::new();
    for c in cases() {
        for cert in c.chain.iter().chain(&c.anchors) {
            assert!(parse(cert).is_some(), "{}: a test certificate does not parse", c.name);
        }
        if verify(&c, t) != c.accept {
            wrong.push(c.name);
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts: {wrong:?}");
}

#[test]
fn the_anchor_itself_needs_no_validity_but_everything_else_does() {
    let ca_key = Key::new();
    let ca = self_signed(&Tbs::v3(CA, CA, ca_exts()), &ca_key);
    let ee = Tbs::v1("alice", CA).sign(&Key::new(), &ca_key);
    assert!(verify_chain(&ee, &[], &[&ca], now()));
    assert!(!verify_chain(&ee, &[], &[&ca], now() + 2 * DAY), "expired end entity");
    assert!(!verify_chain(&ee, &[], &[&ca], now() - 2 * DAY), "not yet valid end entity");
}

#[test]
fn presented_chain_and_search_are_bounded() {
    let ca_key = Key::new();
    let ca = self_signed(&Tbs::v3(CA, CA, ca_exts()), &ca_key);
    let ee = Tbs::v1("alice", CA).sign(&Key::new(), &ca_key);
    let junk: Vec<Vec<u8>> = (0..PRESENTED_MAX).map(|_| Tbs::v3(CA, CA, ca_exts()).sign(&Key::new(), &Key::new())).collect();
    let refs: Vec<&[u8]> = junk.iter().map(Vec::as_slice).collect();
    // Valid directly, but too many certificates were presented.
    assert!(!verify_chain(&ee, &refs, &[&ca], now()));
    // Nine look-alike intermediates whose signatures all fail: still found, within budget.
    assert!(verify_chain(&ee, &refs[..PRESENTED_MAX - 1], &[&ca], now()));
    // Unparseable intermediates are ignored.
    assert!(verify_chain(&ee, &[b"junk", &[0x30, 0x00]], &[&ca], now()));
    assert!(!verify_chain(b"junk", &[], &[&ca], now()));
}

#[test]
fn path_search_stops_at_its_signature_budget() {
    // Nine self-issued look-alikes that all verify one another: thousands of
    // paths to an anchor that is not there.
    let key = Key::new();
    let inters: Vec<Vec<u8>> = (0..PRESENTED_MAX - 1).map(|_| Tbs::v3("X", "X", ca_exts()).sign(&key, &key)).collect();
    let ee = Tbs::v1("alice", "X").sign(&Key::new(), &key);
    let other = self_signed(&Tbs::v3("X", "X", ca_exts()), &Key::new());
    let (ee_cert, parsed, anchors) = (parse(&ee).unwrap(), inters.iter().map(|d| parse(d).unwrap()).collect::<Vec<_>>(), vec![parse(&other).unwrap()]);
    let mut search = PathSearch { ee: &ee_cert, inters: &parsed, anchors: &anchors, now: now(), budget: SIGNATURE_BUDGET };
    let started = std::time::Instant::now();
    assert!(!search.extend(&mut Vec::new()));
    assert_eq!(search.budget, 0, "the search spent its whole budget and stopped there");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

// ---- the JDK as oracle ------------------------------------------------------

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

fn tool(name: &str) -> std::process::Command {
    let home = std::env::var_os("JAVA_HOME").map(std::path::PathBuf::from);
    match home.map(|h| h.join("bin").join(name)).filter(|p| p.exists()) {
        Some(p) => std::process::Command::new(p),
        None => std::process::Command::new(name),
    }
}

/// Corral's `verify_chain` against the JDK's PKIX (ZooKeeper's trust
/// manager, and a bare CertPathValidator) on every case above. Needs a JDK
/// (`javac`, `java`): tests/clients/install-deps.sh installs one.
#[test]
fn agrees_with_java_pkix() {
    let dir = std::env::temp_dir().join(format!("corral-pkix-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("PkixCheck.java");
    std::fs::write(&src, include_str!("../../testdata/PkixCheck.java")).unwrap();
    let javac = tool("javac").arg("-d").arg(&dir).arg(&src).output().unwrap_or_else(|e| {
        panic!("this test needs a JDK 17 (javac): {e}; install it with tests/clients/install-deps.sh")
    });
    assert!(javac.status.success(), "javac failed: {}", String::from_utf8_lossy(&javac.stderr));

    let cases = cases();
    let mut dirs = Vec::new();
    for c in &cases {
        let d = dir.join(c.name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("chain.pem"), c.chain.iter().map(|c| pem(c)).collect::<String>()).unwrap();
        std::fs::write(d.join("anchors.pem"), c.anchors.iter().map(|c| pem(c)).collect::<String>()).unwrap();
        dirs.push(d);
    }
    let t = now();
    let out = tool("java").arg("-cp").arg(&dir).arg("PkixCheck").args(&dirs).output().expect("this test needs java 17");
    assert!(out.status.success(), "java failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut disagree = Vec::new();
    for (c, line) in cases.iter().zip(stdout.lines()) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f[0], c.name);
        let (jsse, pkix) = (f[1] == "ACCEPT", f[2] == "ACCEPT");
        let corral = verify(c, t);
        println!(
            "{:<52} corral={:<6} java-trustmanager={:<6} java-certpathvalidator={:<6} {}",
            c.name,
            verdict(corral),
            verdict(jsse),
            verdict(pkix),
            [f[3], f[4]].iter().find(|s| !s.is_empty()).unwrap_or(&"")
        );
        assert_eq!(corral, c.accept, "{}: Corral's verdict", c.name);
        match c.java_differs {
            None if jsse != corral => disagree.push(format!("{}: Java {} ({})", c.name, verdict(jsse), f[3])),
            Some(why) if jsse == corral => disagree.push(format!("{}: expected Java to differ ({why}) but it agrees", c.name)),
            _ => {}
        }
    }
    assert_eq!(stdout.lines().count(), cases.len(), "java printed: {stdout}");
    assert!(disagree.is_empty(), "Corral and Java disagree:\n{}", disagree.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn verdict(accept: bool) -> &'static str {
    if accept {
        "ACCEPT"
    } else {
        "REJECT"
    }
}

// ---- parsing: regressions and hostile input ---------------------------------

#[test]
fn dates() {
    assert_eq!(time(0x17, b"700101000000Z"), Some(0));
    assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
    assert_eq!(time(0x18, b"20000301000000Z"), Some(951_868_800));
    assert_eq!(time(0x18, b"20000229000000Z"), Some(951_782_400));
    for bad in [
        &b"bad"[..],
        b"7001010000000",   // no Z
        b"701301000000Z",   // month 13
        b"700001000000Z",   // month 0
        b"700100000000Z",   // day 0
        b"700132000000Z",   // day 32
        b"700230000000Z",   // 30 February
        b"700101240000Z",   // hour 24
        b"700101006000Z",   // minute 60
        b"700101000060Z",   // second 60
        b"7001010000+0Z",   // sign
        b"70010100000 Z",   // space
        b"-70101000000Z",
    ] {
        assert_eq!(time(0x17, bad), None, "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(time(0x18, b"19000229000000Z"), None, "1900 is no leap year");
    assert_eq!(time(0x18, b"700101000000Z"), None, "UTCTime length under the GeneralizedTime tag");
    assert_eq!(time(0x04, b"700101000000Z"), None);
    // Issue 14: multi-byte UTF-8 where the old code sliced a &str by byte offsets.
    assert_eq!(time(0x17, "2é0101000000Z".as_bytes().get(..13).unwrap()), None);
    assert_eq!(time(0x17, "7é01010000Z".as_bytes()), None);
    assert_eq!(time(0x18, "20é0101000000Z".as_bytes()), None);
    assert_eq!(time(0x17, &[0xff; 13]), None);
}

/// Replaces the first `needle` in `der` by `with` (same length).
fn patch(der: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    assert_eq!(needle.len(), with.len());
    let at = der.windows(needle.len()).position(|w| w == needle).expect("needle present");
    let mut out = der.to_vec();
    out[at..at + with.len()].copy_from_slice(with);
    out
}

#[test]
fn non_ascii_validity_is_not_a_certificate() {
    let key = Key::new();
    let tbs = Tbs::v1("x", "x").valid(1_000_000_000, 1_100_000_000); // 2001-09-09T01:46:40Z
    let der = self_signed(&tbs, &key);
    assert!(parse(&der).is_some());
    // "010909014640Z": a two-byte character across the year/month boundary, and a lone 0xff.
    for with in [&b"0\xc3\xa9909014640Z"[..], b"01\xc3\xa909014640Z", b"\xff10909014640Z", b"01090901464\xc3\xa9"] {
        let bad = patch(&der, b"010909014640Z", with);
        assert!(parse(&bad).is_none());
        assert!(subject_dn(&bad).is_none());
        assert!(!verify_chain(&bad, &[], &[&bad], now()));
        assert!(!verify_handshake(&bad, SignatureScheme::ECDSA_NISTP256_SHA256, b"m", b"s"));
    }
}

#[test]
fn versions_other_than_1_2_3_are_not_certificates() {
    let key = Key::new();
    let v3 = self_signed(&Tbs::v3("x", "x", vec![basic_constraints(true, None)]), &key);
    assert_eq!(parse(&v3).unwrap().version, 3);
    // Issue 14: version 255 wrapped to 0 and passed as v1.
    for v in [3u8, 0x7f, 0x80, 0xff] {
        let bad = patch(&v3, &[0xa0, 0x03, 0x02, 0x01, 0x02], &[0xa0, 0x03, 0x02, 0x01, v]);
        assert!(parse(&bad).is_none(), "version byte {v:#x}");
    }
    for version in [vec![0x00, 0xff], vec![0x01, 0x00], vec![0xff, 0xff], vec![], vec![0x00, 0x02]] {
        let tbs = Tbs { version: Some(version.clone()), ..Tbs::v1("x", "x") };
        assert!(parse(&self_signed(&tbs, &key)).is_none(), "version INTEGER {version:02x?}");
    }
    for (int, expect) in [(0u8, 1u8), (1, 2), (2, 3)] {
        let tbs = Tbs { version: Some(vec![int]), ..Tbs::v1("x", "x") };
        assert_eq!(parse(&self_signed(&tbs, &key)).unwrap().version, expect);
    }
    // Extensions are a v3 field: a v1 or v2 certificate with them is malformed (as Java reads it).
    for int in [0u8, 1] {
        let tbs = Tbs { version: Some(vec![int]), ..Tbs::v3("x", "x", vec![basic_constraints(true, None)]) };
        assert!(parse(&self_signed(&tbs, &key)).is_none());
    }
}

#[test]
fn extensions_are_read() {
    let key = Key::new();
    let der = self_signed(&Tbs::v3("x", "x", vec![basic_constraints(true, Some(3)), key_usage(KU_KEY_CERT_SIGN), ext_key_usage(&[OID_KP_CLIENT_AUTH, KP_SERVER_AUTH])]), &key);
    let c = parse(&der).unwrap();
    assert_eq!(c.ext.basic_constraints, Some(BasicConstraints { ca: true, path_len: Some(3) }));
    assert_eq!(c.ext.key_usage, Some(KU_KEY_CERT_SIGN));
    assert_eq!(oids(c.ext.ext_key_usage.unwrap()).collect::<Vec<_>>(), vec![OID_KP_CLIENT_AUTH, KP_SERVER_AUTH]);
    assert!(!c.ext.unknown_critical);
    // The same extension twice is malformed.
    let dup = self_signed(&Tbs::v3("x", "x", vec![key_usage(KU_KEY_CERT_SIGN), key_usage(KU_KEY_CERT_SIGN)]), &key);
    assert!(parse(&dup).is_none());
    // A negative pathLenConstraint is malformed.
    let neg = self_signed(&Tbs::v3("x", "x", vec![basic_constraints(true, Some(0xff))]), &key);
    assert!(parse(&neg).is_none());
    assert_eq!(bits(&[0x07, 0x80]), Some(1));
    assert_eq!(bits(&[0x00]), Some(0));
    assert_eq!(bits(&[0x08, 0x80]), None);
    assert_eq!(bits(&[0x01]), None);
    assert_eq!(bits(&[0x00, 0x04, 0x80]), Some(KU_KEY_CERT_SIGN | (1 << 8)));
    assert_eq!(small_uint(&[0x00, 0x80]), Some(128));
    assert_eq!(small_uint(&[0x00, 0x01]), None);
    assert_eq!(small_uint(&[0x80]), None);
    assert_eq!(small_uint(&[0x7f, 0xff, 0xff, 0xff]), Some(i32::MAX as u32));
    assert_eq!(small_uint(&[0x00, 0x80, 0x00, 0x00, 0x00]), None);
}

#[test]
fn der_lengths_are_strict() {
    assert!(element(&[0x30, 0x81, 0x05, 1, 2, 3, 4, 5]).is_none(), "long form for a short length");
    assert!(element(&[0x30, 0x82, 0x00, 0x80]).is_none(), "leading zero length byte");
    assert!(element(&[0x30, 0x80, 0x00, 0x00]).is_none(), "indefinite length");
    assert!(element(&[0x30, 0x85, 1, 0, 0, 0, 0]).is_none(), "five length bytes");
    assert!(element(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none(), "past the end");
    assert!(element(&[0x1f, 0x01, 0x00]).is_none(), "high tag number");
    assert!(element(&[0x30, 0x81]).is_none());
    let long = tlv(0x04, &[7; 200]);
    assert_eq!(element(&long).unwrap().2.len(), 200);
}

#[test]
fn garbage_is_not_a_certificate() {
    assert!(parse(&[]).is_none());
    assert!(parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    assert!(!verify_chain(&[0x30, 0x00], &[], &[], 0));
    // Trailing bytes after a certificate.
    let der = self_signed(&Tbs::v1("x", "x"), &Key::new());
    assert!(parse(&[der.as_slice(), &[0]].concat()).is_none());
}

#[test]
fn oids_in_dotted_form() {
    assert_eq!(dotted(&[0x55, 0x04, 0x03]).as_deref(), Some("2.5.4.3"));
    assert_eq!(dotted(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d]).as_deref(), Some("1.2.840.113549"));
    assert_eq!(dotted(&[0x88, 0x37, 0x03]).as_deref(), Some("2.999.3"));
    assert_eq!(dotted(&[0x00]).as_deref(), Some("0.0"));
    assert_eq!(dotted(&[]), None);
    assert_eq!(dotted(&[0x2a, 0x86]), None, "truncated");
    assert_eq!(dotted(&[0x2a, 0x80, 0x01]), None, "non-minimal");
    assert_eq!(dotted(&[0xff; 40]), None, "arc past 128 bits");
}

#[test]
fn subject_dn_of_unknown_attribute_types() {
    let subject = seq(&[&tlv(0x31, &seq(&[&oid(&[0x88, 0x37, 0x03]), &tlv(0x0c, b"v")]))]);
    let der = self_signed(&Tbs { raw_subject: Some(subject), ..Tbs::v1("x", "x") }, &Key::new());
    assert_eq!(subject_dn(&der).as_deref(), Some("2.999.3=#0c0176"));
    let der = self_signed(&Tbs::v1(" a,b ", "x"), &Key::new());
    assert_eq!(subject_dn(&der).as_deref(), Some("CN=\\ a\\,b\\ "));
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> &'static [Vec<u8>] {
        static SAMPLES: std::sync::OnceLock<Vec<Vec<u8>>> = std::sync::OnceLock::new();
        SAMPLES.get_or_init(|| {
            let (ca, key) = (Key::new(), Key::new());
            let mut exts = client_exts();
            exts.push((vec![0x2a, 0x03, 0x04], true, tlv(0x05, &[])));
            vec![
                Tbs::v1("alice", CA).sign(&key, &ca),
                Tbs::v3("Int 1", CA, ca_pathlen(2)).sign(&key, &ca),
                Tbs::v3("alice", CA, exts).valid(-100 * 365 * DAY, 4_000_000_000).sign(&key, &ca),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = parse(&bytes);
            let _ = subject_dn(&bytes);
            let _ = verify_chain(&bytes, &[&bytes], &[&bytes], 0);
            let mut framed = tlv(0x30, &bytes);
            framed.truncate(framed.len().min(1 + bytes.len()));
            let _ = parse(&framed);
        }

        #[test]
        fn mutated_certificates_never_panic(
            which in 0usize..3,
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..6),
            cut in any::<proptest::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let original = &sample()[which];
            let mut der = original.clone();
            for (i, b) in &edits {
                let i = i.index(der.len());
                der[i] = *b;
            }
            if truncate {
                der.truncate(cut.index(der.len()));
            }
            let _ = parse(&der);
            let _ = subject_dn(&der);
            let _ = verify_handshake(&der, SignatureScheme::ECDSA_NISTP256_SHA256, b"m", b"s");
            let _ = verify_chain(&der, &[&der, original], &[original, &der], now());
        }
    }
}
