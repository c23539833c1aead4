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
use crate::context::Context;
use crate::deliver::client::{self, Connection, Settings};
use crate::encrypt::keys;

/// What to check and where to send the test alert.
pub struct Options<'a> {
    pub config: &'a Path,
    /// The recipient of the test alert; default: the first configured.
    pub to: Option<&'a str>,
    /// Stop after RCPT: check everything but send nothing.
    pub no_send: bool,
    /// How to print the steps.
    pub output: Output,
}

/// How `relayctl test` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// One line per step as it happens; green ✓ and red ✗ when `colour`.
    Text { colour: bool },
    /// One JSON object at the end, for scripts and monitoring.
    Json,
}

impl Output {
    /// Text, coloured only on a terminal and when `NO_COLOR` is unset.
    pub fn text_for_stdout() -> Output {
        use std::io::IsTerminal;
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Output::Text { colour }
    }
}

/// One step's result.
#[derive(Debug, serde::Serialize)]
struct Step {
    step: String,
    ok: bool,
    detail: String,
}

/// The steps so far; text is printed as each step ends, so a slow relay
/// shows where it is slow.
struct Report {
    output: Output,
    steps: Vec<Step>,
}

impl Report {
    fn step(&mut self, ok: bool, name: &str, detail: &str) -> bool {
        if let Output::Text { colour } = self.output {
            let mark = match (ok, colour) {
                (true, false) => "✓",
                (false, false) => "✗",
                (true, true) => "\x1b[32m✓\x1b[0m",
                (false, true) => "\x1b[31m✗\x1b[0m",
            };
            println!("{mark} {name}: {detail}");
        }
        self.steps.push(Step {
            step: name.to_string(),
            ok,
            detail: detail.to_string(),
        });
        ok
    }

    /// Prints the JSON object in JSON mode: `{"ok": .., "sent": .., "steps": [..]}`.
    fn finish(self, ok: bool, sent: bool) {
        if self.output == Output::Json {
            let report = serde_json::json!({ "ok": ok, "sent": sent, "steps": self.steps });
            println!("{report}");
        }
    }
}

/// The report, with step names given for one relay.
struct Named<'r, 'f> {
    report: &'r mut Report,
    name: &'f dyn Fn(&str) -> String,
}

impl Named<'_, '_> {
    fn step(&mut self, ok: bool, name: &str, detail: &str) -> bool {
        let name = (self.name)(name);
        self.report.step(ok, &name, detail)
    }
}

/// Runs every step; true when all passed.
pub fn run(opts: &Options<'_>) -> bool {
    let mut report = Report {
        output: opts.output,
        steps: Vec::new(),
    };
    let ok = steps(opts, &mut report);
    let sent = ok && !opts.no_send;
    report.finish(ok, sent);
    ok
}

fn steps(opts: &Options<'_>, report: &mut Report) -> bool {
    let config = match Config::load(opts.config) {
        Ok(c) => {
            report.step(
                true,
                "config",
                &format!("{} is valid", opts.config.display()),
            );
            c
        }
        Err(e) => return report.step(false, "config", &e.to_string()),
    };
    let mut ok = true;

    let now = SystemTime::now();
    let ctx = match Context::new(config.clone()) {
        Ok(ctx) => {
            for k in ctx.keyring.iter() {
                ok &= key_step(report, k, now, config.health.key_expiry_warning.0);
            }
            Some(ctx)
        }
        Err(e) => {
            ok &= report.step(false, "keys", &e.to_string());
            None
        }
    };

    for (section, relay) in config.relays() {
        if let Some(client) = crate::oauth2::Client::for_relay(relay, &config.queue.dir) {
            let step = hop_step(section, "sign-in");
            match client.and_then(|c| c.stored().map(|s| (c, s))) {
                Ok((c, s)) => {
                    report.step(
                        true,
                        &step,
                        &format!(
                            "an OAuth 2.0 sign-in of {} is stored in {}",
                            crate::when::rfc3339(crate::health::time(s.signed_in)),
                            c.store.path().display()
                        ),
                    );
                }
                Err(e) => ok &= report.step(false, &step, &e.to_string()),
            }
            continue;
        }
        let step = hop_step(section, "password");
        match &relay.username {
            None => {
                report.step(
                    true,
                    &step,
                    &format!("no {section}.username: the relay is used without AUTH"),
                );
            }
            Some(_) => {
                let source = relay.password_source();
                match source.read() {
                    Ok(_) => {
                        report.step(
                            true,
                            &step,
                            &format!("{} is private and not empty", source.describe()),
                        );
                    }
                    Err(e) => ok &= report.step(false, &step, &e),
                }
            }
        }
    }
    // Run as root, every file above was readable; the daemon is not root.
    if crate::os::is_root() {
        ok &= daemon_user_step(report, &config);
    }

    let runtime = match crate::runtime::new() {
        Ok(r) => r,
        Err(e) => return report.step(false, "runtime", &e.to_string()),
    };
    // Every relay is walked: the fallback must work on the day it is needed.
    let mut network_ok = true;
    for (section, relay) in config.relays() {
        let sender = match (section, config.fallback_sender()) {
            ("fallback", Some(Ok(m))) => m.address.as_str().to_string(),
            _ => ctx
                .as_ref()
                .map(|c| c.sealer.sender.address.as_str().to_string())
                .unwrap_or_default(),
        };
        let hop = Hop {
            section,
            relay,
            sender,
        };
        network_ok &= runtime.block_on(network(report, opts, &config, &hop, ctx.as_ref()));
    }
    ok && network_ok
}

/// One relay `relayctl test` walks: `[relay]`, then `[fallback]`.
struct Hop<'a> {
    section: &'static str,
    relay: &'a crate::config::Relay,
    /// The envelope sender through it.
    sender: String,
}

/// A step's name: as it is for the primary relay, prefixed for the
/// fallback ("fallback TCP").
fn hop_step(section: &str, step: &str) -> String {
    match section {
        "relay" => step.to_string(),
        other => format!("{other} {step}"),
    }
}

/// Whether the daemon's user can read what it needs: the config, the keys,
/// the password file, the CA file, and write the spool. The daemon's user
/// is the spool's owner (the package makes it `alert-relay`); with no
/// spool yet, or one of root's, there is no other user to check for.
fn daemon_user_step(report: &mut Report, config: &Config) -> bool {
    use crate::os::{Access, User};
    use std::os::unix::fs::MetadataExt;
    let spool = &config.queue.dir;
    let user = std::fs::metadata(spool)
        .ok()
        .filter(|m| m.uid() != 0)
        .and_then(|m| User::by_uid(m.uid()));
    let Some(user) = user else {
        return true;
    };
    let mut needs = vec![(config.path.clone(), Access::Read, "the config")];
    for r in &config.recipients {
        needs.push((r.key.clone(), Access::Read, "a recipient's key"));
    }
    for (section, relay) in config.relays() {
        if let Some(p) = &relay.password_file {
            let what = match section {
                "relay" => "the password file",
                _ => "the fallback's password file",
            };
            needs.push((p.clone(), Access::Read, what));
        }
        if let Some(p) = &relay.ca_file {
            let what = match section {
                "relay" => "relay.ca_file",
                _ => "fallback.ca_file",
            };
            needs.push((p.clone(), Access::Read, what));
        }
    }
    needs.push((spool.clone(), Access::WriteDir, "the spool"));
    let problems: Vec<String> = needs
        .iter()
        .filter_map(|(path, access, what)| {
            user.may(path, *access).err().map(|e| {
                let fix = match access {
                    Access::Read => format!(
                        "let its group read it: chgrp {} {} && chmod g+r {}",
                        user.name,
                        path.display(),
                        path.display()
                    ),
                    Access::WriteDir => format!(
                        "install -d -o {0} -g {0} -m 0710 {1}",
                        user.name,
                        spool.display()
                    ),
                };
                format!("{what}: {e}; {fix}")
            })
        })
        .collect();
    if problems.is_empty() {
        report.step(
            true,
            "daemon user",
            &format!(
                "{} can read the config, the keys and the secrets, and write the spool",
                user.name
            ),
        )
    } else {
        report.step(
            false,
            "daemon user",
            &format!(
                "alert-relayd runs as {}, which cannot use what it needs: {}",
                user.name,
                problems.join("; ")
            ),
        )
    }
}

/// A key's step: whether it can encrypt, and its expiry, flagged within
/// `warn_within` (`health.key_expiry_warning`).
fn key_step(
    report: &mut Report,
    k: &crate::encrypt::RecipientKey,
    now: SystemTime,
    warn_within: Duration,
) -> bool {
    let name = format!("key for {}", k.recipient);
    match keys::can_encrypt(&k.cert, now) {
        Err(e) => report.step(
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
            let expiry = keys::encrypts_until(&k.cert, now).ok().flatten();
            let detail = match expiry {
                None => format!("{} can encrypt, never expires", k.fingerprint),
                Some(t) if t.duration_since(now).unwrap_or_default() < warn_within => format!(
                    "{} can encrypt, but expires on {} (within health.key_expiry_warning, {}): \
                     ask its owner to extend it",
                    k.fingerprint,
                    humantime::format_rfc3339_seconds(t),
                    humantime::format_duration(warn_within)
                ),
                Some(t) => format!(
                    "{} can encrypt, expires on {}",
                    k.fingerprint,
                    humantime::format_rfc3339_seconds(t)
                ),
            };
            report.step(true, &name, &detail)
        }
    }
}

async fn network(
    report: &mut Report,
    opts: &Options<'_>,
    config: &Config,
    hop: &Hop<'_>,
    ctx: Option<&Context>,
) -> bool {
    let helo = ctx
        .map(|c| c.hostname.clone())
        .unwrap_or_else(|| config.hostname());
    let name = |step: &str| hop_step(hop.section, step);
    let mut report = Named {
        report,
        name: &name,
    };
    let report = &mut report;
    let s = match Settings::for_relay(hop.relay, &helo, &config.queue.dir) {
        Ok(s) => s,
        Err(e) => return report.step(false, "TLS setup", &e.to_string()),
    };
    let relay = s.relay();
    let addrs = match client::resolve(&s).await {
        Ok(a) => {
            let list: Vec<String> = a.iter().map(|a| a.ip().to_string()).collect();
            report.step(true, "DNS", &format!("{} is {}", s.host, list.join(", ")));
            a
        }
        Err(e) => return report.step(false, "DNS", &e.to_string()),
    };
    let tcp = match client::connect(&s, &addrs).await {
        Ok((tcp, addr)) => {
            report.step(true, "TCP", &format!("connected to {addr}"));
            tcp
        }
        Err(e) => return report.step(false, "TCP", &e.to_string()),
    };
    let mut conn = match Connection::secure(&s, tcp).await {
        Ok(c) => {
            let how = match s.mode {
                crate::config::TlsMode::Starttls => "STARTTLS",
                crate::config::TlsMode::Implicit => "implicit TLS",
            };
            let check = if s.tls.pinned() {
                format!("the certificate matches {}.fingerprints", hop.section)
            } else {
                "the certificate is valid for the host name".to_string()
            };
            report.step(
                true,
                "TLS",
                &format!("{} over {how}; {check}", c.tls_version),
            );
            c
        }
        Err(e) => return report.step(false, "TLS", &e.to_string()),
    };
    // OAuth 2.0: the refresh works, before the relay sees the token.
    match &s.oauth2 {
        Some(Ok(tokens)) => match tokens.get(false).await {
            Ok(_) => {
                let until = tokens
                    .expires()
                    .await
                    .map(crate::when::rfc3339)
                    .unwrap_or_default();
                report.step(
                    true,
                    "OAuth2",
                    &format!("an access token from the token endpoint, valid until {until}"),
                );
            }
            Err(e) => return report.step(false, "OAuth2", &e.to_string()),
        },
        Some(Err(e)) => return report.step(false, "OAuth2", &e.to_string()),
        None => {}
    }
    match conn.login(&s).await {
        Ok(()) => {
            let who = s
                .identity
                .clone()
                .unwrap_or_else(|| "(no AUTH configured)".into());
            report.step(true, "AUTH", &format!("accepted {who}"));
        }
        Err(e) => return report.step(false, "AUTH", &e.to_string()),
    }

    let Some(ctx) = ctx else {
        return report.step(
            false,
            "MAIL/RCPT",
            "not tried: the keys above must load first",
        );
    };
    let to = match opts.to {
        Some(addr) => match ctx.router.resolve(addr) {
            Ok(r) if !r.is_empty() => r[0].clone(),
            Ok(_) | Err(_) => {
                return report.step(
                    false,
                    "MAIL/RCPT",
                    &format!("{addr} is not a configured recipient or alias"),
                );
            }
        },
        None => match ctx.keyring.iter().next() {
            Some(k) => k.recipient.clone(),
            None => return report.step(false, "MAIL/RCPT", "no [[recipients]] configured"),
        },
    };
    let from = hop.sender.clone();
    if let Err(e) = conn.envelope(&from, to.0.as_str()).await {
        return report.step(false, "MAIL/RCPT", &e.to_string());
    }
    report.step(true, "MAIL/RCPT", &format!("{from} to {to} accepted"));
    if conn.rset().await.is_err() {
        return report.step(false, "RSET", "the relay closed the connection after RCPT");
    }
    if opts.no_send {
        conn.quit().await;
        if matches!(report.report.output, Output::Text { .. }) {
            println!("  (--no-send: stopped before DATA)");
        }
        return true;
    }

    let Some(key) = ctx.keyring.get(&to) else {
        return report.step(false, "DATA", &format!("no key loaded for {to}"));
    };
    let alert = format!(
        "From: alert-relay test <{from}>\r\nTo: <{to}>\r\nSubject: alert-relay test from {host}\r\n\r\n\
         This is a test alert from `relayctl test` on {host}, sent at {now}.\r\n\
         If you can read this, alerts reach you encrypted.\r\n",
        host = ctx.hostname,
        now = humantime::format_rfc3339_seconds(SystemTime::now())
    );
    let sealed = match ctx
        .sealer
        .outgoing(alert.as_bytes(), key, SystemTime::now())
    {
        Ok(m) => m,
        Err(e) => {
            return report.step(
                false,
                "DATA",
                &format!("cannot encrypt the test alert: {e}"),
            );
        }
    };
    let ok = match conn.send(&from, to.0.as_str(), &sealed, false).await {
        Ok(reply) => report.step(
            true,
            "DATA",
            &format!("{relay} accepted an encrypted test alert for {to}: {reply}"),
        ),
        Err(e) => report.step(false, "DATA", &e.to_string()),
    };
    conn.quit().await;
    ok
}
