//! A file in incoming/, which anything with the spool's group can write:
//! any bytes are refused with a reason, or become an entry the daemon
//! stores for a configured recipient; never a panic, never an outgoing
//! message that was not built here.
#![no_main]

use std::sync::OnceLock;

use alert_relay::config::Config;
use alert_relay::context::Context;
use alert_relay::spool::{Entry, Kind};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/keys/fingerprints.rs"]
mod test_keys;

fn context() -> &'static Context {
    static C: OnceLock<Context> = OnceLock::new();
    C.get_or_init(|| {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/keys");
        let fpr = test_keys::fingerprint("alerts");
        let text = format!(
            "[listen]\naddresses = [\"127.0.0.1:2525\"]\nhostname = \"mon\"\n\
             [queue]\ndir = \"/nonexistent/alert-relay-fuzz\"\n\
             [relay]\nhost = \"r\"\nsender = \"a@b.c\"\n\
             [[recipients]]\naddress = \"alerts@example.org\"\nkey = \"{keys}/alerts.asc\"\nfingerprint = \"{fpr}\"\n"
        );
        Context::new(Config::parse(&text, "fuzz.toml".as_ref()).unwrap()).unwrap()
    })
}

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
