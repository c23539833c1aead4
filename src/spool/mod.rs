//! The spool: alert-relay's durable queue.
//!
//! # Contract
//!
//! A message is acknowledged (SMTP 250 after DATA, `sendmail` exit 0) only
//! once it is in the spool: written, fsynced, renamed into place and its
//! directory fsynced. From then on it survives a crash of the process or
//! the machine, and every path out of the spool ends in one of: sent
//! (removed), deferred (still queued, with its retry state), held, failed
//! or corrupt (kept, with the reason). Nothing is removed silently.
//!
//! What the spool stores is the *outgoing* message, one entry per
//! recipient, encrypted at ingest time by `crate::encrypt::Sealer`, so
//! that no alert rests on disk in plaintext. An original whose
//! recipient's key could not encrypt is kept in `held/`, encrypted to the
//! spool's own hold key (`hold.pub`; only the daemon's user and root can
//! read `hold.key`), until `relayctl release` encrypts it to the fixed
//! key.
//!
//! # Layout
//!
//! ```text
//! <queue.dir>/            0710 daemon:group  only the daemon and the submit group traverse it
//!   daemon.lock           flock(2)ed by the running daemon: one daemon per spool
//!   wake                  datagram socket (0620): any datagram makes the daemon look at incoming/
//!   hold.key, hold.pub    the hold key (0600) and its public half (0644), made at the first start
//!   incoming/             3730 (setgid, sticky) submissions written by `sendmail`
//!   queue/                0700 entries waiting for delivery: ID.msg (+ ID.state once tried)
//!   held/                 0700 originals whose recipient's key could not encrypt (0600 files)
//!   failed/               0700 entries the relay refused for good, with the reason
//!   corrupt/              0700 files that could not be taken as entries (+ NAME.why: the reason)
//!   tmp/                  0700 the daemon's files while being written, and emptied spares
//! ```
//!
//! `incoming/` works like Postfix's maildrop: `sendmail` runs setgid to the
//! spool's group, so an unprivileged user can create files there but cannot
//! list the directory (no read bit), read another user's file (they cannot
//! traverse the spool root outside `sendmail`), or remove one (sticky bit).
//! The directory's setgid bit gives every file the spool's group, and the
//! file's mode is set explicitly (0640), whatever the submitter's umask,
//! so the daemon can read what any user submitted.
//!
//! **`incoming/` is untrusted.** Anything with the spool's group can write
//! there, so [`Spool::pickup`] opens each file without following links,
//! takes only regular files of a bounded size, and hands each entry to a
//! check of the caller's (`crate::ingest::admit`): the recipient
//! must be configured now, and the payload must be what `sendmail` writes
//! (an alert encrypted to that recipient's key, a key-failure notice, or a
//! held original). What passes is copied into `queue/` (or `held/`) as the
//! daemon's own file, then the submission is unlinked; copy and unlink are
//! idempotent by queue id, so a crash between them yields no duplicate.
//! Anything else, and any file the daemon cannot read, moves to `corrupt/`
//! with one log line, and the next file is taken: one bad file never stops
//! the others.
//!
//! # Entry format
//!
//! A short text header, a blank line, then the payload:
//!
//! ```text
//! alert-relay-entry 1
//! id 0005F3A1B2C3D00ABCD00001
//! kind outgoing                     (held-sealed, held; sealed and notice in incoming/)
//! created 1732740000123456          (µs since the Unix epoch)
//! sender ossecm@mon.example.org     (the envelope sender as received; may be empty)
//! recipient alerts@example.org
//! note                              (why a held entry is held; one line, may be empty)
//! payload 2048                      (bytes that follow the blank line)
//!
//! <payload>
//! ```
//!
//! A file that does not parse, or whose payload length differs, is corrupt:
//! it is moved to `corrupt/` with a log line and everything else flows.
//!
//! # States
//!
//! ```text
//! incoming/ID.msg ──pickup, checked──▶ queue/ID.msg ──sent──▶ tmp/spare.N (emptied, reused)
//!        │                               │   ▲
//!        └──▶ corrupt/ID.msg         4xx │   │ retry schedule (ID.state)
//!                                        ▼   │
//!                                      deferred ──5xx or max_lifetime──▶ failed/ID.msg
//! ```
//!
//! Queue ids are 24 upper-case hex digits: 13 of microseconds since the
//! epoch, 6 of process id, 5 of a per-process counter. They are unique
//! across processes and sort by arrival. They stay inside the spool and
//! the logs: the outgoing message's Message-ID and MIME boundary are
//! random, and say nothing of the host.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

mod arrivals;
mod entry;
mod state;

pub use arrivals::{Arrivals, CACHE_BYTES};
use entry::MSG_SUFFIX;
pub use entry::{Entry, Kind, QueueId};
pub use state::{Pending, State, unix_secs};

/// The directories below the spool root, with the modes the design needs.
const ROOT_MODE: u32 = 0o710;
const INCOMING_MODE: u32 = 0o3730;
const PRIVATE_DIRS: [&str; 5] = ["queue", "held", "failed", "corrupt", "tmp"];
/// Age after which a temporary file in `incoming/` is known to be abandoned.
const STALE_SUBMISSION: Duration = Duration::from_secs(3600);
/// Beside each file in `corrupt/`: why it is there.
const WHY_SUFFIX: &str = ".why";

/// What went wrong in the spool, and whether trying again can help.
#[derive(Debug)]
#[non_exhaustive]
pub enum SpoolError {
    /// The file system is full (or over quota): a temporary condition.
    Full { path: PathBuf },
    /// Any other I/O failure, with the operation and file.
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Another daemon holds the spool.
    Locked { path: PathBuf },
}

impl SpoolError {
    /// Whether trying again later can help: a full disk, or an I/O error
    /// that is not about permissions. A permission problem, or another
    /// daemon holding the spool, is an installation to fix.
    pub fn is_temporary(&self) -> bool {
        match self {
            SpoolError::Full { .. } => true,
            SpoolError::Io { source, .. } => source.kind() != io::ErrorKind::PermissionDenied,
            SpoolError::Locked { .. } => false,
        }
    }

    /// The sysexits code a command (sendmail, mailq) exits with for it:
    /// EX_TEMPFAIL when trying again can help, else EX_NOPERM.
    pub fn exit_code(&self) -> u8 {
        if self.is_temporary() {
            crate::sysexits::TEMPFAIL
        } else {
            crate::sysexits::NOPERM
        }
    }

    fn io(op: &'static str, path: &Path, source: io::Error) -> SpoolError {
        if crate::os::is_disk_full(&source) {
            SpoolError::Full {
                path: path.to_path_buf(),
            }
        } else {
            SpoolError::Io {
                op,
                path: path.to_path_buf(),
                source,
            }
        }
    }
}

impl fmt::Display for SpoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpoolError::Full { path } => write!(
                f,
                "the spool's file system is full at {}: free some space; queued mail is kept",
                path.display()
            ),
            SpoolError::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())?;
                if source.kind() == io::ErrorKind::PermissionDenied {
                    write!(
                        f,
                        " (check the owner and modes of the spool, queue.dir; \
                         sendmail must be setgid to the spool's group)"
                    )?;
                }
                Ok(())
            }
            SpoolError::Locked { path } => write!(
                f,
                "another alert-relayd is using the spool {} (its lock is held)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for SpoolError {}

/// One row of `mailq` / `relayctl queue`.
#[derive(Debug, Clone)]
pub struct Listing {
    /// The queue id; for a file that is not a readable entry, its name.
    pub id: String,
    /// `queued`, `deferred`, `held` or `failed`; `corrupt` for what was
    /// moved to `corrupt/`, `unreadable` for a file the listing could not
    /// read (the daemon moves those to `corrupt/`).
    pub state: &'static str,
    pub recipient: String,
    pub size: u64,
    pub created: SystemTime,
    pub attempts: u32,
    /// When the next attempt is due, for a deferred entry.
    pub next_attempt: Option<SystemTime>,
    /// The last delivery error, or why an entry is held or failed.
    pub last_error: String,
}

/// How many entries wait in each state, for systemd's STATUS= line and
/// the health checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    pub queued: usize,
    pub held: usize,
    pub failed: usize,
    pub corrupt: usize,
    /// When the oldest entry of `queue/` arrived.
    pub oldest_queued: Option<SystemTime>,
    /// The greatest name in `held/`, `failed/` and `corrupt/` (queue ids
    /// sort by arrival: the newest entry): a warning names it, so that a
    /// new one is told at once.
    pub newest_held: Option<String>,
    pub newest_failed: Option<String>,
    pub newest_corrupt: Option<String>,
}

/// A handle on the spool directory tree.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    /// The daemon's emptied files for reuse; `None` in other processes.
    spares: Option<Arc<Spares>>,
    /// The user and group every file written here must belong to, when
    /// this process is root and the spool is another user's (`relayctl`
    /// run as root): the daemon must be able to read what it writes.
    owner: Option<(u32, u32)>,
}

/// Emptied files in `tmp/` kept for reuse by the daemon: a delivered
/// entry is renamed to `tmp/spare.N` and truncated instead of unlinked,
/// and the next entry is written into it instead of a new file.
///
/// Why: on ext4 without a journal (this project's CI machines, and many
/// VMs), creating a file skips every inode freed in the last 5 to 10
/// seconds, reading its inode table block for each (`recently_deleted()`
/// in fs/ext4/ialloc.c). At a thousand alerts a second that scan was a
/// quarter of the daemon's CPU. Only emptied files are reused: the queue
/// runner truncates each within milliseconds of the rename, off its
/// delivery path ([`Spool::take_out_delivered`], [`Spool::empty_spare`]).
/// A crash in between leaves that ciphertext in `tmp/` (0700), and
/// [`Spool::clean_tmp`] removes every file there at the next start.
#[derive(Debug, Default)]
struct Spares {
    free: Mutex<Vec<PathBuf>>,
    next: AtomicU64,
}

/// Spares kept at most; beyond that, delivered entries are unlinked.
const MAX_SPARES: usize = 4096;

impl Spares {
    fn take(&self) -> Option<PathBuf> {
        self.free.lock().ok()?.pop()
    }

    fn has_room(&self) -> bool {
        self.free.lock().is_ok_and(|f| f.len() < MAX_SPARES)
    }

    fn put(&self, path: PathBuf) {
        if let Ok(mut free) = self.free.lock() {
            free.push(path);
        }
    }

    fn new_name(&self, tmp: &Path) -> PathBuf {
        tmp.join(format!(
            "spare.{}",
            self.next.fetch_add(1, Ordering::Relaxed)
        ))
    }
}

impl Spool {
    /// Opens the spool for the daemon: creates what is missing and sets
    /// the modes the design needs.
    pub fn open_daemon(root: &Path) -> Result<Spool, SpoolError> {
        let spool = Spool {
            root: root.to_path_buf(),
            spares: Some(Arc::default()),
            owner: None,
        };
        ensure_dir(root, ROOT_MODE, true)?;
        ensure_dir(&spool.dir("incoming"), INCOMING_MODE, true)?;
        for d in PRIVATE_DIRS {
            ensure_dir(&spool.dir(d), 0o700, true)?;
        }
        Ok(spool)
    }

    /// Opens the spool for a submitter (`sendmail`). It creates the root and
    /// `incoming/` only when it is allowed to (e.g. before the first daemon
    /// start, as the spool's owner), and never changes modes.
    pub fn open_submitter(root: &Path) -> Result<Spool, SpoolError> {
        let spool = Spool {
            root: root.to_path_buf(),
            spares: None,
            owner: None,
        };
        ensure_dir(root, ROOT_MODE, false)?;
        ensure_dir(&spool.dir("incoming"), INCOMING_MODE, false)?;
        Ok(spool)
    }

    /// Opens an existing spool for `relayctl`. Run as root, every file it
    /// writes is given to the spool's owner, so the daemon can read it.
    pub fn at(root: &Path) -> Spool {
        let owner = fs::metadata(root)
            .ok()
            .filter(|m| crate::os::is_root() && m.uid() != 0)
            .map(|m| (m.uid(), m.gid()));
        Spool {
            root: root.to_path_buf(),
            spares: None,
            owner,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Counts the entries of `queue/`, `held/`, `failed/` and `corrupt/`,
    /// and finds the oldest queued one, by name only: no file is opened,
    /// and no name is kept (a queue of 10,000 behind a dead relay is
    /// counted every few seconds).
    pub fn counts(&self) -> Result<Counts, SpoolError> {
        let mut counts = Counts::default();
        let mut oldest: Option<QueueId> = None;
        for_each_name(&self.dir("queue"), |name| {
            if let Some(id) = name.strip_suffix(MSG_SUFFIX).and_then(QueueId::parse) {
                counts.queued += 1;
                // Ids begin with their arrival time: the least is the oldest.
                if oldest.as_ref().is_none_or(|o| id < *o) {
                    oldest = Some(id);
                }
            }
        })?;
        counts.oldest_queued = oldest.map(|id| id.created());
        let newest = |slot: &mut Option<String>, name: &str| {
            if slot.as_deref().is_none_or(|n| name > n) {
                *slot = Some(name.to_string());
            }
        };
        let mut held = None;
        for_each_name(&self.dir("held"), |name| {
            if let Some(id) = name.strip_suffix(MSG_SUFFIX) {
                counts.held += 1;
                newest(&mut held, id);
            }
        })?;
        let mut failed = None;
        for_each_name(&self.dir("failed"), |name| {
            if let Some(id) = name.strip_suffix(MSG_SUFFIX) {
                counts.failed += 1;
                newest(&mut failed, id);
            }
        })?;
        let mut corrupt = None;
        for_each_name(&self.dir("corrupt"), |name| {
            if !name.ends_with(WHY_SUFFIX) {
                counts.corrupt += 1;
                newest(&mut corrupt, name.strip_suffix(MSG_SUFFIX).unwrap_or(name));
            }
        })?;
        counts.newest_held = held;
        counts.newest_failed = failed;
        counts.newest_corrupt = corrupt;
        Ok(counts)
    }

    /// A small file of the daemon's in the spool root (`health.json`),
    /// `None` when there is none. Links are not followed, and a file
    /// larger than `max` bytes is an error.
    pub fn read_root_file(&self, name: &str, max: u64) -> Result<Option<Vec<u8>>, SpoolError> {
        use std::io::Read;
        let path = self.root.join(name);
        let file = match crate::os::open_nofollow(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(SpoolError::io("open", &path, e)),
        };
        let mut bytes = Vec::new();
        file.take(max + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| SpoolError::io("read", &path, e))?;
        if bytes.len() as u64 > max {
            return Err(SpoolError::io(
                "read",
                &path,
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("larger than {max} bytes"),
                ),
            ));
        }
        Ok(Some(bytes))
    }

    /// Replaces a small file of the daemon's in the spool root: written
    /// in `tmp/` (0600), renamed over the old one, so a reader sees the
    /// old file or the new one, never a part. With `durable`, fsynced
    /// before the rename, so that a power failure cannot leave it empty.
    pub fn replace_root_file(
        &self,
        name: &str,
        bytes: &[u8],
        durable: bool,
    ) -> Result<(), SpoolError> {
        let tmp = self.dir("tmp").join(format!(".{name}.tmp"));
        let dest = self.root.join(name);
        let _ = fs::remove_file(&tmp);
        let mut file = create_exactly(&tmp, 0o600, self.owner)
            .map_err(|e| SpoolError::io("create", &tmp, e))?;
        file.write_all(bytes)
            .and_then(|()| if durable { file.sync_all() } else { Ok(()) })
            .map_err(|e| SpoolError::io("write", &tmp, e))?;
        fs::rename(&tmp, &dest).map_err(|e| SpoolError::io("rename", &tmp, e))
    }

    /// Takes the daemon lock; it is held as long as the returned file is.
    pub fn lock(&self) -> Result<File, SpoolError> {
        let path = self.root.join("daemon.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| SpoolError::io("open", &path, e))?;
        // flock(2), released when the file closes (or the process ends).
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(SpoolError::Locked { path }),
            Err(std::fs::TryLockError::Error(e)) => Err(SpoolError::io("lock", &path, e)),
        }
    }

    /// Removes what a crash left half-written in `tmp/`, and the spares.
    /// Call it with the daemon lock held: nothing there was ever
    /// acknowledged.
    /// Returns how many were partial writes: the spare files a delivery
    /// leaves (`spare.N`, of entries already sent) are no news after a
    /// clean stop, and are not counted.
    pub fn clean_tmp(&self) -> Result<usize, SpoolError> {
        let mut partial = 0;
        for (name, path) in list_dir(&self.dir("tmp"))? {
            fs::remove_file(&path).map_err(|e| SpoolError::io("remove", &path, e))?;
            // An entry's (`.ID.tmp`): an alert whose sender was never told
            // 250. Spares, and the daemon's own small files
            // (`.health.json.tmp`), are no news.
            let entry = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".tmp"))
                .and_then(QueueId::parse)
                .is_some();
            if entry {
                partial += 1;
            }
        }
        Ok(partial)
    }

    /// Durably adds entries to `queue/` or `held/` by their kind (daemon
    /// side). Returns once every entry is on disk; on error none is left
    /// behind half-written.
    pub fn commit(&self, entries: &[Entry]) -> Result<(), SpoolError> {
        let placed: Vec<(&Entry, PathBuf)> = entries
            .iter()
            .map(|e| (e, self.dir(e.kind.dir())))
            .collect();
        let how = Writing {
            mode: 0o600,
            spares: self.spares.as_deref(),
            owner: self.owner,
        };
        write_durably(&self.dir("tmp"), &placed, &how)
    }

    /// Durably adds entries to `incoming/` (submitter side), then pokes the
    /// daemon if it runs.
    pub fn submit(&self, entries: &[Entry]) -> Result<(), SpoolError> {
        let incoming = self.dir("incoming");
        // Temporary names start with a dot; the daemon skips those. The
        // group bit lets the daemon read what another user submitted.
        let placed: Vec<(&Entry, PathBuf)> =
            entries.iter().map(|e| (e, incoming.clone())).collect();
        let how = Writing {
            mode: 0o640,
            spares: None,
            owner: self.owner,
        };
        write_durably(&incoming, &placed, &how)?;
        self.wake();
        Ok(())
    }

    /// Moves every complete submission from `incoming/` into `queue/` or
    /// `held/`. Each file is untrusted: it is opened without following
    /// links, must be a regular file of at most `max_bytes`, must decode as
    /// an entry named by its id, and must pass `admit`, which returns the
    /// entry to store in its place (or why not). Whatever fails moves to
    /// `corrupt/` with the reason; one bad file never stops the others.
    /// Returns the entries stored. Only a failure to list `incoming/`, or
    /// to store, is an error; the files not yet taken wait for the next
    /// pass.
    pub fn pickup(
        &self,
        max_bytes: u64,
        admit: impl Fn(Entry) -> Result<Entry, String>,
    ) -> Result<Vec<Entry>, SpoolError> {
        let incoming = self.dir("incoming");
        let mut picked = Vec::new();
        for (name, path) in list_dir(&incoming)? {
            if name.starts_with('.') {
                self.remove_if_abandoned(&path);
                continue;
            }
            let bytes = match read_untrusted(&path, max_bytes) {
                Ok(bytes) => bytes,
                Err(Unreadable::Gone) => continue,
                Err(Unreadable::Because(reason)) => {
                    self.quarantine_logged(&path, &name, &reason);
                    continue;
                }
            };
            let entry = match Entry::decode(&bytes) {
                Ok(entry) if entry.id.file_name() == name => entry,
                Ok(_) => {
                    self.quarantine_logged(&path, &name, "the file name differs from its id");
                    continue;
                }
                Err(reason) => {
                    self.quarantine_logged(&path, &name, &reason);
                    continue;
                }
            };
            drop(bytes);
            let id = entry.id.clone();
            let stored = match admit(entry) {
                Ok(stored) if stored.id == id => stored,
                Ok(_) => {
                    self.quarantine_logged(&path, &name, "the check changed the entry's id");
                    continue;
                }
                Err(reason) => {
                    self.quarantine_logged(&path, &name, &format!("refused: {reason}"));
                    continue;
                }
            };
            // A crash after the copy and before the unlink leaves both;
            // the stored copy wins and the submission is just removed.
            if !self.dir(stored.kind.dir()).join(&name).exists() {
                self.commit(std::slice::from_ref(&stored))?;
            }
            fs::remove_file(&path).map_err(|e| SpoolError::io("remove", &path, e))?;
            picked.push(stored);
        }
        Ok(picked)
    }

    /// Removes a temporary file in `incoming/` whose writer is gone:
    /// sendmail writes only after reading all its input, so a temporary
    /// file this old was never acknowledged.
    fn remove_if_abandoned(&self, path: &Path) {
        let stale = fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_SUBMISSION);
        if stale {
            tracing::warn!(file = %path.display(), "removing an abandoned partial submission");
            let _ = fs::remove_file(path);
        }
    }

    /// [`Spool::quarantine`], logging when even that fails (the file then
    /// stays, and the next pass tries again).
    fn quarantine_logged(&self, path: &Path, name: &str, reason: &str) {
        if let Err(e) = self.quarantine(path, name, reason) {
            tracing::error!(file = %path.display(), reason, "cannot move a corrupt file aside: {e}");
        }
    }

    /// Moves an unreadable file to `corrupt/`, with its reason beside it
    /// in `NAME.why`, so it is kept for a human (`relayctl queue` lists
    /// it) and never blocks the rest of the queue. The rename moves the
    /// directory entry only: a symbolic link stays a link, a FIFO is never
    /// opened.
    fn quarantine(&self, path: &Path, name: &str, reason: &str) -> Result<(), SpoolError> {
        let dest = self.dir("corrupt").join(name);
        fs::rename(path, &dest).map_err(|e| SpoolError::io("move", path, e))?;
        let why = self.dir("corrupt").join(format!("{name}{WHY_SUFFIX}"));
        let mut line: String = reason
            .chars()
            .filter(|c| !c.is_control())
            .take(500)
            .collect();
        line.push('\n');
        let _ = fs::write(why, line);
        // Logged once it is done: whoever acts on the line finds the file
        // moved and its reason written.
        tracing::warn!(
            file = %path.display(),
            moved_to = %dest.display(),
            reason,
            "corrupt spool file"
        );
        Ok(())
    }

    /// Reads one queued entry.
    pub fn read(&self, id: &QueueId) -> Result<Entry, SpoolError> {
        self.read_from("queue", id)
    }

    /// Reads the entry `id` in spool directory `dir`; a file that is not
    /// an entry is an error saying what is wrong with it.
    pub(super) fn read_from(&self, dir: &str, id: &QueueId) -> Result<Entry, SpoolError> {
        let path = self.dir(dir).join(id.file_name());
        let bytes = fs::read(&path).map_err(|e| SpoolError::io("read", &path, e))?;
        Entry::decode(&bytes).map_err(|reason| SpoolError::Io {
            op: "parse",
            path,
            source: io::Error::new(io::ErrorKind::InvalidData, reason),
        })
    }

    /// Reads one queued entry for delivery. A file that is not an entry
    /// (truncated, garbage, a bad header, another id inside) moves to
    /// `corrupt/` with a log line and gives `None`: it is kept for a
    /// human and never blocks, or is retried with, the rest of the queue.
    pub fn read_queued(&self, id: &QueueId) -> Result<Option<Entry>, SpoolError> {
        let path = self.dir("queue").join(id.file_name());
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            // A file the daemon cannot read (written by root with the
            // wrong owner, say) would otherwise be retried forever, and
            // never reach its lifetime: it is set aside for a human.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                let reason = format!("{e}: {}", describe_owner(&path));
                self.quarantine(&path, &id.file_name(), &reason)?;
                let _ = fs::remove_file(self.state_path(id));
                return Ok(None);
            }
            Err(e) => return Err(SpoolError::io("read", &path, e)),
        };
        let reason = match Entry::decode(&bytes) {
            Ok(entry) if &entry.id == id => return Ok(Some(entry)),
            Ok(entry) => format!("the file holds entry {}", entry.id),
            Err(reason) => reason,
        };
        self.quarantine(&path, &id.file_name(), &reason)?;
        let _ = fs::remove_file(self.state_path(id));
        Ok(None)
    }

    /// Lists incoming, queued, held, failed and corrupt files, oldest
    /// first. A file that cannot be read is listed as `unreadable`, with
    /// the reason, never skipped.
    pub fn list(&self) -> Result<Vec<Listing>, SpoolError> {
        // What sendmail submitted and the daemon has not picked up yet is
        // queued too, from the admin's point of view.
        self.list_in(&["incoming", "queue", "held", "failed", "corrupt"])
    }

    /// Lists what was set aside for a person to look at: held, failed and
    /// corrupt files, oldest first (the warnings name each).
    pub fn list_set_aside(&self) -> Result<Vec<Listing>, SpoolError> {
        self.list_in(&["held", "failed", "corrupt"])
    }

    fn list_in(&self, dirs: &[&str]) -> Result<Vec<Listing>, SpoolError> {
        let mut rows = Vec::new();
        for &dir in dirs {
            let path = self.dir(dir);
            let files = match list_dir(&path) {
                Ok(files) => files,
                // A spool nothing was ever written to.
                Err(SpoolError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                    continue;
                }
                // incoming/ is not listable by the submit group; say what we can.
                Err(SpoolError::Io { source, .. })
                    if source.kind() == io::ErrorKind::PermissionDenied && dir == "incoming" =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (name, file) in files {
                if name.starts_with('.') || name.ends_with(WHY_SUFFIX) || name.ends_with(".state") {
                    continue;
                }
                if dir == "corrupt" {
                    rows.push(self.corrupt_row(&name, &file));
                    continue;
                }
                if !name.ends_with(MSG_SUFFIX) {
                    continue;
                }
                let (entry, size) = match read_listing(&file) {
                    Listed::Entry(entry, size) => (entry, size),
                    // Being written, or gone since the directory was read.
                    Listed::Partial | Listed::Gone => continue,
                    Listed::Unreadable(reason) => {
                        rows.push(unreadable_row(&name, &file, reason));
                        continue;
                    }
                };
                let delivery = if dir == "queue" {
                    self.state(&entry.id)
                } else {
                    State::default()
                };
                let state = match (dir, entry.kind) {
                    ("failed", _) => "failed",
                    ("held", _) => "held",
                    (_, k) if k.is_held() => "held",
                    _ if delivery.attempts > 0 => "deferred",
                    _ => "queued",
                };
                let next_attempt = (delivery.next_attempt > 0)
                    .then(|| std::time::UNIX_EPOCH + Duration::from_secs(delivery.next_attempt));
                rows.push(Listing {
                    size,
                    created: entry.created_at(),
                    state,
                    recipient: entry.recipient,
                    attempts: delivery.attempts,
                    next_attempt,
                    last_error: if delivery.last_error.is_empty() {
                        entry.note
                    } else {
                        delivery.last_error
                    },
                    id: entry.id.to_string(),
                });
            }
        }
        rows.sort_by(|a, b| (a.created, &a.id).cmp(&(b.created, &b.id)));
        Ok(rows)
    }

    /// A row for a file in `corrupt/`: what its header says, if it has
    /// one, and why it was set aside.
    fn corrupt_row(&self, name: &str, file: &Path) -> Listing {
        let why = fs::read_to_string(self.dir("corrupt").join(format!("{name}{WHY_SUFFIX}")))
            .map(|w| w.trim().to_string())
            .unwrap_or_else(|_| "see the daemon's log".into());
        let meta = fs::symlink_metadata(file).ok();
        let (recipient, created) = match read_listing(file) {
            Listed::Entry(entry, _) => (entry.recipient.clone(), entry.created_at()),
            _ => (
                String::new(),
                meta.as_ref()
                    .and_then(|m| m.modified().ok())
                    .unwrap_or(std::time::UNIX_EPOCH),
            ),
        };
        Listing {
            id: name.strip_suffix(MSG_SUFFIX).unwrap_or(name).to_string(),
            state: "corrupt",
            recipient,
            size: meta.map(|m| m.len()).unwrap_or(0),
            created,
            attempts: 0,
            next_attempt: None,
            last_error: format!("moved to corrupt/: {why}"),
        }
    }

    /// The path of the daemon's wake-up socket.
    pub fn wake_path(&self) -> PathBuf {
        self.root.join("wake")
    }

    /// Binds the wake-up socket (daemon side), replacing a stale one.
    pub fn bind_wake(&self) -> Result<UnixDatagram, SpoolError> {
        let path = self.wake_path();
        let _ = fs::remove_file(&path);
        let sock = UnixDatagram::bind(&path).map_err(|e| SpoolError::io("bind", &path, e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o620))
            .map_err(|e| SpoolError::io("chmod", &path, e))?;
        sock.set_nonblocking(true)
            .map_err(|e| SpoolError::io("configure", &path, e))?;
        Ok(sock)
    }

    /// Tells a running daemon to look at the spool now. Best effort: a
    /// stopped daemon finds the files when it starts.
    pub fn wake(&self) {
        if let Ok(sock) = UnixDatagram::unbound() {
            let _ = sock.send_to(b"w", self.wake_path());
        }
    }
}

/// Creates `dir` with `mode` if it is missing; the daemon (`enforce`) also
/// corrects the mode of an existing directory it owns.
fn ensure_dir(dir: &Path, mode: u32, enforce: bool) -> Result<(), SpoolError> {
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            if enforce
                && meta.uid() == crate::os::euid()
                && meta.permissions().mode() & 0o7777 != mode
            {
                fs::set_permissions(dir, fs::Permissions::from_mode(mode))
                    .map_err(|e| SpoolError::io("chmod", dir, e))?;
            }
            Ok(())
        }
        Ok(_) => Err(SpoolError::io(
            "use",
            dir,
            io::Error::new(io::ErrorKind::AlreadyExists, "not a directory"),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| SpoolError::io("create", dir, e))?;
            // mkdir's mode is filtered by the umask; set it exactly.
            fs::set_permissions(dir, fs::Permissions::from_mode(mode))
                .map_err(|e| SpoolError::io("chmod", dir, e))?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
            Ok(())
        }
        Err(e) => Err(SpoolError::io("stat", dir, e)),
    }
}

/// What a listing found in one file.
enum Listed {
    Entry(Entry, u64),
    /// Not a whole entry (still being written, or truncated).
    Partial,
    Gone,
    Unreadable(String),
}

/// An entry's header and payload size for a listing, reading the first
/// [`LISTING_READ`] bytes rather than the whole file (a queue of 10,000
/// alerts is 40 MB of payload).
fn read_listing(path: &Path) -> Listed {
    use std::io::Read;
    let file = match crate::os::open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Listed::Gone,
        Err(e) => return Listed::Unreadable(format!("{e}: {}", describe_owner(path))),
    };
    let meta = match file.metadata() {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Listed::Unreadable("not a regular file".into()),
        Err(e) => return Listed::Unreadable(e.to_string()),
    };
    let mut head = Vec::with_capacity(LISTING_READ);
    if let Err(e) = (&file).take(LISTING_READ as u64).read_to_end(&mut head) {
        return Listed::Unreadable(e.to_string());
    }
    match Entry::decode_header(&head) {
        Ok((entry, start, len)) if (start + len) as u64 == meta.len() => {
            Listed::Entry(entry, len as u64)
        }
        Ok(_) => Listed::Partial,
        // A header longer than what was read (a long note): read it all.
        Err(_) if head.len() == LISTING_READ => match fs::read(path).map(|b| Entry::decode(&b)) {
            Ok(Ok(entry)) => {
                let size = entry.payload.len() as u64;
                Listed::Entry(entry, size)
            }
            _ => Listed::Partial,
        },
        Err(_) => Listed::Partial,
    }
}

/// A row for a file a listing could not read.
fn unreadable_row(name: &str, file: &Path, reason: String) -> Listing {
    let meta = fs::symlink_metadata(file).ok();
    Listing {
        id: name.strip_suffix(MSG_SUFFIX).unwrap_or(name).to_string(),
        state: "unreadable",
        recipient: String::new(),
        size: meta.as_ref().map(|m| m.len()).unwrap_or(0),
        created: meta
            .and_then(|m| m.modified().ok())
            .unwrap_or(std::time::UNIX_EPOCH),
        attempts: 0,
        next_attempt: None,
        last_error: format!("cannot read it ({reason}); the daemon moves it to corrupt/"),
    }
}

/// The owner and mode of a file, for an error message.
fn describe_owner(path: &Path) -> String {
    match fs::symlink_metadata(path) {
        Ok(m) => format!(
            "owner uid {} gid {}, mode {:04o}",
            m.uid(),
            m.gid(),
            m.permissions().mode() & 0o7777
        ),
        Err(e) => e.to_string(),
    }
}

/// Why a file in `incoming/` was not read.
enum Unreadable {
    /// It vanished since the directory was read.
    Gone,
    Because(String),
}

/// Reads a file someone else wrote: a regular file with one link and at
/// most `max_bytes`, never a link, a FIFO or a device.
fn read_untrusted(path: &Path, max_bytes: u64) -> Result<Vec<u8>, Unreadable> {
    use std::io::Read;
    let file = match crate::os::open_nofollow(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(Unreadable::Gone),
        Err(e) if crate::os::is_symlink_refused(&e) => {
            return Err(Unreadable::Because("a symbolic link".into()));
        }
        Err(e) => {
            return Err(Unreadable::Because(format!(
                "cannot read it: {e} ({})",
                describe_owner(path)
            )));
        }
    };
    let meta = file
        .metadata()
        .map_err(|e| Unreadable::Because(e.to_string()))?;
    if !meta.is_file() {
        return Err(Unreadable::Because("not a regular file".into()));
    }
    if meta.nlink() != 1 {
        return Err(Unreadable::Because(format!(
            "the file has {} hard links",
            meta.nlink()
        )));
    }
    if meta.len() > max_bytes {
        return Err(Unreadable::Because(format!(
            "{} bytes, more than a submission can hold ({max_bytes})",
            meta.len()
        )));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    (&file)
        .take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Unreadable::Because(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > max_bytes {
        return Err(Unreadable::Because("it grew while being read".into()));
    }
    Ok(bytes)
}

/// How much of each entry a listing reads: headers are a few hundred bytes.
const LISTING_READ: usize = 4096;

/// Names and paths of a directory's entries.
/// Calls `f` with each name in `dir`, keeping none.
fn for_each_name(dir: &Path, mut f: impl FnMut(&str)) -> Result<(), SpoolError> {
    let rd = fs::read_dir(dir).map_err(|e| SpoolError::io("list", dir, e))?;
    for item in rd {
        let item = item.map_err(|e| SpoolError::io("list", dir, e))?;
        if let Some(name) = item.file_name().to_str() {
            f(name);
        }
    }
    Ok(())
}

fn list_dir(dir: &Path) -> Result<Vec<(String, PathBuf)>, SpoolError> {
    let rd = fs::read_dir(dir).map_err(|e| SpoolError::io("list", dir, e))?;
    let mut out = Vec::new();
    for item in rd {
        let item = item.map_err(|e| SpoolError::io("list", dir, e))?;
        if let Ok(name) = item.file_name().into_string() {
            out.push((name, item.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// How [`write_durably`] creates files.
struct Writing<'a> {
    /// Set explicitly on each new file (fchmod), whatever the umask.
    mode: u32,
    /// The daemon's emptied files, written into instead of new ones.
    spares: Option<&'a Spares>,
    /// Given to this user and group (fchown), when set.
    owner: Option<(u32, u32)>,
}

/// The durability protocol: write each entry to a temporary file in
/// `tmp_dir`, fsync it, rename it into its directory, then fsync each
/// directory once for the whole batch. On error, temporary files are
/// removed and already renamed entries of the batch are unlinked again, so
/// a failed batch leaves nothing that could be delivered.
fn write_durably(
    tmp_dir: &Path,
    entries: &[(&Entry, PathBuf)],
    how: &Writing<'_>,
) -> Result<(), SpoolError> {
    let mut written: Vec<(PathBuf, PathBuf)> = Vec::with_capacity(entries.len());
    // The last file written, kept open for `sync_dir_or_fs`.
    let mut last: Option<File> = None;
    let result = (|| {
        for (entry, dir) in entries {
            // A spare is empty and has the daemon's mode (0600).
            let spare = how.spares.and_then(Spares::take);
            let tmp = spare
                .clone()
                .unwrap_or_else(|| tmp_dir.join(format!(".{}.tmp", entry.id)));
            written.push((tmp.clone(), dir.join(entry.id.file_name())));
            let mut file = match spare {
                Some(_) => OpenOptions::new().write(true).truncate(true).open(&tmp),
                None => create_exactly(&tmp, how.mode, how.owner),
            }
            .map_err(|e| SpoolError::io("create", &tmp, e))?;
            file.write_all(entry.encode_header().as_bytes())
                .and_then(|()| file.write_all(&entry.payload))
                .map_err(|e| SpoolError::io("write", &tmp, e))?;
            file.sync_all()
                .map_err(|e| SpoolError::io("fsync", &tmp, e))?;
            last = Some(file);
        }
        for (tmp, dest) in &written {
            fs::rename(tmp, dest).map_err(|e| SpoolError::io("rename", tmp, e))?;
        }
        let mut dirs: Vec<&PathBuf> = entries.iter().map(|(_, d)| d).collect();
        dirs.sort();
        dirs.dedup();
        dirs.into_iter()
            .try_for_each(|d| sync_dir_or_fs(d, last.as_ref()))
    })();
    if result.is_err() {
        for (tmp, dest) in &written {
            let _ = fs::remove_file(tmp);
            let _ = fs::remove_file(dest);
        }
    }
    result
}

/// Creates a new file with exactly `mode` (the umask of whoever runs
/// sendmail must not decide whether the daemon can read it) and, when
/// given, the owner: both on the open file, never by path.
fn create_exactly(path: &Path, mode: u32, owner: Option<(u32, u32)>) -> io::Result<File> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    }
    file.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(file)
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| SpoolError::io("fsync", dir, e))
}

/// Makes the renames in `dir` durable. Syncing a directory means opening
/// it for reading, which setgid `sendmail` cannot do on `incoming/`
/// (mode 3730: submitters may not list it). Then the whole file system is
/// synced through `file` (syncfs(2)): slower, but submissions through
/// sendmail are few, and its exit 0 must still mean "on disk".
fn sync_dir_or_fs(dir: &Path, file: Option<&File>) -> Result<(), SpoolError> {
    match (sync_dir(dir), file) {
        (Err(SpoolError::Io { source, .. }), Some(file))
            if source.kind() == io::ErrorKind::PermissionDenied =>
        {
            crate::os::syncfs(file).map_err(|e| SpoolError::io("syncfs", dir, e))
        }
        (result, _) => result,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(payload: &[u8]) -> Entry {
        Entry::new("ossecm@mon", "alerts@example.org", payload.to_vec())
    }

    #[test]
    fn spool_layout_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("spool");
        let spool = Spool::open_daemon(&root).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&root), 0o710);
        assert_eq!(mode(&root.join("incoming")), 0o3730);
        assert_eq!(mode(&root.join("queue")), 0o700);
        let _lock = spool.lock().unwrap();
        assert!(matches!(spool.lock(), Err(SpoolError::Locked { .. })));
        // An entry's partial write counts; the daemon's own small file
        // (cut short by a crash) is removed without a word.
        fs::write(root.join("tmp/.0005F3A1B2C3D00ABCD00001.tmp"), b"half").unwrap();
        fs::write(root.join("tmp/.health.json.tmp"), b"{").unwrap();
        assert_eq!(spool.clean_tmp().unwrap(), 1);
        assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
        assert!(spool.list().unwrap().is_empty());
    }

    #[test]
    fn submit_then_pickup_moves_to_queue_once() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        let e = entry(b"alert");
        spool.submit(std::slice::from_ref(&e)).unwrap();
        assert_eq!(spool.list().unwrap()[0].state, "queued");
        // Simulate a crash after the copy: the queue already has it.
        spool.commit(std::slice::from_ref(&e)).unwrap();
        let picked = spool.pickup(1 << 20, Ok).unwrap();
        assert_eq!(picked, vec![e.clone()]);
        let rows = spool.list().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].state, "queued");
        assert_eq!(spool.read(&e.id).unwrap(), e);
    }

    #[test]
    fn listings_read_long_headers_whole_and_skip_truncated_entries() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        // A note longer than what a listing reads first.
        let long = entry(b"payload").with_note(&"n".repeat(LISTING_READ + 100));
        let cut = entry(b"will be truncated");
        spool.commit(&[long.clone(), cut.clone()]).unwrap();
        let path = dir.path().join("queue").join(cut.id.file_name());
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let rows = spool.list().unwrap();
        assert_eq!(rows.len(), 1, "the truncated entry is not listed");
        assert_eq!(rows[0].id, long.id.as_str());
        assert_eq!(rows[0].size, 7);
    }

    #[test]
    fn delivered_files_become_empty_spares_and_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        let first = entry(b"MARKER-FIRST");
        spool.commit(std::slice::from_ref(&first)).unwrap();
        spool.delivered(std::slice::from_ref(&first.id)).unwrap();
        assert!(spool.pending().unwrap().is_empty());
        let tmp: Vec<_> = list_dir(&dir.path().join("tmp")).unwrap();
        assert_eq!(tmp.len(), 1, "{tmp:?}");
        assert!(tmp[0].0.starts_with("spare."));
        assert_eq!(fs::metadata(&tmp[0].1).unwrap().len(), 0, "emptied at once");
        let inode = fs::metadata(&tmp[0].1).unwrap().ino();

        // The next entry is written into the spare: same inode, own content, 0600.
        let second = entry(b"second");
        spool.commit(std::slice::from_ref(&second)).unwrap();
        assert!(list_dir(&dir.path().join("tmp")).unwrap().is_empty());
        let path = dir.path().join("queue").join(second.id.file_name());
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.ino(), inode);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(spool.read(&second.id).unwrap(), second);

        // Other processes (relayctl) unlink; the daemon's next start clears
        // spares, and does not count them as partial writes.
        spool.delivered(std::slice::from_ref(&second.id)).unwrap();
        assert_eq!(list_dir(&dir.path().join("tmp")).unwrap().len(), 1);
        assert_eq!(spool.clean_tmp().unwrap(), 0);
        assert!(list_dir(&dir.path().join("tmp")).unwrap().is_empty());
        let other = Spool::at(dir.path());
        let third = entry(b"third");
        Spool::open_daemon(dir.path())
            .unwrap()
            .commit(std::slice::from_ref(&third))
            .unwrap();
        other.delivered(std::slice::from_ref(&third.id)).unwrap();
        assert!(list_dir(&dir.path().join("tmp")).unwrap().is_empty());
        assert!(other.pending().unwrap().is_empty());
    }

    #[test]
    fn taking_out_a_missing_entry_is_an_error_and_a_vanished_spare_is_not_reused() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        // An entry relayctl deleted meanwhile: the error names its file.
        let gone = entry(b"gone");
        let err = spool.take_out_delivered(&gone.id).unwrap_err().to_string();
        assert!(err.contains(&gone.id.file_name()), "{err}");

        // A spare that vanished before it was emptied is not kept for reuse.
        let sent = entry(b"MARKER-SENT");
        spool.commit(std::slice::from_ref(&sent)).unwrap();
        let spare = spool
            .take_out_delivered(&sent.id)
            .unwrap()
            .expect("a spare");
        assert_eq!(fs::read(&spare).unwrap(), sent.encode(), "not yet emptied");
        fs::remove_file(&spare).unwrap();
        spool.empty_spare(spare);
        assert!(spool.spares.as_ref().unwrap().take().is_none());
        // The next entry gets a file of its own.
        let next = entry(b"next");
        spool.commit(std::slice::from_ref(&next)).unwrap();
        assert_eq!(spool.read(&next.id).unwrap(), next);
    }

    #[test]
    fn corrupt_submissions_are_quarantined_with_the_reason_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        let good = entry(b"fine");
        spool.submit(std::slice::from_ref(&good)).unwrap();
        let incoming = dir.path().join("incoming");
        fs::write(incoming.join("garbage.msg"), b"not an entry").unwrap();
        let refused = entry(b"refused by the check");
        fs::write(incoming.join(refused.id.file_name()), refused.encode()).unwrap();
        let picked = spool
            .pickup(1 << 20, |e| {
                if e.id == refused.id {
                    Err("not for us".to_string())
                } else {
                    Ok(e)
                }
            })
            .unwrap();
        assert_eq!(picked, vec![good]);
        assert!(dir.path().join("corrupt/garbage.msg").exists());
        let why = fs::read_to_string(
            dir.path()
                .join(format!("corrupt/{}.why", refused.id.file_name())),
        )
        .unwrap();
        assert_eq!(why, "refused: not for us\n");
        // relayctl queue shows both, with the reason; STATUS= counts them.
        let rows = spool.list().unwrap();
        let corrupt: Vec<_> = rows.iter().filter(|r| r.state == "corrupt").collect();
        assert_eq!(corrupt.len(), 2, "{rows:?}");
        assert!(corrupt.iter().any(|r| r.id == refused.id.as_str()
            && r.last_error.contains("not for us")
            && r.recipient == "alerts@example.org"));
        assert_eq!(spool.counts().unwrap().corrupt, 2);
        // And delete takes one out, reason and all.
        assert_eq!(spool.delete(&refused.id).unwrap(), Some("corrupt"));
        assert_eq!(spool.counts().unwrap().corrupt, 1);
        assert!(
            !dir.path()
                .join(format!("corrupt/{}.why", refused.id.file_name()))
                .exists()
        );
    }

    #[test]
    fn links_fifos_hard_links_and_oversize_files_in_incoming_never_block_pickup() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        let incoming = dir.path().join("incoming");
        // A FIFO would block a plain read forever; /dev/zero would never end.
        let fifo = std::ffi::CString::new(incoming.join("fifo.msg").to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        std::os::unix::fs::symlink("/dev/zero", incoming.join("zero.msg")).unwrap();
        let big = entry(&[b'x'; 2000]);
        fs::write(incoming.join(big.id.file_name()), big.encode()).unwrap();
        let linked = entry(b"hard linked");
        fs::write(dir.path().join("elsewhere"), linked.encode()).unwrap();
        fs::hard_link(
            dir.path().join("elsewhere"),
            incoming.join(linked.id.file_name()),
        )
        .unwrap();
        let good = entry(b"fine");
        spool.submit(std::slice::from_ref(&good)).unwrap();

        let picked = spool.pickup(1024, Ok).unwrap();
        assert_eq!(picked, vec![good]);
        let why = |name: &str| {
            fs::read_to_string(dir.path().join(format!("corrupt/{name}.why"))).unwrap()
        };
        assert!(why("fifo.msg").contains("not a regular file"));
        assert!(why("zero.msg").contains("symbolic link"));
        assert!(why(&big.id.file_name()).contains("more than a submission can hold"));
        assert!(why(&linked.id.file_name()).contains("hard links"));
        assert!(
            fs::symlink_metadata(dir.path().join("corrupt/zero.msg"))
                .unwrap()
                .is_symlink()
        );
        assert!(list_dir(&incoming).unwrap().is_empty());
    }

    #[test]
    fn submissions_get_their_mode_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        // SAFETY: umask only sets this process's file creation mask; the
        // test restores it. (Other tests in this binary create files with
        // explicit modes, which this umask cannot widen.)
        let old = unsafe { libc::umask(0o077) };
        let e = entry(b"umask 077");
        let result = spool.submit(std::slice::from_ref(&e));
        unsafe { libc::umask(old) };
        result.unwrap();
        let meta = fs::metadata(dir.path().join("incoming").join(e.id.file_name())).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    }
}
