//! Just enough X.509 to accept version-1 certificates, which Java (and so
//! ZooKeeper) accepts and webpki refuses: kazoo's own test harness, for one,
//! issues v1 client and server certificates. Used only as a fallback after
//! webpki has rejected a certificate for its version; everything else goes
//! through webpki.

use ring::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use rustls::SignatureScheme;

/// The parts of a certificate the fallback checks.
pub struct Cert<'a> {
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
}

/// One DER element: (tag, whole element, contents, rest).
type Element<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

fn element(buf: &[u8]) -> Option<Element<'_>> {
    let tag = *buf.first()?;
    let first = *buf.get(1)?;
    let (len, hdr) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || buf.len() < 2 + n {
            return None;
        }
        (buf[2..2 + n].iter().fold(0usize, |a, b| (a << 8) | *b as usize), 2 + n)
    };
    let end = hdr.checked_add(len)?;
    if buf.len() < end {
        return None;
    }
    Some((tag, &buf[..end], &buf[hdr..end], &buf[end..]))
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

/// UTCTime or GeneralizedTime (Z only) to Unix seconds.
fn time(tag: u8, s: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(s).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if s.len() == 12 => {
            let yy: i64 = s[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &s[2..])
        }
        0x18 if s.len() == 14 => (s[..4].parse().ok()?, &s[4..]),
        _ => return None,
    };
    let n = |i: usize| rest.get(i..i + 2)?.parse::<i64>().ok();
    Some(days_from_civil(year, n(0)?, n(2)?) * 86_400 + n(4)? * 3600 + n(6)? * 60 + n(8)?)
}

pub fn parse(der: &[u8]) -> Option<Cert<'_>> {
    let (_, cert, _) = expect(0x30, der)?;
    let (tbs, tbs_contents, rest) = expect(0x30, cert)?;
    let (_, alg, rest) = expect(0x30, rest)?;
    let (_, signature_alg, _) = expect(0x06, alg)?;
    let (_, sig_bits, _) = expect(0x03, rest)?;
    let signature = sig_bits.get(1..)?; // skip the unused-bits byte

    let mut r = tbs_contents;
    let mut version = 1;
    if r.first() == Some(&0xa0) {
        let (_, v, rest) = expect(0xa0, r)?;
        let (_, n, _) = expect(0x02, v)?;
        version = n.last()? + 1;
        r = rest;
    }
    let (_, _, rest) = expect(0x02, r)?; // serial
    let (_, _, rest) = expect(0x30, rest)?; // signature algorithm (again)
    let (issuer, _, rest) = expect(0x30, rest)?;
    let (_, validity, rest) = expect(0x30, rest)?;
    let (t1, _, nb, vrest) = element(validity)?;
    let (t2, _, na, _) = element(vrest)?;
    let (subject, _, rest) = expect(0x30, rest)?;
    let (_, spki, _) = expect(0x30, rest)?;
    let (_, key_alg_seq, spki_rest) = expect(0x30, spki)?;
    let (_, key_alg, param_rest) = expect(0x06, key_alg_seq)?;
    let key_param = expect(0x06, param_rest).map(|(_, p, _)| p);
    let (_, key_bits, _) = expect(0x03, spki_rest)?;
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
        public_key: key_bits.get(1..)?,
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

/// The algorithm that checks a certificate signature `alg` made by `issuer`'s key.
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

/// Chain depth at most followed (end entity, intermediates, anchor).
const CHAIN_MAX: usize = 6;

/// Verifies that `end_entity` chains, through `intermediates`, to one of
/// `anchors`, every certificate within its validity at `now` (Unix seconds).
pub fn verify_chain<'a>(end_entity: &'a [u8], intermediates: &[&'a [u8]], anchors: &[&'a [u8]], now: i64) -> bool {
    let Some(mut cert) = parse(end_entity) else { return false };
    for _ in 0..CHAIN_MAX {
        if now < cert.not_before || now > cert.not_after {
            return false;
        }
        if let Some(anchor) = anchors.iter().find_map(|der| issuer_of(&cert, der)) {
            return now >= anchor.not_before && now <= anchor.not_after;
        }
        match intermediates.iter().find_map(|der| issuer_of(&cert, der)) {
            Some(next) => cert = next,
            None => return false,
        }
    }
    false
}

/// `candidate` parsed, if it is `cert`'s issuer and its key verifies `cert`'s signature.
fn issuer_of<'a>(cert: &Cert<'_>, candidate: &'a [u8]) -> Option<Cert<'a>> {
    parse(candidate).filter(|i| i.subject == cert.issuer).filter(|i| {
        cert_signature_algorithm(cert.signature_alg, i)
            .is_some_and(|alg| UnparsedPublicKey::new(alg, i.public_key).verify(cert.tbs, cert.signature).is_ok())
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

fn dotted(oid: &[u8]) -> String {
    let mut parts = Vec::new();
    if let Some(first) = oid.first() {
        parts.push((first / 40) as u64);
        parts.push((first % 40) as u64);
    }
    let mut acc = 0u64;
    for b in oid.iter().skip(1) {
        acc = (acc << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            parts.push(acc);
            acc = 0;
        }
    }
    parts.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
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
                    let mut e = String::new();
                    for (i, c) in s.chars().enumerate() {
                        let edge = (i == 0 && (c == ' ' || c == '#')) || (i == s.chars().count() - 1 && c == ' ');
                        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
                            e.push('\\');
                        }
                        e.push(c);
                    }
                    e
                }
                _ => format!("#{}", whole.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            };
            parts.push(format!("{}={text}", key.unwrap_or_else(|| dotted(oid))));
        }
        out.push(parts.join("+"));
    }
    out.reverse();
    Some(out.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(time(0x18, b"20000301000000Z"), Some(951_868_800));
        assert_eq!(time(0x17, b"bad"), None);
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(parse(&[]).is_none());
        assert!(parse(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
        assert!(!verify_chain(&[0x30, 0x00], &[], &[], 0));
    }
}
