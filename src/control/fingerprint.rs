//! `relayctl fingerprint`: the relay's certificate, in config syntax.
//! Replaces the `openssl s_client ... | openssl x509 -fingerprint`
//! pipeline SecureDrop's docs use.

use std::path::Path;

use crate::config::PasswordSource;
use crate::config::{Config, TlsMode, colon_hex};
use crate::deliver::client::{Connection, Settings};
use crate::deliver::tls::{CertInfo, Tls};
use crate::sysexits;

/// `relayctl fingerprint`: a relay's certificate, in config syntax.
pub fn fingerprint_report(relay: &str, cert: &CertInfo) -> String {
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

/// The command: connects to `relay` (`HOST[:PORT]`, else the configured
/// relay) and prints its certificate; the exit code.
pub fn fingerprint(path: &Path, relay: Option<&str>, starttls: bool, implicit: bool) -> u8 {
    let (host, port, configured_mode, timeout) = match relay {
        Some(r) => {
            let (host, port) = match r.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(':') => match p.parse::<u16>() {
                    Ok(p) => (h.trim_matches(['[', ']']).to_string(), p),
                    Err(_) => {
                        eprintln!("relayctl: {p:?} is not a port");
                        return sysexits::USAGE;
                    }
                },
                _ => (r.to_string(), 587),
            };
            (host, port, None, std::time::Duration::from_secs(30))
        }
        None => match Config::load(path) {
            Ok(c) => (
                c.relay.host.clone(),
                c.relay.port,
                Some(c.relay.tls_mode()),
                c.relay.timeout.0,
            ),
            Err(e) => {
                eprintln!("{e}\n(or name the relay: relayctl fingerprint HOST:PORT)");
                return sysexits::CONFIG;
            }
        },
    };
    let mode = if implicit {
        TlsMode::Implicit
    } else if starttls {
        TlsMode::Starttls
    } else {
        configured_mode.unwrap_or(if port == 465 {
            TlsMode::Implicit
        } else {
            TlsMode::Starttls
        })
    };
    let tls = match Tls::record_only(&host) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("relayctl: {e}");
            return sysexits::USAGE;
        }
    };
    let settings = Settings {
        host: host.clone(),
        port,
        mode,
        tls,
        timeout,
        helo: "relayctl".into(),
        identity: None,
        oauth2: None,
        password: PasswordSource::Credential,
    };
    let runtime = match crate::runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("relayctl: {e}");
            return sysexits::OSERR;
        }
    };
    match runtime.block_on(Connection::certificate(&settings)) {
        Ok(cert) => {
            let how = if mode == TlsMode::Implicit {
                "implicit TLS"
            } else {
                "STARTTLS"
            };
            print!(
                "{}",
                fingerprint_report(&format!("{} ({how})", settings.relay()), &cert)
            );
            sysexits::OK
        }
        Err(e) => {
            eprintln!("relayctl: {}: {e}", settings.relay());
            sysexits::UNAVAILABLE
        }
    }
}
