//! zoo.cfg parsing (`Config::parse`), including the `ssl.*` keys and the
//! relations between values. Input is taken as (lossy) UTF-8 text.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(cfg) = corral::config::Config::parse(Path::new("zoo.cfg"), &text) {
        assert!(cfg.tick_ms > 0);
        assert!(cfg.min_session_timeout_ms <= cfg.max_session_timeout_ms);
        assert!(cfg.max_frame_bytes >= 1024);
        assert_eq!(cfg.tls.is_some(), cfg.secure_client_addr.is_some());
    }
});
