//! The PEM keystore reader (`net::tls::parse_pem`): certificates plus an
//! optional private key, from arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = corral::net::tls::parse_pem(data);
});
