//! What a token endpoint (or whatever answers at its address) sends
//! back: any bytes become a response or a clear error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = alert_relay::oauth2::http::parse_response(data) {
        assert!(response.body.len() <= data.len());
    }
});
