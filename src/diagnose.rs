//! `relayctl test`: walks the whole path, one line per step with ✓ or ✗,
//! and on ✗ the cause and the fix.
//!
//! The config, key and password checks always run and are always
//! reported; the network steps (DNS, TCP, TLS and the certificate, AUTH,
//! MAIL/RCPT, DATA) stop at the first failure, since each needs the one
//! before. It needs no running daemon and touches no spool.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::Config;
use crate::deliver::client::{self, Connection, Settings};
use crate::encrypt::keys;
use crate::ingest::Context;
use crate::spool::QueueId;

/// What to check and where to send the test alert.
pub struct Options<'a> {
    pub config: &'a Path,
    /// The recipient of the test alert; default: the first configured.
    pub to: Option<&'a str>,
    /// Stop after RCPT: check everything but send nothing.
    pub no_send: bool,
}

/// Prints one step's line.
fn step(ok: bool, name: &str, detail: &str) -> bool {
    println!("{} {name}: {detail}", if ok { "✓" } else { "✗" });
    ok
}

/// Runs every step; true when all passed.
pub fn run(opts: &Options<'_>) -> bool {
    let config = match Config::load(opts.config) {
        Ok(c) => {
            step(
                true,
                "config",
                &format!("{} is valid", opts.config.display()),
            );
            c
        }
        Err(e) => return step(false, "config", &e.to_string()),
    };
    let mut ok = true;

    let now = SystemTime::now();
    let ctx = match Context::new(config.clone()) {
        Ok(ctx) => {
            for k in ctx.keyring.iter() {
                ok &= key_step(k, now);
            }
            Some(ctx)
        }
        Err(e) => {
            ok &= step(false, "keys", &e.to_string());
            None
        }
    };

    match (&config.relay.username, config.check_secrets()) {
        (None, _) => {
            step(
                true,
                "password",
                "no relay.username: the relay is used without AUTH",
            );
        }
        (Some(_), Ok(())) => {
            let detail = match &config.relay.password_file {
                Some(p) => format!("{} exists and is private", p.display()),
                None => "from the systemd credential sasl_password".into(),
            };
            step(true, "password", &detail);
        }
        (Some(_), Err(e)) => ok &= step(false, "password", &e.to_string()),
    }

    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return step(false, "runtime", &e.to_string()),
    };
    let network = runtime.block_on(network(opts, &config, ctx.as_ref()));
    ok && network
}

fn key_step(k: &crate::encrypt::RecipientKey, now: SystemTime) -> bool {
    let name = format!("key for {}", k.recipient);
    match keys::can_encrypt(&k.cert, now) {
        Err(e) => step(
            false,
            &name,
            &format!(
                "{} cannot encrypt: {e}; alerts to {} would be held (relayctl key {})",
                k.fingerprint,
                k.recipient,
                k.path.display()
            ),
        ),
        Ok(()) => {
            let expiry = keys::encryption_keys(&k.cert, now)
                .filter_map(|key| key.key_expiration_time())
                .min();
            let detail = match expiry {
                None => format!("{} can encrypt, never expires", k.fingerprint),
                Some(t)
                    if t.duration_since(now).unwrap_or_default()
                        < Duration::from_secs(30 * 86400) =>
                {
                    format!(
                        "{} can encrypt, but expires on {} (within 30 days): ask its owner to extend it",
                        k.fingerprint,
                        humantime::format_rfc3339_seconds(t)
                    )
                }
                Some(t) => format!(
                    "{} can encrypt, expires on {}",
                    k.fingerprint,
                    humantime::format_rfc3339_seconds(t)
                ),
            };
            step(true, &name, &detail)
        }
    }
}

async fn network(opts: &Options<'_>, config: &Config, ctx: Option<&Context>) -> bool {
    let helo = ctx
        .map(|c| c.hostname.clone())
        .unwrap_or_else(|| config.hostname());
    let s = match Settings::from_config(config, &helo) {
        Ok(s) => s,
        Err(e) => return step(false, "TLS setup", &e.to_string()),
    };
    let relay = s.relay();
    let addrs = match client::resolve(&s).await {
        Ok(a) => {
            let list: Vec<String> = a.iter().map(|a| a.ip().to_string()).collect();
            step(true, "DNS", &format!("{} is {}", s.host, list.join(", ")));
            a
        }
        Err(e) => return step(false, "DNS", &e.to_string()),
    };
    let tcp = match client::connect(&s, &addrs).await {
        Ok((tcp, addr)) => {
            step(true, "TCP", &format!("connected to {addr}"));
            tcp
        }
        Err(e) => return step(false, "TCP", &e.to_string()),
    };
    let mut conn = match Connection::secure(&s, tcp).await {
        Ok(c) => {
            let how = match s.mode {
                crate::config::TlsMode::Starttls => "STARTTLS",
                crate::config::TlsMode::Implicit => "implicit TLS",
            };
            let check = if s.tls.pinned() {
                "the certificate matches relay.fingerprints"
            } else {
                "the certificate is valid for the host name"
            };
            step(
                true,
                "TLS",
                &format!("{} over {how}; {check}", c.tls_version),
            );
            c
        }
        Err(e) => return step(false, "TLS", &e.to_string()),
    };
    match conn.login(&s).await {
        Ok(()) => {
            let who = s
                .identity
                .clone()
                .unwrap_or_else(|| "(no AUTH configured)".into());
            step(true, "AUTH", &format!("accepted {who}"));
        }
        Err(e) => return step(false, "AUTH", &e.to_string()),
    }

    let Some(ctx) = ctx else {
        return step(
            false,
            "MAIL/RCPT",
            "not tried: the keys above must load first",
        );
    };
    let to = match opts.to {
        Some(addr) => match ctx.router.resolve(addr) {
            Ok(r) if !r.is_empty() => r[0].clone(),
            Ok(_) | Err(_) => {
                return step(
                    false,
                    "MAIL/RCPT",
                    &format!("{addr} is not a configured recipient or alias"),
                );
            }
        },
        None => match ctx.keyring.iter().next() {
            Some(k) => k.recipient.clone(),
            None => return step(false, "MAIL/RCPT", "no [[recipients]] configured"),
        },
    };
    let from = ctx.sealer.sender.address.as_str().to_string();
    if let Err(e) = conn.envelope(&from, to.0.as_str()).await {
        return step(false, "MAIL/RCPT", &e.to_string());
    }
    step(true, "MAIL/RCPT", &format!("{from} to {to} accepted"));
    if conn.rset().await.is_err() {
        return step(false, "RSET", "the relay closed the connection after RCPT");
    }
    if opts.no_send {
        conn.quit().await;
        println!("  (--no-send: stopped before DATA)");
        return true;
    }

    let Some(key) = ctx.keyring.get(&to) else {
        return step(false, "DATA", &format!("no key loaded for {to}"));
    };
    let id = QueueId::generate();
    let alert = format!(
        "From: alert-relay test <{from}>\r\nTo: <{to}>\r\nSubject: alert-relay test from {host}\r\n\r\n\
         This is a test alert from `relayctl test` on {host}, sent at {now}.\r\n\
         If you can read this, alerts reach you encrypted.\r\n",
        host = ctx.hostname,
        now = humantime::format_rfc3339_seconds(SystemTime::now())
    );
    let sealed = match ctx
        .sealer
        .seal(alert.as_bytes(), key, &id, SystemTime::now())
    {
        Ok(m) => m,
        Err(e) => {
            return step(
                false,
                "DATA",
                &format!("cannot encrypt the test alert: {e}"),
            );
        }
    };
    let ok = match conn.send(&from, to.0.as_str(), &sealed).await {
        Ok(reply) => step(
            true,
            "DATA",
            &format!("{relay} accepted an encrypted test alert for {to}: {reply}"),
        ),
        Err(e) => step(false, "DATA", &e.to_string()),
    };
    conn.quit().await;
    ok
}
