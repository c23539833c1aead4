//! The config loaders: any text as relay.toml (parse and validate) and as
//! SecureDrop's site-specific variables (`relayctl import-securedrop`)
//! gives a config or a clear error; never a panic.
#![no_main]

use std::path::Path;

use alert_relay::config::Config;
use alert_relay::securedrop::parse_flat_yaml;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    match Config::parse(&text, Path::new("relay.toml")) {
        // Every derived value a valid config offers must be computable.
        Ok(config) => {
            let _ = config.sender();
            let _ = config.router();
            let _ = config.relay.sasl_identity();
            let _ = config.relay.tls_mode();
        }
        // Every error must render (it names the file, key and problem).
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    if let Err(e) = parse_flat_yaml(&text) {
        assert!(!e.to_string().is_empty());
    }
});
