//! `relayctl check` and `relayctl key`: what can be known without the
//! network.

use std::path::Path;

use crate::config::{Config, ConfigError};
use crate::encrypt::Keyring;
use crate::sysexits;

/// `relayctl check`: prints the report; exit 0, or 78 with every problem.
pub fn check_command(path: &Path) -> u8 {
    let (report, ok) = check(Config::load(path));
    if ok {
        print!("{report}");
        sysexits::OK
    } else {
        eprint!("{report}");
        sysexits::CONFIG
    }
}

/// `relayctl key FILE`: prints the report; exit 0, or 65 when the key
/// cannot encrypt.
pub fn key_command(file: &Path) -> u8 {
    let (report, ok) = key_report(file);
    print!("{report}");
    if ok { sysexits::OK } else { sysexits::DATAERR }
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
    for checked in [config.check_secrets(), config.check_sign_in()] {
        if let Err(e) = checked {
            ok = false;
            report.push_str(&format!("{e}\n"));
        }
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
    for k in keys::encryption_keys(&cert, now) {
        let expiry = k.key_expiration_time();
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
            if let Ok(Some(t)) = keys::encrypts_until(&cert, now)
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
