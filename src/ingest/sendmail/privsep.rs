//! `sendmail`'s privilege split: the spool's group for writing into
//! `incoming/`, and for nothing else.
//!
//! A directory descriptor opened with the group would not help: the
//! kernel checks the permission to create a file at each `openat`, with
//! the credentials of that moment. So the split is between processes, as
//! Postfix's `sendmail` (unprivileged) hands its file to `postdrop`
//! (setgid):
//!
//! - the **parent** keeps the group. It has read root's config, the keys
//!   and the hold key, and opened the spool; from then on it only reads
//!   framed entries from the child, checks their framing and form
//!   (bounded sizes, decodable entries of the kinds `sendmail` writes),
//!   writes them durably into `incoming/`, wakes the daemon and answers
//!   with one status. It never parses the message.
//! - the **child** gives the group up for good (real, effective and saved
//!   ids), then reads the message from standard input, parses it, resolves
//!   the recipients and encrypts. A flaw in any of that runs without the
//!   group.
//!
//! The daemon checks every submission again ([`crate::context::Context::admit`]):
//! the parent's check is about bounded memory and well-formed files, not
//! trust.
//!
//! The frame, child to parent: a `u32` count, then per entry a `u64`
//! length and the encoded entry (big-endian). The answer: a status byte,
//! a `u16` length and a message.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use super::Failure;
use crate::os::{self, Forked};
use crate::spool::{Entry, Kind, Spool, SpoolError};
use crate::sysexits;

/// Where submissions go: straight into the spool, or through the parent
/// that holds the spool's group.
#[derive(Debug, Clone)]
pub enum Dropbox {
    /// This process may write into `incoming/` itself (root, the spool's
    /// owner, or a spool of the user's own config).
    Direct(Spool),
    /// The privileged parent writes; this is the unprivileged child.
    Parent {
        link: Arc<Mutex<UnixStream>>,
        /// For error messages.
        incoming: PathBuf,
    },
}

/// The answer's status byte.
const OK: u8 = 0;
const FULL: u8 = 1;
const NO_PERMISSION: u8 = 2;
const FAILED: u8 = 3;
const REFUSED: u8 = 4;

impl Dropbox {
    /// Stores `entries` durably in `incoming/` (all or none), then wakes
    /// the daemon.
    pub fn submit(&self, entries: &[Entry]) -> Result<(), SpoolError> {
        match self {
            Dropbox::Direct(spool) => spool.submit(entries),
            Dropbox::Parent { link, incoming } => {
                let mut link = link.lock().unwrap_or_else(PoisonError::into_inner);
                let lost = |e: io::Error| SpoolError::Io {
                    op: "hand over to sendmail's writer",
                    path: incoming.clone(),
                    source: e,
                };
                write_frame(&mut *link, entries).map_err(lost)?;
                let (status, message) = read_answer(&mut *link).map_err(lost)?;
                let failed = |kind: io::ErrorKind| SpoolError::Io {
                    op: "write into",
                    path: incoming.clone(),
                    source: io::Error::new(kind, message.clone()),
                };
                match status {
                    OK => Ok(()),
                    FULL => Err(SpoolError::Full {
                        path: incoming.clone(),
                    }),
                    NO_PERMISSION => Err(failed(io::ErrorKind::PermissionDenied)),
                    _ => Err(failed(io::ErrorKind::Other)),
                }
            }
        }
    }
}

/// Whether only root can have written the config at `path`, so that a
/// setgid `sendmail` may read it with the spool's group: the file and
/// every directory on its (symlink-resolved) path belong to root, the
/// file is writable by root alone, and each directory too unless it is
/// sticky (as /tmp is: others cannot replace root's entries there).
/// Returns the resolved path to read, or why not. Whatever the config
/// says, the daemon checks each submission against its own.
pub fn root_controls(path: &std::path::Path) -> Result<std::path::PathBuf, String> {
    use std::os::unix::fs::MetadataExt;
    let resolved = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut at = Some(resolved.as_path());
    let mut file = true;
    while let Some(p) = at {
        let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
        let writable_by_others = meta.mode() & 0o022 != 0;
        let sticky = meta.mode() & 0o1000 != 0;
        if meta.uid() != 0 {
            return Err(format!("{} is not root's", p.display()));
        }
        if writable_by_others && (file || !sticky) {
            return Err(format!("{} is writable by others than root", p.display()));
        }
        file = false;
        at = p.parent();
    }
    Ok(resolved)
}

/// How much the parent accepts from the child.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries per message: a notice and a held original per recipient.
    pub entries: u32,
    /// Bytes per encoded entry.
    pub entry_bytes: u64,
}

impl Limits {
    fn for_context(ctx: &crate::context::Context) -> Limits {
        let recipients = u32::try_from(ctx.config.recipients.len()).unwrap_or(u32::MAX);
        Limits {
            entries: recipients.saturating_mul(2).max(1),
            entry_bytes: ctx.config.max_submission_bytes(),
        }
    }
}

/// Splits the process. In the child, with the group given up for good,
/// returns the dropbox to submit through. The parent never returns: it
/// writes what the child hands over, then exits with the child's status.
pub fn split(spool: Spool, ctx: &crate::context::Context) -> Result<Dropbox, Failure> {
    let limits = Limits::for_context(ctx);
    let (parent_end, child_end) = UnixStream::pair()
        .map_err(|e| Failure::new(sysexits::OSERR, format!("cannot split: {e}")))?;
    // SAFETY: sendmail is single-threaded until here: no runtime, no
    // thread has been started.
    let forked = unsafe { os::fork() }
        .map_err(|e| Failure::new(sysexits::OSERR, format!("cannot fork: {e}")))?;
    match forked {
        Forked::Child => {
            drop(parent_end);
            os::drop_privileges().map_err(|e| {
                Failure::new(sysexits::OSERR, format!("cannot drop privileges: {e}"))
            })?;
            // Changing credentials can make a process dumpable again.
            os::forbid_core_dumps();
            Ok(Dropbox::Parent {
                link: Arc::new(Mutex::new(child_end)),
                incoming: spool.root().join("incoming"),
            })
        }
        Forked::Parent { child } => {
            drop(child_end);
            // A child that dies mid-answer must not take the parent with
            // it: the parent waits for it and reports how it ended.
            os::ignore_sigpipe();
            serve(&spool, parent_end, limits);
            let code = match os::wait_child(child) {
                Ok(Some(code)) => u8::try_from(code).unwrap_or(sysexits::SOFTWARE),
                Ok(None) => {
                    eprintln!(
                        "sendmail: the submitting process was killed; nothing more was queued"
                    );
                    sysexits::SOFTWARE
                }
                Err(e) => {
                    eprintln!("sendmail: cannot wait for the submitting process: {e}");
                    sysexits::OSERR
                }
            };
            os::exit_now(code)
        }
    }
}

/// The parent's loop: one frame, one write, one answer, until the child
/// closes its end. A frame that breaks the rules ends the loop with
/// nothing of it written.
fn serve(spool: &Spool, mut link: UnixStream, limits: Limits) {
    loop {
        let entries = match read_frame(&mut link, limits) {
            Ok(Some(entries)) => entries,
            Ok(None) => return,
            Err(e) => {
                let _ = write_answer(&mut link, REFUSED, &format!("refused: {e}"));
                return;
            }
        };
        let (status, message) = match spool.submit(&entries) {
            Ok(()) => (OK, String::new()),
            Err(e @ SpoolError::Full { .. }) => (FULL, e.to_string()),
            Err(SpoolError::Io { source, .. })
                if source.kind() == io::ErrorKind::PermissionDenied =>
            {
                (NO_PERMISSION, source.to_string())
            }
            Err(e) => (FAILED, e.to_string()),
        };
        if write_answer(&mut link, status, &message).is_err() {
            return;
        }
    }
}

/// One frame from the child, or `None` at a clean end (the child is done).
pub fn read_frame(link: &mut impl Read, limits: Limits) -> io::Result<Option<Vec<Entry>>> {
    let mut count = [0u8; 4];
    match link.read_exact(&mut count) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let count = u32::from_be_bytes(count);
    if count == 0 || count > limits.entries {
        return Err(invalid(format!(
            "{count} entries for one message (at most {})",
            limits.entries
        )));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let mut len = [0u8; 8];
        link.read_exact(&mut len)?;
        let len = u64::from_be_bytes(len);
        if len > limits.entry_bytes {
            return Err(invalid(format!(
                "an entry of {len} bytes (at most {})",
                limits.entry_bytes
            )));
        }
        let mut bytes = Vec::new();
        link.take(len).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let entry = Entry::decode(&bytes).map_err(invalid)?;
        if !matches!(
            entry.kind,
            Kind::Sealed | Kind::Notice | Kind::Held | Kind::HeldSealed
        ) {
            return Err(invalid(format!("an entry of kind {:?}", entry.kind)));
        }
        if entries.iter().any(|e: &Entry| e.id == entry.id) {
            return Err(invalid("two entries with one id".into()));
        }
        entries.push(entry);
    }
    Ok(Some(entries))
}

fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// Frames `entries` for the parent.
pub fn write_frame(link: &mut impl Write, entries: &[Entry]) -> io::Result<()> {
    let count = u32::try_from(entries.len()).map_err(|_| invalid("too many entries".into()))?;
    link.write_all(&count.to_be_bytes())?;
    for e in entries {
        let header = e.encode_header();
        let len = (header.len() + e.payload.len()) as u64;
        link.write_all(&len.to_be_bytes())?;
        link.write_all(header.as_bytes())?;
        link.write_all(&e.payload)?;
    }
    link.flush()
}

fn write_answer(link: &mut impl Write, status: u8, message: &str) -> io::Result<()> {
    let text: String = message.chars().take(1024).collect();
    let len = u16::try_from(text.len()).unwrap_or(u16::MAX);
    link.write_all(&[status])?;
    link.write_all(&len.to_be_bytes())?;
    link.write_all(&text.as_bytes()[..usize::from(len)])?;
    link.flush()
}

fn read_answer(link: &mut impl Read) -> io::Result<(u8, String)> {
    let mut head = [0u8; 3];
    link.read_exact(&mut head)?;
    let mut text = vec![0u8; usize::from(u16::from_be_bytes([head[1], head[2]]))];
    link.read_exact(&mut text)?;
    Ok((head[0], String::from_utf8_lossy(&text).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn only_configs_that_root_controls_keep_the_group() {
        assert!(root_controls(Path::new("/etc/passwd")).is_ok());
        assert!(root_controls(Path::new("/nonexistent/relay.toml")).is_err());
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("relay.toml");
        std::fs::write(&config, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        set(dir.path(), 0o755);
        set(&config, 0o644);
        if crate::os::is_root() {
            assert_eq!(
                root_controls(&config).unwrap(),
                std::fs::canonicalize(&config).unwrap()
            );
            set(&config, 0o664);
            assert!(
                root_controls(&config)
                    .unwrap_err()
                    .contains("writable by others")
            );
            set(&config, 0o644);
            set(dir.path(), 0o777);
            assert!(
                root_controls(&config)
                    .unwrap_err()
                    .contains("writable by others")
            );
            // A sticky world-writable directory (like /tmp) is fine.
            set(dir.path(), 0o1777);
            assert!(root_controls(&config).is_ok());
            std::os::unix::fs::chown(&config, Some(65534), None).unwrap();
            assert!(
                root_controls(&config)
                    .unwrap_err()
                    .contains("is not root's")
            );
        } else {
            assert!(
                root_controls(&config)
                    .unwrap_err()
                    .contains("is not root's")
            );
        }
    }

    fn limits() -> Limits {
        Limits {
            entries: 4,
            entry_bytes: 4096,
        }
    }

    fn sealed(payload: &[u8]) -> Entry {
        Entry {
            kind: Kind::Sealed,
            ..Entry::new("cron@mon", "alerts@example.org", payload.to_vec())
        }
    }

    #[test]
    fn frames_round_trip() {
        let entries = vec![sealed(b"one"), sealed(b"two")];
        let mut wire = Vec::new();
        write_frame(&mut wire, &entries).unwrap();
        write_frame(&mut wire, &entries[..1]).unwrap();
        let mut r = &wire[..];
        assert_eq!(read_frame(&mut r, limits()).unwrap().unwrap(), entries);
        assert_eq!(read_frame(&mut r, limits()).unwrap().unwrap(), entries[..1]);
        assert!(read_frame(&mut r, limits()).unwrap().is_none());
    }

    #[test]
    fn frames_that_break_the_rules_are_refused() {
        let frame = |entries: &[Entry]| {
            let mut wire = Vec::new();
            write_frame(&mut wire, entries).unwrap();
            wire
        };
        let refused = |wire: Vec<u8>| read_frame(&mut &wire[..], limits()).unwrap_err();
        // Too many entries, too large an entry, a kind the daemon writes.
        assert!(
            refused(frame(&vec![sealed(b"x"); 5]))
                .to_string()
                .contains("5 entries")
        );
        assert!(
            refused(frame(&[sealed(&[0u8; 5000])]))
                .to_string()
                .contains("bytes")
        );
        let outgoing = Entry::new("a", "b@c", b"plain".to_vec());
        assert!(refused(frame(&[outgoing])).to_string().contains("Outgoing"));
        let twice = sealed(b"x");
        assert!(
            refused(frame(&[twice.clone(), twice]))
                .to_string()
                .contains("one id")
        );
        // Cut short, or garbage where an entry should be.
        let mut cut = frame(&[sealed(b"abc")]);
        cut.truncate(cut.len() - 1);
        assert_eq!(refused(cut).kind(), io::ErrorKind::UnexpectedEof);
        let mut garbage = 1u32.to_be_bytes().to_vec();
        garbage.extend(5u64.to_be_bytes());
        garbage.extend(b"hello");
        assert_eq!(refused(garbage).kind(), io::ErrorKind::InvalidData);
        assert!(
            refused(0u32.to_be_bytes().to_vec())
                .to_string()
                .contains("0 entries")
        );
    }

    #[test]
    fn answers_round_trip_and_are_bounded() {
        let mut wire = Vec::new();
        write_answer(&mut wire, FULL, &"x".repeat(5000)).unwrap();
        let (status, text) = read_answer(&mut &wire[..]).unwrap();
        assert_eq!((status, text.len()), (FULL, 1024));
    }
}
