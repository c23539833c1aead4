//! The queue runner: takes what is due from `queue/` and delivers it.
//!
//! - It wakes when new mail is queued, when `relayctl flush` or
//!   `sendmail -q` pokes the spool, and when the next deferred entry is
//!   due.
//! - Everything due goes over one connection, RSET between transactions;
//!   the connection stays open for [`KEEPALIVE`] in case more mail comes,
//!   so a burst of alerts pays for one TLS handshake.
//! - Per message: 2xx removes the entry (sent); 5xx to MAIL, RCPT or DATA
//!   moves it to `failed/` with the reply; anything else (4xx, timeouts,
//!   network, TLS, AUTH) defers it on the `queue.retry` schedule, kept in
//!   its state file. An entry older than `queue.max_lifetime` moves to
//!   `failed/` with its last error. Nothing is ever removed unsent.
//! - One log line per attempt:
//!   `id=... to=... status=sent|deferred|failed relay=host:port tls=TLSv1.3
//!   attempt=N delay=0.42s reason="..."`.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{Notify, watch};

use super::client::{Connection, Settings};
use crate::ingest::Context;
use crate::spool::{Pending, QueueId, Spool, State};

/// How long an idle connection to the relay is kept for more mail.
pub const KEEPALIVE: Duration = Duration::from_secs(5);
/// The longest the runner sleeps without looking at the queue.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Settings built for one loaded config (TLS roots are read once).
struct Prepared {
    ctx: Arc<Context>,
    settings: Result<Settings, String>,
}

/// Runs until `stop` turns true.
pub async fn run(
    spool: Spool,
    ctx_rx: watch::Receiver<Arc<Context>>,
    queued: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut prepared: Option<Prepared> = None;
    let mut conn: Option<(Connection, Instant)> = None;
    loop {
        let ctx = ctx_rx.borrow().clone();
        if prepared.as_ref().is_none_or(|p| !Arc::ptr_eq(&p.ctx, &ctx)) {
            // A new config: new settings, and a new connection.
            if let Some((c, _)) = conn.take() {
                c.quit().await;
            }
            let settings =
                Settings::from_config(&ctx.config, &ctx.hostname).map_err(|e| e.to_string());
            if let Err(e) = &settings {
                tracing::error!("cannot deliver: {e}");
            }
            prepared = Some(Prepared {
                ctx: ctx.clone(),
                settings,
            });
        }
        let Some(p) = prepared.as_ref() else { continue };

        let next_due = deliver_due(&spool, &ctx, &p.settings, &mut conn).await;

        let now = SystemTime::now();
        let mut sleep = next_due
            .and_then(|t| t.duration_since(now).ok())
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        if conn.is_some() {
            sleep = sleep.min(KEEPALIVE);
        }
        tokio::select! {
            _ = queued.notified() => {}
            _ = tokio::time::sleep(sleep) => {
                if conn.as_ref().is_some_and(|(_, last)| last.elapsed() >= KEEPALIVE)
                    && let Some((c, _)) = conn.take()
                {
                    c.quit().await;
                }
            }
            _ = stop.changed() => {
                if let Some((c, _)) = conn.take() {
                    c.quit().await;
                }
                return;
            }
        }
    }
}

/// Delivers every due entry; returns when the next deferred one is due.
async fn deliver_due(
    spool: &Spool,
    ctx: &Context,
    settings: &Result<Settings, String>,
    conn: &mut Option<(Connection, Instant)>,
) -> Option<SystemTime> {
    let s = spool.clone();
    let pending = match tokio::task::spawn_blocking(move || s.pending()).await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => {
            tracing::error!("cannot read the queue: {e}");
            return Some(SystemTime::now() + MAX_SLEEP);
        }
        Err(e) => {
            tracing::error!("queue scan failed: {e}");
            return Some(SystemTime::now() + MAX_SLEEP);
        }
    };
    let now = SystemTime::now();
    let (due, later): (Vec<Pending>, Vec<Pending>) =
        pending.into_iter().partition(|p| p.state.due(now));
    let next_due = later
        .iter()
        .map(|p| SystemTime::UNIX_EPOCH + Duration::from_secs(p.state.next_attempt))
        .min();
    let max_lifetime = ctx.config.queue.max_lifetime.0;
    let batch = Batch {
        spool,
        relay: settings.as_ref().map(|s| s.relay()).unwrap_or_default(),
        retry: ctx.config.queue.retry.iter().map(|d| d.0).collect(),
        now,
    };
    let sender = ctx.sealer.sender.address.as_str().to_string();

    // A kept-alive connection the relay has since closed is no reason to
    // defer anything: check it, and open a new one if it is gone.
    if !due.is_empty()
        && let Some((c, _)) = conn.as_mut()
        && !c.alive().await
    {
        *conn = None;
    }

    let mut any_sent = false;
    // Once the relay cannot be reached, the rest of this batch is deferred
    // with the same reason instead of trying again for each message.
    let mut unreachable: Option<String> = None;
    for p in due {
        let Some(entry) = read(spool, &p.id).await else {
            continue;
        };
        let to = entry.recipient.as_str();
        if now.duration_since(p.id.created()).unwrap_or_default() > max_lifetime {
            let reason = format!(
                "undelivered after {}; last error: {}",
                humantime::format_duration(max_lifetime),
                p.state.last_error
            );
            batch
                .record(&p, to, NO_TLS, p.state.attempts, Outcome::Failed(reason))
                .await;
            continue;
        }
        let attempt = p.state.attempts + 1;
        let (tls, outcome, keep) = match (settings, &unreachable) {
            (Err(e), _) => (NO_TLS, Outcome::Deferred(e.clone()), false),
            (Ok(_), Some(reason)) => (NO_TLS, Outcome::Deferred(reason.clone()), false),
            (Ok(s), None) => match open_if_needed(conn, s).await {
                Err(reason) => {
                    unreachable = Some(reason.clone());
                    (NO_TLS, Outcome::Deferred(reason), false)
                }
                Ok((c, last_used)) => {
                    let result = c.send(&sender, to, &entry.payload).await;
                    *last_used = Instant::now();
                    match result {
                        Ok(reply) => (c.tls_version, Outcome::Sent(reply.to_string()), true),
                        Err(e) if e.is_permanent() => {
                            (c.tls_version, Outcome::Failed(e.to_string()), true)
                        }
                        Err(e) => (
                            c.tls_version,
                            Outcome::Deferred(e.to_string()),
                            e.connection_usable(),
                        ),
                    }
                }
            },
        };
        any_sent |= matches!(outcome, Outcome::Sent(_));
        batch.record(&p, to, tls, attempt, outcome).await;
        // RSET between transactions; a connection that cannot take one is dropped.
        let reset_ok = keep
            && match conn.as_mut() {
                Some((c, _)) => c.rset().await.is_ok(),
                None => false,
            };
        if !reset_ok {
            *conn = None;
        }
    }
    if any_sent {
        let s = spool.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.sync_queue()).await {
            tracing::error!("cannot sync the queue directory: {e}");
        }
    }
    next_due
}

/// The `tls=` of a log line when no TLS session was involved.
const NO_TLS: &str = "-";

/// The open connection, opening one if there is none; the error is the
/// reason to log.
async fn open_if_needed<'c>(
    conn: &'c mut Option<(Connection, Instant)>,
    settings: &Settings,
) -> Result<&'c mut (Connection, Instant), String> {
    if conn.is_none() {
        let opened = Connection::open(settings)
            .await
            .map_err(|e| e.to_string())?;
        *conn = Some((opened, Instant::now()));
    }
    conn.as_mut().ok_or_else(|| "no connection".to_string())
}

/// What became of one delivery attempt.
enum Outcome {
    /// The relay's reply.
    Sent(String),
    /// Why it will be tried again.
    Deferred(String),
    /// Why it never will.
    Failed(String),
}

/// What every attempt of one batch shares.
struct Batch<'a> {
    spool: &'a Spool,
    relay: String,
    retry: Vec<Duration>,
    now: SystemTime,
}

impl Batch<'_> {
    /// Makes the outcome durable in the spool, then logs the attempt:
    /// sent entries leave the queue, deferred ones get their next time,
    /// failed ones move to `failed/`.
    async fn record(&self, p: &Pending, to: &str, tls: &str, attempt: u32, outcome: Outcome) {
        let s = self.spool.clone();
        let id = p.id.clone();
        let (status, text, done) = match outcome {
            Outcome::Sent(reply) => {
                let done = tokio::task::spawn_blocking(move || s.remove_delivered(&id)).await;
                ("sent", reply, done)
            }
            Outcome::Deferred(reason) => {
                let state: State = p.state.after_failure(self.now, &self.retry, &reason);
                let done = tokio::task::spawn_blocking(move || s.defer(&id, &state)).await;
                ("deferred", reason, done)
            }
            Outcome::Failed(reason) => {
                let why = reason.clone();
                let done = tokio::task::spawn_blocking(move || s.fail(&id, &why)).await;
                ("failed", reason, done)
            }
        };
        match done {
            Ok(Ok(())) => {}
            // A sent entry left in the queue is sent again: at least once,
            // never lost. A deferral not recorded is retried sooner.
            Ok(Err(e)) => tracing::error!(id = %p.id, status, "cannot record the outcome: {e}"),
            Err(e) => tracing::error!(id = %p.id, status, "cannot record the outcome: {e}"),
        }
        let age = SystemTime::now()
            .duration_since(p.id.created())
            .unwrap_or_default();
        let delay = format!("{:.2}s", age.as_secs_f64());
        let relay = &self.relay;
        if status == "sent" {
            tracing::info!(
                id = %p.id, to = %to, status = %status, relay = %relay, tls = %tls, attempt,
                delay = %delay, reply = ?text, "delivery"
            );
        } else {
            tracing::warn!(
                id = %p.id, to = %to, status = %status, relay = %relay, tls = %tls, attempt,
                delay = %delay, reason = ?text, "delivery"
            );
        }
    }
}

async fn read(spool: &Spool, id: &QueueId) -> Option<crate::spool::Entry> {
    let s = spool.clone();
    let id2 = id.clone();
    match tokio::task::spawn_blocking(move || s.read(&id2)).await {
        Ok(Ok(e)) => Some(e),
        Ok(Err(e)) => {
            tracing::error!(id = %id, "cannot read a queued entry: {e}");
            None
        }
        Err(_) => None,
    }
}
