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
    let retry: Vec<Duration> = ctx.config.queue.retry.iter().map(|d| d.0).collect();
    let relay = settings.as_ref().map(|s| s.relay()).unwrap_or_default();
    let sender = ctx.sealer.sender.address.as_str().to_string();

    // A kept-alive connection the relay has since closed is no reason to
    // defer anything: check it, and open a new one if it is gone.
    if !due.is_empty()
        && let Some((c, _)) = conn.as_mut()
        && !c.alive().await
    {
        *conn = None;
    }

    let mut sent: Vec<QueueId> = Vec::new();
    // Once the relay cannot be reached, the rest of this batch is deferred
    // with the same reason instead of trying again for each message.
    let mut unreachable: Option<String> = None;
    for p in due {
        let age = now.duration_since(p.id.created()).unwrap_or_default();
        let attempt = p.state.attempts + 1;
        let entry = match read(spool, &p.id).await {
            Some(e) => e,
            None => continue,
        };
        if age > max_lifetime {
            let reason = format!(
                "undelivered after {}; last error: {}",
                humantime::format_duration(max_lifetime),
                p.state.last_error
            );
            record_failure(spool, &p.id, &reason).await;
            log_attempt(
                &p.id,
                &entry.recipient,
                "failed",
                &relay,
                "-",
                p.state.attempts,
                age,
                &reason,
            );
            continue;
        }
        let settings = match settings {
            Ok(s) => s,
            Err(e) => {
                defer_logged(
                    spool,
                    &p,
                    now,
                    &retry,
                    &entry.recipient,
                    &relay,
                    attempt,
                    age,
                    e,
                )
                .await;
                continue;
            }
        };
        if let Some(reason) = &unreachable {
            defer_logged(
                spool,
                &p,
                now,
                &retry,
                &entry.recipient,
                &relay,
                attempt,
                age,
                reason,
            )
            .await;
            continue;
        }
        if conn.is_none() {
            match Connection::open(settings).await {
                Ok(c) => *conn = Some((c, Instant::now())),
                Err(e) => {
                    let reason = e.to_string();
                    defer_logged(
                        spool,
                        &p,
                        now,
                        &retry,
                        &entry.recipient,
                        &relay,
                        attempt,
                        age,
                        &reason,
                    )
                    .await;
                    unreachable = Some(reason);
                    continue;
                }
            }
        }
        let Some((c, last_used)) = conn.as_mut() else {
            continue;
        };
        let tls = c.tls_version;
        let result = c.send(&sender, &entry.recipient, &entry.payload).await;
        *last_used = Instant::now();
        let age = SystemTime::now()
            .duration_since(p.id.created())
            .unwrap_or_default();
        let keep = match &result {
            Ok(reply) => {
                sent.push(p.id.clone());
                let s = spool.clone();
                let id = p.id.clone();
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || s.remove_delivered(&id)).await
                {
                    // It will be sent again: at least once, never lost.
                    tracing::error!(id = %p.id, "sent, but cannot remove it from the queue: {e}");
                }
                log_attempt(
                    &p.id,
                    &entry.recipient,
                    "sent",
                    &relay,
                    tls,
                    attempt,
                    age,
                    &reply.to_string(),
                );
                true
            }
            Err(e) if e.is_permanent() => {
                let reason = e.to_string();
                record_failure(spool, &p.id, &reason).await;
                log_attempt(
                    &p.id,
                    &entry.recipient,
                    "failed",
                    &relay,
                    tls,
                    attempt,
                    age,
                    &reason,
                );
                true
            }
            Err(e) => {
                let reason = e.to_string();
                defer(spool, &p, now, &retry, &reason).await;
                log_attempt(
                    &p.id,
                    &entry.recipient,
                    "deferred",
                    &relay,
                    tls,
                    attempt,
                    age,
                    &reason,
                );
                e.connection_usable()
            }
        };
        let reset_ok = keep
            && match conn.as_mut() {
                Some((c, _)) => c.rset().await.is_ok(),
                None => false,
            };
        if !reset_ok {
            *conn = None;
        }
    }
    if !sent.is_empty() {
        let s = spool.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.sync_queue()).await {
            tracing::error!("cannot sync the queue directory: {e}");
        }
    }
    next_due
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

async fn defer(spool: &Spool, p: &Pending, now: SystemTime, retry: &[Duration], reason: &str) {
    let state: State = p.state.after_failure(now, retry, reason);
    let s = spool.clone();
    let id = p.id.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.defer(&id, &state)).await {
        tracing::error!(id = %p.id, "cannot record the retry schedule: {e}");
    }
}

/// Defers an entry that got no connection, and logs the attempt.
#[allow(clippy::too_many_arguments)]
async fn defer_logged(
    spool: &Spool,
    p: &Pending,
    now: SystemTime,
    retry: &[Duration],
    to: &str,
    relay: &str,
    attempt: u32,
    age: Duration,
    reason: &str,
) {
    defer(spool, p, now, retry, reason).await;
    log_attempt(&p.id, to, "deferred", relay, "-", attempt, age, reason);
}

async fn record_failure(spool: &Spool, id: &QueueId, reason: &str) {
    let s = spool.clone();
    let id2 = id.clone();
    let reason = reason.to_string();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.fail(&id2, &reason)).await {
        tracing::error!(id = %id, "cannot move a failed entry to failed/: {e}");
    }
}

#[allow(clippy::too_many_arguments)]
fn log_attempt(
    id: &QueueId,
    to: &str,
    status: &str,
    relay: &str,
    tls: &str,
    attempt: u32,
    age: Duration,
    reason: &str,
) {
    let delay = format!("{:.2}s", age.as_secs_f64());
    match status {
        "sent" => tracing::info!(
            id = %id, to = %to, status = %status, relay = %relay, tls = %tls, attempt, delay = %delay,
            reply = ?reason, "delivery"
        ),
        _ => tracing::warn!(
            id = %id, to = %to, status = %status, relay = %relay, tls = %tls, attempt, delay = %delay,
            reason = ?reason, "delivery"
        ),
    }
}
