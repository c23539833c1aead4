//! The queue runner: takes what is due from `queue/` and delivers it.
//!
//! - It wakes when new mail is queued, when `relayctl flush` or
//!   `sendmail -q` pokes the spool, and when the next deferred entry is
//!   due. It keeps the queue's entries and their retry states in memory
//!   ([`Index`]), told of new ones by [`Arrivals`], and re-reads `queue/`
//!   only when poked and every [`RESCAN_EVERY`]: a scan reads every state
//!   file, so a scan per wake made each new alert pay for the whole queue
//!   behind a dead relay, in memory and blocking threads (tests/faults,
//!   burst-memory, measures the daemon with 10,000 queued).
//! - Everything due goes over one connection, RSET between transactions
//!   (pipelined with the next transaction's commands when the relay offers
//!   PIPELINING); the connection stays open for [`KEEPALIVE`] in case more
//!   mail comes, so a burst of alerts pays for one TLS handshake. When the
//!   relay has closed a kept connection, the transaction is tried once
//!   more on a new one.
//! - Per message: 2xx removes the entry (sent); 5xx to MAIL, RCPT or DATA
//!   moves it to `failed/` with the reply; anything else (4xx, timeouts,
//!   network, TLS, AUTH) defers it on the `queue.retry` schedule, kept in
//!   its state file. An entry older than `queue.max_lifetime` moves to
//!   `failed/` with its last error. Nothing is ever removed unsent.
//! - One log line per attempt:
//!   `id=... to=... status=sent|deferred|failed relay=host:port tls=TLSv1.3
//!   attempt=N delay=0.42s reason="..."`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::client::{DeliverError, Reply};
use super::pace::{Pacer, Sender, Wait};
use super::relay::{NO_TLS, Route, Through, Unsent};
use crate::context::Context;
use crate::health::{Class, Health, Via};
use crate::spool::{Arrivals, Entry, Pending, QueueId, Spool, State};

/// How long an idle connection to the relay is kept for more mail.
pub const KEEPALIVE: Duration = Duration::from_secs(5);
/// How long removals of delivered entries may wait for their directory
/// fsync. Syncing after every message was one of the three fsyncs an
/// alert cost (file and directory at commit, directory at removal); the
/// price is that a power failure (not a crash: the kernel still
/// writes the directory) can resend what was delivered in the last second.
/// Delivery is at least once either way.
const SYNC_EVERY: Duration = Duration::from_secs(1);
/// The longest the runner sleeps without looking at the queue.
const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How often an OAuth 2.0 sign-in is used even when no alert needs it:
/// Microsoft's refresh tokens expire after 90 days unused, and a quiet
/// host must not find its sign-in gone when the alert that matters comes.
const SIGN_IN_KEEPALIVE: Duration = Duration::from_secs(24 * 3600);
/// How long an alert waits after the relay said the account's sending
/// quota is used up. The providers' quotas are daily, over a rolling 24
/// hours: what the account sent a day ago frees room bit by bit, so an
/// hourly try gets alerts out soon after there is room, at the cost of
/// one refused transaction an hour. `relayctl flush` tries at once.
const QUOTA_WAIT: Duration = Duration::from_secs(3600);
/// How often the in-memory index is checked against `queue/` even when
/// nothing asked for it (an entry whose removal failed, an admin's edit).
const RESCAN_EVERY: Duration = Duration::from_secs(60);

/// The runner's view of `queue/`: every entry with its delivery state.
#[derive(Default)]
struct Index {
    entries: BTreeMap<QueueId, State>,
    /// Contents of entries not yet tried, from [`Arrivals`].
    cached: HashMap<QueueId, Entry>,
    /// The daemon's own mail among them (see [`Arrived::own`]).
    own: HashSet<QueueId>,
    /// When `queue/` was last read whole; `None`: never, or it must be.
    scanned: Option<Instant>,
}

impl Index {
    /// Brings the index up to date: new entries are due now; a rescan
    /// replaces it with what `queue/` holds.
    async fn refresh(&mut self, spool: &Spool, arrivals: &Arrivals) {
        let (new, rescan) = arrivals.take();
        for arrived in new {
            if let Some(entry) = arrived.entry {
                self.cached.insert(arrived.id.clone(), entry);
            }
            if arrived.own {
                self.own.insert(arrived.id.clone());
            }
            self.entries.entry(arrived.id).or_default();
        }
        if !rescan && self.scanned.is_some_and(|t| t.elapsed() < RESCAN_EVERY) {
            return;
        }
        let s = spool.clone();
        match tokio::task::spawn_blocking(move || s.pending()).await {
            Ok(Ok(pending)) => {
                self.entries = pending.into_iter().map(|p| (p.id, p.state)).collect();
                self.scanned = Some(Instant::now());
                // What left queue/ behind the daemon's back leaves the cache.
                let entries = &self.entries;
                self.cached.retain(|id, entry| {
                    let keep = entries.contains_key(id);
                    if !keep {
                        arrivals.release(entry);
                    }
                    keep
                });
                self.own.retain(|id| entries.contains_key(id));
            }
            // The index stays as it was, and the next wake scans again.
            Ok(Err(e)) => {
                tracing::error!("cannot read the queue: {e}");
                self.scanned = None;
            }
            Err(e) => {
                tracing::error!("queue scan failed: {e}");
                self.scanned = None;
            }
        }
    }

    /// The entry's contents: cached, or read from `queue/`. `None`: the
    /// entry is gone or was not an entry (see [`Spool::read_queued`]).
    async fn take_entry(
        &mut self,
        spool: &Spool,
        arrivals: &Arrivals,
        id: &QueueId,
    ) -> Option<Entry> {
        match self.cached.remove(id) {
            Some(entry) => {
                arrivals.release(&entry);
                Some(entry)
            }
            None => read(spool, id).await,
        }
    }

    /// When the next entry is due.
    fn next_due(&self) -> Option<SystemTime> {
        self.entries
            .values()
            .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s.next_attempt))
            .min()
    }
}

/// Each relay's pacer, with the relay it paced (`host:port`).
type Carried = ((Pacer, String), Option<(Pacer, String)>);

/// The relays built for one loaded config (TLS roots are read once).
struct Prepared {
    ctx: Arc<Context>,
    primary: Route,
    fallback: Option<Route>,
}

impl Prepared {
    fn new(ctx: Arc<Context>) -> Prepared {
        let config = &ctx.config;
        let primary = Route::new(
            Via::Primary,
            &config.relay,
            &ctx.hostname,
            ctx.sealer.sender.address.as_str(),
            &config.queue.dir,
        );
        let fallback = config.fallback.as_ref().map(|relay| {
            let sender = match config.fallback_sender() {
                Some(Ok(m)) => m.address.as_str().to_string(),
                _ => ctx.sealer.sender.address.as_str().to_string(),
            };
            Route::new(
                Via::Fallback,
                relay,
                &ctx.hostname,
                &sender,
                &config.queue.dir,
            )
        });
        Prepared {
            ctx,
            primary,
            fallback,
        }
    }

    /// What each relay sent lately, for the config that replaces this one.
    fn take_pace(&mut self) -> Carried {
        (
            (
                std::mem::take(&mut self.primary.pacer),
                self.primary.relay.clone(),
            ),
            self.fallback
                .as_mut()
                .map(|f| (std::mem::take(&mut f.pacer), f.relay.clone())),
        )
    }

    /// Carries what the relays sent under the previous config over.
    fn carry_pace(&mut self, ((primary, was), fallback): Carried) {
        self.primary.carry_pace(primary, &was);
        if let (Some(route), Some((pacer, was))) = (self.fallback.as_mut(), fallback) {
            route.carry_pace(pacer, &was);
        }
    }

    /// Says QUIT on the kept connections.
    async fn close(&mut self) {
        self.primary.close().await;
        if let Some(f) = self.fallback.as_mut() {
            f.close().await;
        }
    }

    /// Closes the connections idle for [`KEEPALIVE`].
    async fn close_idle(&mut self) {
        self.primary.close_idle(KEEPALIVE).await;
        if let Some(f) = self.fallback.as_mut() {
            f.close_idle(KEEPALIVE).await;
        }
    }

    fn has_connection(&self) -> bool {
        self.primary.conn.is_some() || self.fallback.as_ref().is_some_and(|f| f.conn.is_some())
    }
}

/// Runs until `stop` turns true, telling `health` what each attempt did.
pub async fn run(
    spool: Spool,
    ctx_rx: watch::Receiver<Arc<Context>>,
    arrivals: Arc<Arrivals>,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) {
    let mut index = Index::default();
    let mut prepared: Option<Prepared> = None;
    // Since when removals from queue/ wait for their directory fsync.
    let mut unsynced: Option<Instant> = None;
    // While the fallback stands in: the primary's step in queue.retry,
    // and when it is tried again.
    let mut primary_next: Option<(usize, SystemTime)> = None;
    // The limit holding due alerts back, as last logged.
    let mut pacing: Option<Wait> = None;
    // When this loop last renewed the OAuth 2.0 sign-in: at start too,
    // for hosts that reboot every night would never reach a day.
    let mut sign_in_renewed: Option<Instant> = None;
    // Sent entries on their way out of queue/, across batches.
    let mut removals = Removals::new(&spool);
    loop {
        let ctx = ctx_rx.borrow().clone();
        if prepared.as_ref().is_none_or(|p| !Arc::ptr_eq(&p.ctx, &ctx)) {
            // A new config: new settings, and new connections; what each
            // relay sent lately still counts against its limits.
            let mut carried = None;
            if let Some(mut old) = prepared.take() {
                old.close().await;
                carried = Some(old.take_pace());
            }
            primary_next = None;
            let mut fresh = Prepared::new(ctx.clone());
            if let Some(pace) = carried {
                fresh.carry_pace(pace);
            }
            if fresh.fallback.is_none() {
                health.no_fallback();
            }
            prepared = Some(fresh);
        }
        let Some(p) = prepared.as_mut() else { continue };

        // The last sent entry is out of queue/ before queue/ is read again
        // (a rescan would find it there and send it twice).
        removals.settle().await;
        index.refresh(&spool, &arrivals).await;
        let mut run = Run {
            spool: &spool,
            ctx: &ctx,
            arrivals: &arrivals,
            health: &health,
            primary: &mut p.primary,
            fallback: p.fallback.as_mut(),
            primary_next: &mut primary_next,
            removals: &mut removals,
        };
        let (sent, held) = deliver_due(&mut run, &mut index).await;
        // Daily, and at once after `relayctl oauth2 login` (it wakes the
        // daemon): a new sign-in that does not work is known now.
        let tokens = p.primary.tokens();
        let new_sign_in = tokens.as_ref().is_some_and(|t| t.sign_in_changed());
        if new_sign_in || sign_in_renewed.is_none_or(|t| t.elapsed() >= SIGN_IN_KEEPALIVE) {
            sign_in_renewed = Some(Instant::now());
            if let Some(tokens) = tokens {
                keep_sign_in(&tokens, &p.primary.relay.clone(), &health).await;
            }
        }
        if index.entries.is_empty() {
            health.queue_empty();
        }
        note_pacing(&mut pacing, held, &index, &health);
        // Held back by a relay's limits: the due alerts wait for the pace.
        let next_due = match held {
            Some(wait) => Some(wait.until()),
            None => index.next_due(),
        };
        if sent {
            unsynced.get_or_insert_with(Instant::now);
        }
        if unsynced.is_some_and(|since| since.elapsed() >= SYNC_EVERY) {
            // The fsync makes durable the renames done before it.
            removals.settle().await;
            sync_queue(&spool).await;
            unsynced = None;
        }

        let now = SystemTime::now();
        let mut sleep = next_due
            .and_then(|t| t.duration_since(now).ok())
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        if p.has_connection() {
            sleep = sleep.min(KEEPALIVE);
        }
        if let Some(since) = unsynced {
            sleep = sleep.min(SYNC_EVERY.saturating_sub(since.elapsed()));
        }
        tokio::select! {
            // Either way, a connection idle for KEEPALIVE goes: wake-ups
            // must not keep it open for ever.
            _ = arrivals.notified() => p.close_idle().await,
            _ = tokio::time::sleep(sleep) => p.close_idle().await,
            _ = stop.changed() => {
                p.close().await;
                removals.finish().await;
                if unsynced.is_some() {
                    sync_queue(&spool).await;
                }
                return;
            }
        }
    }
}

/// Refreshes the OAuth 2.0 sign-in, so that the
/// provider sees it used; a sign-in that is gone is a failure of the
/// primary now, for `relayctl health` and the warnings, not when the
/// next alert finds it.
async fn keep_sign_in(tokens: &crate::oauth2::TokenSource, relay: &str, health: &Health) {
    match tokens.get(true).await {
        Ok(_) => {
            tracing::info!(relay = %relay, "OAuth 2.0 sign-in renewed");
            if let Some(t) = tokens.signed_in().await {
                health.signed_in_again(t);
            }
        }
        Err(e) => {
            let e = DeliverError::OAuth2(e);
            tracing::warn!(relay = %relay, class = %e.class(), reason = ?e.to_string(), "OAuth 2.0 sign-in");
            health.primary_failed(e.class(), &e.to_string(), relay, SystemTime::now());
        }
    }
}

/// Logs when a relay's limits begin to hold due alerts back (once per
/// limit, not per alert), and keeps the health record's note of it, which
/// `relayctl queue` and `relayctl health` show.
fn note_pacing(pacing: &mut Option<Wait>, held: Option<Wait>, index: &Index, health: &Health) {
    match held {
        Some(wait) => {
            if !pacing.is_some_and(|p| p.same_limit(&wait)) {
                let now = SystemTime::now();
                let waiting = index.entries.values().filter(|s| s.due(now)).count();
                tracing::info!(
                    waiting,
                    next = %crate::when::rfc3339(wait.until()),
                    "pacing: {wait}; due alerts wait for it"
                );
            }
            health.paced(Some(crate::health::Paced {
                reason: wait.to_string(),
                until: crate::health::secs(wait.until()),
            }));
        }
        None if pacing.is_some() => health.paced(None),
        None => {}
    }
    *pacing = held;
}

/// Makes removals from `queue/` durable.
async fn sync_queue(spool: &Spool) {
    let s = spool.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || s.sync_queue()).await {
        tracing::error!("cannot sync the queue directory: {e}");
    }
}

/// What one delivery run works with.
struct Run<'a> {
    spool: &'a Spool,
    ctx: &'a Context,
    arrivals: &'a Arrivals,
    health: &'a Health,
    primary: &'a mut Route,
    fallback: Option<&'a mut Route>,
    primary_next: &'a mut Option<(usize, SystemTime)>,
    removals: &'a mut Removals,
}

/// Delivers every due entry of the index, keeping it up to date; returns
/// whether any was sent, and the limit that held the rest back, if one
/// did (`relay.max_per_minute`, `relay.max_per_day`).
///
/// Each entry goes to the primary relay. When that fails with a
/// temporary class (unreachable, TLS or pin, AUTH, 4xx), and the primary
/// has been failing for `fallback.fallback_after`, the entry goes through
/// the fallback instead, the admins having been told first. While the
/// fallback stands in, the primary is tried again at each step of the
/// retry schedule, and takes over as soon as it works. A 5xx from the
/// primary is final: such an alert is never sent elsewhere.
async fn deliver_due(run: &mut Run<'_>, index: &mut Index) -> (bool, Option<Wait>) {
    let (spool, ctx, arrivals, health) = (run.spool, run.ctx, run.arrivals, run.health);
    let now = SystemTime::now();
    let mut due: Vec<Pending> = index
        .entries
        .iter()
        .filter(|(_, state)| state.due(now))
        .map(|(id, state)| Pending {
            id: id.clone(),
            state: state.clone(),
        })
        .collect();
    // The daemon's own mail first: the day's reserve is for it, and a
    // run ends at the first alert the limits hold back.
    due.sort_by_key(|p| !index.own.contains(&p.id));
    if due.is_empty() {
        return (false, None);
    }
    let max_lifetime = ctx.config.queue.max_lifetime.0;
    let retry: Vec<Duration> = ctx.config.queue.retry.iter().map(|d| d.0).collect();
    let batch = Batch {
        spool,
        retry: retry.clone(),
        now,
        health,
        has_fallback: run.fallback.is_some(),
    };
    let fallback_after = ctx.config.fallback.as_ref().map(|f| f.fallback_after());
    // Whether the fallback may take an entry the primary could not: it
    // is configured, and the primary has failed with a temporary class
    // for long enough.
    let standing_in = |health: &Health| -> bool {
        match (fallback_after, health.primary_failing()) {
            (Some(after), Some((class, since))) => {
                class != Class::Local
                    && class != Class::Relay5xx
                    && now.duration_since(since).unwrap_or_default() >= after
            }
            _ => false,
        }
    };

    let removals = &mut *run.removals;
    // A relay that could not be reached is not tried again in this batch:
    // the rest is deferred (or goes through the fallback) with its reason.
    let mut primary_down: Option<DeliverError> = None;
    let mut fallback_down: Option<DeliverError> = None;
    let mut held: Option<Wait> = None;
    for p in due {
        let Some(entry) = index.take_entry(spool, arrivals, &p.id).await else {
            // Gone (delivered by an earlier run, deleted, quarantined).
            index.entries.remove(&p.id);
            continue;
        };
        let to = entry.recipient.as_str();
        if now.duration_since(p.id.created()).unwrap_or_default() > max_lifetime {
            let expired = DeliverError::Expired {
                after: max_lifetime,
                last_error: p.state.last_error.clone(),
            };
            let tried = Attempt::new(&p, to, run.primary.through(), NO_TLS, p.state.attempts);
            batch.record(&tried, Unsent::Failed(expired)).await;
            index.entries.remove(&p.id);
            continue;
        }
        let mut attempt = p.state.attempts + 1;
        // The primary's limits hold the rest back, unless the fallback
        // stands in for it: then the fallback may take them.
        let fallback_stands_in = run.fallback.is_some() && standing_in(health);
        let sender = match index.own.contains(&p.id) {
            true => Sender::Daemon,
            false => Sender::Alert,
        };
        let paced = run.primary.pacer.wait(SystemTime::now(), sender);
        // The day's limit reached is the primary failing with class quota:
        // relayctl health grades it (a WARNING after health.warn_after),
        // and past fallback.fallback_after the fallback takes the alerts.
        if let Some(day @ Wait::Day { .. }) = paced {
            health.primary_failed(Class::Quota, &day.to_string(), &run.primary.relay, now);
        }
        if paced.is_some() && !fallback_stands_in {
            held = paced;
            break;
        }
        // While the fallback stands in, the primary waits for its retry step.
        // (Not while the fallback fails too: then the primary may be back.)
        let primary_waits = paced.is_some()
            || (fallback_stands_in
                && fallback_down.is_none()
                && !health.fallback_failing()
                && run.primary_next.is_some_and(|(_, t)| now < t));
        let mut outcome = None;
        if !primary_waits {
            let (tls, result) = run
                .primary
                .attempt(
                    &mut primary_down,
                    to,
                    &entry.payload,
                    removals,
                    Some(health),
                )
                .await;
            match result {
                Ok(reply) => {
                    *run.primary_next = None;
                    let now = SystemTime::now();
                    run.primary.pacer.sent(now);
                    let alerts_held = sender == Sender::Daemon
                        && matches!(
                            run.primary.pacer.wait(now, Sender::Alert),
                            Some(Wait::Day { .. })
                        );
                    match alerts_held {
                        true => health.sent_from_reserve(&run.primary.relay, now),
                        false => health.sent(Via::Primary, &run.primary.relay, now),
                    }
                    batch.log_sent(
                        &Attempt::new(&p, to, run.primary.through(), tls, attempt),
                        &reply,
                    );
                    outcome = Some(Ok(()));
                }
                // Not when the primary may have the message (no reply to
                // its final dot): the fallback would send it twice. A
                // refusal there (Microsoft's quota) is no such case.
                Err(Unsent::Deferred(e))
                    if run.fallback.is_some() && standing_in(health) && !e.relay_may_have_it() =>
                {
                    // Logged, and the entry goes on through the fallback.
                    health.primary_failed(e.class(), &e.to_string(), &run.primary.relay, now);
                    let tried = Attempt::new(&p, to, run.primary.through(), tls, attempt);
                    batch.log_unsent(&tried, "deferred", &e);
                    let step = run
                        .primary_next
                        .map_or(0, |(i, _)| (i + 1).min(retry.len().saturating_sub(1)));
                    let wait = retry.get(step).copied().unwrap_or(Duration::from_secs(60));
                    *run.primary_next = Some((step, now + wait));
                    attempt += 1;
                }
                Err(unsent) => outcome = Some(Err((unsent, tls))),
            }
        }
        let outcome = match (outcome, run.fallback.as_deref_mut()) {
            (Some(done), _) => done.map_err(|(u, tls)| (u, Via::Primary, tls)),
            (None, Some(fallback)) => {
                if let Some(wait) = fallback.pacer.wait(SystemTime::now(), sender) {
                    held = Some(wait);
                    break;
                }
                if !health.fallback_told() {
                    tell_fallback(ctx, fallback, &mut fallback_down, removals, health).await;
                }
                let (tls, result) = fallback
                    .attempt(
                        &mut fallback_down,
                        to,
                        &entry.payload,
                        removals,
                        Some(health),
                    )
                    .await;
                match result {
                    Ok(reply) => {
                        fallback.pacer.sent(SystemTime::now());
                        health.sent(Via::Fallback, &fallback.relay, SystemTime::now());
                        batch.log_sent(
                            &Attempt::new(&p, to, fallback.through(), tls, attempt),
                            &reply,
                        );
                        Ok(())
                    }
                    // A refusal from the fallback is not final: the
                    // primary may take the alert once it works. The
                    // fallback rests for the rest of this batch.
                    Err(Unsent::Failed(e)) => {
                        fallback_down = Some(e.clone());
                        Err((Unsent::Deferred(e), Via::Fallback, tls))
                    }
                    Err(unsent) => Err((unsent, Via::Fallback, tls)),
                }
            }
            // No outcome is left only for a fallback to take; without one
            // the entry stays queued as it was.
            (None, None) => continue,
        };
        match outcome {
            Ok(()) => {
                index.entries.remove(&p.id);
                removals.push(p.id).await;
            }
            Err((unsent, via, tls)) => {
                let route = match (via, run.fallback.as_deref()) {
                    (Via::Fallback, Some(f)) => f.through(),
                    _ => run.primary.through(),
                };
                let tried = Attempt::new(&p, to, route, tls, attempt);
                match batch.record(&tried, unsent).await {
                    Some(state) => index.entries.insert(p.id, state),
                    None => index.entries.remove(&p.id),
                };
            }
        }
    }
    // The last rename is settled when it must be (before the next final
    // dot, a rescan or the directory's fsync), not here: waiting for it
    // would wake this thread once more per alert when alerts come one at
    // a time.
    removals.tidy().await;
    (removals.take_sent(), held)
}

/// The first message through the fallback: to the admins, naming the
/// primary's failure and its fix. Sent directly, ahead of the alerts it
/// precedes. One that cannot be sent is logged, the alerts go on, and
/// the next entry through the fallback tries again, until one admin has
/// it.
async fn tell_fallback(
    ctx: &Context,
    fallback: &mut Route,
    down: &mut Option<DeliverError>,
    removals: &mut Removals,
    health: &Health,
) {
    let now = SystemTime::now();
    let Some(failure) = health.record().failure else {
        return;
    };
    let mut told = false;
    for admin in ctx.config.admins() {
        let Some(key) = ctx.keyring.get(&admin) else {
            continue;
        };
        let message =
            crate::health::warn::fallback_notice(ctx, &failure, &fallback.relay, &admin, now);
        let payload = match ctx.sealer.outgoing(&message, key, now) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(to = %admin, "cannot encrypt the fallback notice: {e}");
                continue;
            }
        };
        let (_, result) = fallback
            .attempt(down, admin.0.as_str(), &payload, removals, Some(health))
            .await;
        match result {
            Ok(_) => {
                told = true;
                tracing::warn!(
                    to = %admin, relay = %fallback.relay, primary = %failure.relay,
                    class = %failure.class,
                    "the primary relay has failed too long: alerts go through the fallback; told the admin"
                )
            }
            Err(Unsent::Deferred(e) | Unsent::Failed(e)) => tracing::error!(
                to = %admin, relay = %fallback.relay, reason = ?e.to_string(),
                "cannot tell the admin that alerts go through the fallback"
            ),
        }
    }
    // Until one admin has it, the next entry through the fallback tries
    // again.
    if told {
        health.fallback_announced(&fallback.relay, now);
    }
}

/// Sent entries leave `queue/` by a rename that runs while the next
/// transaction's envelope is under way, and must be done before that
/// transaction's final dot ([`Removals::settle`]). So at any moment at
/// most one message is both possibly accepted by the relay and still
/// queued: a crash sends again at most that one. What remains, emptying
/// the files for reuse (which can wait for the disk), runs off the
/// delivery path: one blocking task at a time empties every file taken
/// out since the previous one started. With both steps awaited after
/// each 250, delivery fell behind 8 concurrent clients (the benchmark's
/// "every 250 received" line: 653 to 675 of 2,000 delivered by then).
///
/// When no emptying runs, the task that renames an entry goes on to
/// empty it (and whatever waits) after it has answered: one hand-off to
/// a blocking thread per alert instead of two when alerts come one at a
/// time.
pub(super) struct Removals {
    spool: Spool,
    /// The rename of the last sent entry, while it runs.
    taking_out: Option<(QueueId, tokio::sync::oneshot::Receiver<TakenOut>)>,
    /// Files taken out that wait for the next emptying.
    emptying: Vec<PathBuf>,
    /// The one task emptying files, if any.
    running: Option<tokio::task::JoinHandle<()>>,
    any: bool,
}

/// The spare a sent entry became, if it still needs emptying, or why the
/// entry stays queued.
type TakenOut = Result<Option<PathBuf>, crate::spool::SpoolError>;

impl Removals {
    fn new(spool: &Spool) -> Removals {
        Removals {
            spool: spool.clone(),
            taking_out: None,
            emptying: Vec::new(),
            running: None,
            any: false,
        }
    }

    /// Starts taking a sent entry out of the queue.
    async fn push(&mut self, id: QueueId) {
        self.settle().await;
        self.any = true;
        // No emptying runs after settle unless it is still busy; if none
        // does, this task becomes it.
        let empties = self.running.is_none();
        let mut spares = match empties {
            true => std::mem::take(&mut self.emptying),
            false => Vec::new(),
        };
        let (answer, answered) = tokio::sync::oneshot::channel();
        let s = self.spool.clone();
        let taken = id.clone();
        let task = tokio::task::spawn_blocking(move || {
            let out = s.take_out_delivered(&taken);
            let _ = match (empties, out) {
                (true, Ok(spare)) => {
                    spares.extend(spare);
                    answer.send(Ok(None))
                }
                (_, out) => answer.send(out),
            };
            for spare in spares {
                s.empty_spare(spare);
            }
        });
        if empties {
            self.running = Some(task);
        }
        self.taking_out = Some((id, answered));
    }

    /// Waits until the last sent entry is out of the queue, and hands its
    /// file to the emptying.
    pub(super) async fn settle(&mut self) {
        let Some((id, answered)) = self.taking_out.take() else {
            return;
        };
        match answered.await {
            Ok(Ok(spare)) => self.emptying.extend(spare),
            // Left in the queue, it is sent again: at least once, never lost.
            Ok(Err(e)) => {
                tracing::error!(id = %id, status = "sent", "cannot record the outcome: {e}")
            }
            Err(_) => tracing::error!(
                id = %id, status = "sent",
                "cannot record the outcome: the removal stopped without an answer"
            ),
        }
        if self.running.as_ref().is_none_or(|r| r.is_finished()) {
            self.wait().await;
            self.start();
        }
    }

    /// Waits until every sent entry is out and every file emptied;
    /// returns whether any entry was sent since [`Removals::take_sent`].
    async fn finish(&mut self) -> bool {
        self.settle().await;
        self.wait().await;
        self.start();
        self.wait().await;
        self.take_sent()
    }

    /// Starts emptying the files that wait, unless an emptying runs;
    /// waits for nothing that is still running.
    async fn tidy(&mut self) {
        if self.running.as_ref().is_none_or(|r| r.is_finished()) {
            // A finished task's result is there: no wait.
            self.wait().await;
            self.start();
        }
    }

    /// Whether any entry was sent since the last call.
    fn take_sent(&mut self) -> bool {
        std::mem::take(&mut self.any)
    }

    fn start(&mut self) {
        if self.emptying.is_empty() {
            return;
        }
        let spares = std::mem::take(&mut self.emptying);
        let s = self.spool.clone();
        self.running = Some(tokio::task::spawn_blocking(move || {
            for spare in spares {
                s.empty_spare(spare);
            }
        }));
    }

    async fn wait(&mut self) {
        if let Some(running) = self.running.take()
            && let Err(e) = running.await
        {
            tracing::error!("cannot empty delivered files: {e}");
        }
    }
}

/// What every attempt of one batch shares.
struct Batch<'a> {
    spool: &'a Spool,
    retry: Vec<Duration>,
    now: SystemTime,
    health: &'a Health,
    /// Whether a fallback relay is configured.
    has_fallback: bool,
}

/// One attempt at one entry, as its log line names it.
struct Attempt<'a> {
    p: &'a Pending,
    to: &'a str,
    route: Through<'a>,
    tls: &'a str,
    /// Its number, counting the entry's earlier attempts.
    n: u32,
}

impl<'a> Attempt<'a> {
    fn new(p: &'a Pending, to: &'a str, route: Through<'a>, tls: &'a str, n: u32) -> Self {
        Attempt {
            p,
            to,
            route,
            tls,
            n,
        }
    }
}

impl Batch<'_> {
    /// Makes a deferral or a failure durable in the spool, then logs the
    /// attempt: deferred entries get their next time, failed ones move to
    /// `failed/`. Returns the entry's new state while it stays queued.
    /// (Sent entries go through [`Removals`].)
    async fn record(&self, a: &Attempt<'_>, unsent: Unsent) -> Option<State> {
        let p = a.p;
        let s = self.spool.clone();
        let id = p.id.clone();
        let (status, error, done, still_queued) = match unsent {
            Unsent::Deferred(error) => {
                let reason = error.to_string();
                let mut state: State = p.state.after_failure(self.now, &self.retry, &reason);
                // The primary's quota holds the alert back, unless a
                // fallback can take it meanwhile (a fallback's own quota
                // says nothing of the primary's).
                if error.class() == Class::Quota
                    && a.route.via == Via::Primary
                    && !self.has_fallback
                {
                    let not_before = crate::spool::unix_secs(self.now + QUOTA_WAIT);
                    state.next_attempt = state.next_attempt.max(not_before);
                }
                let written = state.clone();
                let done = tokio::task::spawn_blocking(move || s.defer(&id, &written)).await;
                ("deferred", error, done, Some(state))
            }
            Unsent::Failed(error) => {
                let why = error.to_string();
                let done = tokio::task::spawn_blocking(move || s.fail(&id, &why)).await;
                ("failed", error, done, None)
            }
        };
        match done {
            Ok(Ok(())) => {}
            // A deferral not recorded is retried sooner; a failure not
            // recorded stays queued and is tried again.
            Ok(Err(e)) => tracing::error!(id = %p.id, status, "cannot record the outcome: {e}"),
            Err(e) => tracing::error!(id = %p.id, status, "cannot record the outcome: {e}"),
        }
        match &error {
            DeliverError::Expired { .. } => self.health.expired(),
            e => self.health.unsent(
                a.route.via,
                e.class(),
                &e.to_string(),
                a.route.relay,
                status == "failed",
                SystemTime::now(),
            ),
        }
        self.log_unsent(a, status, &error);
        still_queued
    }

    /// An attempt's log line when it did not send.
    fn log_unsent(&self, a: &Attempt<'_>, status: &str, error: &DeliverError) {
        tracing::warn!(
            id = %a.p.id, to = %a.to, status = %status, relay = %a.route.relay, tls = %a.tls,
            attempt = a.n, delay = %delay(a.p), class = %error.class(),
            reason = ?error.to_string(), "delivery"
        );
    }

    /// A sent attempt's log line, with the relay's reply.
    fn log_sent(&self, a: &Attempt<'_>, reply: &Reply) {
        tracing::info!(
            id = %a.p.id, to = %a.to, status = %"sent", relay = %a.route.relay, tls = %a.tls,
            attempt = a.n, delay = %delay(a.p), reply = ?reply.to_string(), "delivery"
        );
    }
}

/// How long since the entry arrived, for the log line.
fn delay(p: &Pending) -> String {
    let age = SystemTime::now()
        .duration_since(p.id.created())
        .unwrap_or_default();
    format!("{:.2}s", age.as_secs_f64())
}

async fn read(spool: &Spool, id: &QueueId) -> Option<crate::spool::Entry> {
    let s = spool.clone();
    let id2 = id.clone();
    match tokio::task::spawn_blocking(move || s.read_queued(&id2)).await {
        Ok(Ok(e)) => e,
        Ok(Err(e)) => {
            tracing::error!(id = %id, "cannot read a queued entry: {e}");
            None
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{CACHE_BYTES, Kind};

    fn entry(payload: &[u8]) -> Entry {
        Entry::new("ossecm@mon", "alerts@example.org", payload.to_vec())
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        crate::runtime::new().unwrap().block_on(f)
    }

    #[test]
    fn new_entries_are_delivered_from_memory_within_the_budget_and_read_back_beyond_it() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        let small = entry(b"small");
        let big = entry(&vec![b'x'; CACHE_BYTES]);
        let held = Entry {
            kind: Kind::Held,
            ..entry(b"held original")
        };
        let entries = [small.clone(), big.clone(), held.clone()];
        spool.commit(&entries).unwrap();
        let arrivals = Arrivals::default();
        arrivals.queued(&entries);
        assert_eq!(arrivals.cached_bytes(), small.payload.len());

        block_on(async {
            let mut index = Index::default();
            index.refresh(&spool, &arrivals).await;
            // Held entries are not the runner's; the big one is not cached.
            assert_eq!(index.entries.len(), 2);
            assert!(!index.entries.contains_key(&held.id));
            assert_eq!(index.cached.keys().collect::<Vec<_>>(), vec![&small.id]);

            // The cached copy is what the file holds; taking it frees its bytes.
            let taken = index.take_entry(&spool, &arrivals, &small.id).await;
            assert_eq!(taken.as_ref(), Some(&small));
            assert_eq!(taken, spool.read_queued(&small.id).unwrap());
            assert_eq!(arrivals.cached_bytes(), 0);
            // The big one comes from the file.
            let taken = index.take_entry(&spool, &arrivals, &big.id).await;
            assert_eq!(taken.as_ref(), Some(&big));
        });
    }

    #[test]
    fn a_cached_entry_removed_behind_the_daemons_back_leaves_the_cache_at_the_next_scan() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        let kept = entry(b"kept");
        let deleted = entry(b"deleted by relayctl");
        let entries = [kept.clone(), deleted.clone()];
        spool.commit(&entries).unwrap();
        let arrivals = Arrivals::default();
        block_on(async {
            let mut index = Index::default();
            index.refresh(&spool, &arrivals).await;
            arrivals.queued(&entries);
            index.refresh(&spool, &arrivals).await;
            assert_eq!(index.cached.len(), 2);

            assert_eq!(spool.delete(&deleted.id).unwrap(), Some("queue"));
            arrivals.rescan();
            index.refresh(&spool, &arrivals).await;
            assert_eq!(index.cached.keys().collect::<Vec<_>>(), vec![&kept.id]);
            assert!(!index.entries.contains_key(&deleted.id));
            assert_eq!(arrivals.cached_bytes(), kept.payload.len());
        });
    }

    #[test]
    fn a_sent_entry_leaves_the_queue_before_the_next_dot_and_its_file_is_emptied_later() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        let entries: Vec<Entry> = (0..5)
            .map(|i| entry(format!("alert {i}").as_bytes()))
            .collect();
        spool.commit(&entries).unwrap();
        let queued = |spool: &Spool| -> Vec<QueueId> {
            spool.pending().unwrap().into_iter().map(|p| p.id).collect()
        };
        block_on(async {
            assert!(!Removals::new(&spool).finish().await, "nothing sent");
            let mut removals = Removals::new(&spool);
            removals.push(entries[0].id.clone()).await;
            // What transact does before the next message's final dot.
            removals.settle().await;
            assert!(!queued(&spool).contains(&entries[0].id));
            // Each push settles the one before: at most the last sent
            // entry is still queued.
            for (i, e) in entries.iter().enumerate().skip(1) {
                removals.push(e.id.clone()).await;
                let queued = queued(&spool);
                assert!(entries[..i].iter().all(|prior| !queued.contains(&prior.id)));
            }
            assert!(removals.finish().await);
        });
        assert!(queued(&spool).is_empty());
        // Emptied into spares, nothing of the messages left.
        let spares = list(&dir.path().join("tmp"));
        assert_eq!(spares.len(), entries.len());
        for (_, path) in spares {
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 0, "{path:?}");
        }
    }

    #[test]
    fn a_batch_does_not_wait_for_its_last_removal_but_the_next_step_does() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open_daemon(dir.path()).unwrap();
        let sent = entry(b"the last alert of a batch");
        spool.commit(std::slice::from_ref(&sent)).unwrap();
        block_on(async {
            let mut removals = Removals::new(&spool);
            removals.push(sent.id.clone()).await;
            // The end of a batch.
            removals.tidy().await;
            assert!(removals.take_sent());
            assert!(!removals.take_sent(), "counted once");
            // The top of the next loop, before queue/ is read again.
            removals.settle().await;
            let queued: Vec<QueueId> = spool.pending().unwrap().into_iter().map(|p| p.id).collect();
            assert!(!queued.contains(&sent.id), "{queued:?}");
            assert!(!removals.finish().await, "nothing sent since");
        });
        // Its file was emptied by the task that renamed it.
        let spares = list(&dir.path().join("tmp"));
        assert_eq!(spares.len(), 1);
        assert_eq!(std::fs::metadata(&spares[0].1).unwrap().len(), 0);
    }

    fn list(dir: &std::path::Path) -> Vec<(String, std::path::PathBuf)> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), e.path())
            })
            .collect()
    }
}
