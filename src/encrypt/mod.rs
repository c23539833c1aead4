//! Encrypt: one outgoing message per recipient, built before anything
//! touches the spool, so no alert rests on disk in plaintext
//! (`held/`, encrypted to the spool's hold key, is the one exception).
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

pub mod hold;
pub mod keys;
mod mime;
pub mod open;
pub mod pad;
mod rsa;
mod sealed;
pub mod subject;
mod x25519;

use std::io::Write;
use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::Packet;
use openpgp::serialize::Serialize;
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message};
use openpgp::types::SymmetricAlgorithm;

use crate::config::{Config, KeyFailurePolicy, Mailbox, MessageFormat, SubjectPolicy};
use crate::route::Recipient;
pub use hold::HoldKey;
pub use keys::{CannotEncrypt, Keyring, RecipientKey};
pub use pad::Padding;
pub use sealed::Sealed;

/// What the config says about building outgoing messages.
#[derive(Debug, Clone)]
pub struct Sealer {
    pub format: MessageFormat,
    pub subject: SubjectPolicy,
    pub on_key_failure: KeyFailurePolicy,
    pub pad: Padding,
    pub sender: Mailbox,
}

/// The outer Subject of the notice sent instead of an alert that could not
/// be encrypted.
pub const NOTICE_SUBJECT: &str = "Failed to encrypt an alert";

/// The whole text of that notice. It is the same for every failure, as
/// SecureDrop's: it travels in the clear through a third-party relay, so
/// it names no host, recipient, key, reason or queue id. Those are in the
/// log and in `relayctl queue` on the host.
pub const NOTICE_TEXT: &str = "\
An alert could not be encrypted to your OpenPGP key, so it was not sent.

Investigate the mail configuration of the server that sends alerts:
`relayctl queue` and `relayctl check` there say what is wrong.
";

impl Sealer {
    /// The sealer for a validated config.
    pub fn new(config: &Config) -> Result<Sealer, String> {
        Ok(Sealer {
            format: config.message.format,
            subject: config.message.subject,
            on_key_failure: config.message.on_key_failure,
            pad: config.message.pad,
            sender: config.sender()?,
        })
    }

    /// Encrypts `original` for `key`'s recipient alone, or says why the
    /// key cannot encrypt now. The result is wrapped into the outgoing
    /// message by [`Sealer::wrap`] (at once by the daemon; after the
    /// daemon's check for what `sendmail` submits).
    pub fn seal(
        &self,
        original: &[u8],
        key: &RecipientKey,
        now: SystemTime,
    ) -> Result<Sealed, CannotEncrypt> {
        let subject = original_subject(original);
        let sealed = Sealed {
            format: self.format,
            subject: subject::outer(self.subject, subject.as_deref()),
            date: rfc822_date(now),
            message_id: format!("{}@{}", random_token(), self.sender.address.domain()),
            armored: Vec::new(),
        };
        let armored = match self.format {
            MessageFormat::PgpMime => {
                let outer = self.outer(&sealed, &key.recipient);
                let write = |w: &mut dyn Write, padding| {
                    mime::write_protected_payload(w, original, &outer, &sealed.date, padding)
                };
                // The padding depends on the length, which only writing
                // tells: once into a counter, then for real.
                let mut counter = pad::Counter::default();
                let padding = match self.pad {
                    Padding::None => 0,
                    policy => {
                        write(&mut counter, 0).map_err(|e| CannotEncrypt::Policy(e.to_string()))?;
                        policy.filler(counter.0, pad::FIELD_MIN)
                    }
                };
                encrypt_armored(key, now, counter.0 + padding, &mut |w| write(w, padding))?
            }
            MessageFormat::Inline => {
                let body = crate::message::body(original);
                // Blank lines with the body's own line ends.
                let first_eol = body.iter().position(|&b| b == b'\n');
                let eol: &'static [u8] = if first_eol.is_some_and(|i| i > 0 && body[i - 1] == b'\r')
                {
                    b"\r\n"
                } else {
                    b"\n"
                };
                let padding = self.pad.filler(body.len(), eol.len());
                encrypt_armored(key, now, body.len() + padding, &mut |w| {
                    w.write_all(body)?;
                    match padding {
                        0 => Ok(()),
                        n => pad::blank_lines(w, n, eol),
                    }
                })?
            }
        };
        Ok(Sealed { armored, ..sealed })
    }

    /// The outgoing message for `to`: outer header fields from the
    /// allow-list around the sealed alert. The MIME boundary is random.
    pub fn wrap(&self, sealed: Sealed, to: &Recipient) -> Vec<u8> {
        let outer = self.outer(&sealed, to);
        match sealed.format {
            MessageFormat::PgpMime => {
                mime::pgp_mime(&outer, sealed.armored, &format!("=_{}", random_token()))
            }
            MessageFormat::Inline => mime::inline(&outer, sealed.armored),
        }
    }

    /// [`Sealer::seal`] then [`Sealer::wrap`]: the outgoing message.
    pub fn outgoing(
        &self,
        original: &[u8],
        key: &RecipientKey,
        now: SystemTime,
    ) -> Result<Vec<u8>, CannotEncrypt> {
        self.seal(original, key, now)
            .map(|sealed| self.wrap(sealed, &key.recipient))
    }

    /// Checks what `sendmail` (or anything with the spool's group) wrote
    /// as a sealed alert for `key`'s recipient: the fields must be of the
    /// form [`Sealer::seal`] makes, and the OpenPGP message must be
    /// encrypted to that recipient's key and nothing else (no password,
    /// no other key, no plaintext packet). Returns it ready to wrap, its
    /// armor made anew and its Subject held to the policy in force now.
    pub fn check(&self, payload: &[u8], key: &RecipientKey) -> Result<Sealed, String> {
        let sealed = Sealed::decode(payload)?;
        let armored = sealed::canonical_armor(&sealed.armored, &|handle| {
            key.cert
                .keys()
                .any(|ka| handle.aliases(ka.key().key_handle()))
        })
        .map_err(|e| format!("the alert is not encrypted to {}: {e}", key.fingerprint))?;
        Ok(Sealed {
            subject: subject::outer(self.subject, sealed.subject.as_deref()),
            armored,
            ..sealed
        })
    }

    /// The plaintext notice sent instead of an alert that could not be
    /// encrypted: always the same text ([`NOTICE_TEXT`]), nothing of the
    /// alert, the host or the key.
    pub fn notice(&self, to: &Recipient, now: SystemTime) -> Vec<u8> {
        let sealed = Sealed {
            format: MessageFormat::Inline,
            subject: Some(NOTICE_SUBJECT.to_string()),
            date: rfc822_date(now),
            message_id: format!("{}@{}", random_token(), self.sender.address.domain()),
            armored: Vec::new(),
        };
        mime::notice(&self.outer(&sealed, to), NOTICE_TEXT)
    }

    fn outer(&self, sealed: &Sealed, to: &Recipient) -> mime::Outer {
        mime::Outer::new(
            &self.sender,
            to.0.as_str(),
            sealed.subject.as_deref(),
            &sealed.date,
            &sealed.message_id,
        )
    }
}

/// A recipient key whose session-key packet is built here rather than by
/// sequoia: RSA (`rsa`: faster arithmetic) and Curve25519 ECDH (`x25519`:
/// no Yarrow reseeded per random value with `crypto-nettle`). Both take
/// the session key from the system CSPRNG.
#[derive(Debug, Clone)]
pub enum WrapKey {
    /// Boxed: its precomputed modulus parameters take 2 KiB.
    Rsa(Box<rsa::RsaKey>),
    X25519(x25519::X25519Key),
}

impl WrapKey {
    /// The key, when one of the two handles it; `None` leaves it to sequoia.
    pub fn new(
        key: &openpgp::packet::Key<
            openpgp::packet::key::PublicParts,
            openpgp::packet::key::UnspecifiedRole,
        >,
    ) -> Option<WrapKey> {
        rsa::RsaKey::new(key)
            .map(|k| WrapKey::Rsa(Box::new(k)))
            .or_else(|| x25519::X25519Key::new(key).map(WrapKey::X25519))
    }

    pub fn fingerprint(&self) -> &openpgp::Fingerprint {
        match self {
            WrapKey::Rsa(k) => k.fingerprint(),
            WrapKey::X25519(k) => k.fingerprint(),
        }
    }

    /// The PKESK v3 packet that gives `session_key` (for `algo`) to this key.
    fn pkesk(
        &self,
        algo: SymmetricAlgorithm,
        session_key: &openpgp::crypto::SessionKey,
    ) -> Result<openpgp::packet::PKESK, rsa::WrapError> {
        match self {
            WrapKey::Rsa(k) => k.pkesk(algo, session_key),
            WrapKey::X25519(k) => k.pkesk(algo, session_key),
        }
    }
}

/// 128 random bits in hex: a Message-ID's local part, a MIME boundary.
/// Random rather than derived from the queue id, which holds the time,
/// the daemon's pid and a counter: the relay and every later hop would
/// learn how many alerts the host has sent.
fn random_token() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        // The system CSPRNG failing is a broken host; a token from the
        // clock and a counter stays unique, if not secret.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes[..8].copy_from_slice(&(t as u64).to_be_bytes());
        bytes[8..].copy_from_slice(&n.to_be_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    let date = mail_builder::headers::date::Date::new(i64::try_from(secs).unwrap_or(0)).to_rfc822();
    zero_pad_day(&date)
}

/// "Sun, 1 Nov 2026 ..." as "Sun, 01 Nov 2026 ...": one length on every
/// day of the month (RFC 5322 allows both), so that the Date field does
/// not make messages that must be of one size (SecureDrop's journalist
/// notification, the heartbeat) differ by a byte.
fn zero_pad_day(date: &str) -> String {
    match date.split_once(", ") {
        Some((weekday, rest)) if rest.find(' ') == Some(1) => format!("{weekday}, 0{rest}"),
        _ => date.to_string(),
    }
}

/// The plaintext that `write` writes (about `size` bytes), encrypted to
/// the recipient's valid encryption keys at `now`, ASCII-armored with CRLF
/// line ends, as it goes into the outgoing message. The buffer has room
/// in front for the message's header, so that wrapping it copies nothing.
fn encrypt_armored(
    key: &RecipientKey,
    now: SystemTime,
    size: usize,
    write: &mut dyn FnMut(&mut dyn Write) -> std::io::Result<()>,
) -> Result<Vec<u8>, CannotEncrypt> {
    let usable = key.usable(now)?;
    let seipdv2 = usable.features.supports_seipdv2();
    // RSA and Curve25519 keys of a cert without SEIPDv2 (AEAD) support get
    // their session-key packets from `WrapKey`; anything else from
    // sequoia's own PKESK code.
    let fast: Option<Vec<&WrapKey>> = if seipdv2 {
        None
    } else {
        usable.keys.iter().map(|f| key.wrap(f)).collect()
    };
    // sequoia refuses only what the policy or the key rules out.
    let failed = |e: openpgp::anyhow::Error| CannotEncrypt::Policy(e.to_string());
    // Armor is 4/3 of the binary, plus line ends; 2 KiB for the header.
    let mut sink = Vec::with_capacity(size + size / 2 + 4096);
    {
        let message = Message::new(crate::message::LfToCrlf(&mut sink));
        let mut message = Armorer::new(message).build().map_err(failed)?;
        let message = match fast {
            Some(wrap_keys) if !wrap_keys.is_empty() => {
                let algo = SymmetricAlgorithm::AES256;
                let session_key =
                    rsa::session_key(algo).map_err(|e| CannotEncrypt::Policy(e.to_string()))?;
                for wrap_key in wrap_keys {
                    let pkesk = wrap_key
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
            _ => {
                // The keys the judgement chose, as sequoia names them
                // from a valid key (`From<ValidErasedKeyAmalgamation>`).
                let recipients = key
                    .cert
                    .keys()
                    .filter(|ka| usable.keys.contains(&ka.key().fingerprint()))
                    .map(|ka| {
                        let handle: openpgp::KeyHandle = if seipdv2 {
                            ka.key().fingerprint().into()
                        } else {
                            ka.key().keyid().into()
                        };
                        openpgp::serialize::stream::Recipient::new(
                            usable.features.clone(),
                            handle,
                            ka.key(),
                        )
                    });
                Encryptor::for_recipients(message, recipients)
                    .build()
                    .map_err(failed)?
            }
        };
        let mut writer = LiteralWriter::new(message).build().map_err(failed)?;
        write(&mut writer).map_err(|e| CannotEncrypt::Policy(e.to_string()))?;
        writer.finalize().map_err(failed)?;
    }
    Ok(sink)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use openpgp::Cert;
    use openpgp::packet::key::{SecretParts, UnspecifiedRole};
    use openpgp::parse::Parse;

    /// A test key with its secret parts (tests/keys).
    pub(crate) fn secret_cert(name: &str) -> Cert {
        let path = format!("{}/tests/keys/{name}.sec.asc", env!("CARGO_MANIFEST_DIR"));
        Cert::from_file(path).unwrap()
    }

    #[test]
    fn sequoia_decrypts_each_session_key_packet_made_here_with_the_secret_key() {
        for name in ["rsa2048", "alerts", "journalist"] {
            let cert = secret_cert(name);
            let sub = cert.keys().subkeys().next().unwrap();
            let public = sub.key().parts_as_public().role_as_unspecified().clone();
            let wrap = WrapKey::new(&public).expect("RSA or Curve25519");
            let secret: openpgp::packet::Key<SecretParts, UnspecifiedRole> = sub
                .key()
                .clone()
                .parts_into_secret()
                .unwrap()
                .role_into_unspecified();
            let mut pair = secret.into_keypair().unwrap();
            for algo in [SymmetricAlgorithm::AES256, SymmetricAlgorithm::AES128] {
                let sk = rsa::session_key(algo).unwrap();
                let pkesk = wrap.pkesk(algo, &sk).unwrap();
                let openpgp::packet::PKESK::V3(v3) = &pkesk else {
                    panic!("a v3 PKESK");
                };
                assert_eq!(v3.recipient(), Some(&public.keyid()), "{name}");
                let (got_algo, got) = pkesk.decrypt(&mut pair, None).expect("decrypts");
                assert_eq!(got_algo, Some(algo), "{name}");
                assert_eq!(&got[..], &sk[..], "{name}");
            }
        }
    }

    #[test]
    fn the_date_has_one_length_on_every_day_of_the_month() {
        let day =
            |secs: u64| rfc822_date(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs));
        // 2026-11-02 and 2026-11-30.
        let early = day(1_793_577_600);
        let late = day(1_795_996_800);
        assert_eq!(early, "Mon, 02 Nov 2026 00:00:00 +0000");
        assert_eq!(late, "Mon, 30 Nov 2026 00:00:00 +0000");
    }
}
