//! The command lines of `alert-relayd` and `relayctl`, in one place so
//! that the binaries and their man pages (`packaging/man/`, rendered by
//! `tests/man.rs`) come from the same definition.
//!
//! `sendmail`'s command line is sendmail's own, parsed getopt style in
//! [`crate::ingest::sendmail`].

pub mod relayctl;
pub mod sendmail;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Receives local mail on loopback SMTP, encrypts it to each recipient's
/// OpenPGP key and relays it over verified TLS. Runs in the foreground.
///
/// Under systemd it is alert-relay.service, started by alert-relay.socket.
/// SIGHUP re-reads the config (a config that does not validate is logged
/// and the running one kept); SIGTERM finishes the SMTP transactions in
/// flight and exits. Logs go to standard error, one key=value line per
/// event, never with message content or secrets.
#[derive(Parser, Debug)]
#[command(
    name = "alert-relayd",
    version,
    after_help = "Examples:
  alert-relayd                              # /etc/alert-relay/relay.toml
  alert-relayd --config ./relay.toml        # another config
  ALERT_RELAY_CONFIG=./relay.toml alert-relayd
  systemctl reload alert-relay              # SIGHUP: re-read the config"
)]
pub struct Daemon {
    /// The config file [default: $ALERT_RELAY_CONFIG, else /etc/alert-relay/relay.toml]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// Diagnoses and manages alert-relay.
///
/// Every subcommand reads the config from --config, else
/// $ALERT_RELAY_CONFIG, else /etc/alert-relay/relay.toml. Exit statuses
/// follow sysexits(3): 0 ok, 64 usage, 65 data (a key that cannot
/// encrypt), 67 no such message, 69 unavailable (a failed test), 75
/// temporary failure, 78 config.
#[derive(Parser, Debug)]
#[command(
    name = "relayctl",
    version,
    after_help = "Examples:
  relayctl test                    # is the whole path working?
  relayctl fingerprint             # the relay's certificate pins
  relayctl key /etc/alert-relay/ossec.pub
  relayctl queue
  relayctl demo                    # the path on loopback, no setup"
)]
pub struct Relayctl {
    /// The config file [default: $ALERT_RELAY_CONFIG, else /etc/alert-relay/relay.toml]
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands, in the order an admin meets them.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Walks the whole path and names the fix for the first failing step.
    ///
    /// Steps: config, each key (expiry; a warning within
    /// health.key_expiry_warning, 30 days by default), the
    /// password file, (run as root) whether the spool's owner can read the
    /// config, keys and secrets and write the spool, DNS, TCP, TLS and the
    /// certificate (on a mismatch,
    /// the presented pins ready to paste), AUTH, MAIL/RCPT, then DATA of
    /// an encrypted test alert with the relay's reply. The config, key and
    /// password steps always run; the network steps stop at the first
    /// failure. Needs no running daemon. Exit 0 only when every step
    /// passed, 69 otherwise.
    #[command(after_help = "Examples:
  relayctl test                            # to the first configured recipient
  relayctl test --to journalist@example.org
  relayctl test --no-send                  # check everything, send nothing
  relayctl test --json | jq '.steps[] | select(.ok | not)'")]
    Test {
        /// The test alert's recipient (a configured address or alias).
        #[arg(long, value_name = "ADDR")]
        to: Option<String>,
        /// Stop after RCPT: check everything, send nothing.
        #[arg(long)]
        no_send: bool,
        /// Print one JSON object at the end instead of lines:
        /// {"ok": bool, "sent": bool, "steps": [{"step", "ok", "detail"}]}.
        #[arg(long)]
        json: bool,
    },
    /// Prints the relay's certificate pins in config syntax.
    ///
    /// Subject, issuer, expiry, SHA-1, SHA-256 and SPKI pins, and a
    /// `fingerprints = [...]` line to paste into relay.toml.
    /// Connects with STARTTLS on ports other than 465, implicit TLS on 465.
    /// Without HOST, the configured relay. Nothing is sent after the TLS
    /// handshake.
    #[command(after_help = "Examples:
  relayctl fingerprint                     # the configured relay
  relayctl fingerprint smtp.gmail.com:587
  relayctl fingerprint mail.example.net:2525 --implicit")]
    Fingerprint {
        /// HOST or HOST:PORT (port 587 when absent).
        relay: Option<String>,
        /// Use STARTTLS whatever the port.
        #[arg(long, conflicts_with = "implicit")]
        starttls: bool,
        /// Use TLS from the first byte whatever the port.
        #[arg(long)]
        implicit: bool,
    },
    /// Prints a key's fingerprint, user IDs and encryption subkeys.
    ///
    /// The first line is the `fingerprint = "..."` line for the key's
    /// [[recipients]] entry. Exit 65, with the reason, when the key cannot
    /// encrypt (expired, revoked, no encryption subkey).
    #[command(after_help = "Examples:
  relayctl key /etc/alert-relay/ossec.pub
  relayctl key journalist.asc | head -1 >> fingerprint-line.txt")]
    Key {
        /// An OpenPGP public key, ASCII-armored or binary.
        file: PathBuf,
    },
    /// Validates the config completely.
    ///
    /// Syntax, every key, the keys' fingerprints and the password file's
    /// mode. Exit 78 with every problem listed.
    #[command(after_help = "Examples:
  relayctl check
  relayctl --config ./relay.toml check")]
    Check,
    /// The daemon's health, with the fix for each problem.
    ///
    /// Whether the daemon runs, the queue and its oldest entry, the last
    /// delivery, the current failure and since when, the relay's
    /// certificate (its expiry, and whether its pin survives a renewal),
    /// each recipient key's expiry, free space under the spool. Graded
    /// by the thresholds of [health] in relay.toml. Works with the daemon
    /// stopped (which is CRITICAL). Run it as root or as the daemon's user.
    /// Exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN: the monitoring-plugin
    /// convention, so Nagios, Icinga or Zabbix can run it as it is.
    #[command(after_help = "Examples:
  relayctl health
  relayctl health --json | jq .problems
  relayctl health --prometheus > alert-relay.prom.tmp; mv alert-relay.prom.tmp alert-relay.prom")]
    Health {
        /// One JSON object: status, exit, daemon, queue, last_success,
        /// failure, relay_certificate, fallback_certificate, totals, keys,
        /// free_bytes, problems.
        #[arg(long, conflicts_with = "prometheus")]
        json: bool,
        /// Prometheus' text exposition format, for node_exporter's
        /// textfile collector.
        #[arg(long)]
        prometheus: bool,
    },
    /// OAuth 2.0 sign-in for relay.auth = "oauth2".
    ///
    /// login signs in once: with a device code to enter on any device
    /// (Microsoft), or with an address to open in any browser and the
    /// address it ends at pasted back (Google). The refresh token goes to
    /// oauth2.json in the spool (the daemon's, mode 0600), never to the
    /// screen or relay.toml; alerts that waited for a sign-in are sent at
    /// once. status shows what is stored and whose, without a token.
    #[command(after_help = "Examples:
  relayctl oauth2 login
  relayctl oauth2 status")]
    Oauth2 {
        #[command(subcommand)]
        action: Oauth2Action,
    },
    /// Shows which route a saved message would take, and to whom.
    ///
    /// Applies the [[routes]] of relay.toml to FILE as the daemon would
    /// (after aliases, first match wins) and prints the envelope's
    /// recipients, the route that matches and its action, and whom the
    /// message would go to. Sends nothing. The envelope's recipients are
    /// the --to addresses, else the message's To, Cc and Bcc.
    #[command(after_help = "Examples:
  relayctl route /tmp/saved-alert.eml
  relayctl route alert.eml --to ossec")]
    Route {
        /// A message as received (header fields, blank line, body).
        file: PathBuf,
        /// An envelope recipient (repeatable); default: To, Cc and Bcc.
        #[arg(long, value_name = "ADDR")]
        to: Vec<String>,
    },
    /// Lists queued, deferred, held, failed and corrupt messages.
    ///
    /// Id, state, size, arrival, attempts, next try, recipient and last
    /// error (for a file set aside in corrupt/, why). A file it cannot
    /// read is listed as unreadable, never skipped. Works with the daemon
    /// running or stopped.
    #[command(after_help = "Examples:
  relayctl queue
  relayctl queue --json | jq -r '.[] | select(.state == \"held\") | .id'")]
    Queue {
        /// One JSON array of objects (id, state, recipient, size, created,
        /// attempts, next_attempt, last_error).
        #[arg(long)]
        json: bool,
    },
    /// Makes queued messages due now and wakes the daemon.
    ///
    /// All of them, or the one named.
    #[command(after_help = "Examples:
  relayctl flush                           # after fixing the relay
  relayctl flush 6614ACD4A22A700255500000")]
    Flush {
        /// A queue id, as `relayctl queue` lists it.
        id: Option<String>,
    },
    /// Encrypts a held message with the key as configured now and queues it.
    ///
    /// Exit 65 while the recipient's key still cannot encrypt.
    #[command(
        after_help = "Example, after replacing an expired key and its fingerprint:
  systemctl reload alert-relay
  relayctl release 6614ACD4A22A700255500000"
    )]
    Release {
        /// The held message's queue id.
        id: String,
    },
    /// Removes a message from the spool, wherever it is.
    #[command(after_help = "Examples:
  relayctl delete 6614ACD4A22A700255500000        # asks first
  relayctl delete 6614ACD4A22A700255500000 --yes")]
    Delete {
        /// The message's queue id.
        id: String,
        /// Do not ask.
        #[arg(long)]
        yes: bool,
    },
    /// Writes relay.toml from SecureDrop's site-specific variables, then
    /// checks it.
    ///
    /// Reads smtp_relay, smtp_relay_port, sasl_username, sasl_domain,
    /// sasl_password, smtp_relay_fingerprint, the ossec_* and journalist_*
    /// alert variables; writes the config to --config (default
    /// /etc/alert-relay/relay.toml), the SASL password to a 0600 file
    /// beside it, and copies the public keys beside it too. The keys are
    /// looked for in ansible-base/ when the file is at
    /// ansible-base/group_vars/all/site-specific, as SecureDrop keeps
    /// them, else beside the file (or in --keys-from). Writes
    /// nothing when a variable is missing or a file exists with other
    /// contents (unless --force); a file that already holds what the
    /// import would write is left alone ("unchanged"), so a second run
    /// changes nothing. A config with relay.auth = "oauth2" is never
    /// replaced, not even with --force: the variables would switch it back
    /// to a password (exit 73). Exit 78 when the written config does not
    /// pass check.
    #[command(after_help = "Examples:
  relayctl import-securedrop /root/sd/site-specific
  relayctl --config ./relay.toml import-securedrop prod-specific.yml
  relayctl import-securedrop - --keys-from /root/sd < site-specific")]
    ImportSecuredrop {
        /// SecureDrop's site-specific (or prod-specific.yml) file; - reads
        /// standard input (as the Ansible role passes it, so that the
        /// password is in no file and no argument).
        file: PathBuf,
        /// Where the SASL password goes [default: sasl_password beside the config].
        #[arg(long, value_name = "PATH")]
        password_file: Option<PathBuf>,
        /// Where the key files the variables name are [default: as above;
        /// the current directory with -].
        #[arg(long, value_name = "DIR")]
        keys_from: Option<PathBuf>,
        /// Replace files that exist (not a config that signs in with OAuth 2.0).
        #[arg(long)]
        force: bool,
    },
    /// Shows the path of an alert on loopback, with no setup.
    ///
    /// A throwaway OpenPGP key, TLS certificate, config, spool and a
    /// stand-in relay with STARTTLS and AUTH; an OSSEC alert over SMTP and
    /// a cron message through sendmail go through the real daemon code,
    /// and the demo shows what the relay received and its decryption.
    /// Everything is removed at the end.
    #[command(after_help = "Example:
  relayctl demo")]
    Demo,
}

/// Lets SIGPIPE end the process (see [`crate::os::die_on_broken_pipe`]).
pub fn die_on_broken_pipe() {
    crate::os::die_on_broken_pipe();
}

/// `relayctl oauth2 ...`.
#[derive(Debug, Subcommand)]
pub enum Oauth2Action {
    /// Signs in, stores the refresh token, releases alerts that waited for it.
    Login,
    /// Shows the endpoints, what is stored and whose, never a token.
    Status,
}
