//! `alert-relayd`: the long-running process.
//!
//! Startup order matters for "250 means on disk": the config is validated
//! (secrets included), the spool is opened and locked, and only then are
//! the listeners bound, so no client is ever told 250 by a daemon that
//! cannot keep the message.
//!
//! Signals: SIGHUP re-reads the config; a config that does not validate
//! is rejected with a log line and the running one stays. Listen addresses,
//! the spool directory and `max_connections` are fixed at startup (a log
//! line says so when a reload changes them). SIGTERM or SIGINT stops
//! accepting, lets the transactions in flight finish, and exits.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, watch};

use crate::config::{Config, ConfigError, Listen};
use crate::context::Context;
use crate::encrypt::HoldKey;
use crate::health::assess::{Snapshot, assess, grade};
use crate::health::{self, Health};
use crate::health::{heartbeat, warn};
use crate::ingest::smtp::{self, Sink};
use crate::spool::Arrivals;
use crate::spool::{Spool, SpoolError};
use crate::sysexits;

/// How often the daemon looks at `incoming/` even when nobody woke it:
/// the wake-up datagram is best effort.
const PICKUP_INTERVAL: Duration = Duration::from_secs(5);

/// Why the daemon could not start.
#[derive(Debug)]
pub enum StartError {
    Config(ConfigError),
    Spool(SpoolError),
    Bind {
        addr: SocketAddr,
        source: io::Error,
    },
    Activation(crate::systemd::ActivationError),
    /// systemd passed a socket on an address that is not loopback.
    NotLoopback(SocketAddr),
    NoListener,
    Runtime(io::Error),
    /// The spool's hold key could not be read or made.
    HoldKey(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "{e}"),
            StartError::Spool(e) => write!(f, "{e}"),
            StartError::Bind { addr, source } => {
                write!(f, "cannot listen on {addr}: {source}")?;
                match source.kind() {
                    io::ErrorKind::PermissionDenied => write!(
                        f,
                        " (ports below 1024 need privilege: start through alert-relay.socket, \
                         or use another port in listen.addresses)"
                    ),
                    io::ErrorKind::AddrInUse => write!(
                        f,
                        " (another mail server, such as Postfix, is listening there: stop it first)"
                    ),
                    _ => Ok(()),
                }
            }
            StartError::Activation(e) => write!(f, "{e}"),
            StartError::NotLoopback(addr) => write!(
                f,
                "systemd passed a socket on {addr}, which is not loopback: fix ListenStream= in \
                 alert-relay.socket, or set listen.allow_remote = true if that is intended"
            ),
            StartError::NoListener => write!(f, "no address in listen.addresses could be bound"),
            StartError::Runtime(e) => write!(f, "cannot start the runtime: {e}"),
            StartError::HoldKey(e) => write!(
                f,
                "{e} (the hold key lives in queue.dir; a damaged one can be moved away, \
                 which makes a new one, but held alerts encrypted to it then need the old file)"
            ),
        }
    }
}

/// Sets up logging: one line per event on stderr, which journald keeps.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::INFO)
        .without_time()
        .with_target(false)
        .init();
}

/// Runs the daemon until SIGTERM; returns the process exit code.
pub fn run(config_path: &Path) -> u8 {
    // Alert plaintext passes through this process's memory.
    crate::os::forbid_core_dumps();
    crate::os::tune_malloc();
    crate::os::no_library_backtraces();
    init_logging();
    let started = load(config_path)
        .map_err(StartError::Config)
        .and_then(|ctx| {
            crate::runtime::new()
                .map_err(StartError::Runtime)
                .and_then(|rt| {
                    rt.block_on(async {
                        let daemon = Daemon::start(config_path, ctx).await?;
                        daemon.run(std::future::pending()).await
                    })
                })
        });
    match started {
        Ok(()) => sysexits::OK,
        Err(e) => {
            tracing::error!("{e}");
            match e {
                StartError::Config(_) | StartError::Activation(_) | StartError::NotLoopback(_) => {
                    sysexits::CONFIG
                }
                _ => sysexits::OSERR,
            }
        }
    }
}

/// Loads and fully validates a config, secrets and keys included. A key
/// that is right but cannot encrypt is logged, not refused: that
/// recipient's alerts are held with a notice while the others flow.
pub fn load(path: &Path) -> Result<Context, ConfigError> {
    let config = Config::load(path)?;
    config.check_secrets()?;
    let ctx = Context::new(config)?;
    for (key, reason) in ctx.keyring.unusable(std::time::SystemTime::now()) {
        tracing::error!(
            to = %key.recipient,
            fingerprint = %key.fingerprint,
            reason = ?reason.to_string(),
            "this recipient's key cannot encrypt: their alerts will be held with a notice"
        );
    }
    Ok(ctx)
}

/// A daemon whose spool is open and locked and whose listeners are bound,
/// ready to [`run`](Daemon::run).
pub struct Daemon {
    path: PathBuf,
    spool: Spool,
    _lock: std::fs::File,
    listeners: Vec<TcpListener>,
    wake: tokio::net::UnixDatagram,
    ctx: Context,
}

impl Daemon {
    /// Opens the spool and binds the listeners; nothing is accepted yet.
    pub async fn start(path: &Path, mut ctx: Context) -> Result<Daemon, StartError> {
        let spool = Spool::open_daemon(&ctx.config.queue.dir).map_err(StartError::Spool)?;
        let lock = spool.lock().map_err(StartError::Spool)?;
        ctx.hold = Some(HoldKey::ensure(spool.root()).map_err(StartError::HoldKey)?);
        let config = &ctx.config;
        let abandoned = spool.clean_tmp().map_err(StartError::Spool)?;
        if abandoned > 0 {
            tracing::info!(
                files = abandoned,
                "removed unacknowledged partial writes from tmp/"
            );
        }
        let listeners = match crate::systemd::listen_fds().map_err(StartError::Activation)? {
            Some(inherited) => adopt(inherited, &config.listen)?,
            None => bind(&config.listen).await?,
        };
        let wake = spool
            .bind_wake()
            .and_then(|s| {
                tokio::net::UnixDatagram::from_std(s).map_err(|e| SpoolError::Io {
                    op: "watch",
                    path: spool.wake_path(),
                    source: e,
                })
            })
            .map_err(StartError::Spool)?;
        Ok(Daemon {
            path: path.to_path_buf(),
            spool,
            _lock: lock,
            listeners,
            wake,
            ctx,
        })
    }

    /// The addresses actually bound (with the ports chosen for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect()
    }

    /// Serves until SIGTERM, SIGINT or `stop` completes; SIGHUP reloads.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) -> Result<(), StartError> {
        let Daemon {
            path,
            spool,
            _lock,
            listeners,
            wake,
            ctx,
        } = self;
        let mut sighup = signal(SignalKind::hangup()).map_err(StartError::Runtime)?;
        let mut sigterm = signal(SignalKind::terminate()).map_err(StartError::Runtime)?;
        let mut sigint = signal(SignalKind::interrupt()).map_err(StartError::Runtime)?;

        let max_connections = ctx.config.listen.max_connections;
        let permits = Arc::new(Semaphore::new(max_connections));
        let arrivals = Arc::new(Arrivals::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ctx_tx, ctx_rx) = watch::channel(Arc::new(ctx));

        let budget = smtp::Budget::new(ctx_rx.borrow().config.listen.max_in_flight.0);
        for listener in listeners {
            let sink = Sink::Queue(spool.clone(), arrivals.clone());
            tokio::spawn(smtp::listen(
                listener,
                ctx_rx.clone(),
                sink,
                permits.clone(),
                budget.clone(),
                stop_rx.clone(),
            ));
        }
        // What sendmail left while the daemon was down joins the queue
        // before the first delivery run, so it goes out in one batch.
        let first = ctx_rx.borrow().clone();
        pickup_once(&spool, &first, &arrivals).await;
        let health = Arc::new(Health::start(&spool, SystemTime::now()));
        let runner = tokio::spawn(crate::deliver::runner::run(
            spool.clone(),
            ctx_rx.clone(),
            arrivals.clone(),
            health.clone(),
            stop_rx.clone(),
        ));
        tokio::spawn(pickup_loop(
            spool.clone(),
            wake,
            ctx_rx.clone(),
            arrivals.clone(),
            stop_rx.clone(),
        ));
        tracing::info!(spool = %spool.root().display(), "started");
        // Config validated, spool open, sockets listening: ready.
        let watch = Watch {
            spool: spool.clone(),
            ctx: ctx_rx.clone(),
            arrivals: arrivals.clone(),
            health: health.clone(),
        };
        notify(&format!("READY=1\nSTATUS={}", watch.look().await));
        let watching = tokio::spawn(watch.run(stop_rx.clone()));

        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = sighup.recv() => reload(&path, &ctx_tx),
                _ = sigterm.recv() => break,
                _ = sigint.recv() => break,
                _ = &mut stop => break,
            }
        }

        tracing::info!("stopping: finishing the transactions in flight");
        notify("STOPPING=1\nSTATUS=stopping: finishing the transactions in flight");
        let _ = stop_tx.send(true);
        // Sessions hold a permit each; once all are back, nothing is in flight.
        // A session in DATA ends by itself within the idle timeout.
        let grace = ctx_tx.borrow().config.listen.idle_timeout.0 + Duration::from_secs(5);
        let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(grace, permits.acquire_many(all))
            .await
            .is_err()
        {
            tracing::warn!("stopped with sessions still open; nothing they sent was acknowledged");
        }
        // The runner finishes the transaction it is in and says QUIT.
        let _ = tokio::time::timeout(grace, runner).await;
        // The last record says the daemon stopped, and when.
        if let Ok(watch) = watching.await {
            watch.save(true).await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Takes the sockets systemd passed (alert-relay.socket decides the
/// addresses then, not `listen.addresses`), holding them to the same
/// loopback rule.
fn adopt(
    inherited: Vec<std::net::TcpListener>,
    listen: &Listen,
) -> Result<Vec<TcpListener>, StartError> {
    let mut out = Vec::new();
    for std_listener in inherited {
        let listener = TcpListener::from_std(std_listener).map_err(StartError::Runtime)?;
        let addr = listener.local_addr().map_err(StartError::Runtime)?;
        if !addr.ip().is_loopback() && !listen.allow_remote {
            return Err(StartError::NotLoopback(addr));
        }
        tracing::info!(addr = %addr, from = "systemd", "listening");
        out.push(listener);
    }
    if out.is_empty() {
        return Err(StartError::NoListener);
    }
    Ok(out)
}

/// Binds every configured address. An IPv6 loopback the host lacks is
/// skipped with a warning (IPv6 may be disabled); anything else is fatal.
async fn bind(listen: &Listen) -> Result<Vec<TcpListener>, StartError> {
    let mut out = Vec::new();
    for &addr in &listen.addresses {
        match TcpListener::bind(addr).await {
            Ok(l) => {
                let local = l.local_addr().unwrap_or(addr);
                tracing::info!(addr = %local, "listening");
                out.push(l);
            }
            Err(e) if addr.is_ipv6() && crate::os::is_address_unavailable(&e) => {
                tracing::warn!(addr = %addr, error = %e, "IPv6 loopback unavailable; not listening there");
            }
            Err(source) => return Err(StartError::Bind { addr, source }),
        }
    }
    if out.is_empty() {
        return Err(StartError::NoListener);
    }
    Ok(out)
}

/// Tells systemd, when it listens; a failure is logged, never fatal.
fn notify(state: &str) {
    if let Err(e) = crate::systemd::notify(state) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// How long after a change of health it is written and shown.
const CHANGE_DELAY: Duration = Duration::from_millis(200);

/// The longest STATUS= line: `systemctl status` shows one line.
const STATUS_MAX: usize = 240;

/// What keeps the health record and systemd's STATUS= line current.
struct Watch {
    spool: Spool,
    ctx: watch::Receiver<Arc<Context>>,
    arrivals: Arc<Arrivals>,
    health: Arc<Health>,
}

impl Watch {
    /// Every [`health::SAVE_EVERY`], and soon after a change: the record
    /// written, STATUS= sent. Returns itself at the stop, for the last
    /// record ([`Watch::save`] with `stopping`) once delivery has ended.
    async fn run(self, mut stop: watch::Receiver<bool>) -> Watch {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(health::SAVE_EVERY) => {}
                // A burst of changes is written once.
                _ = self.health.changed() => tokio::time::sleep(CHANGE_DELAY).await,
                _ = stop.changed() => return self,
            }
            let line = self.look().await;
            notify(&format!("STATUS={line}"));
        }
    }

    /// Saves the record and returns the STATUS= line: the queue, and the
    /// worst problem with its grade.
    async fn look(&self) -> String {
        self.save(false).await;
        let spool = self.spool.clone();
        let ctx = self.ctx.borrow().clone();
        let record = self.health.record();
        let arrivals = self.arrivals.clone();
        let health = self.health.clone();
        let assessed = tokio::task::spawn_blocking(move || {
            let now = SystemTime::now();
            let snapshot = Snapshot::take(&ctx, &spool, Ok(Some(record.clone())), now);
            let problems = assess(
                &snapshot,
                &ctx.config.health,
                ctx.config.listen.max_message_size.0,
            );
            let mail = Mail {
                ctx: &ctx,
                spool: &spool,
                arrivals: &arrivals,
            };
            let counts = snapshot.counts.clone().unwrap_or_default();
            let set_aside = || mail.spool.list_set_aside().unwrap_or_default();
            for w in warn::due(&ctx, &problems, &record.warned, &counts, set_aside, now) {
                if mail.queue(&w.to, &w.message, "warning") {
                    tracing::warn!(
                        conditions = ?w.stamps.join(" "),
                        "queued a warning: relayctl health shows the problems and their fixes"
                    );
                    health.warned(&w.stamps, now);
                }
            }
            if heartbeat::due(&ctx, &record, now) {
                // The warnings just queued count in this heartbeat.
                let (queued, held) = arrivals.counted();
                health.accepted(queued, held);
                let record = health.record();
                let to: Vec<_> = ctx
                    .config
                    .heartbeat_to()
                    .into_iter()
                    .filter(|r| warn::usable(&ctx, r, now))
                    .collect();
                let message =
                    heartbeat::compose(&ctx, &snapshot, &record, &problems, grade(&problems));
                if mail.queue(&to, &message, "heartbeat") {
                    tracing::info!("queued a heartbeat");
                    health.beat(record.totals, now);
                }
            }
            (snapshot.counts, problems)
        })
        .await;
        let Ok((counts, problems)) = assessed else {
            return "cannot assess health".into();
        };
        let mut line = match counts {
            Ok(c) if c.corrupt > 0 => format!(
                "{} queued, {} held, {} failed, {} corrupt",
                c.queued, c.held, c.failed, c.corrupt
            ),
            Ok(c) => format!("{} queued, {} held, {} failed", c.queued, c.held, c.failed),
            Err(e) => format!("cannot read the spool: {e}"),
        };
        if let Some(worst) = problems.first() {
            line.push_str(&format!("; {}: {}", worst.grade.as_str(), worst.what));
            if problems.len() > 1 {
                line.push_str(&format!(" (+{} more: relayctl health)", problems.len() - 1));
            }
        }
        // One line: a newline from what a relay presented would start
        // another assignment in the notification.
        let mut line: String = line
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if line.len() > STATUS_MAX {
            let mut end = STATUS_MAX;
            while !line.is_char_boundary(end) {
                end -= 1;
            }
            line.truncate(end);
            line.push_str("...");
        }
        line
    }

    async fn save(&self, stopping: bool) {
        let (queued, held) = self.arrivals.counted();
        self.health.accepted(queued, held);
        let spool = self.spool.clone();
        let health = self.health.clone();
        let saved =
            tokio::task::spawn_blocking(move || health.save(&spool, SystemTime::now(), stopping))
                .await;
        if let Ok(Err(e)) = saved {
            tracing::error!("cannot write the health record: {e}");
        }
    }
}

/// The daemon's own mail (warnings, heartbeats): queued like any alert,
/// encrypted to each recipient's key.
struct Mail<'a> {
    ctx: &'a Context,
    spool: &'a Spool,
    arrivals: &'a Arrivals,
}

impl Mail<'_> {
    /// Queues `message` to `to`; whether it was. One that cannot be
    /// queued is logged, and tried again at the next look.
    fn queue(&self, to: &[crate::route::Recipient], message: &[u8], what: &str) -> bool {
        if to.is_empty() {
            tracing::error!("no recipient whose key can encrypt for the {what}");
            return false;
        }
        let sender = self.ctx.sealer.sender.address.as_str();
        let entries = crate::ingest::entries_for(self.ctx, sender, to, message);
        match self.spool.commit(&entries) {
            Ok(()) => {
                crate::ingest::log_stored(&entries, what);
                self.arrivals.queued_own(&entries);
                true
            }
            Err(e) => {
                tracing::error!("cannot queue the {what}: {e}");
                false
            }
        }
    }
}

/// Re-reads the config; a bad one is logged and the running one kept.
fn reload(path: &Path, ctx_tx: &watch::Sender<Arc<Context>>) {
    let ctx = match load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("config rejected, keeping the running one: {e}");
            return;
        }
    };
    let config = &ctx.config;
    let old = ctx_tx.borrow().config.clone();
    if old.listen.addresses != config.listen.addresses
        || old.queue.dir != config.queue.dir
        || old.listen.max_connections != config.listen.max_connections
        || old.listen.max_in_flight != config.listen.max_in_flight
    {
        tracing::warn!(
            "listen.addresses, listen.max_connections, listen.max_in_flight and queue.dir \
             take effect at the next restart"
        );
    }
    let _ = ctx_tx.send(Arc::new(ctx));
    tracing::info!(config = %path.display(), "reloaded");
}

/// Moves what `sendmail` submitted into the queue: when woken through the
/// spool's socket, and every [`PICKUP_INTERVAL`] in case a wake-up was lost.
/// A wake-up through the socket may also mean `relayctl flush` or
/// `release` changed `queue/`: the runner re-reads it.
async fn pickup_loop(
    spool: Spool,
    wake: tokio::net::UnixDatagram,
    ctx: watch::Receiver<Arc<Context>>,
    arrivals: Arc<Arrivals>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = [0u8; 64];
    loop {
        tokio::select! {
            _ = wake.recv(&mut buf) => {
                let now = ctx.borrow().clone();
                pickup_once(&spool, &now, &arrivals).await;
                arrivals.rescan();
            }
            _ = tokio::time::sleep(PICKUP_INTERVAL) => {
                let now = ctx.borrow().clone();
                pickup_once(&spool, &now, &arrivals).await
            }
            _ = stop.changed() => return,
        }
    }
}

/// One pass over `incoming/`, each submission checked against the config
/// in force ([`Context::admit`]); tells the runner what it queued.
async fn pickup_once(spool: &Spool, ctx: &Arc<Context>, arrivals: &Arrivals) {
    let s = spool.clone();
    let ctx = ctx.clone();
    // A submission is at most one message, encrypted and padded.
    let max_bytes = ctx.config.max_submission_bytes();
    let picked =
        tokio::task::spawn_blocking(move || s.pickup(max_bytes, |e| crate::ingest::admit(&ctx, e)))
            .await;
    match picked {
        Ok(Ok(entries)) => {
            crate::ingest::log_stored(&entries, "sendmail");
            arrivals.queued(&entries);
        }
        Ok(Err(e)) => tracing::error!("cannot pick up submissions: {e}"),
        Err(e) => tracing::error!("pickup task failed: {e}"),
    }
}
