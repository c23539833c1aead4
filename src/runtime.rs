//! The one async runtime every binary uses: tokio on the calling thread,
//! with timers and I/O, and a bounded pool of threads for blocking work
//! (encryption, fsync, spool reads).

use std::io;

/// The blocking pool's threads at most. Beyond the two cores, more only
/// wait; packaging/systemd's `TasksMax=` counts on this.
pub const MAX_BLOCKING_THREADS: usize = 16;

/// A new runtime.
pub fn new() -> io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
}
