//! SecureDrop's journalist notification, the daemon's side: which
//! messages to queue for an alert the `securedrop-journalist` route took
//! (`crate::route::journalist` writes them), and the stamp that allows
//! one notification per [`SUPPRESS_FOR`].
//!
//! The stamp is `journalist.stamp` in the spool root: the time of the
//! last notification queued, written durably once it is queued, so it
//! survives restarts and reboots. A stamp from the future (a clock set
//! back) suppresses nothing: a notification too many is better than a
//! journalist who stops hearing.

use std::time::SystemTime;

use crate::context::Context;
use crate::route::Recipient;
use crate::route::journalist::{self, Count, SUPPRESS_FOR};
use crate::spool::{Entry, Spool, SpoolError};

/// The stamp's file in the spool root.
pub const STAMP_FILE: &str = "journalist.stamp";

/// What to queue for one alert, and whether the stamp is due once it is.
#[derive(Debug)]
pub struct Plan {
    pub entries: Vec<Entry>,
    pub stamp: bool,
}

/// The entries for an alert the journalist route took: the notification
/// to `journalists` (unless one went out less than [`SUPPRESS_FOR`] ago,
/// or none is configured), or the alert to the admins when its count
/// cannot be read. Each case is logged, never with the alert's content.
pub fn plan(
    ctx: &Context,
    spool: &Spool,
    sender: &str,
    journalists: &[Recipient],
    message: &[u8],
    now: SystemTime,
) -> Plan {
    let from = ctx.sealer.sender.address.as_str();
    match journalist::count(message) {
        Count::Malformed => {
            let admins = ctx.config.admins();
            let to: Vec<String> = admins.iter().map(|r| r.0.as_str().to_string()).collect();
            tracing::warn!(
                to = ?to.join(" "),
                "the daily submissions alert has no count after its marker: sent to the admin \
                 as \"SecureDrop Submissions Error\""
            );
            let report = journalist::error_report(from, &to, message);
            Plan {
                entries: super::entries_for(ctx, sender, &admins, &report),
                stamp: false,
            }
        }
        Count::Submissions(_) if journalists.is_empty() => {
            tracing::warn!(
                "no journalist is configured (the securedrop-journalist route has no to): \
                 the daily submissions notification is not sent"
            );
            nothing()
        }
        Count::Submissions(_) if suppressed(spool, now) => {
            tracing::info!(
                "journalist notification suppressed: one was sent less than 1410 minutes ago"
            );
            nothing()
        }
        Count::Submissions(n) => {
            let entries = journalists
                .iter()
                .flat_map(|j| {
                    let note = journalist::notification(from, j.0.as_str(), n);
                    super::entries_for(ctx, sender, std::slice::from_ref(j), &note)
                })
                .collect();
            Plan {
                entries,
                stamp: true,
            }
        }
    }
}

fn nothing() -> Plan {
    Plan {
        entries: Vec::new(),
        stamp: false,
    }
}

/// Whether a notification was queued less than [`SUPPRESS_FOR`] before
/// `now`. An unreadable stamp suppresses nothing (and is logged).
fn suppressed(spool: &Spool, now: SystemTime) -> bool {
    let last = match spool.read_root_file(STAMP_FILE, 64) {
        Ok(Some(bytes)) => String::from_utf8_lossy(&bytes).trim().parse::<u64>().ok(),
        Ok(None) => None,
        Err(e) => {
            tracing::error!("cannot read the journalist notification's stamp: {e}");
            None
        }
    };
    let Some(last) = last else { return false };
    now.duration_since(crate::when::from_unix(last))
        .is_ok_and(|since| since < SUPPRESS_FOR)
}

/// Records that a notification was queued at `now`.
pub fn stamp(spool: &Spool, now: SystemTime) -> Result<(), SpoolError> {
    let secs = crate::spool::unix_secs(now);
    spool.replace_root_file(STAMP_FILE, format!("{secs}\n").as_bytes(), true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_a_readable_recent_stamp_suppresses() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        assert!(!suppressed(&spool, now), "no stamp yet");

        stamp(&spool, now - Duration::from_secs(60)).unwrap();
        assert!(suppressed(&spool, now));
        stamp(&spool, now - SUPPRESS_FOR - Duration::from_secs(1)).unwrap();
        assert!(!suppressed(&spool, now), "1410 minutes have passed");

        // A clock set back, garbage, or a file too large to be a stamp:
        // a notification too many rather than none.
        stamp(&spool, now + Duration::from_secs(3600)).unwrap();
        assert!(!suppressed(&spool, now));
        std::fs::write(dir.path().join(STAMP_FILE), b"yesterday\n").unwrap();
        assert!(!suppressed(&spool, now));
        std::fs::write(dir.path().join(STAMP_FILE), vec![b'9'; 100]).unwrap();
        assert!(!suppressed(&spool, now));
    }
}
