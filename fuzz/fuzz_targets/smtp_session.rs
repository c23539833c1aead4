//! The SMTP command parser and session state: any command line gets one
//! reply; never a panic.
#![no_main]

use std::sync::OnceLock;

use alert_relay::config::Config;
use alert_relay::context::Context;
use alert_relay::ingest::session::{Session, Step};
use libfuzzer_sys::fuzz_target;

#[path = "../../tests/keys/fingerprints.rs"]
mod test_keys;

fn context() -> &'static Context {
    static C: OnceLock<Context> = OnceLock::new();
    C.get_or_init(|| {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/keys");
        let fpr = test_keys::fingerprint("alerts");
        let text = format!(
            "[listen]\naddresses = [\"127.0.0.1:2525\"]\nhostname = \"mon\"\nmax_recipients = 3\n\
             [relay]\nhost = \"r\"\nsender = \"a@b.c\"\n\
             [[recipients]]\naddress = \"alerts@example.org\"\nkey = \"{keys}/alerts.asc\"\nfingerprint = \"{fpr}\"\n\
             [aliases]\nroot = \"alerts@example.org\"\n"
        );
        Context::new(Config::parse(&text, "fuzz.toml".as_ref()).unwrap()).unwrap()
    })
}

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
