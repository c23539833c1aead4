//! What more than one fuzz target needs: the daemon's context for one
//! configured recipient, `alerts@example.org` (alias `root`), with the
//! test key from tests/keys.

use std::sync::OnceLock;

use alert_relay::config::Config;
use alert_relay::context::Context;

#[path = "../../tests/keys/fingerprints.rs"]
mod test_keys;

/// Built once per target; its spool directory does not exist, so
/// nothing a target does can write one.
pub fn context() -> &'static Context {
    static C: OnceLock<Context> = OnceLock::new();
    C.get_or_init(|| {
        let keys = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/keys");
        let fpr = test_keys::fingerprint("alerts");
        let text = format!(
            "[listen]\naddresses = [\"127.0.0.1:2525\"]\nhostname = \"mon\"\nmax_recipients = 3\n\
             [queue]\ndir = \"/nonexistent/alert-relay-fuzz\"\n\
             [relay]\nhost = \"r\"\nsender = \"a@b.c\"\n\
             [[recipients]]\naddress = \"alerts@example.org\"\nkey = \"{keys}/alerts.asc\"\nfingerprint = \"{fpr}\"\n\
             [aliases]\nroot = \"alerts@example.org\"\n"
        );
        Context::new(Config::parse(&text, "fuzz.toml".as_ref()).unwrap()).unwrap()
    })
}
