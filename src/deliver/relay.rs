//! One relay as the queue runner uses it: its settings, the connection
//! kept open between batches, and one attempt to send an entry through
//! it. The runner has one for `[relay]` and, when configured, one for
//! `[fallback]`.

use std::path::Path;
use std::time::{Duration, Instant};

use super::client::{Connection, DeliverError, Reply, Settings};
use super::pace::{Limits, Pacer};
use super::runner::Removals;
use crate::config::Relay;
use crate::health::{Class, Health, Via};

/// The `tls=` of a log line when no TLS session was involved.
pub const NO_TLS: &str = "-";

/// Why an attempt did not send its entry (the relay's reply, when it
/// did, is the `Ok` side), typed until the log line.
pub enum Unsent {
    /// It will be tried again.
    Deferred(DeliverError),
    /// It never will: a 5xx, or its lifetime is over.
    Failed(DeliverError),
}

/// A relay, built once per loaded config.
pub struct Route {
    pub via: Via,
    /// `Err`: its TLS could not be set up from the config; every
    /// attempt is deferred with that reason.
    settings: Result<Settings, DeliverError>,
    /// The envelope sender through it.
    sender: String,
    /// `host:port`, for the logs.
    pub relay: String,
    /// The connection kept open between batches.
    pub conn: Option<Kept>,
    /// What it sent lately, against `max_per_minute` and `max_per_day`.
    pub pacer: Pacer,
}

/// Which relay an attempt went through, for the log and the health
/// record.
#[derive(Debug, Clone, Copy)]
pub struct Through<'a> {
    pub via: Via,
    /// `host:port`.
    pub relay: &'a str,
}

/// The connection kept open between batches.
pub struct Kept {
    conn: Connection,
    last_used: Instant,
    /// Whether it carried a transaction: the next one starts with RSET.
    used: bool,
}

impl Route {
    /// `spool` is where an OAuth 2.0 sign-in is stored.
    pub fn new(via: Via, relay: &Relay, helo: &str, sender: &str, spool: &Path) -> Route {
        let settings = Settings::for_relay(relay, helo, spool).map_err(DeliverError::Setup);
        if let Err(e) = &settings {
            tracing::error!(relay = %format!("{}:{}", relay.host, relay.port), "cannot deliver: {e}");
        }
        let mut pacer = Pacer::default();
        pacer.set_limits(Limits::of(relay));
        Route {
            via,
            settings,
            sender: sender.to_string(),
            relay: format!("{}:{}", relay.host, relay.port),
            conn: None,
            pacer,
        }
    }

    /// Takes over what the same relay under the previous config sent
    /// lately: a reload does not reset its limits. A relay that changed
    /// host or port starts afresh: another account's sends say nothing of
    /// this one's limits.
    pub fn carry_pace(&mut self, old: Pacer, old_relay: &str) {
        if old_relay != self.relay {
            return;
        }
        let limits = self.pacer.limits();
        self.pacer = old;
        self.pacer.set_limits(limits);
    }

    /// The OAuth 2.0 access tokens, with `relay.auth = "oauth2"`.
    pub fn tokens(&self) -> Option<std::sync::Arc<crate::oauth2::TokenSource>> {
        match &self.settings {
            Ok(Settings {
                oauth2: Some(Ok(tokens)),
                ..
            }) => Some(tokens.clone()),
            _ => None,
        }
    }

    pub fn through(&self) -> Through<'_> {
        Through {
            via: self.via,
            relay: &self.relay,
        }
    }

    /// Says QUIT on the kept connection.
    pub async fn close(&mut self) {
        if let Some(k) = self.conn.take() {
            k.conn.quit().await;
        }
    }

    /// Closes the kept connection if it has been idle for `keepalive`.
    pub async fn close_idle(&mut self, keepalive: Duration) {
        if self
            .conn
            .as_ref()
            .is_some_and(|k| k.last_used.elapsed() >= keepalive)
        {
            self.close().await;
        }
    }

    /// One attempt to send `payload` to `to`: the relay's reply, or why
    /// not. `down` is why the relay could not be reached earlier in this
    /// batch (then it is not tried again), and is set when it cannot be
    /// now. With `health`, a new connection's certificate is recorded.
    pub async fn attempt(
        &mut self,
        down: &mut Option<DeliverError>,
        to: &str,
        payload: &[u8],
        removals: &mut Removals,
        health: Option<&Health>,
    ) -> (&'static str, Result<Reply, Unsent>) {
        let (tls, outcome, keep) = match (&self.settings, &*down) {
            (Err(e), _) | (Ok(_), Some(e)) => (NO_TLS, Err(Unsent::Deferred(e.clone())), false),
            (Ok(s), None) => {
                let envelope = (self.sender.as_str(), to);
                let record = health.map(|h| (h, self.via));
                match transact(&mut self.conn, s, envelope, payload, removals, record).await {
                    Err(e) => {
                        *down = Some(e.clone());
                        (NO_TLS, Err(Unsent::Deferred(e)), false)
                    }
                    Ok((tls, Ok(reply))) => (tls, Ok(reply), true),
                    Ok((tls, Err(e))) if e.is_permanent() => (tls, Err(Unsent::Failed(e)), true),
                    // The account's quota is used up: every other alert
                    // would get the same answer, so none is tried.
                    Ok((tls, Err(e))) if e.class() == Class::Quota => {
                        *down = Some(e.clone());
                        (tls, Err(Unsent::Deferred(e)), true)
                    }
                    Ok((tls, Err(e))) => {
                        let usable = e.connection_usable();
                        (tls, Err(Unsent::Deferred(e)), usable)
                    }
                }
            }
        };
        if !keep {
            self.conn = None;
        }
        (tls, outcome)
    }
}

/// One transaction on the kept connection, or on a new one. A kept
/// connection the relay has closed meanwhile (it fails before any message
/// data went out) is no reason to defer: the transaction is tried once
/// more on a new connection. `Err` is why no connection could be opened,
/// the `Ok` side the transaction's outcome.
/// The previous message leaves the queue while this one's envelope is
/// under way, and before its final dot (see [`Removals`]).
async fn transact(
    conn: &mut Option<Kept>,
    settings: &Settings,
    (from, to): (&str, &str),
    payload: &[u8],
    removals: &mut Removals,
    health: Option<(&Health, Via)>,
) -> Result<(&'static str, Result<Reply, DeliverError>), DeliverError> {
    loop {
        let fresh = conn.is_none();
        let k = open_if_needed(conn, settings, health).await?;
        let result = match k.conn.begin(from, to, k.used).await {
            Ok(()) => {
                removals.settle().await;
                k.conn.data(payload).await
            }
            Err(e) => Err(e),
        };
        k.used = true;
        k.last_used = Instant::now();
        match result {
            Err(e) if !fresh && e.before_data() && !e.connection_usable() => *conn = None,
            result => return Ok((k.conn.tls_version, result)),
        }
    }
}

/// The open connection, opening one if there is none. A new connection's
/// certificate goes into the health record, when given: its expiry, and
/// whether a renewal will break the pin.
async fn open_if_needed<'c>(
    conn: &'c mut Option<Kept>,
    settings: &Settings,
    health: Option<(&Health, Via)>,
) -> Result<&'c mut Kept, DeliverError> {
    let kept = match conn.take() {
        Some(kept) => kept,
        None => {
            let opened = Connection::open(settings).await?;
            if let (Some((health, via)), Some((cert, check))) = (health, &opened.certificate) {
                health.relay_cert(via, cert.for_health(&settings.relay(), *check));
            }
            Kept {
                conn: opened,
                last_used: Instant::now(),
                used: false,
            }
        }
    };
    Ok(conn.insert(kept))
}
