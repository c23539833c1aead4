//! Warnings that travel by mail while mail still works: before a problem
//! stops delivery (a pinned certificate about to be renewed, a key about
//! to expire, a disk filling up), and when alerts were set aside (held,
//! failed, corrupt), the admins get an encrypted message that says what
//! will break, when, and the command that fixes it.
//!
//! Each condition is told at most once per [`EVERY`] while it lasts; the
//! stamps live in the health record, so a restart does not repeat them.
//! A recipient whose own key expires is told too, encrypted to that key
//! while it still works. What mail cannot help with (the daemon down,
//! delivery failing) is not mailed: such a warning would wait in the same
//! queue. `relayctl health`, systemd's STATUS= and the heartbeat's absence
//! tell of those.
//!
//! This module writes the messages; the daemon queues them like any
//! alert, encrypted to each recipient's key.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::assess::{Grade, Problem};
use super::secs;
use crate::context::Context;
use crate::route::Recipient;
use crate::spool::{Counts, Listing};

/// A condition is mailed about at most this often.
pub const EVERY: Duration = Duration::from_secs(86400);
/// Newly set-aside alerts are told at most this often: a warning the
/// relay refuses for good is itself a failed alert, and must not beget
/// a warning every few seconds.
pub const SET_ASIDE_EVERY: Duration = Duration::from_secs(3600);

/// One message to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub to: Vec<Recipient>,
    /// The stamps to record once it is queued.
    pub stamps: Vec<String>,
    /// The message as a local client would submit it (plaintext; it is
    /// encrypted when queued).
    pub message: Vec<u8>,
}

/// Set-aside alerts a warning lists per state, newest first; beyond, a
/// count (a relay refusing everything over a weekend leaves thousands,
/// and a warning too large for the relay would be refused in turn).
const LIST_MAX: usize = 50;

/// The conditions mail can help with, and the spool state whose entries a
/// set-aside condition lists.
fn mailed(condition: &str) -> Option<Option<&'static str>> {
    match condition {
        // quota: the day's reserve carries it (deliver::pace::reserve).
        "relay-certificate" | "fallback-certificate" | "disk" | "quota" => Some(None),
        "held" => Some(Some("held")),
        "failed" => Some(Some("failed")),
        "corrupt" => Some(Some("corrupt")),
        c if c.starts_with("key:") => Some(None),
        _ => None,
    }
}

/// Whether the daemon's own mail may go to `r`: only to keys that can
/// encrypt now. Mail to a broken key would be held, and a held alert is
/// itself a condition to warn about.
pub fn usable(ctx: &Context, r: &Recipient, now: SystemTime) -> bool {
    ctx.keyring
        .get(r)
        .is_some_and(|k| crate::encrypt::keys::can_encrypt(&k.cert, now).is_ok())
}

/// The stamp a problem is mailed under: its condition, and for set-aside
/// entries the newest one's name (from `counts`), so that a newly failed
/// alert is told within the hour rather than the next day.
fn stamp(problem: &Problem, counts: &Counts) -> Option<String> {
    let state = mailed(&problem.condition)?;
    Some(match state {
        None => problem.condition.clone(),
        Some(state) => {
            let newest = match state {
                "held" => &counts.newest_held,
                "failed" => &counts.newest_failed,
                _ => &counts.newest_corrupt,
            };
            format!("{}:{}", problem.condition, newest.as_deref().unwrap_or(""))
        }
    })
}

/// The warnings due now: for each mailed problem whose stamp is older
/// than [`EVERY`] (or absent), one message to the admins with all of
/// them, and one to each recipient whose own key is among them.
/// `set_aside` lists the held, failed and corrupt files; it is called
/// only when a warning about them is due.
pub fn due(
    ctx: &Context,
    problems: &[Problem],
    warned: &BTreeMap<String, u64>,
    counts: &Counts,
    set_aside: impl FnOnce() -> Vec<Listing>,
    now: SystemTime,
) -> Vec<Warning> {
    let within = |stamp: &str, span: Duration| {
        warned
            .get(stamp)
            .is_some_and(|&t| secs(now).saturating_sub(t) < span.as_secs())
    };
    let due: Vec<(String, &Problem)> = problems
        .iter()
        .filter(|p| p.grade >= Grade::Warning)
        .filter_map(|p| stamp(p, counts).map(|s| (s, p)))
        .filter(|(s, p)| !within(s, EVERY) && !within(&p.condition, SET_ASIDE_EVERY))
        .collect();
    let usable = |r: &Recipient| usable(ctx, r, now);
    let admins: Vec<Recipient> = ctx.config.admins().into_iter().filter(usable).collect();
    if due.is_empty() || admins.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let all: Vec<&Problem> = due.iter().map(|(_, p)| *p).collect();
    let listed = all
        .iter()
        .any(|p| matches!(mailed(&p.condition), Some(Some(_))));
    let set_aside = if listed { set_aside() } else { Vec::new() };
    // The condition itself too: what SET_ASIDE_EVERY counts from.
    let mut stamps: Vec<String> = due
        .iter()
        .flat_map(|(s, p)| [s.clone(), p.condition.clone()])
        .collect();
    stamps.sort();
    stamps.dedup();
    out.push(Warning {
        to: admins.clone(),
        stamps,
        message: compose(ctx, &admins, &all, &set_aside, now),
    });
    // The owner of an expiring key hears of it too.
    for (_, p) in &due {
        let Some(fingerprint) = p.condition.strip_prefix("key:") else {
            continue;
        };
        let owner = ctx
            .keyring
            .iter()
            .find(|k| k.fingerprint.to_string() == fingerprint)
            .map(|k| k.recipient.clone());
        // Stamped on its own: it is queued apart from the admins' one.
        let stamp = format!("owner:{}", p.condition);
        if let Some(owner) = owner.filter(|o| !admins.contains(o) && usable(o))
            && !within(&stamp, EVERY)
        {
            let to = vec![owner];
            out.push(Warning {
                message: compose(ctx, &to, &[*p], &[], now),
                to,
                stamps: vec![stamp],
            });
        }
    }
    out
}

/// One warning message: each problem with its fix, and the alerts set
/// aside under the conditions that have them. No alert content: only
/// queue ids, recipients and reasons.
fn compose(
    ctx: &Context,
    to: &[Recipient],
    problems: &[&Problem],
    set_aside: &[Listing],
    now: SystemTime,
) -> Vec<u8> {
    let host = &ctx.hostname;
    let to_line: Vec<String> = to.iter().map(|r| format!("<{r}>")).collect();
    let mut out = format!(
        "From: alert-relay <{from}>\r\nTo: {to}\r\nSubject: alert-relay on {host}: {n} \
         problem{s} to fix before alerts stop\r\n\r\n\
         alert-relay on {host} found {what} that will stop alerts, or has\r\n\
         already set some aside, unless someone acts. Each is told at most\r\n\
         once a day while it lasts; `relayctl health` on {host} shows the\r\n\
         state now. Checked at {now}.\r\n",
        from = ctx.sealer.sender.address,
        to = to_line.join(", "),
        n = problems.len(),
        s = if problems.len() == 1 { "" } else { "s" },
        what = if problems.len() == 1 {
            "a problem"
        } else {
            "problems"
        },
        now = super::assess::when(now),
    );
    for p in problems {
        let _ = write!(
            out,
            "\r\n{} {}\r\n  {}\r\n  fix: {}\r\n",
            p.grade.as_str(),
            p.condition,
            p.what,
            p.fix
        );
        if let Some(Some(state)) = mailed(&p.condition) {
            let mut rows: Vec<&Listing> = set_aside.iter().filter(|l| l.state == state).collect();
            rows.sort_by(|a, b| (b.created, &b.id).cmp(&(a.created, &a.id)));
            if rows.len() > LIST_MAX {
                let _ = write!(
                    out,
                    "    (the newest {LIST_MAX} of {}; relayctl queue lists them all)\r\n",
                    rows.len()
                );
                rows.truncate(LIST_MAX);
            }
            for l in rows {
                let _ = write!(
                    out,
                    "    {} {} to {}: {}\r\n",
                    l.id,
                    super::assess::when(l.created),
                    if l.recipient.is_empty() {
                        "?"
                    } else {
                        &l.recipient
                    },
                    l.last_error
                );
            }
        }
    }
    out.into_bytes()
}

/// The message the fallback relay carries first when it takes over: the
/// primary's failure, since when, its fix, and what happens next.
pub fn fallback_notice(
    ctx: &Context,
    failure: &super::Failure,
    fallback: &str,
    to: &Recipient,
    now: SystemTime,
) -> Vec<u8> {
    let host = &ctx.hostname;
    format!(
        "From: alert-relay <{from}>\r\nTo: <{to}>\r\nSubject: alert-relay on {host}: alerts now go \
         through the fallback relay\r\n\r\n\
         alert-relay on {host} could not deliver through its relay {primary} since\r\n\
         {since} (class {class}). Alerts now go through the fallback relay\r\n\
         {fallback}; this message is the first through it ({now}).\r\n\r\n\
         The primary's last error:\r\n  {reason}\r\n\r\n\
         Fix: {fix}\r\n\r\n\
         The primary is tried again at each step of queue.retry and takes over\r\n\
         as soon as it works. `relayctl health` and `relayctl test` on {host}\r\n\
         show the state.\r\n",
        from = ctx.sealer.sender.address,
        primary = failure.relay,
        since = super::assess::when(super::time(failure.since)),
        class = failure.class,
        reason = failure.reason,
        fix = failure.class.fix(),
        now = super::assess::when(now),
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(condition: &str) -> Problem {
        Problem {
            grade: Grade::Warning,
            condition: condition.into(),
            what: format!("{condition} is wrong"),
            fix: format!("fix {condition}"),
        }
    }

    #[test]
    fn only_what_mail_can_help_with_is_mailed() {
        let counts = Counts {
            failed: 2,
            newest_failed: Some("B".into()),
            ..Counts::default()
        };
        assert_eq!(
            stamp(&problem("relay-certificate"), &counts).as_deref(),
            Some("relay-certificate")
        );
        assert_eq!(
            stamp(&problem("key:F00"), &counts).as_deref(),
            Some("key:F00")
        );
        // The newest failed entry names the stamp: a new one is told soon.
        assert_eq!(
            stamp(&problem("failed"), &counts).as_deref(),
            Some("failed:B")
        );
        // The day's reserve carries a quota's warning.
        assert_eq!(stamp(&problem("quota"), &counts).as_deref(), Some("quota"));
        for unmailed in ["daemon", "delivery", "queue-age", "record"] {
            assert_eq!(stamp(&problem(unmailed), &counts), None, "{unmailed}");
        }
    }
}
