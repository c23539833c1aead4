//! The hand-off from the queue to delivery; see [`Arrivals`].

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use tokio::sync::Notify;

use super::{Entry, Kind, QueueId};

/// How the queue tells delivery that something arrived: entries queued
/// since the runner last looked, or a request to re-read all of `queue/`
/// (a flush, a release, mail that sendmail left). Ingest puts entries
/// here once they are durable and names no later stage, as Stalwart's
/// inbound stage queues a message and the queue notifies delivery.
///
/// New entries come with their contents while [`CACHE_BYTES`] allows, so
/// the runner sends what the daemon has just written without reading it
/// back: one blocking hand-off and five system calls less per alert, on
/// the path where the queue otherwise backs up behind concurrent clients.
/// The file stays the truth: it is durable before the entry arrives here,
/// and whatever is not cached is read from it.
#[derive(Debug, Default)]
pub struct Arrivals {
    queued: Mutex<Vec<Arrived>>,
    /// Payload bytes held here and in the runner's cache.
    cached_bytes: AtomicUsize,
    rescan: AtomicBool,
    wake: Notify,
    /// Entries queued for delivery, and held, since [`Arrivals::counted`].
    accepted: AtomicU64,
    held: AtomicU64,
}

/// One entry made durable in `queue/`, with its contents when cached.
#[derive(Debug)]
pub struct Arrived {
    pub id: QueueId,
    pub entry: Option<Entry>,
    /// The daemon's own mail (a warning, a heartbeat): pacing keeps part
    /// of the day for it. Known from here only, so not across a restart,
    /// which also starts the day's count afresh.
    pub own: bool,
}

/// The most payload bytes kept in memory for delivery (about 800 RSA-4096
/// alerts). Beyond it, entries are read from `queue/` when their turn
/// comes, as after a restart: a relay outage must not grow the daemon.
pub const CACHE_BYTES: usize = 4 << 20;

impl Arrivals {
    /// Entries now durable in `queue/`; outgoing ones are for the runner.
    pub fn queued(&self, entries: &[Entry]) {
        self.push(entries, false);
    }

    /// The same, for the daemon's own mail.
    pub fn queued_own(&self, entries: &[Entry]) {
        self.push(entries, true);
    }

    fn push(&self, entries: &[Entry], own: bool) {
        let held = entries.iter().filter(|e| e.kind.is_held()).count() as u64;
        self.held.fetch_add(held, Ordering::Relaxed);
        self.accepted
            .fetch_add(entries.len() as u64 - held, Ordering::Relaxed);
        let arrived = entries
            .iter()
            .filter(|e| e.kind == Kind::Outgoing)
            .map(|e| Arrived {
                id: e.id.clone(),
                entry: self.reserve(e.payload.len()).then(|| e.clone()),
                own,
            });
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(arrived);
        // Nothing new (the periodic pickup found nothing) wakes no one: a
        // wake-up every pickup interval kept the runner from ever closing
        // an idle connection to the relay.
        if !entries.is_empty() {
            self.wake.notify_one();
        }
    }

    /// Entries queued for delivery and entries held since the last call
    /// (for the health totals).
    pub fn counted(&self) -> (u64, u64) {
        (
            self.accepted.swap(0, Ordering::Relaxed),
            self.held.swap(0, Ordering::Relaxed),
        )
    }

    /// `queue/` changed behind the daemon's back: read it again.
    pub fn rescan(&self) {
        self.rescan.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// The new entries, and whether a rescan was asked for.
    pub fn take(&self) -> (Vec<Arrived>, bool) {
        let new = std::mem::take(&mut *self.queued.lock().unwrap_or_else(PoisonError::into_inner));
        (new, self.rescan.swap(false, Ordering::AcqRel))
    }

    /// Counts `len` cached bytes, if they fit.
    fn reserve(&self, len: usize) -> bool {
        self.cached_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                held.checked_add(len).filter(|&n| n <= CACHE_BYTES)
            })
            .is_ok()
    }

    /// `entry` left the runner's cache.
    pub fn release(&self, entry: &Entry) {
        self.cached_bytes
            .fetch_sub(entry.payload.len(), Ordering::AcqRel);
    }

    /// Waits until something arrives (or a rescan is asked for).
    pub async fn notified(&self) {
        self.wake.notified().await
    }

    /// Payload bytes cached now.
    pub fn cached_bytes(&self) -> usize {
        self.cached_bytes.load(Ordering::Acquire)
    }
}
