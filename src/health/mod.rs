//! The daemon's health: what it has seen of delivery, kept in the spool so
//! that `relayctl health` (another process) can read it, and so that a
//! failure that began before a restart still began then.
//!
//! The daemon records, as it delivers ([`Health`]): the last successful
//! delivery, the current failure's [`Class`] and since when (the first
//! failed attempt after the last success), the relay's certificate and how
//! it was trusted ([`CertCheck`]), and running totals. Every
//! [`SAVE_EVERY`] it writes them to `health.json` in the spool root, with
//! the time of writing: a file older than [`STALE_AFTER`] means a daemon
//! that is gone or stuck.
//!
//! What can be read from elsewhere is not stored but looked at when asked
//! ([`assess::Snapshot`]): the queue, the recipients' keys, free space.
//! [`assess::assess`] turns both into problems with their fixes, graded by
//! the monitoring-plugin convention.

pub mod assess;
pub mod heartbeat;
pub mod warn;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::spool::{Spool, SpoolError};

/// The file in the spool root.
pub const FILE: &str = "health.json";
/// How often the running daemon writes [`FILE`].
pub const SAVE_EVERY: Duration = Duration::from_secs(10);
/// A record not written for this long belongs to a daemon that is not
/// running, or not responding.
pub const STALE_AFTER: Duration = Duration::from_secs(60);
/// Larger is not a health file.
const MAX_BYTES: u64 = 1 << 20;

/// What kind of failure it is: what a person must look at. Delivery
/// errors name theirs (`crate::deliver::DeliverError::class`); the health
/// checks grade by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Class {
    /// No conversation with the relay: DNS, TCP, timeouts, dropped
    /// connections, answers that are not SMTP.
    #[serde(rename = "unreachable")]
    Unreachable,
    /// STARTTLS missing, the handshake or the certificate (pin or CA).
    #[serde(rename = "tls")]
    Tls,
    /// The relay refused the login, or offers no way to log in.
    #[serde(rename = "auth")]
    Auth,
    /// A temporary refusal (4xx) to MAIL, RCPT or DATA.
    #[serde(rename = "relay-4xx")]
    Relay4xx,
    /// A final refusal (5xx).
    #[serde(rename = "relay-5xx")]
    Relay5xx,
    /// The account's sending quota is used up (a provider's quota reply,
    /// 5xx though it is): it passes with time.
    #[serde(rename = "quota")]
    Quota,
    /// On this host: the TLS setup from the config, the password file, a
    /// message past its lifetime.
    #[serde(rename = "local")]
    Local,
}

impl Class {
    /// The class as logs and JSON name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Unreachable => "unreachable",
            Class::Tls => "tls",
            Class::Auth => "auth",
            Class::Relay4xx => "relay-4xx",
            Class::Relay5xx => "relay-5xx",
            Class::Quota => "quota",
            Class::Local => "local",
        }
    }

    /// Whether waiting cannot fix it: someone must act now (a pin that no
    /// longer matches, a login refused, a final refusal, this host's setup).
    pub fn needs_a_person(self) -> bool {
        matches!(
            self,
            Class::Tls | Class::Auth | Class::Relay5xx | Class::Local
        )
    }

    /// What to do about it, as `relayctl test` would say it.
    pub fn fix(self) -> &'static str {
        match self {
            Class::Unreachable => {
                "check relay.host, relay.port, DNS and the firewall's outbound rule; \
                 relayctl test shows the failing step"
            }
            Class::Tls => {
                "relayctl fingerprint shows what the relay presents now; if it changed \
                 legitimately, put its pins in relay.fingerprints (its sha256-spki pin survives \
                 renewals that keep the key), then systemctl reload alert-relay"
            }
            Class::Auth => {
                "check relay.username, relay.domain and the password (with relay.auth = \
                 \"oauth2\": relayctl oauth2 status, then relayctl oauth2 login); a provider may have \
                 turned password login off for the account; relayctl test shows the reply"
            }
            Class::Relay4xx => {
                "the relay defers the mail: relayctl queue shows its reply; relayctl test, \
                 and the relay's own status page"
            }
            Class::Relay5xx => {
                "the relay refuses the mail for good: relayctl queue shows its reply; fix the \
                 sender, recipient or account it names, then relayctl test"
            }
            Class::Quota => {
                "the relay's sending quota for the account is used up: the alerts wait and go \
                 out when it resets (relayctl flush tries at once); set relay.max_per_day and \
                 relay.max_per_minute under the provider's limits, and drop noise with [[routes]]"
            }
            Class::Local => "relayctl check names the problem on this host",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the relay's certificate was accepted, which decides what its
/// renewal does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CertCheck {
    /// A SHA-1 or SHA-256 digest of the certificate matched: the next
    /// renewal breaks delivery.
    #[serde(rename = "certificate-pin")]
    CertificatePin,
    /// The SPKI pin matched: a renewal that keeps the key keeps working.
    #[serde(rename = "spki-pin")]
    SpkiPin,
    /// Chain and name checked against a CA: renewals keep working.
    #[serde(rename = "ca")]
    Ca,
}

impl CertCheck {
    pub fn as_str(self) -> &'static str {
        match self {
            CertCheck::CertificatePin => "certificate-pin",
            CertCheck::SpkiPin => "spki-pin",
            CertCheck::Ca => "ca",
        }
    }
}

/// The relay's certificate as last seen on a verified connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayCert {
    /// `host:port`.
    pub relay: String,
    pub subject: String,
    /// Seconds since the Unix epoch.
    pub not_after: Option<u64>,
    pub check: CertCheck,
    /// Its SPKI pin, `sha256-spki:...`: what to pin instead of a digest.
    pub spki_pin: String,
    /// All its pins in config syntax: `fingerprints = [...]`.
    pub config_line: String,
}

/// Which relay an attempt went through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Primary,
    Fallback,
}

/// The fallback relay carrying alerts while the primary fails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FallbackUse {
    /// `host:port`.
    pub relay: String,
    /// When it took over (seconds).
    pub since: u64,
    /// Its last delivery (seconds).
    pub last_sent: Option<u64>,
    /// Its own failure, when it fails too.
    pub failure: Option<Failure>,
    /// Whether the admins were told that it took over.
    #[serde(default)]
    pub told: bool,
}

impl FallbackUse {
    /// The fallback `relay`, standing in from `now`.
    fn new(relay: &str, now: SystemTime) -> FallbackUse {
        FallbackUse {
            relay: relay.to_string(),
            since: secs(now),
            last_sent: None,
            failure: None,
            told: false,
        }
    }
}

/// The failure delivery is in, since its first failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// The latest attempt's class.
    pub class: Class,
    /// The first failed attempt after the last success (seconds).
    pub since: u64,
    /// The latest failed attempt (seconds).
    pub last: u64,
    /// The latest attempt's reason, with its fix; never alert content.
    pub reason: String,
    pub relay: String,
}

/// Running totals since the spool's health file was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Entries queued for delivery (one per recipient).
    pub accepted: u64,
    /// Entries held because their recipient's key cannot encrypt.
    pub held: u64,
    pub sent: u64,
    /// Attempts deferred (an entry can count several times).
    pub deferred: u64,
    /// Entries moved to `failed/`.
    pub failed: u64,
}

/// What `health.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Record {
    /// The daemon that wrote it.
    pub pid: u32,
    /// When it started, and when it last wrote this (seconds).
    pub started: u64,
    pub updated: u64,
    /// Set when it stopped cleanly.
    pub stopped: Option<u64>,
    pub last_success: Option<u64>,
    pub failure: Option<Failure>,
    pub relay_cert: Option<RelayCert>,
    /// The fallback relay's, as last seen when it was used.
    pub fallback_cert: Option<RelayCert>,
    pub totals: Totals,
    /// When a warning about each condition last went out (for at most one
    /// a day).
    pub warned: BTreeMap<String, u64>,
    /// The last heartbeat: when, and the totals then (the next one
    /// counts from them).
    pub heartbeat: Option<Beat>,
    /// The fallback relay, while it stands in for the primary (whose
    /// failure is `failure`).
    pub fallback: Option<FallbackUse>,
    /// While `relay.max_per_minute` or `relay.max_per_day` holds due
    /// alerts back: why, and until when.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paced: Option<Paced>,
}

/// Due alerts held back by the relay's limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paced {
    pub reason: String,
    /// When the next may leave (seconds).
    pub until: u64,
}

/// A heartbeat that went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    pub at: u64,
    pub totals: Totals,
}

impl Record {
    /// The record in the spool, `None` when there is none yet. A file that
    /// does not parse is an error, not a fresh start: its failure history
    /// would be lost silently.
    pub fn load(spool: &Spool) -> Result<Option<Record>, String> {
        let bytes = spool
            .read_root_file(FILE, MAX_BYTES)
            .map_err(|e| e.to_string())?;
        let Some(bytes) = bytes else { return Ok(None) };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| format!("{} is damaged ({e})", spool.root().join(FILE).display()))
    }

    fn save(&self, spool: &Spool, durable: bool) -> Result<(), SpoolError> {
        // Serializing plain data into a Vec cannot fail.
        let bytes = serde_json::to_vec_pretty(self).unwrap_or_default();
        spool.replace_root_file(FILE, &bytes, durable)
    }

    /// The record but for the time it was written.
    fn unstamped(&self) -> Record {
        Record {
            updated: 0,
            ..self.clone()
        }
    }
}

/// Seconds since the Unix epoch.
pub fn secs(t: SystemTime) -> u64 {
    crate::spool::unix_secs(t)
}

/// The time `secs` seconds after the Unix epoch (held to the range a
/// report can print: a damaged record must not panic the daemon).
pub fn time(secs: u64) -> SystemTime {
    crate::when::from_unix(secs)
}

/// A failure after `before` (the same streak, if any): it keeps its
/// start, and takes the latest class and reason.
fn next_failure(
    before: Option<&Failure>,
    class: Class,
    reason: &str,
    relay: &str,
    now: SystemTime,
) -> Failure {
    Failure {
        class,
        since: before.map_or(secs(now), |f| f.since),
        last: secs(now),
        reason: reason.to_string(),
        relay: relay.to_string(),
    }
}

/// The running daemon's health, updated by the stages as they work.
#[derive(Debug)]
pub struct Health {
    record: Mutex<Record>,
    /// What was last fsynced: a save that changes only the time stamp
    /// is not synced, so an idle daemon does not write to the disk's
    /// journal every few seconds.
    synced: Mutex<Option<Record>>,
    /// Woken when the state changes (a failure begins or changes class,
    /// delivery recovers, another certificate): written at once then,
    /// not at the next [`SAVE_EVERY`].
    changed: tokio::sync::Notify,
}

impl Health {
    /// The daemon's health, continuing the spool's record (its failure,
    /// its totals, its warning stamps). A damaged record is logged and
    /// started afresh: the daemon must run.
    pub fn start(spool: &Spool, now: SystemTime) -> Health {
        let mut record = match Record::load(spool) {
            Ok(r) => r.unwrap_or_default(),
            Err(e) => {
                tracing::error!("{e}: starting a new health record");
                Record::default()
            }
        };
        record.pid = std::process::id();
        record.started = secs(now);
        record.updated = secs(now);
        record.stopped = None;
        Health {
            record: Mutex::new(record),
            synced: Mutex::new(None),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Record) -> T) -> T {
        f(&mut self.record.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Entries were queued for delivery, and `held` more held.
    pub fn accepted(&self, queued: u64, held: u64) {
        self.with(|r| {
            r.totals.accepted += queued;
            r.totals.held += held;
        })
    }

    /// An entry was sent through `via`: delivery works. Through the
    /// primary, its failure is over and the fallback stands down.
    pub fn sent(&self, via: Via, relay: &str, now: SystemTime) {
        // The first success, the end of a failure, a fallback's first
        // delivery: news.
        let news = self.with(|r| {
            r.totals.sent += 1;
            let first = r.last_success.replace(secs(now)).is_none();
            match via {
                Via::Primary => r.fallback.take().is_some() | r.failure.take().is_some() | first,
                Via::Fallback => {
                    let fallback = r
                        .fallback
                        .get_or_insert_with(|| FallbackUse::new(relay, now));
                    let news = fallback.last_sent.is_none() || fallback.failure.is_some();
                    fallback.last_sent = Some(secs(now));
                    fallback.failure = None;
                    news | first
                }
            }
        });
        if news {
            self.changed.notify_one();
        }
    }

    /// The daemon's own message went through the primary out of the
    /// day's reserve, while `relay.max_per_day` holds the alerts back:
    /// the relay works, and the hold (class quota) goes on. Any other
    /// failure on record is over, as with [`Health::sent`].
    pub fn sent_from_reserve(&self, relay: &str, now: SystemTime) {
        let held = self.with(|r| {
            r.fallback.is_none() && r.failure.as_ref().is_some_and(|f| f.class == Class::Quota)
        });
        if !held {
            return self.sent(Via::Primary, relay, now);
        }
        let first = self.with(|r| {
            r.totals.sent += 1;
            r.last_success.replace(secs(now)).is_none()
        });
        if first {
            self.changed.notify_one();
        }
    }

    /// Waits until the state changes.
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    /// An attempt through `via` failed with `class`; `failed` when the
    /// entry moved to `failed/`.
    pub fn unsent(
        &self,
        via: Via,
        class: Class,
        reason: &str,
        relay: &str,
        failed: bool,
        now: SystemTime,
    ) {
        self.with(|r| {
            if failed {
                r.totals.failed += 1;
            } else {
                r.totals.deferred += 1;
            }
        });
        match via {
            Via::Primary => self.primary_failed(class, reason, relay, now),
            Via::Fallback => self.with(|r| {
                let f = r
                    .fallback
                    .get_or_insert_with(|| FallbackUse::new(relay, now));
                f.failure = Some(next_failure(f.failure.as_ref(), class, reason, relay, now));
            }),
        }
    }

    /// The primary failed an attempt (whether or not the fallback then
    /// took the entry).
    pub fn primary_failed(&self, class: Class, reason: &str, relay: &str, now: SystemTime) {
        let changed = self.with(|r| {
            let before = r.failure.as_ref().map(|f| f.class);
            r.failure = Some(next_failure(r.failure.as_ref(), class, reason, relay, now));
            // An auth failure's time too: `relayctl health` compares it
            // with when a new sign-in was stored.
            before != Some(class) || class == Class::Auth
        });
        if changed {
            self.changed.notify_one();
        }
    }

    /// The token endpoint took a sign-in stored at `signed_in` (seconds):
    /// an auth failure from before it is over (a relay that refuses the
    /// new token is a new failure at the next delivery).
    pub fn signed_in_again(&self, signed_in: u64) {
        let cleared = self.with(|r| {
            r.failure
                .as_ref()
                .is_some_and(|f| f.class == Class::Auth && f.last < signed_in)
                && r.failure.take().is_some()
        });
        if cleared {
            self.changed.notify_one();
        }
    }

    /// The primary's failure, if it is failing: its class and since when.
    pub fn primary_failing(&self) -> Option<(Class, SystemTime)> {
        self.with(|r| r.failure.as_ref().map(|f| (f.class, time(f.since))))
    }

    /// Whether the admins were told that the fallback stands in for
    /// the primary.
    pub fn fallback_told(&self) -> bool {
        self.with(|r| r.fallback.as_ref().is_some_and(|f| f.told))
    }

    /// Whether the fallback's last attempt failed.
    pub fn fallback_failing(&self) -> bool {
        self.with(|r| r.fallback.as_ref().is_some_and(|f| f.failure.is_some()))
    }

    /// The admins were told that the fallback `relay` takes over.
    pub fn fallback_announced(&self, relay: &str, now: SystemTime) {
        self.with(|r| {
            let f = r
                .fallback
                .get_or_insert_with(|| FallbackUse::new(relay, now));
            f.told = true;
        });
        self.changed.notify_one();
    }

    /// No fallback is configured (any more): nothing stands in.
    pub fn no_fallback(&self) {
        self.with(|r| r.fallback = None)
    }

    /// An entry moved to `failed/` for its age, not for an attempt.
    pub fn expired(&self) {
        self.with(|r| r.totals.failed += 1)
    }

    /// Nothing is left to deliver: a failure that may pass by itself
    /// (unreachable, 4xx) is no longer failing anything (the entries were
    /// delivered, deleted or failed). One that needs a person (a pin, a
    /// login, a relay refusing everything), or one the fallback stands in
    /// for, stays until the primary's next success says it is over.
    pub fn queue_empty(&self) {
        let cleared = self.with(|r| {
            let passing = r
                .failure
                .as_ref()
                .is_some_and(|f| !f.class.needs_a_person());
            passing && r.fallback.is_none() && r.failure.take().is_some()
        });
        if cleared {
            self.changed.notify_one();
        }
    }

    /// Due alerts are held back by the relay's limits (or no longer are).
    pub fn paced(&self, paced: Option<Paced>) {
        // Saved soon when the reason changes; a new time alone waits for
        // the next regular save.
        let changed = self.with(|r| {
            let changed = r.paced.as_ref().map(|p| &p.reason) != paced.as_ref().map(|p| &p.reason);
            r.paced = paced;
            changed
        });
        if changed {
            self.changed.notify_one();
        }
    }

    /// A verified connection to the relay `via` showed this certificate.
    pub fn relay_cert(&self, via: Via, cert: RelayCert) {
        let new = self.with(|r| {
            let slot = match via {
                Via::Primary => &mut r.relay_cert,
                Via::Fallback => &mut r.fallback_cert,
            };
            let new = slot.as_ref() != Some(&cert);
            *slot = Some(cert);
            new
        });
        if new {
            self.changed.notify_one();
        }
    }

    /// Warnings under these stamps were queued. Stamps too old to
    /// suppress anything are dropped.
    pub fn warned(&self, stamps: &[String], now: SystemTime) {
        let now = secs(now);
        self.with(|r| {
            r.warned
                .retain(|_, &mut t| now.saturating_sub(t) < warn::EVERY.as_secs());
            for s in stamps {
                r.warned.insert(s.clone(), now);
            }
        });
        if !stamps.is_empty() {
            self.changed.notify_one();
        }
    }

    /// A heartbeat was queued, counting up to `totals`.
    pub fn beat(&self, totals: Totals, now: SystemTime) {
        self.with(|r| {
            r.heartbeat = Some(Beat {
                at: secs(now),
                totals,
            })
        });
        self.changed.notify_one();
    }

    /// The record as it stands.
    pub fn record(&self) -> Record {
        self.with(|r| r.clone())
    }

    /// Writes the record, stamped `now` (and stopped, at a clean stop).
    pub fn save(&self, spool: &Spool, now: SystemTime, stopping: bool) -> Result<(), SpoolError> {
        let record = self.with(|r| {
            r.updated = secs(now);
            if stopping {
                r.stopped = Some(secs(now));
            }
            r.clone()
        });
        let mut synced = self.synced.lock().unwrap_or_else(PoisonError::into_inner);
        let unstamped = record.unstamped();
        let durable = stopping || synced.as_ref() != Some(&unstamped);
        record.save(spool, durable)?;
        if durable {
            *synced = Some(unstamped);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_keeps_its_start_across_attempts_and_a_restart_until_a_success() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        let t0 = time(1_800_000_000);
        let health = Health::start(&spool, t0);
        health.accepted(3, 1);
        health.unsent(
            Via::Primary,
            Class::Unreachable,
            "timed out",
            "relay:587",
            false,
            t0,
        );
        let later = t0 + Duration::from_secs(600);
        health.unsent(
            Via::Primary,
            Class::Tls,
            "certificate not verified",
            "relay:587",
            false,
            later,
        );
        health.save(&spool, later, true).unwrap();

        // A new daemon: the failure began before it.
        let restarted = Health::start(&spool, later + Duration::from_secs(5));
        let r = restarted.record();
        let failure = r.failure.clone().unwrap();
        assert_eq!(failure.class, Class::Tls);
        assert_eq!(failure.since, secs(t0));
        assert_eq!(failure.last, secs(later));
        assert_eq!(r.stopped, None);
        assert_eq!(r.pid, std::process::id());
        assert_eq!(
            r.totals,
            Totals {
                accepted: 3,
                held: 1,
                deferred: 2,
                ..Totals::default()
            }
        );

        restarted.sent(Via::Primary, "relay:587", later + Duration::from_secs(60));
        let r = restarted.record();
        assert_eq!(r.failure, None);
        assert_eq!(r.last_success, Some(secs(later) + 60));
        assert_eq!(r.totals.sent, 1);
    }

    #[test]
    fn own_mail_from_the_reserve_keeps_the_days_hold_and_ends_any_other_failure() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        let t0 = time(1_800_000_000);
        let health = Health::start(&spool, t0);
        health.primary_failed(Class::Quota, "max_per_day reached", "relay:587", t0);
        health.sent_from_reserve("relay:587", t0 + Duration::from_secs(1));
        let r = health.record();
        assert_eq!(r.failure.map(|f| f.class), Some(Class::Quota));
        assert_eq!((r.totals.sent, r.last_success), (1, Some(secs(t0) + 1)));
        // A TLS failure fixed since: the message through the primary
        // ends it, as any delivery would.
        health.primary_failed(Class::Tls, "pin", "relay:587", t0);
        health.sent_from_reserve("relay:587", t0 + Duration::from_secs(2));
        assert_eq!(health.record().failure, None);
    }

    #[test]
    fn a_damaged_record_is_an_error_for_readers_and_a_fresh_start_for_the_daemon() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        assert_eq!(Record::load(&spool).unwrap(), None);
        std::fs::write(dir.path().join(FILE), b"{not json").unwrap();
        let e = Record::load(&spool).unwrap_err();
        assert!(e.contains("health.json is damaged"), "{e}");
        let health = Health::start(&spool, time(1_800_000_000));
        assert_eq!(health.record().totals, Totals::default());
    }

    #[test]
    fn classes_and_checks_are_named_as_the_logs_name_them() {
        for class in [
            Class::Unreachable,
            Class::Tls,
            Class::Auth,
            Class::Relay4xx,
            Class::Relay5xx,
            Class::Quota,
            Class::Local,
        ] {
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{class}\""));
        }
        let json = serde_json::to_string(&CertCheck::SpkiPin).unwrap();
        assert_eq!(json, "\"spki-pin\"");
    }
}
