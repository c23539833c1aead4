//! A file in incoming/, which anything with the spool's group can write:
//! any bytes are refused with a reason, or become an entry the daemon
//! stores for a configured recipient; never a panic, never an outgoing
//! message that was not built here.
#![no_main]

use alert_relay::spool::{Entry, Kind};
use libfuzzer_sys::fuzz_target;

#[path = "../common/mod.rs"]
mod common;
use common::context;

fuzz_target!(|data: &[u8]| {
    let Ok(entry) = Entry::decode(data) else {
        return;
    };
    let kind = entry.kind;
    if let Ok(stored) = alert_relay::ingest::admit(context(), entry) {
        assert_eq!(stored.recipient, "alerts@example.org");
        assert!(matches!(kind, Kind::Sealed | Kind::Notice | Kind::Held | Kind::HeldSealed));
        assert!(matches!(stored.kind, Kind::Outgoing | Kind::Held | Kind::HeldSealed));
    }
});
