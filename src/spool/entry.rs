//! Queue ids and the entry file format (see the module above).

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const MAGIC: &str = "alert-relay-entry 1";
pub(super) const MSG_SUFFIX: &str = ".msg";

static SEQUENCE: AtomicU32 = AtomicU32::new(0);

/// Identifies one outgoing message (one recipient) from arrival to delivery.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(String);

impl QueueId {
    /// A new id, unique across processes and later than every earlier one
    /// from this process.
    pub fn generate() -> QueueId {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        let pid = std::process::id() & 0xFF_FFFF;
        let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed) & 0xF_FFFF;
        QueueId(format!(
            "{:013X}{pid:06X}{seq:05X}",
            micros & 0x1F_FFFF_FFFF_FFFF
        ))
    }

    /// Accepts exactly the form [`QueueId::generate`] makes, so an id from
    /// the command line cannot name a path outside the spool.
    pub fn parse(s: &str) -> Option<QueueId> {
        (s.len() == 24 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')))
            .then(|| QueueId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// When the id was made: its first 13 hex digits are microseconds
    /// since the epoch.
    pub fn created(&self) -> SystemTime {
        let micros = u64::from_str_radix(self.0.get(..13).unwrap_or("0"), 16).unwrap_or(0);
        UNIX_EPOCH + Duration::from_micros(micros)
    }

    pub(super) fn file_name(&self) -> String {
        format!("{}{MSG_SUFFIX}", self.0)
    }
}

impl fmt::Display for QueueId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What an entry holds, and so where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A message ready to leave: encrypted, or a notice with no alert
    /// content. Only the daemon and `relayctl` write these (into `queue/`).
    Outgoing,
    /// An original whose recipient's key could not encrypt, in plaintext:
    /// what `sendmail` submits when the spool has no hold key yet, and
    /// what `held/` kept before hold keys existed.
    Held,
    /// An original whose recipient's key could not encrypt, encrypted to
    /// the spool's own hold key (`crate::encrypt::hold`), kept in `held/`
    /// until `relayctl release`.
    HeldSealed,
    /// A submission from `sendmail`: an alert encrypted to its recipient's
    /// key, with the outer header fields; the daemon checks it and builds
    /// the outgoing message (`incoming/` only).
    Sealed,
    /// A submission from `sendmail`: the recipient's key could not
    /// encrypt, send the notice (`incoming/` only; no payload).
    Notice,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Outgoing => "outgoing",
            Kind::Held => "held",
            Kind::HeldSealed => "held-sealed",
            Kind::Sealed => "sealed",
            Kind::Notice => "notice",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [
            Kind::Outgoing,
            Kind::Held,
            Kind::HeldSealed,
            Kind::Sealed,
            Kind::Notice,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    /// Whether the entry is a held original (either form).
    pub fn is_held(self) -> bool {
        matches!(self, Kind::Held | Kind::HeldSealed)
    }

    pub(super) fn dir(self) -> &'static str {
        match self {
            Kind::Outgoing => "queue",
            Kind::Held | Kind::HeldSealed => "held",
            Kind::Sealed | Kind::Notice => "incoming",
        }
    }
}

/// One message for one recipient, as the spool keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub id: QueueId,
    pub kind: Kind,
    /// Microseconds since the Unix epoch.
    pub created: u64,
    /// The envelope sender as received (informational; may be empty).
    pub sender: String,
    pub recipient: String,
    /// Why the entry is where it is (a held message's reason); one line.
    pub note: String,
    pub payload: Vec<u8>,
}

impl Entry {
    /// A new outgoing entry with a fresh id.
    pub fn new(sender: &str, recipient: &str, payload: Vec<u8>) -> Entry {
        Entry::with_id(
            QueueId::generate(),
            Kind::Outgoing,
            sender,
            recipient,
            payload,
        )
    }

    /// A new entry with a given id (one the payload already mentions).
    pub fn with_id(
        id: QueueId,
        kind: Kind,
        sender: &str,
        recipient: &str,
        payload: Vec<u8>,
    ) -> Entry {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Entry {
            id,
            kind,
            created,
            sender: header_safe(sender),
            recipient: header_safe(recipient),
            note: String::new(),
            payload,
        }
    }

    /// Sets the note, kept on one line of printable text.
    pub fn with_note(mut self, note: &str) -> Entry {
        self.note = note
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        self
    }

    pub fn created_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.created)
    }

    pub fn encode(&self) -> Vec<u8> {
        let header = self.encode_header();
        let mut out = Vec::with_capacity(header.len() + self.payload.len());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// The header that precedes the payload in the file.
    pub fn encode_header(&self) -> String {
        format!(
            "{MAGIC}\nid {}\nkind {}\ncreated {}\nsender {}\nrecipient {}\nnote {}\npayload {}\n\n",
            self.id,
            self.kind.as_str(),
            self.created,
            self.sender,
            self.recipient,
            self.note,
            self.payload.len()
        )
    }

    /// Parses an entry; the error says what is wrong with the file.
    pub fn decode(bytes: &[u8]) -> Result<Entry, String> {
        let (mut entry, start, len) = Entry::decode_header(bytes)?;
        let payload = &bytes[start..];
        if payload.len() != len {
            return Err(format!(
                "truncated: header says {len} payload bytes, file has {}",
                payload.len()
            ));
        }
        entry.payload = payload.to_vec();
        Ok(entry)
    }

    /// Parses the header at the start of `bytes` (which may stop short of
    /// the payload): the entry with an empty payload, where its payload
    /// starts, and how long the header says it is. Listings read no more.
    pub fn decode_header(bytes: &[u8]) -> Result<(Entry, usize, usize), String> {
        let split = bytes
            .windows(2)
            .position(|w| w == b"\n\n")
            .ok_or("no end of header")?;
        let header = std::str::from_utf8(&bytes[..split]).map_err(|_| "header is not UTF-8")?;
        let mut lines = header.split('\n');
        if lines.next() != Some(MAGIC) {
            return Err("not an alert-relay entry (bad first line)".into());
        }
        let mut field = |name: &str| -> Result<String, String> {
            let line = lines.next().ok_or(format!("missing {name}"))?;
            line.strip_prefix(name)
                .and_then(|v| v.strip_prefix(' '))
                .map(str::to_string)
                .ok_or(format!("expected {name}, found {line:?}"))
        };
        let id = field("id")?;
        let id = QueueId::parse(&id).ok_or(format!("bad id {id:?}"))?;
        let kind = field("kind")?;
        let kind = Kind::parse(&kind).ok_or(format!("unknown kind {kind:?}"))?;
        let created = field("created")?
            .parse()
            .map_err(|_| "bad created time".to_string())?;
        let sender = field("sender")?;
        let recipient = field("recipient")?;
        let note = field("note")?;
        let len: usize = field("payload")?
            .parse()
            .map_err(|_| "bad payload length".to_string())?;
        if lines.next().is_some() {
            return Err("unexpected header line".into());
        }
        let entry = Entry {
            id,
            kind,
            created,
            sender,
            recipient,
            note,
            payload: Vec::new(),
        };
        Ok((entry, split + 2, len))
    }
}

/// Keeps header values on one line of printable ASCII.
fn header_safe(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_graphic()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(payload: &[u8]) -> Entry {
        Entry::new("ossecm@mon", "alerts@example.org", payload.to_vec())
    }

    #[test]
    fn ids_are_unique_and_sorted() {
        let ids: Vec<QueueId> = (0..1000).map(|_| QueueId::generate()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids);
        assert!(QueueId::parse(ids[0].as_str()).is_some());
        assert!(QueueId::parse("../../etc/passwd").is_none());
    }

    #[test]
    fn entries_round_trip_with_any_payload() {
        let e = entry(b"\0\xff\n\nbinary\r\n.\r\n");
        assert_eq!(Entry::decode(&e.encode()).unwrap(), e);
    }

    #[test]
    fn damaged_entries_are_recognised() {
        let bytes = entry(b"hello world").encode();
        let truncated = &bytes[..bytes.len() - 3];
        assert!(Entry::decode(truncated).unwrap_err().contains("truncated"));
        assert!(Entry::decode(b"garbage").is_err());
        let bad_header = String::from_utf8(bytes.clone())
            .unwrap()
            .replace("created", "kreated");
        assert!(Entry::decode(bad_header.as_bytes()).is_err());
    }

    #[test]
    fn header_fields_cannot_inject_lines() {
        let e = Entry::new("a@b\nrecipient evil@x", "r@x", vec![]);
        let d = Entry::decode(&e.encode()).unwrap();
        assert_eq!(d.recipient, "r@x");
        assert!(!d.sender.contains('\n'));
    }
}
