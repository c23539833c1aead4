//! alert-relay: a tiny, security-first mail transfer agent for hosts whose
//! only outgoing mail is alerts.
//!
//! The path a message takes, one module per stage:
//!
//! - [`ingest`]: loopback SMTP and `sendmail` bring mail in;
//! - [`route`]: recipients resolve through `[aliases]` to configured ones;
//! - [`encrypt`]: one outgoing message per recipient;
//! - [`spool`]: the durable queue, acknowledged only once on disk;
//! - [`daemon`]: the process that ties them together;
//! - [`deliver`]: the queue runner and the TLS/SASL relay client;
//! - [`health`]: what the daemon has seen of delivery, graded with fixes;
//! - [`control`]: what `relayctl` and `mailq` show;
//! - [`cli`]: the command lines of `alert-relayd` and `relayctl`.

pub mod cli;
pub mod config;
pub mod context;
pub mod control;
pub mod daemon;
pub mod deliver;
#[cfg(feature = "demo")]
pub mod demo;
pub mod diagnose;
pub mod encrypt;
pub mod health;
pub mod ingest;
pub mod message;
pub mod oauth2;
pub mod os;
pub mod reply;
pub mod route;
pub mod runtime;
pub mod securedrop;
pub mod spool;
pub mod sysexits;
pub mod systemd;
pub mod when;
