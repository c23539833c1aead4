//! The heartbeat: every `heartbeat.every`, an encrypted summary to the
//! admins. What it says matters less than that it comes: a heartbeat
//! that does not arrive is how anyone learns that the host, the daemon or
//! the path to them is down, which nothing on a dead host can report.
//!
//! Its plaintext has one size whatever the counts: every figure has a
//! fixed width and the whole is padded to a multiple of [`BLOCK`], so
//! the length of what the relay and the mail provider see says nothing
//! of how many alerts there were.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use super::assess::{Grade, Problem, Snapshot, when};
use super::{Record, Totals, time};
use crate::context::Context;

/// The plaintext is padded to a multiple of this.
pub const BLOCK: usize = 8192;
/// Problems listed, each cut to [`PROBLEM_WIDTH`]; beyond, a count.
const PROBLEMS: usize = 8;
const PROBLEM_WIDTH: usize = 300;

/// Whether a heartbeat is due at `now`: on, and none yet, or the last
/// `heartbeat.every` ago.
pub fn due(ctx: &Context, record: &Record, now: SystemTime) -> bool {
    let Some(every) = ctx.config.heartbeat.every else {
        return false;
    };
    match &record.heartbeat {
        None => true,
        Some(beat) => now.duration_since(time(beat.at)).unwrap_or_default() >= every.0,
    }
}

/// A figure in a fixed width.
fn figure(n: u64) -> String {
    format!("{n:>20}")
}

/// A point in time, or `none`, in a fixed width.
fn stamp(t: Option<SystemTime>) -> String {
    format!("{:<20}", t.map_or("none".to_string(), when))
}

/// The heartbeat message for the snapshot `s`, with the counts since the
/// last heartbeat (`record.heartbeat`) and the problems graded now.
pub fn compose(
    ctx: &Context,
    s: &Snapshot,
    record: &Record,
    problems: &[Problem],
    grade: Grade,
) -> Vec<u8> {
    let host = &ctx.hostname;
    let to: Vec<String> = ctx
        .config
        .heartbeat_to()
        .iter()
        .map(|r| format!("<{r}>"))
        .collect();
    let every = ctx.config.heartbeat.every.map_or(Duration::ZERO, |e| e.0);
    let since = record.heartbeat.as_ref();
    let base = since.map_or(Totals::default(), |b| b.totals);
    let now = record.totals;
    let counts = s.counts.clone().unwrap_or_default();
    let mut out = format!(
        "From: alert-relay <{from}>\r\nTo: {to}\r\nSubject: alert-relay heartbeat from {host}\r\n\r\n\
         alert-relay on {host} is alive at {at}.\r\n\
         The next heartbeat is due within {every} of this one. If it does not\r\n\
         come, the host, alert-relay or the path to you is down: look at once.\r\n\r\n",
        from = ctx.sealer.sender.address,
        to = to.join(", "),
        at = when(s.now),
        every = humantime::format_duration(every),
    );
    let _ = write!(
        out,
        "since       {}\r\n\
         accepted    {}\r\ndelivered   {}\r\ndeferred    {}\r\nfailed      {}\r\nheld        {}\r\n\
         queued now  {}\r\nheld now    {}\r\nfailed now  {}\r\ncorrupt now {}\r\n\
         oldest      {}\r\nlast sent   {}\r\nhealth      {:<8}\r\n\
         (The counts include this daemon's own warnings and heartbeats.)\r\n",
        stamp(since.map(|b| time(b.at))),
        figure(now.accepted.saturating_sub(base.accepted)),
        figure(now.sent.saturating_sub(base.sent)),
        figure(now.deferred.saturating_sub(base.deferred)),
        figure(now.failed.saturating_sub(base.failed)),
        figure(now.held.saturating_sub(base.held)),
        figure(counts.queued as u64),
        figure(counts.held as u64),
        figure(counts.failed as u64),
        figure(counts.corrupt as u64),
        stamp(counts.oldest_queued),
        stamp(record.last_success.map(time)),
        grade.as_str(),
    );
    for (name, cert) in [
        ("relay cert ", &record.relay_cert),
        ("fallback   ", &record.fallback_cert),
    ] {
        let _ = write!(
            out,
            "{name} expires {}\r\n",
            stamp(cert.as_ref().and_then(|c| c.not_after).map(time))
        );
    }
    for k in &s.keys {
        let until = match &k.until {
            Ok(None) => format!("{:<20}", "never"),
            Ok(Some(t)) => stamp(Some(*t)),
            Err(_) => format!("{:<20}", "cannot encrypt"),
        };
        let _ = write!(out, "key         {} expires {until}\r\n", k.fingerprint);
    }
    out.push_str("\r\n");
    for p in problems.iter().take(PROBLEMS) {
        let mut line = format!("{} {}: {}", p.grade.as_str(), p.condition, p.what);
        truncate(&mut line, PROBLEM_WIDTH);
        let _ = write!(out, "{line}\r\n");
    }
    if problems.len() > PROBLEMS {
        let _ = write!(out, "and {} more\r\n", problems.len() - PROBLEMS);
    }
    let _ = write!(
        out,
        "\r\n`relayctl health` on {host} shows the state now.\r\n"
    );
    pad(&mut out);
    out.into_bytes()
}

/// Cuts `line` to at most `width` bytes, at a character boundary.
fn truncate(line: &mut String, width: usize) {
    if line.len() > width {
        let mut end = width;
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        line.truncate(end);
    }
}

/// Pads the message with lines of spaces to the next multiple of
/// [`BLOCK`] (at least one padding line, so that the padding is never
/// mistaken for text that was cut).
fn pad(out: &mut String) {
    const LINE: usize = 78;
    let target = (out.len() + LINE + 2).div_ceil(BLOCK) * BLOCK;
    while out.len() < target {
        let room = target - out.len();
        // A line is spaces then CRLF; the last one fills what is left.
        let spaces = room.min(LINE + 2).saturating_sub(2);
        if room < 2 {
            out.push_str(&" ".repeat(room));
            break;
        }
        out.push_str(&" ".repeat(spaces));
        out.push_str("\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_reaches_the_block_whatever_the_length() {
        for len in [
            0,
            1,
            100,
            BLOCK - 81,
            BLOCK - 80,
            BLOCK - 1,
            BLOCK,
            BLOCK + 5000,
        ] {
            let mut s = "x".repeat(len);
            pad(&mut s);
            assert_eq!(s.len() % BLOCK, 0, "{len}");
            assert!(s.len() >= len + 2, "{len}");
        }
    }
}
