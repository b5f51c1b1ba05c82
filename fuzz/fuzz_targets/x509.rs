//! `net::x509`, which reads client certificates before authentication:
//! `parse`, `subject_dn`, `verify_chain` and `verify_handshake`. The input
//! is a chain of concatenated DER certificates: end entity, intermediates,
//! trust anchor last (the seeds are real chains, so mutations stay close to
//! certificates).
#![no_main]

use corral::net::x509;
use libfuzzer_sys::fuzz_target;

/// Splits `data` at DER element boundaries (the last piece takes what is
/// left if a length does not fit); at most 12 pieces.
fn pieces(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while !data.is_empty() && out.len() < 12 {
        let len = match data.get(1) {
            Some(&n) if n < 0x80 => Some(2 + n as usize),
            Some(&0x81) => data.get(2).map(|&n| 3 + n as usize),
            Some(&0x82) => data.get(2..4).map(|b| 4 + u16::from_be_bytes([b[0], b[1]]) as usize),
            _ => None,
        };
        let n = len.filter(|&n| n <= data.len()).unwrap_or(data.len());
        out.push(&data[..n]);
        data = &data[n..];
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let certs = pieces(data);
    for c in &certs {
        if let Some(cert) = x509::parse(c) {
            assert!((1..=3).contains(&cert.version));
        }
        let _ = x509::subject_dn(c);
    }
    let Some((&ee, rest)) = certs.split_first() else { return };
    // "now" inside the end entity's validity, so dates do not stop the search.
    let now = x509::parse(ee).map_or(0, |c| c.not_before.saturating_add(1));
    let (anchors, inters) = match rest.split_last() {
        Some((&last, inters)) => (vec![last], inters.to_vec()),
        None => (vec![ee], Vec::new()),
    };
    let _ = x509::verify_chain(ee, &inters, &anchors, now);
    let scheme = rustls::SignatureScheme::from(u16::from_be_bytes([data[0], *data.last().unwrap_or(&0)]));
    let _ = x509::verify_handshake(ee, scheme, b"handshake", rest.first().copied().unwrap_or_default());
});
