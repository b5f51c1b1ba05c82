//! The JKS reader (`net::tls::jks::parse`). A store ends in a SHA-1 digest
//! keyed by its password, which random bytes never match; so each input is
//! also parsed "re-signed" (its last 20 bytes replaced by the right digest
//! for the password `changeit`), which lets the fuzzer into the entries.
#![no_main]

use corral::net::tls::jks;
use libfuzzer_sys::fuzz_target;
use sha1::{Digest, Sha1};

const PASSWORD: &str = "changeit";

fuzz_target!(|data: &[u8]| {
    let _ = jks::parse(data, PASSWORD);
    if data.len() >= 20 {
        let body = &data[..data.len() - 20];
        let mut h = Sha1::new();
        h.update(PASSWORD.encode_utf16().flat_map(u16::to_be_bytes).collect::<Vec<u8>>());
        h.update(b"Mighty Aphrodite");
        h.update(body);
        let mut signed = body.to_vec();
        signed.extend_from_slice(&h.finalize());
        if let Ok(m) = jks::parse(&signed, PASSWORD) {
            assert!(m.keys.len() + m.trusted.len() <= signed.len());
        }
    }
});
