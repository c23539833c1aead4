//! `relayctl health`: the daemon's health on one screen, as JSON, or in
//! Prometheus' text format, with the monitoring-plugin exit code.
//!
//! It reads what the daemon wrote in the spool and looks at the queue,
//! the keys and the free space itself, so it works with the daemon
//! stopped (and then says so: that is CRITICAL).

use std::fmt::Write as _;
use std::path::Path;
use std::time::SystemTime;

use serde_json::json;

use crate::config::Config;
use crate::context::Context;
use crate::health::assess::{self, Daemon, Grade, Problem, Snapshot, span, when};
use crate::health::{Record, time};
use crate::spool::Spool;

/// How `relayctl health` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Prometheus,
}

/// `relayctl health`: prints the report; the exit code is the grade's
/// (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
pub fn health_command(path: &Path, format: Format) -> u8 {
    let now = SystemTime::now();
    let ctx = match Config::load(path).and_then(Context::new) {
        Ok(ctx) => ctx,
        Err(e) => return unknown(format, &format!("the config cannot be used: {e}")),
    };
    let spool = Spool::at(&ctx.config.queue.dir);
    let snapshot = Snapshot::take(&ctx, &spool, Record::load(&spool), now);
    let problems = assess::assess(
        &snapshot,
        &ctx.config.health,
        ctx.config.listen.max_message_size.0,
    );
    let grade = assess::grade(&problems);
    match format {
        Format::Text => print!("{}", printable(&text(&snapshot, &problems, grade))),
        Format::Json => println!("{}", json(&snapshot, &problems, grade)),
        Format::Prometheus => print!("{}", prometheus(&snapshot, grade)),
    }
    grade.exit_code()
}

/// When even the config cannot be read: UNKNOWN, in the format asked for.
fn unknown(format: Format, why: &str) -> u8 {
    let grade = Grade::Unknown;
    match format {
        Format::Text => println!("alert-relay UNKNOWN - {}", why.trim_end()),
        Format::Json => println!(
            "{}",
            json!({"status": grade.as_str(), "exit": grade.exit_code(), "problems": [
                {"grade": grade.as_str(), "condition": "config", "what": why.trim_end(),
                 "fix": "relayctl check"}
            ]})
        ),
        Format::Prometheus => print!(
            "{}",
            metric(
                "alert_relay_health_status",
                "gauge",
                "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (monitoring-plugin codes).",
                &[("", f64::from(grade.exit_code()))]
            )
        ),
    }
    grade.exit_code()
}

/// The one-screen report. The first line is a monitoring plugin's status
/// line: `alert-relay GRADE - summary`.
pub fn text(s: &Snapshot, problems: &[Problem], grade: Grade) -> String {
    let failing = s.record().and_then(|r| r.failure.as_ref());
    let summary = match (problems.first(), failing) {
        (Some(p), _) => p.what.clone(),
        (None, Some(f)) => format!(
            "retrying: delivery has failed for {} (class {}), not yet for health.warn_after",
            span(s.now.duration_since(time(f.since)).unwrap_or_default()),
            f.class
        ),
        (None, None) => "alerts are flowing".to_string(),
    };
    let mut out = format!("alert-relay {} - {summary}\n\n", grade.as_str());
    let mut row = |name: &str, value: String| {
        let _ = writeln!(out, "{name:<15}{value}");
    };
    let record = s.record();
    row(
        "daemon",
        match s.daemon {
            Daemon::Running => match record {
                Some(r) => format!("running (pid {}, since {})", r.pid, when(time(r.started))),
                None => "running".into(),
            },
            Daemon::Stopped(at) => format!("stopped at {}", when(at)),
            Daemon::Gone(at) => format!("not running (ended uncleanly; last seen {})", when(at)),
            Daemon::NotResponding(at) => format!("not responding since {}", when(at)),
            Daemon::NeverStarted => "never started on this spool".into(),
        },
    );
    row(
        "queue",
        match &s.counts {
            Ok(c) => format!(
                "{} queued{}, {} held, {} failed, {} corrupt",
                c.queued,
                c.oldest_queued
                    .map(|t| format!(
                        " (oldest {})",
                        span(s.now.duration_since(t).unwrap_or_default())
                    ))
                    .unwrap_or_default(),
                c.held,
                c.failed,
                c.corrupt
            ),
            Err(e) => format!("unreadable: {e}"),
        },
    );
    if let Some(r) = record {
        row(
            "last delivery",
            match r.last_success.map(time) {
                Some(t) => format!(
                    "{} ({} ago)",
                    when(t),
                    span(s.now.duration_since(t).unwrap_or_default())
                ),
                None => "none yet".into(),
            },
        );
        row(
            "delivery",
            match &r.failure {
                None => "no failure".into(),
                Some(f) => format!(
                    "failing since {} (class {}): {}",
                    when(time(f.since)),
                    f.class,
                    f.reason
                ),
            },
        );
        for (name, cert) in [
            ("relay cert", &r.relay_cert),
            ("fallback cert", &r.fallback_cert),
        ] {
            let Some(c) = cert else { continue };
            row(
                name,
                format!(
                    "{} {}, expires {}, {}",
                    c.relay,
                    c.subject,
                    c.not_after.map_or("never".into(), |t| when(time(t))),
                    match c.check {
                        crate::health::CertCheck::CertificatePin =>
                            "pinned by its certificate digest (breaks at renewal)",
                        crate::health::CertCheck::SpkiPin =>
                            "pinned by its key (survives a renewal that keeps the key)",
                        crate::health::CertCheck::Ca => "checked against a CA",
                    }
                ),
            );
        }
        let t = r.totals;
        row(
            "totals",
            format!(
                "{} accepted, {} sent, {} deferred, {} failed, {} held",
                t.accepted, t.sent, t.deferred, t.failed, t.held
            ),
        );
    }
    for k in &s.keys {
        row(
            "key",
            format!(
                "{} {}: {}",
                k.recipient,
                k.fingerprint,
                match &k.until {
                    Ok(None) => "never expires".into(),
                    Ok(Some(t)) => format!("expires {}", when(*t)),
                    Err(e) => format!("cannot encrypt: {e}"),
                }
            ),
        );
    }
    row(
        "free space",
        match &s.free_bytes {
            Ok(b) => format!("{} MiB under {}", b >> 20, s.spool.display()),
            Err(e) => format!("unknown: {e}"),
        },
    );
    for p in problems {
        let _ = write!(
            out,
            "\n{} {}: {}\n  fix: {}\n",
            p.grade.as_str(),
            p.condition,
            p.what,
            p.fix
        );
    }
    out
}

/// The report as a terminal may show it: what the relay said, or put in
/// its certificate, reaches this report; control characters in it
/// (escape sequences) become U+FFFD.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// Seconds since the epoch, for JSON.
fn epoch(t: Option<u64>) -> serde_json::Value {
    t.map_or(serde_json::Value::Null, |t| json!(t))
}

/// The report as one JSON object.
pub fn json(s: &Snapshot, problems: &[Problem], grade: Grade) -> serde_json::Value {
    let record = s.record();
    json!({
        "status": grade.as_str(),
        "exit": grade.exit_code(),
        "checked": assess::when(s.now),
        "daemon": {
            "state": match s.daemon {
                Daemon::Running => "running",
                Daemon::Stopped(_) => "stopped",
                Daemon::Gone(_) => "gone",
                Daemon::NotResponding(_) => "not-responding",
                Daemon::NeverStarted => "never-started",
            },
            "pid": record.map(|r| r.pid),
            "started": epoch(record.map(|r| r.started)),
            "updated": epoch(record.map(|r| r.updated)),
        },
        "queue": match &s.counts {
            Ok(c) => json!({
                "queued": c.queued, "held": c.held, "failed": c.failed, "corrupt": c.corrupt,
                "oldest_age_seconds": c.oldest_queued
                    .map(|t| s.now.duration_since(t).unwrap_or_default().as_secs()),
            }),
            Err(e) => json!({"error": e}),
        },
        "last_success": epoch(record.and_then(|r| r.last_success)),
        "failure": record.and_then(|r| r.failure.as_ref()),
        "relay_certificate": record.and_then(|r| r.relay_cert.as_ref()),
        "fallback_certificate": record.and_then(|r| r.fallback_cert.as_ref()),
        "totals": record.map(|r| r.totals),
        "keys": s.keys.iter().map(|k| json!({
            "recipient": k.recipient,
            "fingerprint": k.fingerprint,
            "can_encrypt": k.until.is_ok(),
            "expires": k.until.as_ref().ok().and_then(|u| u.map(crate::health::secs)),
            "error": k.until.as_ref().err(),
        })).collect::<Vec<_>>(),
        "free_bytes": s.free_bytes.as_ref().ok(),
        "problems": problems,
    })
}

/// One metric in the text exposition format: HELP, TYPE and its samples,
/// each `(labels, value)` with labels already formatted (`{k="v"}`).
/// Nothing when there is no sample.
fn metric(name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) -> String {
    if samples.is_empty() {
        return String::new();
    }
    let mut out = format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
    out
}

/// A label value escaped as the exposition format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The figures in Prometheus' text exposition format, for
/// node_exporter's textfile collector.
pub fn prometheus(s: &Snapshot, grade: Grade) -> String {
    let mut out = metric(
        "alert_relay_health_status",
        "gauge",
        "0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (monitoring-plugin codes).",
        &[("", f64::from(grade.exit_code()))],
    );
    let up = if s.daemon == Daemon::Running {
        1.0
    } else {
        0.0
    };
    out += &metric(
        "alert_relay_up",
        "gauge",
        "Whether the daemon is running and writing its health.",
        &[("", up)],
    );
    if let Ok(c) = &s.counts {
        out += &metric(
            "alert_relay_queue_entries",
            "gauge",
            "Entries in the spool by state.",
            &[
                ("{state=\"queued\"}", c.queued as f64),
                ("{state=\"held\"}", c.held as f64),
                ("{state=\"failed\"}", c.failed as f64),
                ("{state=\"corrupt\"}", c.corrupt as f64),
            ],
        );
        let oldest = c
            .oldest_queued
            .map(|t| s.now.duration_since(t).unwrap_or_default().as_secs_f64())
            .unwrap_or(0.0);
        out += &metric(
            "alert_relay_oldest_queued_age_seconds",
            "gauge",
            "Age of the oldest queued entry (0 when the queue is empty).",
            &[("", oldest)],
        );
    }
    if let Ok(free) = s.free_bytes {
        out += &metric(
            "alert_relay_spool_free_bytes",
            "gauge",
            "Bytes free on the spool's file system.",
            &[("", free as f64)],
        );
    }
    if let Some(r) = s.record() {
        if let Some(t) = r.last_success {
            out += &metric(
                "alert_relay_last_success_timestamp_seconds",
                "gauge",
                "When an alert was last delivered to the relay.",
                &[("", t as f64)],
            );
        }
        let failing: Vec<(String, f64)> = r
            .failure
            .iter()
            .map(|f| (format!("{{class=\"{}\"}}", f.class), f.since as f64))
            .collect();
        let failing: Vec<(&str, f64)> = failing.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        out += &metric(
            "alert_relay_failing_since_timestamp_seconds",
            "gauge",
            "When the current delivery failure began, by class (absent when none).",
            &failing,
        );
        let expiries: Vec<(String, f64)> = [
            ("primary", r.relay_cert.as_ref()),
            ("fallback", r.fallback_cert.as_ref()),
        ]
        .into_iter()
        .filter_map(|(relay, cert)| {
            let cert = cert?;
            let left = cert.not_after? as f64 - crate::health::secs(s.now) as f64;
            let labels = format!("{{relay=\"{relay}\",check=\"{}\"}}", cert.check.as_str());
            Some((labels, left))
        })
        .collect();
        let expiries: Vec<(&str, f64)> = expiries.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        out += &metric(
            "alert_relay_relay_certificate_expiry_seconds",
            "gauge",
            "Seconds until each relay's certificate expires (negative: expired).",
            &expiries,
        );
        let t = r.totals;
        out += &metric(
            "alert_relay_deliveries_total",
            "counter",
            "Delivery attempts by outcome.",
            &[
                ("{outcome=\"sent\"}", t.sent as f64),
                ("{outcome=\"deferred\"}", t.deferred as f64),
                ("{outcome=\"failed\"}", t.failed as f64),
            ],
        );
        out += &metric(
            "alert_relay_accepted_total",
            "counter",
            "Entries queued for delivery (one per recipient).",
            &[("", t.accepted as f64)],
        );
        out += &metric(
            "alert_relay_held_total",
            "counter",
            "Entries held because their recipient's key could not encrypt.",
            &[("", t.held as f64)],
        );
    }
    let keys: Vec<(String, f64)> = s
        .keys
        .iter()
        .filter_map(|k| {
            let seconds = match &k.until {
                Ok(Some(t)) => crate::health::secs(*t) as f64 - crate::health::secs(s.now) as f64,
                Ok(None) => return None,
                Err(_) => 0.0,
            };
            Some((
                format!(
                    "{{recipient=\"{}\",fingerprint=\"{}\"}}",
                    label(&k.recipient),
                    label(&k.fingerprint)
                ),
                seconds,
            ))
        })
        .collect();
    let keys: Vec<(&str, f64)> = keys.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    out += &metric(
        "alert_relay_key_expiry_seconds",
        "gauge",
        "Seconds until each expiring recipient key stops encrypting (0: it cannot now).",
        &keys,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_escape_sequence_reaches_the_terminal() {
        let hostile = "CN=relay\x1b]0;owned\x07\x1b[2J\nnext line\r";
        let shown = printable(hostile);
        assert!(
            !shown.chars().any(|c| c.is_control() && c != '\n'),
            "{shown:?}"
        );
        assert!(shown.contains("\nnext line"), "{shown:?}");
    }

    #[test]
    fn label_values_are_escaped_for_the_exposition_format() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
