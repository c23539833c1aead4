//! Ingest: how local mail gets in.
//!
//! Two doors lead to the same place. [`smtp`] serves SMTP on loopback (OSSEC's
//! maild, scripts, `sendmail -bs`); [`sendmail`] is the command-line door
//! for cron and scripts. Both resolve recipients with the same [`Router`],
//! build the outgoing messages with the same [`Context::entries`], and
//! acknowledge only once the spool holds them.

pub mod data;
pub mod sendmail;
pub mod session;
pub mod smtp;

use crate::config::Config;
use crate::encrypt;
use crate::route::{Recipient, Router};
use crate::spool::Entry;

/// Everything ingest needs from one loaded config, built once per load.
#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub router: Router,
    pub hostname: String,
}

impl Context {
    pub fn new(config: Config) -> Context {
        Context {
            router: config.router(),
            hostname: config.hostname(),
            config,
        }
    }

    /// One spool entry per recipient, each holding the outgoing message
    /// built for that recipient alone.
    pub fn entries(&self, sender: &str, recipients: &[Recipient], message: &[u8]) -> Vec<Entry> {
        recipients
            .iter()
            .map(|r| Entry::new(sender, r.0.as_str(), encrypt::outgoing_payload(message, r)))
            .collect()
    }
}
