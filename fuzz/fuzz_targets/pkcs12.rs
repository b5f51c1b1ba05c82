//! The PKCS#12 reader (`net::tls::pkcs12::parse`, over the p12-keystore
//! crate). The MAC keyed by the password stops most mutations early; the
//! DER layers in front of it, and MAC-less stores, are what this reaches.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = corral::net::tls::pkcs12::parse(data, "changeit");
});
