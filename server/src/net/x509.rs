//! Just enough X.509 to accept version-1 certificates, which Java (and so
//! ZooKeeper) accepts and webpki refuses: kazoo's own test harness, for one,
//! issues v1 client and server certificates. Used only as a fallback after
//! webpki has rejected an end-entity certificate of version 1 or 2;
//! everything else goes through webpki.
//!
//! [`verify_chain`] validates a path the way Java's PKIX `CertPathValidator`
//! (`sun.security.provider.certpath`: BasicChecker, ConstraintsChecker,
//! KeyChecker) plus JSSE's `EndEntityChecker` for a TLS client do, which is
//! what Apache ZooKeeper's trust manager runs. Where this module differs it
//! is stricter; docs/security.md lists the differences.
//!
//! Every function here takes bytes from the network: none may panic, index
//! out of bounds or overflow on any input.

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use rustls::SignatureScheme;

/// The parts of a certificate the fallback checks.
pub struct Cert<'a> {
    /// 1, 2 or 3.
    pub version: u8,
    pub tbs: &'a [u8],
    pub signature_alg: &'a [u8],
    pub signature: &'a [u8],
    /// DER of the issuer and subject Names, compared bytewise.
    pub issuer: &'a [u8],
    pub subject: &'a [u8],
    pub not_before: i64,
    pub not_after: i64,
    pub key_alg: &'a [u8],
    /// The curve OID for EC keys.
    pub key_param: Option<&'a [u8]>,
    /// The subjectPublicKey BIT STRING's bytes (RSAPublicKey DER, or an EC point).
    pub public_key: &'a [u8],
    /// The extensions path validation looks at (v3 only; empty otherwise).
    pub ext: Extensions<'a>,
}

/// basicConstraints (2.5.29.19).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BasicConstraints {
    pub ca: bool,
    pub path_len: Option<u32>,
}

/// What validation needs from a certificate's extensions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Extensions<'a> {
    pub basic_constraints: Option<BasicConstraints>,
    /// keyUsage (2.5.29.15) bits, bit n of RFC 5280 (0 = digitalSignature) as `1 << n`.
    pub key_usage: Option<u16>,
    /// extKeyUsage (2.5.29.37): the contents of its SEQUENCE OF OID.
    pub ext_key_usage: Option<&'a [u8]>,
    /// nameConstraints (2.5.29.30) present: not implemented, so such a path is refused.
    pub name_constraints: bool,
    /// policyMappings, policyConstraints or inhibitAnyPolicy present: policy
    /// processing is not implemented, so such a path is refused.
    pub policy_constraints: bool,
    /// A critical extension Java's PKIX checkers do not process.
    pub unknown_critical: bool,
}

/// keyUsage bits.
pub const KU_DIGITAL_SIGNATURE: u16 = 1 << 0;
pub const KU_KEY_CERT_SIGN: u16 = 1 << 5;

/// One DER element: (tag, whole element, contents, rest).
type Element<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// Reads one DER element: single-byte tags, definite minimal lengths up to 2^32 - 1.
fn element(buf: &[u8]) -> Option<Element<'_>> {
    let tag = *buf.first()?;
    if tag & 0x1f == 0x1f {
        return None; // high-tag-number form: never used in a certificate
    }
    let first = *buf.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (usize::from(first), 2usize)
    } else {
        let n = usize::from(first & 0x7f);
        // n == 0 is BER's indefinite length; more than 4 bytes is never a certificate.
        let bytes = buf.get(2..2 + n).filter(|_| (1..=4).contains(&n))?;
        if bytes[0] == 0 {
            return None; // not minimal
        }
        let len = bytes.iter().try_fold(0usize, |a, b| a.checked_mul(256)?.checked_add(usize::from(*b)))?;
        if len < 0x80 {
            return None; // not minimal
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    let whole = buf.get(..end)?;
    Some((tag, whole, whole.get(hdr..)?, buf.get(end..)?))
}

fn expect(tag: u8, buf: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (t, whole, contents, rest) = element(buf)?;
    (t == tag).then_some((whole, contents, rest))
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) to Unix
/// seconds: the only forms RFC 5280 allows. Works on bytes: any non-digit,
/// an out-of-range field or another length is `None`.
fn time(tag: u8, s: &[u8]) -> Option<i64> {
    let number = |b: &[u8]| -> Option<i64> {
        b.iter().try_fold(0i64, |a, &c| c.is_ascii_digit().then(|| a * 10 + i64::from(c - b'0')))
    };
    let (year, rest) = match (tag, s.len()) {
        (0x17, 13) => {
            let (yy, rest) = s.split_at(2);
            let yy = number(yy)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, rest)
        }
        (0x18, 15) => {
            let (yyyy, rest) = s.split_at(4);
            (number(yyyy)?, rest)
        }
        _ => return None,
    };
    let [mo @ .., b'Z'] = rest else { return None };
    let [m, d, h, mi, sec] = match mo {
        [a, b, c, d, e, f, g, h, i, j] => [[*a, *b], [*c, *d], [*e, *f], [*g, *h], [*i, *j]].map(|p| number(&p)),
        _ => return None,
    };
    let (m, d, h, mi, sec) = (m?, d?, h?, mi?, sec?);
    if !(1..=12).contains(&m) || d < 1 || d > days_in_month(year, m) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    Some(days_from_civil(year, m, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

/// A DER BOOLEAN's value (any non-zero octet is TRUE, as Java reads it).
fn boolean(contents: &[u8]) -> Option<bool> {
    match contents {
        [b] => Some(*b != 0),
        _ => None,
    }
}

/// A non-negative INTEGER that fits Java's `int` (pathLenConstraint).
fn small_uint(contents: &[u8]) -> Option<u32> {
    match contents {
        [] => None,
        [b, ..] if b & 0x80 != 0 => None, // negative
        [0, b, ..] if b & 0x80 == 0 => None, // not minimal
        _ => {
            let digits = if contents[0] == 0 { &contents[1..] } else { contents };
            if digits.len() > 4 {
                return None;
            }
            let v = digits.iter().fold(0u32, |a, b| (a << 8) | u32::from(*b));
            (v <= i32::MAX as u32).then_some(v)
        }
    }
}

/// A BIT STRING's first 16 bits as `1 << n` for bit n (bits past the end are 0).
fn bits(contents: &[u8]) -> Option<u16> {
    let (&unused, data) = contents.split_first()?;
    if unused > 7 || (data.is_empty() && unused != 0) {
        return None;
    }
    let mut out = 0u16;
    for n in 0..16usize {
        let byte = data.get(n / 8).copied().unwrap_or(0);
        let bit_valid = n / 8 + 1 < data.len() || (n / 8 + 1 == data.len() && n % 8 < 8 - usize::from(unused));
        if bit_valid && byte & (0x80 >> (n % 8)) != 0 {
            out |= 1 << n;
        }
    }
    Some(out)
}

const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const OID_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const OID_EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const OID_NAME_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x1e];
const OID_CERTIFICATE_POLICIES: &[u8] = &[0x55, 0x1d, 0x20];
const OID_POLICY_MAPPINGS: &[u8] = &[0x55, 0x1d, 0x21];
const OID_POLICY_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x24];
const OID_INHIBIT_ANY_POLICY: &[u8] = &[0x55, 0x1d, 0x36];
/// id-kp-clientAuth, 1.3.6.1.5.5.7.3.2.
const OID_KP_CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];
/// anyExtendedKeyUsage, 2.5.29.37.0.
const OID_ANY_EKU: &[u8] = &[0x55, 0x1d, 0x25, 0x00];

/// Extensions at most read from one certificate (a bound on the duplicate check).
const EXTENSIONS_MAX: usize = 64;

/// Parses the `[3]` extensions of a v3 certificate. Duplicates are a parse
/// failure, as in Java's `CertificateExtensions`.
fn extensions(buf: &[u8]) -> Option<Extensions<'_>> {
    let (_, seq, rest) = expect(0x30, buf)?;
    if !rest.is_empty() || seq.is_empty() {
        return None; // SEQUENCE SIZE (1..MAX)
    }
    let mut ext = Extensions::default();
    let mut seen: Vec<&[u8]> = Vec::new();
    let mut r = seq;
    while !r.is_empty() {
        let (_, e, rest) = expect(0x30, r)?;
        r = rest;
        let (_, oid, e) = expect(0x06, e)?;
        if seen.contains(&oid) || seen.len() == EXTENSIONS_MAX {
            return None;
        }
        seen.push(oid);
        let (critical, e) = match expect(0x01, e) {
            Some((_, b, rest)) => (boolean(b)?, rest),
            None => (false, e),
        };
        let (_, value, e) = expect(0x04, e)?;
        if !e.is_empty() {
            return None;
        }
        match oid {
            OID_BASIC_CONSTRAINTS => {
                let (_, bc, rest) = expect(0x30, value)?;
                if !rest.is_empty() {
                    return None;
                }
                let (ca, bc) = match expect(0x01, bc) {
                    Some((_, b, rest)) => (boolean(b)?, rest),
                    None => (false, bc),
                };
                let path_len = match expect(0x02, bc) {
                    Some((_, n, [])) => Some(small_uint(n)?),
                    Some(_) => return None,
                    None if bc.is_empty() => None,
                    None => return None,
                };
                ext.basic_constraints = Some(BasicConstraints { ca, path_len });
            }
            OID_KEY_USAGE => {
                let (_, ku, rest) = expect(0x03, value)?;
                if !rest.is_empty() {
                    return None;
                }
                ext.key_usage = Some(bits(ku)?);
            }
            OID_EXT_KEY_USAGE => {
                let (_, eku, rest) = expect(0x30, value)?;
                if !rest.is_empty() {
                    return None;
                }
                let mut r = eku;
                while !r.is_empty() {
                    r = expect(0x06, r)?.2;
                }
                ext.ext_key_usage = Some(eku);
            }
            OID_NAME_CONSTRAINTS => ext.name_constraints = true,
            OID_POLICY_MAPPINGS | OID_POLICY_CONSTRAINTS | OID_INHIBIT_ANY_POLICY => ext.policy_constraints = true,
            // Processed by Java's checkers (KeyChecker, PolicyChecker) without
            // an effect under ZooKeeper's parameters, so accepted when critical.
            OID_SUBJECT_ALT_NAME | OID_CERTIFICATE_POLICIES => {}
            _ => ext.unknown_critical |= critical,
        }
    }
    Some(ext)
}

/// Parses one DER certificate (nothing may follow it). `None` for anything
/// malformed, including a version other than v1, v2 or v3, fields a version
/// does not allow, and a signature algorithm that differs between the
/// certificate and its TBSCertificate (as Java and webpki refuse).
pub fn parse(der: &[u8]) -> Option<Cert<'_>> {
    let (_, cert, rest) = expect(0x30, der)?;
    if !rest.is_empty() {
        return None;
    }
    let (tbs, tbs_contents, rest) = expect(0x30, cert)?;
    let (outer_alg, alg, rest) = expect(0x30, rest)?;
    let (_, signature_alg, _) = expect(0x06, alg)?;
    let (_, sig_bits, rest) = expect(0x03, rest)?;
    if !rest.is_empty() || sig_bits.first() != Some(&0) {
        return None;
    }
    let signature = sig_bits.get(1..)?; // skip the (zero) unused-bits byte

    let mut r = tbs_contents;
    let mut version = 1u8;
    if r.first() == Some(&0xa0) {
        let (_, v, rest) = expect(0xa0, r)?;
        let (_, n, after) = expect(0x02, v)?;
        if !after.is_empty() {
            return None;
        }
        // Version ::= INTEGER { v1(0), v2(1), v3(2) }: nothing else is a certificate.
        version = match n {
            [0] => 1,
            [1] => 2,
            [2] => 3,
            _ => return None,
        };
        r = rest;
    }
    let (_, _, rest) = expect(0x02, r)?; // serial
    let (inner_alg, _, rest) = expect(0x30, rest)?;
    if inner_alg != outer_alg {
        return None;
    }
    let (issuer, _, rest) = expect(0x30, rest)?;
    let (_, validity, rest) = expect(0x30, rest)?;
    let (t1, _, nb, vrest) = element(validity)?;
    let (t2, _, na, vrest) = element(vrest)?;
    if !vrest.is_empty() {
        return None;
    }
    let (subject, _, rest) = expect(0x30, rest)?;
    let (_, spki, mut rest) = expect(0x30, rest)?;
    let (_, key_alg_seq, spki_rest) = expect(0x30, spki)?;
    let (_, key_alg, param_rest) = expect(0x06, key_alg_seq)?;
    let key_param = expect(0x06, param_rest).map(|(_, p, _)| p);
    let (_, key_bits, _) = expect(0x03, spki_rest)?;
    // issuerUniqueID [1], subjectUniqueID [2] (v2, v3); extensions [3] (v3).
    let mut ext = Extensions::default();
    for (tag, min_version) in [(0x81, 2), (0x82, 2), (0xa3, 3)] {
        if let Some((t, _, contents, after)) = element(rest) {
            if t == tag {
                if version < min_version {
                    return None;
                }
                if tag == 0xa3 {
                    ext = extensions(contents)?;
                }
                rest = after;
            }
        }
    }
    if !rest.is_empty() {
        return None;
    }
    Some(Cert {
        version,
        tbs,
        signature_alg,
        signature,
        issuer,
        subject,
        not_before: time(t1, nb)?,
        not_after: time(t2, na)?,
        key_alg,
        key_param,
        public_key: key_bits.get(1..).filter(|_| key_bits.first() == Some(&0))?,
        ext,
    })
}

const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
const SHA384_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c];
const SHA512_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d];
const ECDSA_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const ECDSA_SHA384: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03];

/// The algorithm that checks a certificate signature `alg` made by `issuer`'s
/// key: RSA PKCS#1 with SHA-2 and a 2048–8192-bit key, ECDSA P-256/SHA-256
/// and P-384/SHA-384. Anything else (SHA-1, MD5, DSA, small keys) is refused.
fn cert_signature_algorithm(alg: &[u8], issuer: &Cert) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match (alg, issuer.key_alg, issuer.key_param) {
        (SHA256_RSA, RSA, _) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (SHA384_RSA, RSA, _) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (SHA512_RSA, RSA, _) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (ECDSA_SHA256, EC, Some(P256)) => &signature::ECDSA_P256_SHA256_ASN1,
        (ECDSA_SHA384, EC, Some(P384)) => &signature::ECDSA_P384_SHA384_ASN1,
        _ => return None,
    })
}

/// The algorithm for a TLS handshake signature `scheme` by `cert`'s key.
fn handshake_algorithm(scheme: SignatureScheme, cert: &Cert) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match (scheme, cert.key_alg, cert.key_param) {
        (SignatureScheme::RSA_PKCS1_SHA256, RSA, _) => &signature::RSA_PKCS1_2048_8192_SHA256,
        (SignatureScheme::RSA_PKCS1_SHA384, RSA, _) => &signature::RSA_PKCS1_2048_8192_SHA384,
        (SignatureScheme::RSA_PKCS1_SHA512, RSA, _) => &signature::RSA_PKCS1_2048_8192_SHA512,
        (SignatureScheme::RSA_PSS_SHA256, RSA, _) => &signature::RSA_PSS_2048_8192_SHA256,
        (SignatureScheme::RSA_PSS_SHA384, RSA, _) => &signature::RSA_PSS_2048_8192_SHA384,
        (SignatureScheme::RSA_PSS_SHA512, RSA, _) => &signature::RSA_PSS_2048_8192_SHA512,
        (SignatureScheme::ECDSA_NISTP256_SHA256, EC, Some(P256)) => &signature::ECDSA_P256_SHA256_ASN1,
        (SignatureScheme::ECDSA_NISTP384_SHA384, EC, Some(P384)) => &signature::ECDSA_P384_SHA384_ASN1,
        _ => return None,
    })
}

/// Verifies a handshake signature by the key of `cert_der`.
pub fn verify_handshake(cert_der: &[u8], scheme: SignatureScheme, message: &[u8], sig: &[u8]) -> bool {
    let Some(cert) = parse(cert_der) else { return false };
    let Some(alg) = handshake_algorithm(scheme, &cert) else { return false };
    UnparsedPublicKey::new(alg, cert.public_key).verify(message, sig).is_ok()
}

/// Certificates at most in a path: end entity, intermediates, trust anchor.
const CHAIN_MAX: usize = 6;
/// Certificates at most a client may present (end entity and intermediates),
/// as JSSE's `jdk.tls.maxCertificateChainLength` default.
const PRESENTED_MAX: usize = 10;
/// Signature verifications at most spent searching for a path.
const SIGNATURE_BUDGET: usize = 64;

/// Verifies that `end_entity` chains, through some of `intermediates` (in
/// any order), to one of `anchors`, as Java's PKIX validation with
/// revocation off and JSSE's TLS-client end-entity checks, at `now` (Unix
/// seconds):
///
/// - each certificate's issuer Name equals the next one's subject Name and
///   its signature verifies with that one's key (an allowed algorithm);
/// - every certificate but the anchor is within its validity at `now`; the
///   anchor's validity is not checked, as in Java; a v3 anchor must be a CA
///   (basicConstraints cA=TRUE, keyCertSign if keyUsage is present), as
///   JSSE's trust manager checks;
/// - every intermediate is a CA: v3 with basicConstraints cA=TRUE, or a v1/v2
///   certificate that is self-issued and directly under the anchor (Java's
///   one exception, for key rollover); pathLenConstraint holds, self-issued
///   intermediates not counted; keyUsage, if present, has keyCertSign;
/// - the end entity's keyUsage, if present, has digitalSignature and its
///   extKeyUsage, if present, clientAuth or anyExtendedKeyUsage;
/// - no certificate but the anchor has a critical extension Java does not
///   process; none of the path has nameConstraints or policy constraints,
///   mappings or inhibitAnyPolicy (not implemented here, so refused).
///
/// Names are compared as DER bytes, stricter than RFC 5280's (and Java's)
/// comparison after normalisation: an issuer encoded differently from its
/// CA's subject (say PrintableString against UTF8String) is refused.
pub fn verify_chain(end_entity: &[u8], intermediates: &[&[u8]], anchors: &[&[u8]], now: i64) -> bool {
    if intermediates.len() >= PRESENTED_MAX {
        return false;
    }
    let Some(ee) = parse(end_entity) else { return false };
    // A presented copy of an anchor is the anchor (as JSSE cuts the chain at
    // the first trusted certificate), never an intermediate.
    let inters: Vec<Cert> = intermediates.iter().filter(|d| !anchors.contains(d)).filter_map(|d| parse(d)).collect();
    let anchors: Vec<Cert> = anchors.iter().filter_map(|d| parse(d)).collect();
    let mut search = PathSearch { ee: &ee, inters: &inters, anchors: &anchors, now, budget: SIGNATURE_BUDGET };
    search.extend(&mut Vec::new())
}

struct PathSearch<'c, 'a> {
    ee: &'c Cert<'a>,
    inters: &'c [Cert<'a>],
    anchors: &'c [Cert<'a>],
    now: i64,
    budget: usize,
}

impl PathSearch<'_, '_> {
    /// Depth-first: extends `path` (indices into `inters`, from the end
    /// entity up) to an anchor with which the whole path is valid.
    fn extend(&mut self, path: &mut Vec<usize>) -> bool {
        let top = match path.last() {
            Some(&i) => &self.inters[i],
            None => self.ee,
        };
        for anchor in self.anchors {
            if self.signed_by(top, anchor) && self.valid(path, anchor) {
                return true;
            }
        }
        // End entity, the path, one more intermediate and an anchor.
        if path.len() + 3 > CHAIN_MAX {
            return false;
        }
        for i in 0..self.inters.len() {
            if !path.contains(&i) && self.signed_by(top, &self.inters[i]) {
                path.push(i);
                if self.extend(path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }

    /// Whether `issuer`'s subject is `cert`'s issuer and its key made `cert`'s signature.
    fn signed_by(&mut self, cert: &Cert, issuer: &Cert) -> bool {
        // Byte comparison of the DER Names: see `verify_chain`.
        if cert.issuer != issuer.subject || self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        cert_signature_algorithm(cert.signature_alg, issuer)
            .is_some_and(|alg| UnparsedPublicKey::new(alg, issuer.public_key).verify(cert.tbs, cert.signature).is_ok())
    }

    /// The checks of Java's BasicChecker, ConstraintsChecker and KeyChecker
    /// (and JSSE's EndEntityChecker for the end entity) on a path whose
    /// names and signatures already chain to `anchor`.
    fn valid(&self, path: &[usize], anchor: &Cert) -> bool {
        /// Name ::= SEQUENCE OF RDN, empty: Java refuses an empty issuer.
        const EMPTY_NAME: &[u8] = &[0x30, 0x00];
        if anchor.ext.name_constraints {
            return false;
        }
        // JSSE's PKIXValidator.verifyTrustAnchor (not the CertPathValidator):
        // a v3 anchor must be a CA, with keyCertSign if it has keyUsage; v1
        // and v2 anchors are taken as they are. Its validity is not checked.
        if anchor.version == 3
            && (!matches!(anchor.ext.basic_constraints, Some(BasicConstraints { ca: true, .. }))
                || anchor.ext.key_usage.is_some_and(|ku| ku & KU_KEY_CERT_SIGN == 0))
        {
            return false;
        }
        // From the anchor down, as RFC 5280 section 6.1 numbers them (1 = issued by the anchor).
        let certs: Vec<&Cert> = path.iter().rev().map(|&i| &self.inters[i]).chain([self.ee]).collect();
        let n = certs.len();
        let mut max_path_length = n;
        for (k, cert) in certs.iter().enumerate() {
            let i = k + 1;
            let e = &cert.ext;
            if self.now < cert.not_before || self.now > cert.not_after {
                return false;
            }
            if cert.issuer == EMPTY_NAME || e.unknown_critical || e.name_constraints || e.policy_constraints {
                return false;
            }
            if i < n {
                let self_issued = cert.subject == cert.issuer;
                let path_len_constraint = if cert.version < 3 {
                    // Java rejects v1/v2 intermediates except one self-issued by the anchor.
                    (i == 1 && self_issued).then_some(usize::MAX)
                } else {
                    match e.basic_constraints {
                        Some(BasicConstraints { ca: true, path_len }) => {
                            Some(path_len.map_or(usize::MAX, |p| usize::try_from(p).unwrap_or(usize::MAX)))
                        }
                        _ => None,
                    }
                };
                let Some(path_len_constraint) = path_len_constraint else { return false };
                if !self_issued {
                    if max_path_length == 0 {
                        return false;
                    }
                    max_path_length -= 1;
                }
                max_path_length = max_path_length.min(path_len_constraint);
                if e.key_usage.is_some_and(|ku| ku & KU_KEY_CERT_SIGN == 0) {
                    return false;
                }
            } else {
                if e.key_usage.is_some_and(|ku| ku & KU_DIGITAL_SIGNATURE == 0) {
                    return false;
                }
                if let Some(eku) = e.ext_key_usage {
                    if !oids(eku).any(|o| o == OID_KP_CLIENT_AUTH || o == OID_ANY_EKU) {
                        return false;
                    }
                }
            }
        }
        true
    }
}

/// The OIDs of a SEQUENCE OF OID's contents (already checked well-formed).
fn oids(mut buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    std::iter::from_fn(move || {
        let (_, oid, rest) = expect(0x06, buf)?;
        buf = rest;
        Some(oid)
    })
}

/// Short names Java's `X500Principal.getName()` (RFC 2253) uses.
const DN_KEYWORDS: &[(&[u8], &str)] = &[
    (&[0x55, 0x04, 0x03], "CN"),
    (&[0x55, 0x04, 0x06], "C"),
    (&[0x55, 0x04, 0x07], "L"),
    (&[0x55, 0x04, 0x08], "ST"),
    (&[0x55, 0x04, 0x09], "STREET"),
    (&[0x55, 0x04, 0x0a], "O"),
    (&[0x55, 0x04, 0x0b], "OU"),
    (&[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19], "DC"),
    (&[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01], "UID"),
];

/// An OID in dotted form; `None` if malformed (empty, truncated, or an arc
/// past 128 bits).
fn dotted(oid: &[u8]) -> Option<String> {
    let mut arcs: Vec<u128> = Vec::new();
    let mut acc = 0u128;
    let mut at_start = true;
    for b in oid {
        if at_start && *b == 0x80 {
            return None; // non-minimal subidentifier
        }
        acc = acc.checked_mul(128)? | u128::from(b & 0x7f);
        at_start = b & 0x80 == 0;
        if at_start {
            arcs.push(acc);
            acc = 0;
        }
    }
    if !at_start {
        return None; // truncated
    }
    // The first subidentifier packs two arcs: 40 * X + Y, X in 0..=2.
    let first = arcs.first().copied()?;
    let (x, y) = match first {
        0..=39 => (0, first),
        40..=79 => (1, first - 40),
        _ => (2, first - 80),
    };
    Some([x, y].into_iter().chain(arcs.into_iter().skip(1)).map(|a| a.to_string()).collect::<Vec<_>>().join("."))
}

/// A certificate's subject as Java's `X500Principal.getName()` renders it
/// (RFC 2253: last RDN first, `CN=client,O=Example`): the identity
/// ZooKeeper's `X509AuthenticationProvider` gives a TLS client.
pub fn subject_dn(cert_der: &[u8]) -> Option<String> {
    let cert = parse(cert_der)?;
    let (_, mut rdns, _) = expect(0x30, cert.subject)?;
    let mut out: Vec<String> = Vec::new();
    while !rdns.is_empty() {
        let (_, set, rest) = expect(0x31, rdns)?;
        rdns = rest;
        let mut atvs = set;
        let mut parts = Vec::new();
        while !atvs.is_empty() {
            let (_, atv, rest) = expect(0x30, atvs)?;
            atvs = rest;
            let (_, oid, value) = expect(0x06, atv)?;
            let (tag, whole, contents, _) = element(value)?;
            let key = DN_KEYWORDS.iter().find(|(o, _)| *o == oid).map(|(_, k)| k.to_string());
            let text = match (&key, tag) {
                // UTF8String, PrintableString, IA5String, T61String
                (Some(_), 0x0c | 0x13 | 0x16 | 0x14) => {
                    let s = String::from_utf8_lossy(contents);
                    let last = s.chars().count().saturating_sub(1);
                    let mut e = String::new();
                    for (i, c) in s.chars().enumerate() {
                        let edge = (i == 0 && (c == ' ' || c == '#')) || (i == last && c == ' ');
                        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
                            e.push('\\');
                        }
                        e.push(c);
                    }
                    e
                }
                _ => format!("#{}", whole.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            };
            let key = match key {
                Some(k) => k,
                None => dotted(oid)?,
            };
            parts.push(format!("{key}={text}"));
        }
        out.push(parts.join("+"));
    }
    out.reverse();
    Some(out.join(","))
}

#[cfg(test)]
#[path = "x509_tests.rs"]
mod tests;
