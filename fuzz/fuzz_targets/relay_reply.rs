//! The relay's replies: any bytes from a socket, cut into lines as the
//! client cuts them, give replies or a reason, within the bounds; never a
//! panic, never control characters in the text.
#![no_main]

use alert_relay::reply::{MAX_LINE, MAX_LINES, ReplyParser};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut parser = ReplyParser::default();
    // As the client reads: up to each LF, at most MAX_LINE + 1 bytes.
    let mut rest = data;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |p| p + 1)
            .min(MAX_LINE + 1);
        let (line, tail) = rest.split_at(end);
        rest = tail;
        match parser.line(line) {
            Ok(Some(reply)) => {
                assert!((200..=599).contains(&reply.code));
                assert!(!reply.lines.is_empty() && reply.lines.len() <= MAX_LINES);
                assert!(reply.lines.iter().all(|l| !l.chars().any(char::is_control)));
                parser = ReplyParser::default();
            }
            Ok(None) => {}
            Err(_) => return,
        }
    }
});
