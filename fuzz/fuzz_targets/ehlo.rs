//! The EHLO capabilities: any reply lines give a consistent answer.
#![no_main]

use alert_relay::reply::{Capabilities, Reply};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let reply = Reply {
        code: 250,
        lines: text.split('\n').map(str::to_string).collect(),
    };
    let caps = Capabilities::from_ehlo(&reply);
    let mechanisms = caps.auth_mechanisms();
    for m in &mechanisms {
        assert_eq!(m, &m.to_ascii_uppercase());
        assert_eq!(mechanisms.iter().filter(|x| *x == m).count(), 1);
    }
    if !mechanisms.is_empty() {
        assert!(caps.offers("auth"));
    }
});
