//! The SMTP command parser and session state: any command line gets one
//! reply; never a panic.
#![no_main]

use alert_relay::ingest::session::{Session, Step};
use libfuzzer_sys::fuzz_target;

#[path = "../common/mod.rs"]
mod common;
use common::context;

fuzz_target!(|data: &[u8]| {
    let ctx = context();
    let mut session = Session::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        let reply = match session.command(ctx, line) {
            Step::Reply(r) | Step::Data(r) | Step::Close(r) => r,
        };
        assert!((200..600).contains(&reply.code));
        let wire = reply.to_wire();
        assert!(wire.ends_with(b"\r\n"));
        if matches!(session.command(ctx, b"RSET\r\n"), Step::Close(_)) {
            break;
        }
    }
});
