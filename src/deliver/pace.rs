//! Pacing: `relay.max_per_minute` and `relay.max_per_day` keep delivery
//! under a provider's sending limits, so that a flood of alerts (a cron
//! job gone wrong, a brute-force attack) cannot use up the account's
//! quota and leave the alerts that matter with nowhere to go.
//!
//! - `max_per_minute`: messages leave at least `60 s / max_per_minute`
//!   apart. Evenly spaced, no 60 seconds ever hold more than the limit,
//!   and the relay sees a steady rate rather than bursts, which is what
//!   rate limiters (Microsoft 365 delays beyond 30 a minute) look at.
//! - `max_per_day`: at most that many in any 24 hours, counted from the
//!   times of the messages sent.
//!
//! A held message is not deferred: it stays due, untouched, and leaves as
//! soon as the pace allows. Each outgoing message has one recipient, so
//! messages are what the providers count (recipients a day).
//!
//! Alerts may not use the whole day: [`reserve`] is kept for the
//! daemon's own mail (its warnings, the heartbeat), so that when the day's
//! limit holds alerts back, the warning that says so can still leave.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, SystemTime};

use crate::config::Relay;

/// The window of `max_per_day`.
const DAY: Duration = Duration::from_secs(24 * 3600);

/// A relay's limits, from its config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub per_minute: Option<u32>,
    pub per_day: Option<u32>,
}

impl Limits {
    pub fn of(relay: &Relay) -> Limits {
        let (per_minute, per_day) = relay.limits();
        Limits {
            per_minute,
            per_day,
        }
    }
}

/// Of a daily limit, what alerts may not use: kept for the daemon's own
/// mail. 2% of the limit, at least one, from a limit of 10 (Gmail's 500:
/// 10; Microsoft's 10,000: 200); none below, where it would be most of it.
pub fn reserve(limit: u32) -> u32 {
    if limit >= 10 { (limit / 50).max(1) } else { 0 }
}

/// Whose message waits: pacing keeps [`reserve`] of the day for the
/// daemon's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Alert,
    /// The daemon's warnings and heartbeat.
    Daemon,
}

/// Why a message must wait, and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// `max_per_minute`: the next message leaves a spacing after the last.
    Minute { limit: u32, until: SystemTime },
    /// `max_per_day`: as many left in the last 24 hours as the sender may
    /// send (`reserved` fewer for alerts).
    Day {
        limit: u32,
        reserved: u32,
        until: SystemTime,
    },
}

impl Wait {
    pub fn until(&self) -> SystemTime {
        match self {
            Wait::Minute { until, .. } | Wait::Day { until, .. } => *until,
        }
    }

    /// The same limit, whatever the time: for logging a hold once.
    pub fn same_limit(&self, other: &Wait) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Minute { limit, .. } => write!(
                f,
                "relay.max_per_minute = {limit}: one message every {:.1}s",
                60.0 / f64::from(*limit)
            ),
            Wait::Day {
                limit, reserved: 0, ..
            } => write!(
                f,
                "relay.max_per_day = {limit} reached: {limit} sent in the last 24 hours"
            ),
            Wait::Day {
                limit, reserved, ..
            } => write!(
                f,
                "relay.max_per_day = {limit} reached: {} sent in the last 24 hours, {reserved} \
                 kept for alert-relay's own warnings",
                limit - reserved
            ),
        }
    }
}

/// What a relay has sent lately, against its limits. It outlives config
/// reloads: a new limit applies to what was already sent.
#[derive(Debug, Default)]
pub struct Pacer {
    limits: Limits,
    /// When the last message left.
    last: Option<SystemTime>,
    /// When each message of the last 24 hours left (only with a daily
    /// limit; at most that many are kept).
    day: VecDeque<SystemTime>,
}

impl Pacer {
    /// Applies the limits of the config in force.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
        match limits.per_day {
            None => self.day.clear(),
            Some(n) => {
                let excess = self.day.len().saturating_sub(n as usize);
                self.day.drain(..excess);
            }
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether a message of `sender` may leave at `now`, or why it must
    /// wait.
    pub fn wait(&mut self, now: SystemTime, sender: Sender) -> Option<Wait> {
        // The clock stepped back (a time sync at boot, after a hardware
        // clock that ran ahead): what seems sent in the future was sent
        // now, at the latest. Else a step of a year would hold alerts a
        // year.
        if self.last.is_some_and(|t| t > now) {
            self.last = Some(now);
        }
        for t in self.day.iter_mut().filter(|t| **t > now) {
            *t = now;
        }
        if let Some(limit) = self.limits.per_day {
            while self
                .day
                .front()
                .is_some_and(|t| now.duration_since(*t).is_ok_and(|age| age >= DAY))
            {
                self.day.pop_front();
            }
            let reserved = match sender {
                Sender::Alert => reserve(limit),
                Sender::Daemon => 0,
            };
            let usable = (limit - reserved) as usize;
            // It may leave once all but usable - 1 of those sent are a
            // day old.
            if self.day.len() >= usable
                && let Some(oldest) = self.day.get(self.day.len() - usable)
            {
                return Some(Wait::Day {
                    limit,
                    reserved,
                    until: *oldest + DAY,
                });
            }
        }
        if let (Some(limit), Some(last)) = (self.limits.per_minute, self.last) {
            let until = last + Duration::from_secs(60) / limit.max(1);
            if now < until {
                return Some(Wait::Minute { limit, until });
            }
        }
        None
    }

    /// A message left at `now`.
    pub fn sent(&mut self, now: SystemTime) {
        self.last = Some(now);
        if let Some(limit) = self.limits.per_day {
            self.day.push_back(now);
            if self.day.len() > limit as usize {
                self.day.pop_front();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_secs_f64(secs)
    }

    fn pacer(per_minute: Option<u32>, per_day: Option<u32>) -> Pacer {
        let mut p = Pacer::default();
        p.set_limits(Limits {
            per_minute,
            per_day,
        });
        p
    }

    #[test]
    fn without_limits_nothing_waits() {
        let mut p = pacer(None, None);
        for i in 0..1000 {
            assert_eq!(p.wait(at(i as f64 * 0.001), Sender::Alert), None);
            p.sent(at(i as f64 * 0.001));
        }
    }

    #[test]
    fn per_minute_spaces_messages_evenly_and_no_minute_holds_more() {
        let mut p = pacer(Some(30), None);
        let mut sent = Vec::new();
        let mut now = 0.0;
        while sent.len() < 100 {
            match p.wait(at(now), Sender::Alert) {
                None => {
                    p.sent(at(now));
                    sent.push(now);
                }
                Some(w) => {
                    assert!(matches!(w, Wait::Minute { limit: 30, .. }));
                    assert!(w.until() > at(now));
                }
            }
            now += 0.25;
        }
        for pair in sent.windows(2) {
            assert!(pair[1] - pair[0] >= 2.0 - 1e-9, "{pair:?}");
        }
        for (i, t) in sent.iter().enumerate() {
            let in_minute = sent[i..].iter().take_while(|u| **u < t + 60.0).count();
            assert!(in_minute <= 30, "{in_minute} in the minute from {t}");
        }
    }

    #[test]
    fn per_day_holds_until_the_oldest_is_a_day_old() {
        let mut p = pacer(None, Some(3));
        for t in [0.0, 10.0, 20.0] {
            assert_eq!(p.wait(at(t), Sender::Alert), None);
            p.sent(at(t));
        }
        let w = p.wait(at(30.0), Sender::Alert).unwrap();
        assert_eq!(
            w,
            Wait::Day {
                limit: 3,
                reserved: 0,
                until: at(86_400.0)
            }
        );
        assert_eq!(
            w.to_string(),
            "relay.max_per_day = 3 reached: 3 sent in the last 24 hours"
        );
        assert!(p.wait(at(86_399.0), Sender::Alert).is_some());
        assert_eq!(
            p.wait(at(86_400.0), Sender::Alert),
            None,
            "the first has aged out"
        );
        p.sent(at(86_400.0));
        assert_eq!(
            p.wait(at(86_405.0), Sender::Alert).unwrap().until(),
            at(86_410.0)
        );
    }

    #[test]
    fn a_clock_stepped_back_holds_nothing_longer_than_the_limit_says() {
        let mut p = pacer(Some(30), Some(3));
        for t in 0..3 {
            p.sent(at(365.0 * 86_400.0 + f64::from(t)));
        }
        // A year back: the next minute's spacing and the day's window
        // count from now, not from a year ahead.
        let w = p.wait(at(0.0), Sender::Alert).unwrap();
        assert!(w.until() <= at(86_400.0), "{w:?}");
        let mut p = pacer(Some(30), None);
        p.sent(at(365.0 * 86_400.0));
        assert_eq!(p.wait(at(0.0), Sender::Alert).unwrap().until(), at(2.0));
    }

    #[test]
    fn a_new_limit_applies_to_what_was_sent_already() {
        let mut p = pacer(None, Some(10));
        for t in 0..5 {
            p.sent(at(f64::from(t)));
        }
        assert_eq!(p.wait(at(10.0), Sender::Alert), None);
        p.set_limits(Limits {
            per_minute: None,
            per_day: Some(2),
        });
        assert!(matches!(
            p.wait(at(10.0), Sender::Alert),
            Some(Wait::Day { limit: 2, .. })
        ));
        p.set_limits(Limits::default());
        assert_eq!(p.wait(at(10.0), Sender::Alert), None);
    }

    #[test]
    fn alerts_leave_a_reserve_of_the_day_to_the_daemons_own_mail() {
        assert_eq!(
            [1, 9, 10, 49, 100, 500, 2000, 10_000].map(reserve),
            [0, 0, 1, 1, 2, 10, 40, 200]
        );
        let mut p = pacer(None, Some(100));
        for t in 0..98 {
            assert_eq!(p.wait(at(f64::from(t)), Sender::Alert), None);
            p.sent(at(f64::from(t)));
        }
        // 98 alerts: the 99th waits until the first is a day old.
        let w = p.wait(at(100.0), Sender::Alert).unwrap();
        assert_eq!(
            w,
            Wait::Day {
                limit: 100,
                reserved: 2,
                until: at(86_400.0)
            }
        );
        assert_eq!(
            w.to_string(),
            "relay.max_per_day = 100 reached: 98 sent in the last 24 hours, 2 kept for \
             alert-relay's own warnings"
        );
        // The daemon's warning and heartbeat leave; then nothing does.
        for t in [101.0, 102.0] {
            assert_eq!(p.wait(at(t), Sender::Daemon), None);
            p.sent(at(t));
        }
        assert!(matches!(
            p.wait(at(103.0), Sender::Daemon),
            Some(Wait::Day { reserved: 0, .. })
        ));
        // 100 sent: an alert waits until 3 of them are a day old.
        assert_eq!(
            p.wait(at(103.0), Sender::Alert).unwrap().until(),
            at(86_402.0)
        );
    }
}
