//! Delivery state: the retry schedule of each queued entry, persisted in
//! `queue/ID.state` so that a restart keeps it.
//!
//! The entry file itself is written once and never changed; its state
//! file is rewritten (temporary file, fsync, rename) after each attempt.
//! A missing or unreadable state file means "never tried, due now": losing
//! it can only make a delivery happen sooner, never lose a message.
//!
//! Transitions, by the runner in `deliver`:
//!
//! - sent: state removed, entry taken out of `queue/` into `tmp/`, where
//!   it is emptied and kept as a spare for the next entry
//!   ([`Spool::delivered`]; the daemon splits it into
//!   [`Spool::take_out_delivered`] and [`Spool::empty_spare`]);
//! - deferred (4xx, timeout, network, TLS, AUTH): state rewritten with one
//!   more attempt and the next time from `queue.retry` ([`Spool::defer`]);
//! - failed (5xx, or older than `queue.max_lifetime`): the entry moves to
//!   `failed/` with the reason as its note ([`Spool::fail`]).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{
    Entry, Kind, MSG_SUFFIX, QueueId, Spool, SpoolError, WHY_SUFFIX, Writing, create_exactly,
    list_dir, sync_dir, write_durably,
};

const STATE_SUFFIX: &str = ".state";

/// One queued entry's delivery state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// Seconds since the epoch before which no attempt is made; 0 = now.
    pub next_attempt: u64,
    /// The last attempt's failure, as logged (no alert content).
    pub last_error: String,
}

impl State {
    fn encode(&self) -> String {
        format!(
            "attempts {}\nnext {}\nlast_error {}\n",
            self.attempts,
            self.next_attempt,
            self.last_error.replace(['\r', '\n'], " ")
        )
    }

    fn decode(text: &str) -> Option<State> {
        let mut state = State::default();
        for line in text.lines() {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "attempts" => state.attempts = value.parse().ok()?,
                "next" => state.next_attempt = value.parse().ok()?,
                "last_error" => state.last_error = value.to_string(),
                _ => return None,
            }
        }
        Some(state)
    }

    /// Whether an attempt is due at `now`.
    pub fn due(&self, now: SystemTime) -> bool {
        self.next_attempt <= unix_secs(now)
    }

    /// The state after a failed attempt at `now`: the `n`th failure waits
    /// `retry[n-1]`, and every failure after the list's end the last value.
    pub fn after_failure(&self, now: SystemTime, retry: &[Duration], error: &str) -> State {
        let attempts = self.attempts.saturating_add(1);
        let index = (attempts as usize)
            .saturating_sub(1)
            .min(retry.len().saturating_sub(1));
        let wait = retry
            .get(index)
            .copied()
            .unwrap_or(Duration::from_secs(300));
        State {
            attempts,
            next_attempt: unix_secs(now + wait),
            last_error: error.to_string(),
        }
    }
}

pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A queued entry and its state.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: QueueId,
    pub state: State,
}

impl Spool {
    pub(super) fn state_path(&self, id: &QueueId) -> std::path::PathBuf {
        self.dir("queue").join(format!("{id}{STATE_SUFFIX}"))
    }

    /// Every queued entry with its state, oldest first. Reads the state
    /// files only, not the messages.
    pub fn pending(&self) -> Result<Vec<Pending>, SpoolError> {
        let mut out = Vec::new();
        for (name, _) in list_dir(&self.dir("queue"))? {
            let Some(id) = name.strip_suffix(MSG_SUFFIX).and_then(QueueId::parse) else {
                continue;
            };
            let state = self.state(&id);
            out.push(Pending { id, state });
        }
        Ok(out)
    }

    /// The state of one queued entry (default when never tried).
    pub fn state(&self, id: &QueueId) -> State {
        fs::read_to_string(self.state_path(id))
            .ok()
            .and_then(|t| State::decode(&t))
            .unwrap_or_default()
    }

    /// Records a failed attempt. The state file is renamed into place but
    /// not fsynced: it is a schedule, not mail, and during a relay outage
    /// every new alert would otherwise add an fsync to the ones its own
    /// acceptance needs. A restart keeps it; a power failure can lose the
    /// last few seconds of them (or leave one empty, which reads as
    /// "never tried"), and those entries are only tried again sooner.
    pub fn defer(&self, id: &QueueId, state: &State) -> Result<(), SpoolError> {
        let path = self.state_path(id);
        let tmp = self.dir("tmp").join(format!(".{id}{STATE_SUFFIX}"));
        let write = || -> io::Result<()> {
            let _ = fs::remove_file(&tmp);
            let mut f = create_exactly(&tmp, 0o600, self.owner)?;
            f.write_all(state.encode().as_bytes())?;
            fs::rename(&tmp, &path)
        };
        write().map_err(|e| SpoolError::io("write", &path, e))
    }

    /// Removes delivered entries, then makes the removals durable (one
    /// directory fsync for the batch). A crash before that fsync can only
    /// send a message twice, never lose one: delivery is at least once.
    pub fn delivered(&self, ids: &[QueueId]) -> Result<(), SpoolError> {
        for id in ids {
            self.remove_delivered(id)?;
        }
        self.sync_queue()
    }

    /// Removes one delivered entry without syncing the directory; call
    /// [`Spool::sync_queue`] after a batch. In the daemon the file becomes
    /// an empty spare (see `Spares`) rather than being unlinked.
    pub fn remove_delivered(&self, id: &QueueId) -> Result<(), SpoolError> {
        if let Some(spare) = self.take_out_delivered(id)? {
            self.empty_spare(spare);
        }
        Ok(())
    }

    /// Takes a delivered entry out of `queue/`, so that it is not sent
    /// again: one rename (or, outside the daemon, an unlink). Returns the
    /// spare it became, still to be emptied with [`Spool::empty_spare`].
    /// The two steps are apart because emptying frees the file's blocks,
    /// which on a file system mounted with `discard` waits for the device:
    /// the daemon empties spares off the delivery path.
    pub fn take_out_delivered(
        &self,
        id: &QueueId,
    ) -> Result<Option<std::path::PathBuf>, SpoolError> {
        let msg = self.dir("queue").join(format!("{id}{MSG_SUFFIX}"));
        let spare = match self.spares.as_deref().filter(|s| s.has_room()) {
            Some(spares) => {
                let spare = spares.new_name(&self.dir("tmp"));
                fs::rename(&msg, &spare).map_err(|e| SpoolError::io("remove", &msg, e))?;
                Some(spare)
            }
            None => {
                fs::remove_file(&msg).map_err(|e| SpoolError::io("remove", &msg, e))?;
                None
            }
        };
        let _ = fs::remove_file(self.state_path(id));
        Ok(spare)
    }

    /// Empties a spare from [`Spool::take_out_delivered`], so that nothing
    /// of the delivered message stays, and keeps it for the next entry.
    pub fn empty_spare(&self, spare: std::path::PathBuf) {
        match (
            self.spares.as_deref(),
            OpenOptions::new().write(true).truncate(true).open(&spare),
        ) {
            (Some(spares), Ok(_)) => spares.put(spare),
            _ => {
                let _ = fs::remove_file(&spare);
            }
        }
    }

    /// Makes removals from `queue/` durable.
    pub fn sync_queue(&self) -> Result<(), SpoolError> {
        sync_dir(&self.dir("queue"))
    }

    /// Moves an entry to `failed/` with `reason` as its note.
    pub fn fail(&self, id: &QueueId, reason: &str) -> Result<(), SpoolError> {
        let entry = self.read(id)?.with_note(reason);
        let failed = Entry {
            kind: Kind::Outgoing,
            ..entry
        };
        let how = Writing {
            mode: 0o600,
            spares: None,
            owner: self.owner,
        };
        write_durably(&self.dir("tmp"), &[(&failed, self.dir("failed"))], &how)?;
        self.delivered(std::slice::from_ref(id))
    }

    /// Reads a held entry.
    pub fn read_held(&self, id: &QueueId) -> Result<Entry, SpoolError> {
        self.read_from("held", id)
    }

    /// Replaces a held original by its encrypted outgoing message (same
    /// id): the outgoing entry is durable before the original goes.
    pub fn release(&self, outgoing: &Entry) -> Result<(), SpoolError> {
        self.commit(std::slice::from_ref(outgoing))?;
        let held = self
            .dir("held")
            .join(format!("{}{MSG_SUFFIX}", outgoing.id));
        fs::remove_file(&held).map_err(|e| SpoolError::io("remove", &held, e))?;
        sync_dir(&self.dir("held"))
    }

    /// Removes an entry wherever it is (queue, held, failed, incoming,
    /// corrupt). Returns the directory it was in, or `None` if there is no
    /// such entry.
    pub fn delete(&self, id: &QueueId) -> Result<Option<&'static str>, SpoolError> {
        for dir in ["queue", "held", "failed", "incoming", "corrupt"] {
            let path = self.dir(dir).join(format!("{id}{MSG_SUFFIX}"));
            match fs::remove_file(&path) {
                Ok(()) => {
                    if dir == "queue" {
                        let _ = fs::remove_file(self.state_path(id));
                    }
                    if dir == "corrupt" {
                        let why = self.dir(dir).join(format!("{id}{MSG_SUFFIX}{WHY_SUFFIX}"));
                        let _ = fs::remove_file(why);
                    }
                    sync_dir(&self.dir(dir))?;
                    return Ok(Some(dir));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(SpoolError::io("remove", &path, e)),
            }
        }
        Ok(None)
    }

    /// Makes queued entries due now (all, or the one named). Returns how
    /// many were changed.
    pub fn flush(&self, only: Option<&QueueId>) -> Result<usize, SpoolError> {
        let mut n = 0;
        for p in self.pending()? {
            if only.is_some_and(|id| *id != p.id) {
                continue;
            }
            if p.state.next_attempt != 0 {
                let state = State {
                    next_attempt: 0,
                    ..p.state
                };
                self.defer(&p.id, &state)?;
            }
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_schedule_then_its_last_value() {
        let m = |n: u64| Duration::from_secs(60 * n);
        let retry = [m(1), m(5), m(15)];
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut s = State::default();
        let mut waits = Vec::new();
        for _ in 0..5 {
            s = s.after_failure(t0, &retry, "x");
            waits.push(s.next_attempt - 1_000_000);
        }
        assert_eq!(waits, vec![60, 300, 900, 900, 900]);
        assert_eq!(s.attempts, 5);
        assert!(!s.due(t0) && s.due(t0 + m(15)));
    }

    #[test]
    fn state_survives_a_round_trip_and_garbage_means_due() {
        let s = State {
            attempts: 3,
            next_attempt: 42,
            last_error: "timed out\nat EHLO".into(),
        };
        let back = State::decode(&s.encode()).unwrap();
        assert_eq!(back.attempts, 3);
        assert_eq!(back.last_error, "timed out at EHLO");
        assert!(State::decode("bogus 1\n").is_none());
    }

    #[test]
    fn defer_fail_flush_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        let a = Entry::new("s", "r@x", b"a".to_vec());
        let b = Entry::new("s", "r@x", b"b".to_vec());
        spool.commit(&[a.clone(), b.clone()]).unwrap();
        let now = SystemTime::now();
        let later = State::default().after_failure(now, &[Duration::from_secs(600)], "451 busy");
        spool.defer(&a.id, &later).unwrap();
        let pending = spool.pending().unwrap();
        assert_eq!(pending.len(), 2);
        assert!(!pending[0].state.due(now) && pending[1].state.due(now));
        assert_eq!(spool.flush(Some(&a.id)).unwrap(), 1);
        assert!(spool.state(&a.id).due(now));
        assert_eq!(spool.state(&a.id).attempts, 1, "flush keeps the count");

        spool.fail(&b.id, "550 5.1.1 no such user").unwrap();
        let failed = fs::read(dir.path().join(format!("failed/{}.msg", b.id))).unwrap();
        assert_eq!(
            Entry::decode(&failed).unwrap().note,
            "550 5.1.1 no such user"
        );
        spool.delivered(std::slice::from_ref(&a.id)).unwrap();
        assert!(spool.pending().unwrap().is_empty());
    }
}
