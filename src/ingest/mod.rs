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

use std::time::SystemTime;

use crate::config::{Config, ConfigError, KeyFailurePolicy};
use crate::encrypt::{Keyring, Sealer};
use crate::route::{Recipient, Router};
use crate::spool::{Entry, Kind, QueueId};

/// Everything ingest needs from one loaded config, built once per load:
/// the keys are read and checked here, not per message.
#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub router: Router,
    pub hostname: String,
    pub keyring: Keyring,
    pub sealer: Sealer,
}

impl Context {
    /// Loads the recipients' keys; a missing, unreadable or mismatched key
    /// is a config error.
    pub fn new(config: Config) -> Result<Context, ConfigError> {
        let hostname = config.hostname();
        let keyring = Keyring::load(&config)?;
        let sealer = Sealer::new(&config, &hostname).map_err(|message| ConfigError {
            file: config.path.clone(),
            problems: vec![crate::config::Problem {
                key: "relay.sender".into(),
                message,
            }],
        })?;
        Ok(Context {
            router: config.router(),
            hostname,
            keyring,
            sealer,
            config,
        })
    }

    /// The spool entries for one received message: per recipient, the
    /// message encrypted to that recipient's key alone; or, when the key
    /// cannot encrypt, a notice with no alert content plus (unless
    /// `on_key_failure = "drop"`) the original as a held entry.
    pub fn entries(&self, sender: &str, recipients: &[Recipient], message: &[u8]) -> Vec<Entry> {
        let now = SystemTime::now();
        let mut out = Vec::with_capacity(recipients.len());
        for r in recipients {
            let id = QueueId::generate();
            let to = r.0.as_str();
            // The router only yields configured recipients, and the
            // keyring holds a key for each; a gap would be a bug.
            let Some(key) = self.keyring.get(r) else {
                tracing::error!(to, "no key loaded for a configured recipient; message held");
                out.push(
                    Entry::with_id(id, Kind::Held, sender, to, message.to_vec())
                        .with_note("no key loaded for this recipient"),
                );
                continue;
            };
            match self.sealer.seal(message, key, &id, now) {
                Ok(sealed) => out.push(Entry::with_id(id, Kind::Outgoing, sender, to, sealed)),
                Err(reason) => {
                    let held = match self.sealer.on_key_failure {
                        KeyFailurePolicy::Hold => {
                            let held_id = QueueId::generate();
                            out.push(
                                Entry::with_id(
                                    held_id.clone(),
                                    Kind::Held,
                                    sender,
                                    to,
                                    message.to_vec(),
                                )
                                .with_note(&reason.to_string()),
                            );
                            Some(held_id)
                        }
                        KeyFailurePolicy::Drop => None,
                    };
                    let notice = self.sealer.notice(key, &reason, held.as_ref(), &id, now);
                    out.push(
                        Entry::with_id(id, Kind::Outgoing, sender, to, notice)
                            .with_note(&format!("encryption failed: {reason}")),
                    );
                }
            }
        }
        out
    }
}

/// One log line per stored entry: queued, or held with the reason. Never
/// any alert content.
pub fn log_stored(entries: &[Entry], via: &str) {
    for e in entries {
        let size = e.payload.len();
        match e.kind {
            Kind::Held => tracing::warn!(
                id = %e.id, to = %e.recipient, size, via = %via, reason = ?e.note,
                "held: the recipient's key cannot encrypt; fix the key, then relayctl release"
            ),
            Kind::Outgoing if !e.note.is_empty() => tracing::warn!(
                id = %e.id, to = %e.recipient, size, via = %via, reason = ?e.note,
                "queued a notice instead of the alert"
            ),
            Kind::Outgoing => {
                tracing::info!(id = %e.id, to = %e.recipient, size, via = %via, "queued")
            }
        }
    }
}
