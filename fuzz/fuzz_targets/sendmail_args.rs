//! sendmail's command line: any argv (split on NUL) parses or says why;
//! never a panic. What it parses must survive a second look.
#![no_main]

use alert_relay::ingest::sendmail::{Mode, parse_args};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut words = text.split('\0').map(str::to_string);
    let program = words.next().unwrap_or_default();
    let argv: Vec<String> = words.collect();
    if let Ok(args) = parse_args(&program, &argv) {
        if program == "mailq" && !argv.iter().any(|a| a.starts_with('-')) {
            assert_eq!(args.mode, Mode::ListQueue);
        }
        assert!(args.recipients.len() <= argv.len());
    }
});
