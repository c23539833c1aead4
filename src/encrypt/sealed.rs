//! A sealed alert: the OpenPGP message encrypted to one recipient, with
//! the outer header fields it will travel under, before it is wrapped
//! into the outgoing message.
//!
//! The daemon wraps what it seals at once. `sendmail` writes it into
//! `incoming/` in the form below, and the daemon checks it before
//! wrapping ([`super::Sealer::check`]): anything with the spool's group
//! can write there, so nothing in it is taken on trust.
//!
//! ```text
//! format pgp-mime                  (or inline)
//! subject OSSEC Notification - ... (the outer Subject; empty for none)
//! date Thu, 28 Nov 2026 10:00:00 +0000
//! message-id 5f1c...@example.net   (random local part)
//!
//! -----BEGIN PGP MESSAGE-----
//! ...
//! ```

use std::io::{Read, Write};

use sequoia_openpgp as openpgp;

use openpgp::KeyHandle;
use openpgp::armor;
use openpgp::parse::{PacketParser, PacketParserResult, Parse};

use crate::config::MessageFormat;

/// The longest outer Subject a sealed alert may carry, in bytes (what
/// `subject::outer` makes is at most 203 characters).
const MAX_SUBJECT: usize = 1024;

/// One alert, encrypted to one recipient; see the module above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    pub format: MessageFormat,
    /// The outer Subject, already as `message.subject` wants it.
    pub subject: Option<String>,
    /// The outer Date (RFC 5322).
    pub date: String,
    /// The Message-ID, without angle brackets.
    pub message_id: String,
    /// The ASCII-armored OpenPGP message (CRLF line ends).
    pub armored: Vec<u8>,
}

impl Sealed {
    /// The form `sendmail` writes into `incoming/`.
    pub fn encode(&self) -> Vec<u8> {
        let format = match self.format {
            MessageFormat::PgpMime => "pgp-mime",
            MessageFormat::Inline => "inline",
        };
        let mut out = format!(
            "format {format}\nsubject {}\ndate {}\nmessage-id {}\n\n",
            self.subject.as_deref().unwrap_or(""),
            self.date,
            self.message_id
        )
        .into_bytes();
        out.extend_from_slice(&self.armored);
        out
    }

    /// Parses that form, strictly: each field once, in order, of the
    /// shape [`super::Sealer::seal`] makes. The OpenPGP message is not
    /// looked at here (see [`canonical_armor`]).
    pub fn decode(bytes: &[u8]) -> Result<Sealed, String> {
        let split = bytes
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or("no end of the sealed alert's header")?;
        let header = std::str::from_utf8(&bytes[..split]).map_err(|_| "the header is not UTF-8")?;
        let mut lines = header.split('\n');
        let mut field = |name: &str| -> Result<&str, String> {
            let line = lines.next().ok_or(format!("no {name}"))?;
            line.strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .ok_or(format!("expected {name}, found {:?}", clip(line)))
        };
        let format = match field("format")? {
            "pgp-mime" => MessageFormat::PgpMime,
            "inline" => MessageFormat::Inline,
            other => return Err(format!("unknown format {:?}", clip(other))),
        };
        let subject = field("subject")?;
        if subject.len() > MAX_SUBJECT || subject.chars().any(char::is_control) {
            return Err("the subject is too long or holds control characters".into());
        }
        let date = field("date")?;
        if !is_date(date) {
            return Err(format!("{:?} is not a date", clip(date)));
        }
        let message_id = field("message-id")?;
        if !is_message_id(message_id) {
            return Err(format!("{:?} is not a Message-ID", clip(message_id)));
        }
        if lines.next().is_some() {
            return Err("unexpected header line".into());
        }
        Ok(Sealed {
            format,
            subject: (!subject.is_empty()).then(|| subject.to_string()),
            date: date.to_string(),
            message_id: message_id.to_string(),
            armored: bytes[split + 2..].to_vec(),
        })
    }
}

/// At most 60 characters of untrusted text, for an error message.
fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

/// A date as [`super::Sealer::seal`] writes it: `Sat, 28 Nov 2026
/// 10:00:00 +0000`, nothing more.
fn is_date(s: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon,", "Tue,", "Wed,", "Thu,", "Fri,", "Sat,", "Sun,"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let digits = |p: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit())
    };
    let parts: Vec<&str> = s.split(' ').collect();
    let [day, date, month, year, time, zone] = parts[..] else {
        return false;
    };
    let hms: Vec<&str> = time.split(':').collect();
    DAYS.contains(&day)
        && digits(date, 1..=2)
        && MONTHS.contains(&month)
        && digits(year, 4..=4)
        && hms.len() == 3
        && hms.iter().all(|p| digits(p, 2..=2))
        && zone.len() == 5
        && zone.starts_with(['+', '-'])
        && digits(&zone[1..], 4..=4)
}

/// `local@domain` with a random local part of 8 to 64 letters and digits,
/// as [`super::Sealer::seal`] makes them.
fn is_message_id(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    (8..=64).contains(&local.len())
        && local.bytes().all(|b| b.is_ascii_alphanumeric())
        && (1..=253).contains(&domain.len())
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Checks an untrusted armored OpenPGP message and armors it anew.
///
/// It must be one message (one armor block, nothing around it that
/// survives: the new armor is made from the decoded packets) made of
/// public-key session-key packets, each for a key `allowed` accepts, and
/// then the encrypted data, last. A password (SKESK) packet, a packet for
/// another key or for no key (a wildcard), a literal or compressed packet
/// in the clear, a signature, or anything after the encrypted data is
/// refused. The encrypted data itself cannot be looked into: only the
/// recipient's key opens it, and that is the point.
pub fn canonical_armor(
    armored: &[u8],
    allowed: &dyn Fn(&KeyHandle) -> bool,
) -> Result<Vec<u8>, String> {
    if !armored.starts_with(b"-----BEGIN PGP MESSAGE-----") {
        return Err("not an armored OpenPGP message".into());
    }
    let mut binary = Vec::with_capacity(armored.len() * 3 / 4);
    armor::Reader::from_bytes(
        armored,
        armor::ReaderMode::Tolerant(Some(armor::Kind::Message)),
    )
    .read_to_end(&mut binary)
    .map_err(|e| format!("bad armor: {e}"))?;
    check_packets(&binary, allowed)?;
    let mut writer =
        armor::Writer::new(Vec::with_capacity(armored.len() + 64), armor::Kind::Message)
            .map_err(|e| e.to_string())?;
    writer.write_all(&binary).map_err(|e| e.to_string())?;
    writer.finalize().map_err(|e| e.to_string())
}

/// The packet rule of [`canonical_armor`], on the binary message.
fn check_packets(binary: &[u8], allowed: &dyn Fn(&KeyHandle) -> bool) -> Result<(), String> {
    let mut ppr = PacketParser::from_bytes(binary).map_err(|e| format!("not OpenPGP: {e}"))?;
    let mut session_keys = 0;
    let mut encrypted = false;
    while let PacketParserResult::Some(pp) = ppr {
        if encrypted {
            return Err("data after the encrypted data".into());
        }
        match &pp.packet {
            openpgp::Packet::PKESK(pkesk) => match pkesk.recipient() {
                Some(handle) if allowed(&handle) => session_keys += 1,
                Some(handle) => return Err(format!("a session key for another key ({handle})")),
                None => return Err("a session key for an unnamed key".into()),
            },
            openpgp::Packet::SEIP(_) if session_keys > 0 => encrypted = true,
            openpgp::Packet::SEIP(_) => return Err("encrypted data without a session key".into()),
            other => {
                return Err(format!(
                    "a {} where only session keys and encrypted data may be",
                    other.tag()
                ));
            }
        }
        // `next` skips the encrypted data's body: it is never decrypted.
        ppr = pp.next().map_err(|e| format!("not OpenPGP: {e}"))?.1;
    }
    if encrypted {
        Ok(())
    } else {
        Err("no encrypted data".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sealed {
        Sealed {
            format: MessageFormat::PgpMime,
            subject: Some("OSSEC Notification - Alert level 7".into()),
            date: "Sat, 28 Nov 2026 10:00:00 +0000".into(),
            message_id: "0123456789abcdef0123456789abcdef@example.net".into(),
            armored: b"-----BEGIN PGP MESSAGE-----\n\nx\n-----END PGP MESSAGE-----\n".to_vec(),
        }
    }

    #[test]
    fn the_submitted_form_round_trips() {
        let s = sample();
        assert_eq!(Sealed::decode(&s.encode()).unwrap(), s);
        let none = Sealed {
            subject: None,
            format: MessageFormat::Inline,
            ..sample()
        };
        assert_eq!(Sealed::decode(&none.encode()).unwrap(), none);
    }

    #[test]
    fn fields_of_another_shape_are_refused() {
        let good = String::from_utf8(sample().encode()).unwrap();
        for (from, to, why) in [
            ("format pgp-mime", "format plain", "unknown format"),
            ("date Sat", "date yesterday Sat", "is not a date"),
            ("+0000", "+0000 (secret)", "is not a date"),
            (
                "0123456789abcdef0123456789abcdef@",
                "<x>@",
                "is not a Message-ID",
            ),
            ("@example.net", "@exa mple.net", "is not a Message-ID"),
            ("subject OSSEC", "subject OSSEC\u{7}", "control characters"),
            (
                "message-id",
                "cc: evil@example.org\nmessage-id",
                "expected message-id",
            ),
            ("\n\n", "\nextra line\n\n", "unexpected header line"),
        ] {
            let bad = good.replacen(from, to, 1);
            let e = Sealed::decode(bad.as_bytes()).unwrap_err();
            assert!(e.contains(why), "{to:?}: {e}");
        }
        assert!(Sealed::decode(b"format pgp-mime").is_err());
    }
}
