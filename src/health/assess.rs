//! Grading health: what the daemon recorded and what can be looked at
//! now, turned into problems with their fixes.
//!
//! The grades follow the monitoring-plugin convention, so that Nagios,
//! Icinga or Zabbix can run `relayctl health` as it is: 0 OK, 1 WARNING,
//! 2 CRITICAL, 3 UNKNOWN (the state could not be read).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{CertCheck, Record, STALE_AFTER, time};
use crate::config::HealthConfig;
use crate::context::Context;
use crate::spool::{Counts, Spool};

/// A grade, ordered from best to worst as monitoring systems combine
/// them: a check that could not read part of the state is worse than a
/// warning, better than a known outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Grade {
    Ok,
    Warning,
    Unknown,
    Critical,
}

impl Grade {
    /// The plugin exit code.
    pub fn exit_code(self) -> u8 {
        match self {
            Grade::Ok => 0,
            Grade::Warning => 1,
            Grade::Critical => 2,
            Grade::Unknown => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Grade::Ok => "OK",
            Grade::Warning => "WARNING",
            Grade::Unknown => "UNKNOWN",
            Grade::Critical => "CRITICAL",
        }
    }
}

/// One thing wrong, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub grade: Grade,
    /// A stable name for the condition (`relay-certificate`,
    /// `fallback-certificate`,
    /// `key:FINGERPRINT`, ...): what a warning is sent once a day for.
    pub condition: String,
    pub what: String,
    pub fix: String,
}

/// Whether the daemon is running, from its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daemon {
    /// Its record is fresh.
    Running,
    /// It stopped cleanly at this time.
    Stopped(SystemTime),
    /// Its process is gone without a clean stop; last seen then.
    Gone(SystemTime),
    /// Its process exists but has not written its record since then.
    NotResponding(SystemTime),
    /// No record: it never ran on this spool.
    NeverStarted,
}

impl Daemon {
    /// Judges a record read at `now`.
    pub fn from_record(record: Option<&Record>, now: SystemTime) -> Daemon {
        let Some(r) = record else {
            return Daemon::NeverStarted;
        };
        let updated = time(r.updated);
        if let Some(at) = r.stopped {
            return Daemon::Stopped(time(at));
        }
        if !crate::os::process_exists(r.pid) {
            return Daemon::Gone(updated);
        }
        if now.duration_since(updated).unwrap_or_default() > STALE_AFTER {
            return Daemon::NotResponding(updated);
        }
        Daemon::Running
    }
}

/// A recipient key's expiry, as the health checks see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyExpiry {
    pub recipient: String,
    pub fingerprint: String,
    pub path: PathBuf,
    /// `Ok(None)`: never expires; `Err`: cannot encrypt now, and why.
    pub until: Result<Option<SystemTime>, String>,
}

/// Everything health is judged on, gathered at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub now: SystemTime,
    /// `Err`: the record could not be read (and why).
    pub record: Result<Option<Record>, String>,
    pub daemon: Daemon,
    pub spool: PathBuf,
    /// With the oldest queued entry's arrival.
    pub counts: Result<Counts, String>,
    pub free_bytes: Result<u64, String>,
    pub keys: Vec<KeyExpiry>,
    /// With `relay.auth = "oauth2"`: when `relayctl oauth2 login` last
    /// stored a sign-in, if this user can read it.
    pub signed_in: Option<SystemTime>,
}

impl Snapshot {
    /// Looks at the spool and the keys of `ctx`, with `record` being the
    /// daemon's (read from the spool by `relayctl`, in memory in the
    /// daemon).
    pub fn take(
        ctx: &Context,
        spool: &Spool,
        record: Result<Option<Record>, String>,
        now: SystemTime,
    ) -> Snapshot {
        let daemon = match &record {
            Ok(r) => Daemon::from_record(r.as_ref(), now),
            Err(_) => Daemon::NeverStarted,
        };
        let keys = ctx
            .keyring
            .iter()
            .map(|k| KeyExpiry {
                recipient: k.recipient.to_string(),
                fingerprint: k.fingerprint.to_string(),
                path: k.path.clone(),
                until: crate::encrypt::keys::encrypts_until(&k.cert, now)
                    .map_err(|e| e.to_string()),
            })
            .collect();
        Snapshot {
            now,
            record,
            daemon,
            spool: spool.root().to_path_buf(),
            // A spool not made yet is empty (the daemon makes it), and
            // its space is that of where it will be.
            counts: match spool.root().exists() {
                true => spool.counts().map_err(|e| e.to_string()),
                false => Ok(Counts::default()),
            },
            free_bytes: spool
                .root()
                .ancestors()
                .find(|p| p.exists())
                .map_or(Err("no such directory".into()), |p| {
                    crate::os::free_bytes(p).map_err(|e| e.to_string())
                }),
            keys,
            signed_in: match ctx.config.relay.auth {
                crate::config::AuthMethod::Oauth2 => {
                    crate::oauth2::store::Store::in_spool(spool.root())
                        .read()
                        .ok()
                        .map(|s| time(s.signed_in))
                }
                crate::config::AuthMethod::Password => None,
            },
        }
    }

    /// The record, when there is one.
    pub fn record(&self) -> Option<&Record> {
        self.record.as_ref().ok().and_then(|r| r.as_ref())
    }

    fn age(&self, t: SystemTime) -> Duration {
        self.now.duration_since(t).unwrap_or_default()
    }
}

/// A point in time as the reports print it (UTC, to the second).
pub fn when(t: SystemTime) -> String {
    crate::when::rfc3339(t)
}

/// A span as the reports print it, to the minute (seconds below one).
pub fn span(d: Duration) -> String {
    let rounded = if d >= Duration::from_secs(60) {
        Duration::from_secs(d.as_secs() / 60 * 60)
    } else {
        Duration::from_secs(d.as_secs())
    };
    humantime::format_duration(rounded).to_string()
}

/// Every problem in `s` under `limits`, worst first. `max_message` is the
/// largest message the listener takes: less free space than that is
/// CRITICAL, since the next alert may not fit.
pub fn assess(s: &Snapshot, limits: &HealthConfig, max_message: u64) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut add = |grade, condition: &str, what: String, fix: &str| {
        out.push(Problem {
            grade,
            condition: condition.to_string(),
            what,
            fix: fix.to_string(),
        })
    };
    let warn_after = limits.warn_after.0;
    let critical_after = limits.critical_after.0;

    match s.daemon {
        Daemon::Running => {}
        Daemon::Stopped(at) => add(
            Grade::Critical,
            "daemon",
            format!("the daemon is not running: it stopped at {}", when(at)),
            "systemctl start alert-relay",
        ),
        Daemon::Gone(at) => add(
            Grade::Critical,
            "daemon",
            format!(
                "the daemon is not running: it ended without stopping cleanly, last seen at {}",
                when(at)
            ),
            "journalctl -u alert-relay says why; then systemctl start alert-relay",
        ),
        Daemon::NotResponding(at) => add(
            Grade::Critical,
            "daemon",
            format!(
                "the daemon is not responding: its health was last written at {}",
                when(at)
            ),
            "journalctl -u alert-relay; systemctl restart alert-relay",
        ),
        Daemon::NeverStarted if s.record.is_ok() => add(
            Grade::Critical,
            "daemon",
            format!(
                "the daemon has never run on the spool {}",
                s.spool.display()
            ),
            "relayctl test, then systemctl enable --now alert-relay",
        ),
        Daemon::NeverStarted => {}
    }
    if let Err(e) = &s.record {
        add(
            Grade::Unknown,
            "record",
            format!("the daemon's health record cannot be read: {e}"),
            "run relayctl health as root or as the daemon's user (alert-relay)",
        );
    }

    if let Some(f) = s.record().and_then(|r| r.failure.as_ref()) {
        let since = time(f.since);
        let lasting = s.age(since);
        // The fallback carrying alerts makes a broken primary a WARNING:
        // to fix, but nothing waits.
        let fallback = s.record().and_then(|r| r.fallback.as_ref());
        let carrying = fallback.filter(|u| u.failure.is_none() && u.last_sent.is_some());
        // A sign-in stored after the last attempt that the relay or the
        // token endpoint refused is the fix, not yet tried.
        let signed_in_since = s
            .signed_in
            .filter(|t| f.class == super::Class::Auth && *t > time(f.last));
        let grade = if carrying.is_some() || signed_in_since.is_some() {
            Some(Grade::Warning)
        } else if f.class.needs_a_person() || lasting > critical_after {
            Some(Grade::Critical)
        } else if lasting > warn_after {
            Some(Grade::Warning)
        } else {
            None
        };
        let mut what = format!(
            "delivery through {} has failed since {} ({}, class {}): {}",
            f.relay,
            when(since),
            span(lasting),
            f.class,
            f.reason
        );
        match (
            carrying,
            fallback.and_then(|u| u.failure.as_ref().map(|e| (u, e))),
        ) {
            (Some(u), _) => {
                let last = u.last_sent.map(time).map_or(String::new(), when);
                what.push_str(&format!(
                    "; alerts go through the fallback relay {} (last at {last})",
                    u.relay
                ));
            }
            (None, Some((u, e))) => what.push_str(&format!(
                "; the fallback relay {} fails too (class {}): {}",
                u.relay, e.class, e.reason
            )),
            (None, None) => {}
        }
        let fix = match signed_in_since {
            Some(t) => {
                what.push_str(&format!(
                    "; relayctl oauth2 login stored a new sign-in at {}, after the last attempt",
                    when(t)
                ));
                "the daemon tries the new sign-in at once; relayctl test checks the whole path \
                 now"
            }
            None => f.class.fix(),
        };
        // A quota is the one failure mail can still tell of: the day's
        // reserve is kept for the daemon's own mail.
        let condition = match f.class {
            super::Class::Quota => "quota",
            _ => "delivery",
        };
        if let Some(grade) = grade {
            add(grade, condition, what, fix);
        }
    }

    match &s.counts {
        Err(e) => add(
            Grade::Unknown,
            "queue",
            format!("the queue cannot be read: {e}"),
            "run relayctl health as root or as the daemon's user (alert-relay)",
        ),
        Ok(c) => {
            if let Some(oldest) = c.oldest_queued {
                let age = s.age(oldest);
                let grade = if age > critical_after {
                    Some(Grade::Critical)
                } else if age > warn_after {
                    Some(Grade::Warning)
                } else {
                    None
                };
                if let Some(grade) = grade {
                    add(
                        grade,
                        "queue-age",
                        format!("{} alert(s) queued, the oldest for {}", c.queued, span(age)),
                        "relayctl queue shows why each waits; relayctl test shows the failing step",
                    );
                }
            }
            if c.held > 0 {
                add(
                    Grade::Warning,
                    "held",
                    format!(
                        "{} alert(s) held: their recipient's key could not encrypt",
                        c.held
                    ),
                    "relayctl queue names them; fix the key, then relayctl release ID",
                );
            }
            if c.failed > 0 {
                add(
                    Grade::Warning,
                    "failed",
                    format!(
                        "{} alert(s) in failed/: refused by the relay or undelivered past \
                         queue.max_lifetime",
                        c.failed
                    ),
                    "relayctl queue shows each reason; relayctl delete ID once dealt with",
                );
            }
            if c.corrupt > 0 {
                add(
                    Grade::Warning,
                    "corrupt",
                    format!(
                        "{} file(s) in corrupt/ that could not be taken as alerts",
                        c.corrupt
                    ),
                    "relayctl queue shows why; remove them from corrupt/ once read",
                );
            }
        }
    }

    // A certificate pinned by its digest breaks at its renewal: the
    // primary's, and the fallback's (used only on the day it is needed).
    let certs = s
        .record()
        .map(|r| {
            [
                (r.relay_cert.as_ref(), "relay", "relay-certificate"),
                (r.fallback_cert.as_ref(), "fallback", "fallback-certificate"),
            ]
        })
        .unwrap_or_default();
    for (cert, section, condition) in certs {
        let Some(cert) = cert else { continue };
        let Some(not_after) = cert.not_after.map(time) else {
            continue;
        };
        let left = not_after.duration_since(s.now).unwrap_or_default();
        if cert.check == CertCheck::CertificatePin && left < limits.expiry_warning.0 {
            let whose = match section {
                "relay" => "the relay's",
                _ => "the fallback relay's",
            };
            add(
                Grade::Warning,
                condition,
                format!(
                    "{whose} certificate ({}, {}) expires at {} and is pinned by its \
                     digest: its renewal will stop delivery",
                    cert.relay,
                    cert.subject,
                    when(not_after)
                ),
                &format!(
                    "pin its key instead, which survives a renewal that keeps the key: add \"{}\" \
                     to {section}.fingerprints ({}), then systemctl reload alert-relay",
                    cert.spki_pin, cert.config_line
                ),
            );
        }
    }

    for k in &s.keys {
        let condition = format!("key:{}", k.fingerprint);
        match &k.until {
            Err(why) => add(
                Grade::Critical,
                &condition,
                format!(
                    "the key for {} ({}) cannot encrypt: {why}; their alerts are held",
                    k.recipient, k.fingerprint
                ),
                &format!(
                    "get a usable key from its owner, replace {} and run systemctl reload \
                     alert-relay (relayctl key FILE checks it)",
                    k.path.display()
                ),
            ),
            Ok(Some(until))
                if until.duration_since(s.now).unwrap_or_default()
                    < limits.key_expiry_warning.0 =>
            {
                add(
                    Grade::Warning,
                    &condition,
                    format!(
                        "the key for {} ({}) expires at {}",
                        k.recipient,
                        k.fingerprint,
                        when(*until)
                    ),
                    &format!(
                        "ask its owner to extend it, replace {} and run systemctl reload \
                         alert-relay (relayctl key FILE shows the new expiry)",
                        k.path.display()
                    ),
                )
            }
            Ok(_) => {}
        }
    }

    match s.free_bytes {
        Ok(free) if free < max_message => add(
            Grade::Critical,
            "disk",
            format!(
                "{} bytes free under {}: the next alert may not fit",
                free,
                s.spool.display()
            ),
            "free space on that file system (relayctl queue, and what else fills it)",
        ),
        Ok(free) if free < limits.min_free.0 => add(
            Grade::Warning,
            "disk",
            format!(
                "{} MiB free under {}, less than health.min_free",
                free >> 20,
                s.spool.display()
            ),
            "free space on that file system before alerts are refused",
        ),
        Ok(_) => {}
        Err(ref e) => add(
            Grade::Unknown,
            "disk",
            format!("free space under {} unknown: {e}", s.spool.display()),
            "run relayctl health as root or as the daemon's user (alert-relay)",
        ),
    }
    out.sort_by_key(|p| std::cmp::Reverse(p.grade));
    out
}

/// The overall grade: the worst problem's, OK when there is none.
pub fn grade(problems: &[Problem]) -> Grade {
    problems.iter().map(|p| p.grade).max().unwrap_or(Grade::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{Class, Failure, RelayCert};

    const NOW: u64 = 1_800_000_000;

    fn snapshot(record: Record) -> Snapshot {
        Snapshot {
            now: time(NOW),
            daemon: Daemon::Running,
            record: Ok(Some(record)),
            spool: PathBuf::from("/var/spool/alert-relay"),
            counts: Ok(Counts::default()),
            free_bytes: Ok(10 << 30),
            keys: Vec::new(),
            signed_in: None,
        }
    }

    fn graded(s: &Snapshot) -> (Grade, Vec<String>) {
        let problems = assess(s, &HealthConfig::default(), 10 << 20);
        (
            grade(&problems),
            problems.iter().map(|p| p.condition.clone()).collect(),
        )
    }

    fn failing(class: Class, for_secs: u64) -> Record {
        Record {
            failure: Some(Failure {
                class,
                since: NOW - for_secs,
                last: NOW,
                reason: "why".into(),
                relay: "relay:587".into(),
            }),
            ..Record::default()
        }
    }

    #[test]
    fn a_healthy_daemon_is_ok() {
        assert_eq!(graded(&snapshot(Record::default())), (Grade::Ok, vec![]));
    }

    #[test]
    fn a_temporary_failure_grows_from_nothing_to_warning_to_critical() {
        let at = |secs| graded(&snapshot(failing(Class::Unreachable, secs))).0;
        assert_eq!(at(60), Grade::Ok);
        assert_eq!(at(16 * 60), Grade::Warning);
        assert_eq!(at(61 * 60), Grade::Critical);
        assert_eq!(
            graded(&snapshot(failing(Class::Relay4xx, 20 * 60))).0,
            Grade::Warning
        );
    }

    #[test]
    fn a_pin_mismatch_an_auth_failure_or_a_final_refusal_is_critical_at_once() {
        for class in [Class::Tls, Class::Auth, Class::Relay5xx] {
            let (grade, conditions) = graded(&snapshot(failing(class, 1)));
            assert_eq!(grade, Grade::Critical, "{class}");
            assert_eq!(conditions, vec!["delivery"]);
        }
    }

    #[test]
    fn a_quota_is_its_own_condition_graded_as_a_temporary_failure() {
        let at = |secs| graded(&snapshot(failing(Class::Quota, secs)));
        assert_eq!(at(60), (Grade::Ok, vec![]));
        assert_eq!(at(16 * 60), (Grade::Warning, vec!["quota".to_string()]));
        assert_eq!(at(61 * 60), (Grade::Critical, vec!["quota".to_string()]));
    }

    #[test]
    fn a_sign_in_stored_after_the_last_refused_attempt_is_a_warning_until_it_is_tried() {
        let mut s = snapshot(failing(Class::Auth, 600));
        s.signed_in = Some(time(NOW - 60));
        // Before the last attempt (NOW): that attempt used it, and failed.
        assert_eq!(graded(&s).0, Grade::Critical);
        s.signed_in = Some(time(NOW + 1));
        let problems = assess(&s, &HealthConfig::default(), 10 << 20);
        assert_eq!(grade(&problems), Grade::Warning);
        assert!(
            problems[0].what.contains("stored a new sign-in"),
            "{problems:?}"
        );
        assert!(
            problems[0].fix.contains("tries the new sign-in at once"),
            "{problems:?}"
        );
        // Only a sign-in fixes an auth failure.
        let mut s = snapshot(failing(Class::Tls, 600));
        s.signed_in = Some(time(NOW + 1));
        assert_eq!(graded(&s).0, Grade::Critical);
    }

    #[test]
    fn a_certificate_pinned_by_digest_warns_before_it_expires_an_spki_pin_does_not() {
        let cert = |check, days: u64| Record {
            relay_cert: Some(RelayCert {
                relay: "relay:587".into(),
                subject: "CN=relay".into(),
                not_after: Some(NOW + days * 86400),
                check,
                spki_pin: "sha256-spki:AAAA".into(),
                config_line: "fingerprints = [...]".into(),
            }),
            ..Record::default()
        };
        let s = snapshot(cert(CertCheck::CertificatePin, 10));
        let problems = assess(&s, &HealthConfig::default(), 10 << 20);
        assert_eq!(grade(&problems), Grade::Warning);
        assert!(problems[0].fix.contains("sha256-spki:AAAA"), "{problems:?}");
        assert_eq!(
            graded(&snapshot(cert(CertCheck::CertificatePin, 20))).0,
            Grade::Ok
        );
        assert_eq!(graded(&snapshot(cert(CertCheck::SpkiPin, 10))).0, Grade::Ok);
        assert_eq!(graded(&snapshot(cert(CertCheck::Ca, 10))).0, Grade::Ok);
    }

    #[test]
    fn queue_keys_and_disk_are_graded() {
        let mut s = snapshot(Record::default());
        let queued = |age| {
            Ok(Counts {
                queued: 2,
                oldest_queued: Some(time(NOW - age)),
                ..Counts::default()
            })
        };
        s.counts = queued(20 * 60);
        assert_eq!(graded(&s), (Grade::Warning, vec!["queue-age".to_string()]));
        s.counts = queued(2 * 3600);
        assert_eq!(graded(&s).0, Grade::Critical);

        let mut s = snapshot(Record::default());
        s.keys = vec![KeyExpiry {
            recipient: "a@example.org".into(),
            fingerprint: "F00".into(),
            path: "/etc/a.pub".into(),
            until: Ok(Some(time(NOW + 20 * 86400))),
        }];
        assert_eq!(graded(&s), (Grade::Warning, vec!["key:F00".to_string()]));
        s.keys[0].until = Err("expired".into());
        assert_eq!(graded(&s).0, Grade::Critical);
        s.keys[0].until = Ok(None);
        assert_eq!(graded(&s).0, Grade::Ok);

        let mut s = snapshot(Record::default());
        s.free_bytes = Ok(50 << 20);
        assert_eq!(graded(&s), (Grade::Warning, vec!["disk".to_string()]));
        s.free_bytes = Ok(1 << 20);
        assert_eq!(graded(&s).0, Grade::Critical);
    }

    #[test]
    fn a_stopped_daemon_is_critical_and_an_unreadable_state_unknown() {
        let mut s = snapshot(Record::default());
        s.daemon = Daemon::Stopped(time(NOW - 60));
        assert_eq!(graded(&s), (Grade::Critical, vec!["daemon".to_string()]));

        let mut s = snapshot(Record::default());
        s.record = Err("permission denied".into());
        s.daemon = Daemon::NeverStarted;
        s.counts = Err("permission denied".into());
        assert_eq!(graded(&s).0, Grade::Unknown);
    }

    #[test]
    fn a_record_is_judged_by_its_process_and_its_age() {
        let now = time(NOW);
        let mut r = Record {
            pid: std::process::id(),
            updated: NOW - 5,
            ..Record::default()
        };
        assert_eq!(Daemon::from_record(Some(&r), now), Daemon::Running);
        r.updated = NOW - 600;
        assert_eq!(
            Daemon::from_record(Some(&r), now),
            Daemon::NotResponding(time(NOW - 600))
        );
        r.stopped = Some(NOW - 600);
        assert_eq!(
            Daemon::from_record(Some(&r), now),
            Daemon::Stopped(time(NOW - 600))
        );
        r.stopped = None;
        r.pid = u32::MAX;
        assert_eq!(
            Daemon::from_record(Some(&r), now),
            Daemon::Gone(time(NOW - 600))
        );
        assert_eq!(Daemon::from_record(None, now), Daemon::NeverStarted);
    }
}
