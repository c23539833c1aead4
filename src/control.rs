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
        "{:<24}  {:<8}  {:>8}  {:<20}  {:>8}  {:<20}  {:<28}  {}\n",
        "ID", "STATE", "SIZE", "ARRIVED", "ATTEMPTS", "NEXT TRY", "RECIPIENT", "LAST ERROR"
    );
    let mut total = 0;
    for r in rows {
        total += r.size;
        let next = r
            .next_attempt
            .map(|t| humantime::format_rfc3339_seconds(t).to_string())
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<24}  {:<8}  {:>8}  {:<20}  {:>8}  {:<20}  {:<28}  {}\n",
            r.id,
            r.state,
            r.size,
            humantime::format_rfc3339_seconds(r.created),
            r.attempts,
            next,
            r.recipient,
            r.last_error
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

/// `mailq`, `sendmail -bp`: the queue, for root and the spool's owner.
pub fn mailq(config: &Config) -> Result<(), crate::sysexits::Failure> {
    match crate::spool::Spool::at(&config.queue.dir).list() {
        Ok(rows) => {
            print!("{}", queue_table(&rows));
            Ok(())
        }
        Err(crate::spool::SpoolError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            Err(crate::sysexits::Failure::new(
                crate::sysexits::NOPERM,
                format!(
                    "the queue in {} is readable by root and the daemon's user only: \
                     run `sudo mailq` (or `sudo relayctl queue`)",
                    config.queue.dir.display()
                ),
            ))
        }
        Err(e) => Err(crate::sysexits::Failure::new(e.exit_code(), e.to_string())),
    }
}

/// One queue row as `relayctl queue --json` prints it.
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    id: &'a str,
    state: &'a str,
    recipient: &'a str,
    size: u64,
    created: String,
    attempts: u32,
    next_attempt: Option<String>,
    last_error: Option<&'a str>,
}

/// The queue as one JSON array (DESIGN.md section 6).
pub fn queue_json(rows: &[Listing]) -> String {
    let rfc3339 = |t: std::time::SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let rows: Vec<JsonRow<'_>> = rows
        .iter()
        .map(|r| JsonRow {
            id: &r.id,
            state: r.state,
            recipient: &r.recipient,
            size: r.size,
            created: rfc3339(r.created),
            attempts: r.attempts,
            next_attempt: r.next_attempt.map(rfc3339),
            last_error: (!r.last_error.is_empty()).then_some(r.last_error.as_str()),
        })
        .collect();
    serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into()) + "\n"
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

/// Why `relayctl release` did not release.
#[derive(Debug)]
pub enum ReleaseError {
    Config(ConfigError),
    Spool(crate::spool::SpoolError),
    NotConfigured(String),
    StillCannotEncrypt(crate::encrypt::CannotEncrypt),
    /// The held original is encrypted to the hold key, which this user
    /// cannot read, or which does not open it.
    HoldKey(String),
}

impl std::fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReleaseError::Config(e) => write!(f, "{e}"),
            ReleaseError::Spool(e) => write!(f, "{e}"),
            ReleaseError::NotConfigured(to) => write!(
                f,
                "{to} is no longer a configured recipient; add it back to [[recipients]] \
                 or delete the message"
            ),
            ReleaseError::StillCannotEncrypt(why) => write!(
                f,
                "still cannot encrypt: {why}; fix the recipient's key file (relayctl key FILE), \
                 then release again"
            ),
            ReleaseError::HoldKey(e) => write!(f, "{e}"),
        }
    }
}

/// `relayctl release ID`: encrypts a held original with the key as it is
/// configured now and queues it under the same id.
pub fn release(config: Config, id: &crate::spool::QueueId) -> Result<String, ReleaseError> {
    use crate::route::{Address, Recipient};
    use crate::spool::{Entry, Kind, Spool};
    let ctx = crate::context::Context::new(config).map_err(ReleaseError::Config)?;
    let spool = Spool::at(&ctx.config.queue.dir);
    let held = spool.read_held(id).map_err(ReleaseError::Spool)?;
    let recipient = Address::parse(&held.recipient)
        .map(Recipient)
        .map_err(|_| ReleaseError::NotConfigured(held.recipient.clone()))?;
    let key = ctx
        .keyring
        .get(&recipient)
        .ok_or_else(|| ReleaseError::NotConfigured(held.recipient.clone()))?;
    let original = match held.kind {
        Kind::HeldSealed => crate::encrypt::hold::open(spool.root(), &held.payload)
            .map_err(ReleaseError::HoldKey)?,
        _ => held.payload,
    };
    let message = ctx
        .sealer
        .outgoing(&original, key, std::time::SystemTime::now())
        .map_err(ReleaseError::StillCannotEncrypt)?;
    drop(original);
    let outgoing = Entry::with_id(
        id.clone(),
        Kind::Outgoing,
        &held.sender,
        &held.recipient,
        message,
    );
    spool.release(&outgoing).map_err(ReleaseError::Spool)?;
    spool.wake();
    Ok(format!(
        "{id} encrypted to {} and queued\n",
        key.fingerprint
    ))
}
