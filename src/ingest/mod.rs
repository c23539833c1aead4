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
use crate::encrypt::{CannotEncrypt, HoldKey, Keyring, RecipientKey, Sealed, Sealer};
use crate::route::{Address, Recipient, Router};
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
    /// The spool's hold key, once the daemon has made one: held originals
    /// are encrypted to it (`crate::encrypt::hold`).
    pub hold: Option<HoldKey>,
}

/// The longest envelope sender or note taken from a submission.
const MAX_FIELD: usize = 512;

/// What one received message becomes for one recipient, before it is
/// stored: by the daemon at once, by `sendmail` as a submission.
enum Sealing {
    /// Encrypted to the recipient's key.
    Sealed(Sealed),
    /// The key cannot encrypt: a notice goes instead.
    Notice(CannotEncrypt),
    /// The original, kept for `relayctl release`: encrypted to the hold
    /// key when `sealed`, in plaintext otherwise.
    Held {
        original: Vec<u8>,
        sealed: bool,
        reason: String,
    },
}

impl Context {
    /// Loads the recipients' keys; a missing, unreadable or mismatched key
    /// is a config error. The hold key is read from the spool when there.
    pub fn new(config: Config) -> Result<Context, ConfigError> {
        let hostname = config.hostname();
        let keyring = Keyring::load(&config)?;
        let sealer = Sealer::new(&config).map_err(|message| ConfigError {
            file: config.path.clone(),
            problems: vec![crate::config::Problem {
                key: "relay.sender".into(),
                message,
            }],
        })?;
        let hold = HoldKey::load(&config.queue.dir).ok().flatten();
        Ok(Context {
            router: config.router(),
            hostname,
            keyring,
            sealer,
            hold,
            config,
        })
    }

    /// The spool entries for one received message, as the daemon stores
    /// them: per recipient, the message encrypted to that recipient's key
    /// alone; or, when the key cannot encrypt, a notice with no alert
    /// content plus (unless `on_key_failure = "drop"`) the original as a
    /// held entry, encrypted to the hold key.
    pub fn entries(&self, sender: &str, recipients: &[Recipient], message: &[u8]) -> Vec<Entry> {
        let now = SystemTime::now();
        self.seal_all(recipients, message, now)
            .into_iter()
            .map(|(id, to, sealing)| self.render(id, sender, to, sealing, now))
            .collect()
    }

    /// The same, as `sendmail` submits it into `incoming/`: the sealed
    /// alerts and notices are wrapped by the daemon, after its check
    /// ([`Context::admit`]).
    pub fn submissions(
        &self,
        sender: &str,
        recipients: &[Recipient],
        message: &[u8],
    ) -> Vec<Entry> {
        let now = SystemTime::now();
        self.seal_all(recipients, message, now)
            .into_iter()
            .map(|(id, to, sealing)| match sealing {
                Sealing::Sealed(sealed) => {
                    Entry::with_id(id, Kind::Sealed, sender, to.0.as_str(), sealed.encode())
                }
                Sealing::Notice(reason) => {
                    Entry::with_id(id, Kind::Notice, sender, to.0.as_str(), Vec::new())
                        .with_note(&format!("encryption failed: {reason}"))
                }
                held @ Sealing::Held { .. } => self.render(id, sender, to, held, now),
            })
            .collect()
    }

    /// Takes a submission from `incoming/`, which anything with the
    /// spool's group can write, and returns the entry to store in its
    /// place, or why it is refused. The recipient must be configured now;
    /// a sealed alert must be encrypted to that recipient's key alone
    /// ([`Sealer::check`]); a notice carries nothing (the daemon writes its
    /// fixed text); a held original is stored encrypted to the hold key.
    /// An outgoing message is never taken from there: only the daemon
    /// builds those.
    pub fn admit(&self, submitted: Entry) -> Result<Entry, String> {
        let key = self.configured(&submitted.recipient)?;
        let to = key.recipient.clone();
        let sender: String = submitted.sender.chars().take(MAX_FIELD).collect();
        let note: String = submitted.note.chars().take(MAX_FIELD).collect();
        let now = SystemTime::now();
        let sealing = match submitted.kind {
            Kind::Sealed => Sealing::Sealed(self.sealer.check(&submitted.payload, key)?),
            Kind::Notice if submitted.payload.is_empty() => {
                let stored = Entry::with_id(
                    submitted.id,
                    Kind::Outgoing,
                    &sender,
                    to.0.as_str(),
                    self.sealer.notice(&to, now),
                );
                return Ok(stored.with_note(&note));
            }
            Kind::Notice => return Err("a notice with a payload".into()),
            Kind::HeldSealed => {
                let hold = self.hold.as_ref().ok_or("no hold key to check it with")?;
                Sealing::Held {
                    original: hold.check(&submitted.payload)?,
                    sealed: true,
                    reason: note,
                }
            }
            Kind::Held => self.hold_original(submitted.payload, note),
            Kind::Outgoing => {
                return Err(
                    "an outgoing message, which only the daemon builds (an older \
                            sendmail's, or forged)"
                        .into(),
                );
            }
        };
        let mut stored = self.render(submitted.id, &sender, &to, sealing, now);
        stored.created = submitted.created;
        Ok(stored)
    }

    /// The configured recipient's key for an address taken from a file.
    fn configured(&self, address: &str) -> Result<&RecipientKey, String> {
        let clipped: String = address.chars().take(80).collect();
        Address::parse(address)
            .ok()
            .and_then(|a| self.keyring.get(&Recipient(a)))
            .ok_or_else(|| format!("{clipped:?} is not a configured recipient"))
    }

    /// Encrypts the message for each recipient, with a new queue id each.
    fn seal_all<'r>(
        &self,
        recipients: &'r [Recipient],
        message: &[u8],
        now: SystemTime,
    ) -> Vec<(QueueId, &'r Recipient, Sealing)> {
        let mut out = Vec::with_capacity(recipients.len());
        for r in recipients {
            // The router only yields configured recipients, and the
            // keyring holds a key for each; a gap would be a bug.
            let Some(key) = self.keyring.get(r) else {
                tracing::error!(to = %r, "no key loaded for a configured recipient; message held");
                let held =
                    self.hold_original(message.to_vec(), "no key loaded for this recipient".into());
                out.push((QueueId::generate(), r, held));
                continue;
            };
            match self.sealer.seal(message, key, now) {
                Ok(sealed) => out.push((QueueId::generate(), r, Sealing::Sealed(sealed))),
                Err(reason) => {
                    if self.sealer.on_key_failure == KeyFailurePolicy::Hold {
                        let held = self.hold_original(message.to_vec(), reason.to_string());
                        out.push((QueueId::generate(), r, held));
                    }
                    out.push((QueueId::generate(), r, Sealing::Notice(reason)));
                }
            }
        }
        out
    }

    /// A held original, encrypted to the hold key when there is one.
    fn hold_original(&self, original: Vec<u8>, reason: String) -> Sealing {
        match self.hold.as_ref().map(|h| h.seal(&original)) {
            Some(Ok(sealed)) => Sealing::Held {
                original: sealed,
                sealed: true,
                reason,
            },
            Some(Err(e)) => {
                tracing::error!("{e}; the held original is kept in plaintext");
                Sealing::Held {
                    original,
                    sealed: false,
                    reason,
                }
            }
            None => Sealing::Held {
                original,
                sealed: false,
                reason,
            },
        }
    }

    /// The entry the daemon stores for one sealing.
    fn render(
        &self,
        id: QueueId,
        sender: &str,
        to: &Recipient,
        sealing: Sealing,
        now: SystemTime,
    ) -> Entry {
        let to_text = to.0.as_str();
        match sealing {
            Sealing::Sealed(sealed) => Entry::with_id(
                id,
                Kind::Outgoing,
                sender,
                to_text,
                self.sealer.wrap(sealed, to),
            ),
            Sealing::Notice(reason) => Entry::with_id(
                id,
                Kind::Outgoing,
                sender,
                to_text,
                self.sealer.notice(to, now),
            )
            .with_note(&format!("encryption failed: {reason}")),
            Sealing::Held {
                original,
                sealed,
                reason,
            } => {
                let kind = if sealed { Kind::HeldSealed } else { Kind::Held };
                Entry::with_id(id, kind, sender, to_text, original).with_note(&reason)
            }
        }
    }
}

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
