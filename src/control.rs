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

/// `relayctl key FILE`: what `[[recipients]]` needs to know about a key.
/// Returns the report and whether the key can encrypt now.
pub fn key_report(path: &std::path::Path) -> (String, bool) {
    use crate::encrypt::keys;
    let cert = match keys::read_cert(path) {
        Ok(c) => c,
        Err(e) => return (format!("{e}\n"), false),
    };
    let now = std::time::SystemTime::now();
    let mut out = format!("fingerprint = \"{}\"\n", keys::fingerprint(&cert));
    for uid in cert.userids() {
        out.push_str(&format!(
            "user ID: {}\n",
            String::from_utf8_lossy(uid.userid().value())
        ));
    }
    let mut soonest: Option<std::time::SystemTime> = None;
    for k in keys::encryption_keys(&cert, now) {
        let expiry = k.key_expiration_time();
        if let Some(t) = expiry {
            soonest = Some(soonest.map_or(t, |s| s.min(t)));
        }
        out.push_str(&format!(
            "encryption subkey: {} {}{}, expires {}\n",
            k.key().fingerprint().to_hex(),
            k.key().pk_algo(),
            k.key()
                .mpis()
                .bits()
                .map(|b| format!(" {b} bits"))
                .unwrap_or_default(),
            expiry.map_or("never".to_string(), |t| humantime::format_rfc3339_seconds(
                t
            )
            .to_string())
        ));
    }
    match keys::can_encrypt(&cert, now) {
        Ok(()) => {
            if let Some(t) = soonest
                && t.duration_since(now).unwrap_or_default()
                    < std::time::Duration::from_secs(30 * 86400)
            {
                out.push_str(&format!(
                    "warning: the key expires within 30 days ({}); ask its owner for an extended one\n",
                    humantime::format_rfc3339_seconds(t)
                ));
            }
            out.push_str("can encrypt: yes\n");
            (out, true)
        }
        Err(e) => {
            out.push_str(&format!("can encrypt: no: {e}\n"));
            (out, false)
        }
    }
}

/// `relayctl fingerprint`: a relay's certificate, in config syntax.
pub fn fingerprint_report(relay: &str, cert: &crate::deliver::tls::CertInfo) -> String {
    use crate::config::colon_hex;
    format!(
        "relay:    {relay}\nsubject:  {}\nissuer:   {}\nexpires:  {}\nSHA-1:    {}\nSHA-256:  {}\nSPKI:     {}\n\n{}\n",
        cert.subject,
        cert.issuer,
        cert.not_after
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_else(|| "unknown".into()),
        colon_hex(&cert.sha1),
        colon_hex(&cert.sha256),
        crate::config::Pin::SpkiSha256(cert.spki_sha256),
        cert.config_line()
    )
}
