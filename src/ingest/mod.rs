//! Ingest: how local mail gets in.
//!
//! Two doors lead to the same place. [`smtp`] serves SMTP on loopback (OSSEC's
//! maild, scripts, `sendmail -bs`); [`sendmail`] is the command-line door
//! for cron and scripts. Both resolve recipients with the same router,
//! encrypt with the same [`entries`] code, and acknowledge only once the
//! spool holds the message. Ingest hands new mail to the spool and names
//! no later stage: the spool tells delivery ([`crate::spool::Arrivals`]).

pub mod data;
mod entries;
pub mod journalist;
pub mod sendmail;
pub mod session;
pub mod smtp;

pub use entries::{admit, entries_for, route, submissions};

use crate::spool::Entry;

/// One log line per stored entry: queued, or held with the reason. Never
/// any alert content.
pub fn log_stored(entries: &[Entry], via: &str) {
    for e in entries {
        let size = e.payload.len();
        match e.kind {
            k if k.is_held() => tracing::warn!(
                id = %e.id, to = %e.recipient, size, via = %via, reason = ?e.note,
                "held: the recipient's key cannot encrypt; fix the key, then relayctl release"
            ),
            _ if !e.note.is_empty() => tracing::warn!(
                id = %e.id, to = %e.recipient, size, via = %via, reason = ?e.note,
                "queued a notice instead of the alert"
            ),
            _ => tracing::info!(id = %e.id, to = %e.recipient, size, via = %via, "queued"),
        }
    }
}
