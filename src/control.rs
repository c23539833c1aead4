//! What `relayctl` and `mailq` show an admin.

use crate::config::{Config, ConfigError};
use crate::encrypt::Keyring;
use crate::spool::Listing;

/// The queue as a table, oldest first, or "Mail queue is empty".
pub fn queue_table(rows: &[Listing]) -> String {
    if rows.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut out = format!(
        "{:<24}  {:<9}  {:>9}  {:<20}  {}\n",
        "ID", "STATE", "SIZE", "ARRIVED", "RECIPIENT"
    );
    let mut total = 0;
    for r in rows {
        total += r.size;
        out.push_str(&format!(
            "{:<24}  {:<9}  {:>9}  {:<20}  {}\n",
            r.id,
            r.state,
            r.size,
            humantime::format_rfc3339_seconds(r.created),
            r.recipient
        ));
    }
    out.push_str(&format!(
        "-- {} Kbytes in {} request{}.\n",
        total.div_ceil(1024),
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    ));
    out
}

/// `relayctl check`: everything that can be checked without the network.
/// Returns the report and whether the config is usable.
pub fn check(config: Result<Config, ConfigError>) -> (String, bool) {
    let config = match config {
        Ok(c) => c,
        Err(e) => return (format!("{e}\n"), false),
    };
    let mut report = String::new();
    let mut ok = true;
    if let Err(e) = config.check_secrets() {
        ok = false;
        report.push_str(&format!("{e}\n"));
    }
    match Keyring::load(&config) {
        Err(e) => {
            ok = false;
            report.push_str(&format!("{e}\n"));
        }
        Ok(keyring) => {
            for (key, reason) in keyring.unusable(std::time::SystemTime::now()) {
                ok = false;
                let i = key.index;
                report.push_str(&format!(
                    "{}: recipients[{i}].key: {} ({}): {reason}; alerts to {} would be held\n",
                    config.path.display(),
                    key.path.display(),
                    key.fingerprint,
                    key.recipient
                ));
            }
        }
    }
    if ok {
        report.push_str(&format!(
            "{}: ok ({} recipient{}, relay {}:{})\n",
            config.path.display(),
            config.recipients.len(),
            if config.recipients.len() == 1 {
                ""
            } else {
                "s"
            },
            config.relay.host,
            config.relay.port
        ));
    }
    (report, ok)
}
