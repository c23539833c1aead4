//! Encrypt: one outgoing message per recipient, built before anything
//! touches the spool, so no alert rests on disk in plaintext (DESIGN.md
//! section 4; `held/` is the one exception).
//!
//! [`Sealer::seal`] turns a received message into the message that will
//! leave the host for one recipient: outer headers from an allow-list
//! ([`mime::Outer`]) and a body encrypted to that recipient's key alone,
//! as RFC 3156 PGP/MIME with RFC 9788 protected headers (`pgp-mime`) or as
//! an armored text body (`inline`). When the key cannot encrypt,
//! [`Sealer::notice`] builds the plaintext notice that goes instead; it
//! holds no alert content.
//!
//! Encryption runs in-process with sequoia-openpgp: no gpg, no fork.

pub mod keys;
mod mime;
mod rsa;
pub mod subject;

use std::io::Write;
use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::Packet;
use openpgp::cert::Preferences;
use openpgp::cert::amalgamation::ValidAmalgamation;
use openpgp::serialize::Serialize;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message};
use openpgp::types::SymmetricAlgorithm;

use crate::config::{Config, KeyFailurePolicy, Mailbox, MessageFormat, SubjectPolicy};
use crate::spool::QueueId;
pub use keys::{CannotEncrypt, Keyring, RecipientKey};

/// What the config says about building outgoing messages.
#[derive(Debug, Clone)]
pub struct Sealer {
    pub format: MessageFormat,
    pub subject: SubjectPolicy,
    pub on_key_failure: KeyFailurePolicy,
    pub sender: Mailbox,
    pub hostname: String,
}

impl Sealer {
    /// The sealer for a validated config.
    pub fn new(config: &Config, hostname: &str) -> Result<Sealer, String> {
        Ok(Sealer {
            format: config.message.format,
            subject: config.message.subject,
            on_key_failure: config.message.on_key_failure,
            sender: config.sender()?,
            hostname: hostname.to_string(),
        })
    }

    /// The encrypted outgoing message for `key`'s recipient, or why the
    /// key cannot encrypt now.
    pub fn seal(
        &self,
        original: &[u8],
        key: &RecipientKey,
        id: &QueueId,
        now: SystemTime,
    ) -> Result<Vec<u8>, CannotEncrypt> {
        let subject = original_subject(original);
        let outer_subject = subject::outer(self.subject, subject.as_deref());
        let date = rfc822_date(now);
        let outer = mime::Outer::new(
            &self.sender,
            key.recipient.0.as_str(),
            outer_subject.as_deref(),
            &date,
            &self.message_id(id),
        );
        match self.format {
            MessageFormat::PgpMime => {
                let payload = mime::protected_payload(original, &outer, &date);
                let armored = encrypt_armored(key, now, &payload)?;
                Ok(mime::pgp_mime(
                    &outer,
                    &armored,
                    &format!("=_alert-relay.{id}"),
                ))
            }
            MessageFormat::Inline => {
                let armored = encrypt_armored(key, now, crate::message::body(original))?;
                Ok(mime::inline(&outer, &armored))
            }
        }
    }

    /// The plaintext notice sent instead of an alert that could not be
    /// encrypted. It names the key and the reason, never the alert.
    pub fn notice(
        &self,
        key: &RecipientKey,
        reason: &CannotEncrypt,
        held: Option<&QueueId>,
        id: &QueueId,
        now: SystemTime,
    ) -> Vec<u8> {
        let host = &self.hostname;
        let outer = mime::Outer::new(
            &self.sender,
            key.recipient.0.as_str(),
            Some(&format!("Failed to encrypt alert on {host}")),
            &rfc822_date(now),
            &self.message_id(id),
        );
        let kept = match held {
            Some(h) => format!(
                "The alert is kept on {host} with queue id {h}. Once the key is fixed, \
                 `relayctl release {h}` encrypts and sends it."
            ),
            None => "The alert was not kept (message.on_key_failure = \"drop\").".to_string(),
        };
        let text = format!(
            "alert-relay on {host} received an alert for {to}, but could not encrypt it\n\
             to the OpenPGP key {fpr}: {reason}.\n\n\
             {kept}\n\n\
             Failed to encrypt alert: investigate the relay's configuration\n\
             (`relayctl check` on {host} says what is wrong with the key).\n",
            to = key.recipient,
            fpr = key.fingerprint,
        );
        mime::notice(&outer, &text)
    }

    fn message_id(&self, id: &QueueId) -> String {
        format!("{id}@{}", self.sender.address.domain())
    }
}

/// The original's Subject, decoded (RFC 2047), if it has one.
fn original_subject(original: &[u8]) -> Option<String> {
    let head = &original[..crate::message::header_len(original)];
    let parsed = mail_parser::MessageParser::default().parse_headers(head)?;
    parsed.subject().map(str::to_string)
}

fn rfc822_date(now: SystemTime) -> String {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    mail_builder::headers::date::Date::new(i64::try_from(secs).unwrap_or(0)).to_rfc822()
}

/// `plaintext` encrypted to the recipient's valid encryption keys at
/// `now`, ASCII-armored.
fn encrypt_armored(
    key: &RecipientKey,
    now: SystemTime,
    plaintext: &[u8],
) -> Result<Vec<u8>, CannotEncrypt> {
    keys::can_encrypt(&key.cert, now)?;
    let recipients: Vec<_> = keys::encryption_keys(&key.cert, now).collect();
    // RSA keys of a cert without SEIPDv2 (AEAD) support take the fast path
    // of `rsa`; anything else, sequoia's own PKESK code.
    let seipdv2 = recipients.iter().any(|ka| {
        ka.valid_cert()
            .features()
            .is_some_and(|f| f.supports_seipdv2())
    });
    let fast: Option<Vec<&rsa::RsaKey>> = if seipdv2 {
        None
    } else {
        recipients
            .iter()
            .map(|ka| key.rsa(&ka.key().fingerprint()))
            .collect()
    };
    // sequoia refuses only what the policy or the key rules out.
    let failed = |e: openpgp::anyhow::Error| CannotEncrypt::Policy(e.to_string());
    let mut sink = Vec::with_capacity(plaintext.len() * 2 + 1024);
    {
        let message = Message::new(&mut sink);
        let mut message = Armorer::new(message).build().map_err(failed)?;
        let message = match fast {
            Some(rsa_keys) if !rsa_keys.is_empty() => {
                let algo = SymmetricAlgorithm::AES256;
                let session_key =
                    rsa::session_key(algo).map_err(|e| CannotEncrypt::Policy(e.to_string()))?;
                for rsa_key in rsa_keys {
                    let pkesk = rsa_key
                        .pkesk(algo, &session_key)
                        .map_err(|e| CannotEncrypt::Policy(e.to_string()))?;
                    Packet::from(pkesk)
                        .serialize(&mut message)
                        .map_err(failed)?;
                }
                Encryptor::with_session_key(message, algo, session_key)
                    .map_err(failed)?
                    .build()
                    .map_err(failed)?
            }
            _ => Encryptor::for_recipients(message, recipients)
                .build()
                .map_err(failed)?,
        };
        let mut writer = LiteralWriter::new(message).build().map_err(failed)?;
        writer
            .write_all(plaintext)
            .map_err(|e| CannotEncrypt::Policy(e.to_string()))?;
        writer.finalize().map_err(failed)?;
    }
    Ok(sink)
}
