//! The configuration file, `relay.toml`; `config/relay.toml` documents
//! every key.
//!
//! Loading has two layers. [`Config::load`] parses and validates everything
//! that any binary needs (syntax, values, aliases, recipients) and refuses
//! unknown keys; an error names the file, the dotted key path
//! (`recipients[0].fingerprint`) and what is wrong. [`Config::check_secrets`]
//! adds the checks only the daemon and `relayctl` can make, because the
//! unprivileged `sendmail` cannot read the secrets: that the password file
//! exists and is private.

mod oauth2;
mod password;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::route::{Address, Recipient, Router};
pub use oauth2::{AuthMethod, DEFAULT_REDIRECT, Endpoints, OAuth2Config, Provider};
pub use password::{CREDENTIAL_SOURCE, PasswordSource};
pub use values::{ByteSize, HumanDuration, KeyFingerprint, Pin, colon_hex};

/// Where every binary looks when neither `--config` nor the environment says.
pub const DEFAULT_PATH: &str = "/etc/alert-relay/relay.toml";
/// The environment variable that overrides [`DEFAULT_PATH`].
pub const ENV_VAR: &str = "ALERT_RELAY_CONFIG";

/// The config path a binary should use: its `--config`, else
/// `ALERT_RELAY_CONFIG`, else the default.
pub fn resolve_path(flag: Option<PathBuf>) -> PathBuf {
    flag.or_else(|| std::env::var_os(ENV_VAR).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub listen: Listen,
    #[serde(default)]
    pub queue: Queue,
    pub relay: Relay,
    #[serde(default)]
    pub message: Message,
    #[serde(default)]
    pub recipients: Vec<RecipientConfig>,
    #[serde(default)]
    pub aliases: BTreeMap<String, AliasTargets>,
    #[serde(default)]
    pub health: HealthConfig,
    #[serde(default)]
    pub heartbeat: HeartbeatConfig,
    /// `[fallback]`: a second relay, with the keys of `[relay]` and
    /// `fallback_after`.
    pub fallback: Option<Relay>,
    /// `[[routes]]`: rules that change whom a message goes to.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// The file this was read from, for error messages.
    #[serde(skip)]
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listen {
    pub addresses: Vec<SocketAddr>,
    pub hostname: Option<String>,
    pub max_message_size: ByteSize,
    pub max_recipients: usize,
    pub max_connections: usize,
    pub idle_timeout: HumanDuration,
    /// Message bytes all SMTP sessions together may hold in memory, with
    /// what their encryption needs; beyond it a message gets 452 and is
    /// sent again later. Keeps a burst of large messages from exhausting
    /// memory (and systemd's MemoryMax=).
    pub max_in_flight: ByteSize,
    pub allow_remote: bool,
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            addresses: vec![
                SocketAddr::from(([127, 0, 0, 1], 25)),
                SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 25)),
            ],
            hostname: None,
            max_message_size: ByteSize(10 << 20),
            max_recipients: 100,
            max_connections: 64,
            idle_timeout: HumanDuration(Duration::from_secs(300)),
            max_in_flight: ByteSize(64 << 20),
            allow_remote: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Queue {
    pub dir: PathBuf,
    pub retry: Vec<HumanDuration>,
    pub max_lifetime: HumanDuration,
}

impl Default for Queue {
    fn default() -> Self {
        let m = |n: u64| HumanDuration(Duration::from_secs(60 * n));
        Queue {
            dir: PathBuf::from("/var/spool/alert-relay"),
            retry: vec![m(1), m(5), m(15), m(30), m(60)],
            max_lifetime: HumanDuration(Duration::from_secs(14 * 86400)),
        }
    }
}

/// `[health]`: when `relayctl health` (and the daemon's warnings) grade a
/// condition WARNING or CRITICAL, and who is warned by mail.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// The oldest queued entry, or a temporary failure, older than this
    /// is a WARNING.
    pub warn_after: HumanDuration,
    /// ... and older than this, CRITICAL.
    pub critical_after: HumanDuration,
    /// A relay certificate pinned by its digest that expires within this.
    pub expiry_warning: HumanDuration,
    /// A recipient's key that stops encrypting within this.
    pub key_expiry_warning: HumanDuration,
    /// Free space under the spool below this.
    pub min_free: ByteSize,
    /// Who gets the warnings by mail: configured recipients or aliases.
    /// Empty: whoever `root` reaches, else every recipient.
    pub to: Vec<String>,
}

/// One `[[routes]]` entry as written (`crate::route::Rules` compiles it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// For the logs; default `routes[N]`.
    pub name: Option<String>,
    /// Field name → expression its value must match.
    #[serde(default)]
    pub match_header: BTreeMap<String, String>,
    pub match_body: Option<String>,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub also: Vec<String>,
    #[serde(default)]
    pub drop: bool,
    /// A built-in action: `"securedrop-journalist"` (with `to` naming
    /// the journalist).
    pub action: Option<String>,
}

/// `[heartbeat]`: an encrypted summary every so often, so that its
/// absence tells someone the host is down. Off unless `every` is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeartbeatConfig {
    pub every: Option<HumanDuration>,
    /// Configured recipients or aliases; empty: the admins.
    pub to: Vec<String>,
}

impl Default for HealthConfig {
    fn default() -> Self {
        let d = |secs: u64| HumanDuration(Duration::from_secs(secs));
        HealthConfig {
            warn_after: d(15 * 60),
            critical_after: d(3600),
            expiry_warning: d(14 * 86400),
            key_expiry_warning: d(30 * 86400),
            min_free: ByteSize(100 << 20),
            to: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain TCP, then EHLO, STARTTLS (mandatory), EHLO again.
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relay {
    pub host: String,
    #[serde(default = "default_relay_port")]
    pub port: u16,
    /// `None` means: implicit on port 465, STARTTLS elsewhere.
    pub tls: Option<TlsMode>,
    #[serde(default)]
    pub fingerprints: Vec<Pin>,
    pub ca_file: Option<PathBuf>,
    pub username: Option<String>,
    pub domain: Option<String>,
    pub password_file: Option<PathBuf>,
    pub sender: Option<String>,
    /// `[fallback]` only: how long the primary must have failed with a
    /// temporary class before due alerts go through the fallback.
    pub fallback_after: Option<HumanDuration>,
    #[serde(default = "default_relay_timeout")]
    pub timeout: HumanDuration,
    /// At most this many messages a minute, evenly spaced (none: no
    /// limit): under a provider's rate limit.
    pub max_per_minute: Option<u32>,
    /// At most this many messages in any 24 hours (none: no limit): under
    /// a provider's daily quota, so that a flood cannot use it up.
    pub max_per_day: Option<u32>,
    /// "password" (the default) or "oauth2".
    #[serde(default)]
    pub auth: AuthMethod,
    /// `[relay.oauth2]`, with `auth = "oauth2"`.
    pub oauth2: Option<OAuth2Config>,
}

fn default_relay_port() -> u16 {
    587
}

fn default_relay_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl Relay {
    pub fn tls_mode(&self) -> TlsMode {
        self.tls.unwrap_or(if self.port == 465 {
            TlsMode::Implicit
        } else {
            TlsMode::Starttls
        })
    }

    /// The SASL identity: `username@domain` when `domain` is set (as
    /// SecureDrop's `sasl_passwd` writes it), `username` alone otherwise.
    pub fn sasl_identity(&self) -> Option<String> {
        let user = self.username.as_ref()?;
        Some(match &self.domain {
            Some(d) => format!("{user}@{d}"),
            None => user.clone(),
        })
    }

    /// `[fallback]` only: `fallback_after`, 15 minutes by default.
    pub fn fallback_after(&self) -> Duration {
        self.fallback_after
            .map_or(Duration::from_secs(15 * 60), |d| d.0)
    }

    /// The sending limits: the keys, else the OAuth 2.0 provider's
    /// preset (per minute, per day).
    pub fn limits(&self) -> (Option<u32>, Option<u32>) {
        let preset = match (&self.auth, &self.oauth2) {
            (AuthMethod::Oauth2, Some(o)) => o.preset_limits(),
            _ => (None, None),
        };
        (
            self.max_per_minute.or(preset.0),
            self.max_per_day.or(preset.1),
        )
    }

    /// Where the SASL password is read from.
    pub fn password_source(&self) -> PasswordSource {
        match &self.password_file {
            Some(p) => PasswordSource::File(p.clone()),
            None => PasswordSource::Credential,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageFormat {
    /// RFC 3156 multipart/encrypted with protected headers.
    #[default]
    PgpMime,
    /// A text/plain body that is the armored encryption of the original body.
    Inline,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubjectPolicy {
    Keep,
    /// Remove IPv4 and IPv6 addresses from the outer subject.
    #[default]
    Scrub,
    /// A generic outer subject; the true one is inside the encryption.
    Hide,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyFailurePolicy {
    /// Send a notice and keep the original in `held/` until released.
    #[default]
    Hold,
    /// Send a notice only.
    Drop,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Message {
    pub format: MessageFormat,
    pub subject: SubjectPolicy,
    pub on_key_failure: KeyFailurePolicy,
    /// What the size of an encrypted alert may tell the relay.
    pub pad: crate::encrypt::Padding,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecipientConfig {
    pub address: String,
    pub key: PathBuf,
    pub fingerprint: KeyFingerprint,
}

/// An alias maps to one address or to a list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AliasTargets {
    One(String),
    Many(Vec<String>),
}

impl AliasTargets {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            AliasTargets::One(s) => vec![s.clone()],
            AliasTargets::Many(v) => v.clone(),
        }
    }
}

/// One thing wrong with a config, at one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `recipients[0].fingerprint`; empty for the file.
    pub key: String,
    pub message: String,
}

/// A config that cannot be used, with every problem found.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl ConfigError {
    fn one(file: &Path, key: &str, message: String) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            problems: vec![Problem {
                key: key.to_string(),
                message,
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if p.key.is_empty() {
                write!(f, "{}: {}", self.file.display(), p.message)?;
            } else {
                write!(f, "{}: {}: {}", self.file.display(), p.key, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::one(
                path,
                "",
                format!("cannot read the config: {e} (give another with --config or {ENV_VAR})"),
            )
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| toml_error(path, text, "", &e))?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let key = if key == "." { String::new() } else { key };
            toml_error(path, text, &key, e.inner())
        })?;
        config.path = path.to_path_buf();
        let problems = config.validate();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                file: path.to_path_buf(),
                problems,
            })
        }
    }

    /// Cross-field rules that serde cannot express; every problem is listed.
    fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, message: String| {
            problems.push(Problem {
                key: key.to_string(),
                message,
            })
        };

        if self.listen.addresses.is_empty() {
            bad("listen.addresses", "no address to listen on".into());
        }
        for (i, a) in self.listen.addresses.iter().enumerate() {
            if !a.ip().is_loopback() && !self.listen.allow_remote {
                bad(
                    &format!("listen.addresses[{i}]"),
                    format!(
                        "{a} is not a loopback address; alert-relay accepts local mail only \
                         unless listen.allow_remote = true"
                    ),
                );
            }
        }
        if let Some(h) = &self.listen.hostname
            && (h.is_empty() || h.contains(|c: char| c.is_whitespace() || c.is_control()))
        {
            bad("listen.hostname", format!("{h:?} is not a host name"));
        }
        for (key, n) in [
            ("listen.max_recipients", self.listen.max_recipients),
            ("listen.max_connections", self.listen.max_connections),
        ] {
            if n == 0 {
                bad(key, "must be at least 1".into());
            }
        }
        if self.listen.max_in_flight.0 < self.listen.max_message_size.0 {
            bad(
                "listen.max_in_flight",
                format!(
                    "{} is less than listen.max_message_size ({}): no message of the largest \
                     size could ever be taken",
                    self.listen.max_in_flight.0, self.listen.max_message_size.0
                ),
            );
        }
        if self.health.critical_after.0 < self.health.warn_after.0 {
            bad(
                "health.critical_after",
                format!(
                    "{} is shorter than health.warn_after ({}): a condition must be a \
                     WARNING before it is CRITICAL",
                    self.health.critical_after, self.health.warn_after
                ),
            );
        }
        if self.queue.retry.is_empty() {
            bad(
                "queue.retry",
                "needs at least one interval, e.g. [\"1m\", \"5m\", \"1h\"]".into(),
            );
        }
        for (section, relay) in self.relays() {
            let key = |k: &str| format!("{section}.{k}");
            if relay.host.trim().is_empty() {
                bad(
                    &key("host"),
                    "is empty; name the upstream SMTP relay".into(),
                );
            }
            if relay.port == 0 {
                bad(&key("port"), "0 is not a port".into());
            }
            for (k, n, most) in [
                ("max_per_minute", relay.max_per_minute, 60_000),
                ("max_per_day", relay.max_per_day, 100_000_000),
            ] {
                match n {
                    Some(0) => bad(
                        &key(k),
                        "must be at least 1; leave it out for no limit".into(),
                    ),
                    Some(n) if n > most => bad(&key(k), format!("{n} is more than {most}")),
                    _ => {}
                }
            }
            match (relay.auth, &relay.oauth2) {
                (AuthMethod::Oauth2, _) if section != "relay" => bad(
                    &key("auth"),
                    "\"oauth2\" is for [relay] only; the fallback signs in with a password".into(),
                ),
                (AuthMethod::Oauth2, None) => bad(
                    &key("oauth2"),
                    "is missing: auth = \"oauth2\" needs [relay.oauth2] with provider and \
                     client_id"
                        .into(),
                ),
                (AuthMethod::Oauth2, Some(o)) => {
                    if relay.username.is_none() {
                        bad(
                            &key("username"),
                            "is missing: with OAuth 2.0 it is the mailbox that signs in".into(),
                        );
                    }
                    if relay.password_file.is_some() {
                        bad(
                            &key("password_file"),
                            "is set, but auth = \"oauth2\" uses no password: remove it".into(),
                        );
                    }
                    for (k, message) in o.problems() {
                        bad(&key(&format!("oauth2.{k}")), message);
                    }
                }
                (AuthMethod::Password, Some(_)) => bad(
                    &key("oauth2"),
                    "is set, but relay.auth is \"password\": set auth = \"oauth2\" to use it"
                        .into(),
                ),
                (AuthMethod::Password, None) => {}
            }
            if relay.password_file.is_some() && relay.username.is_none() {
                bad(
                    &key("username"),
                    "is missing, but password_file is set: AUTH needs both".into(),
                );
            }
        }
        if self.relay.fallback_after.is_some() {
            bad(
                "relay.fallback_after",
                "belongs in [fallback], with the second relay it is about".into(),
            );
        }
        if let Some(f) = &self.fallback {
            if f.username.is_some() && f.password_file.is_none() {
                bad(
                    "fallback.password_file",
                    "is missing: the fallback relay's password must be in a file of its own \
                     (the systemd credential is the primary's)"
                        .into(),
                );
            }
            if f.host == self.relay.host && f.port == self.relay.port {
                bad(
                    "fallback.host",
                    "is the primary relay itself: a fallback must be another relay".into(),
                );
            }
            if let Some(s) = &f.sender
                && let Err(e) = Mailbox::parse(s)
            {
                bad("fallback.sender", e);
            }
        }
        if let Err(e) = self.sender() {
            bad("relay.sender", e);
        }

        if self.recipients.is_empty() {
            bad(
                "recipients",
                "no [[recipients]]: add at least one address with its OpenPGP key".into(),
            );
        }
        let mut seen: Vec<Address> = Vec::new();
        for (i, r) in self.recipients.iter().enumerate() {
            match Address::parse(&r.address) {
                Ok(a) if seen.contains(&a) => bad(
                    &format!("recipients[{i}].address"),
                    format!("{a} is listed twice"),
                ),
                Ok(a) => seen.push(a),
                Err(e) => bad(&format!("recipients[{i}].address"), e),
            }
        }

        // Every alias must land on configured recipients, without loops.
        let router = self.router();
        for name in self.aliases.keys() {
            let key = format!("aliases.{name}");
            if name.contains('@') || name.is_empty() {
                bad(
                    &key,
                    "an alias is a local name like \"root\", without @domain".into(),
                );
                continue;
            }
            if let Err(e) = router.resolve(name) {
                bad(&key, e.to_string());
            }
        }
        if let Err(route_problems) = crate::route::Rules::new(&self.routes, &router) {
            for (key, message) in route_problems {
                bad(&key, message);
            }
        }
        for (i, name) in self.health.to.iter().enumerate() {
            if let Err(e) = router.resolve(name) {
                bad(&format!("health.to[{i}]"), e.to_string());
            }
        }
        for (i, name) in self.heartbeat.to.iter().enumerate() {
            if let Err(e) = router.resolve(name) {
                bad(&format!("heartbeat.to[{i}]"), e.to_string());
            }
        }
        match self.heartbeat.every {
            None if !self.heartbeat.to.is_empty() => bad(
                "heartbeat.every",
                "is missing, but heartbeat.to is set: without it there is no heartbeat \
                 (e.g. every = \"24h\")"
                    .into(),
            ),
            Some(every) if every.0 < Duration::from_secs(1) => {
                bad("heartbeat.every", format!("{every} is less than a second"))
            }
            _ => {}
        }
        problems
    }

    /// Who gets the heartbeat: `heartbeat.to`, else the admins.
    pub fn heartbeat_to(&self) -> Vec<Recipient> {
        let router = self.router();
        let mut out: Vec<Recipient> = Vec::new();
        for r in self
            .heartbeat
            .to
            .iter()
            .filter_map(|n| router.resolve(n).ok())
            .flatten()
        {
            if !out.contains(&r) {
                out.push(r);
            }
        }
        if out.is_empty() { self.admins() } else { out }
    }

    /// Who is warned by mail when delivery is about to break: `health.to`,
    /// else whoever the alias `root` reaches (the admin, as on any Unix
    /// host; `relayctl import-securedrop` points it at the OSSEC alert
    /// address), else every recipient.
    pub fn admins(&self) -> Vec<Recipient> {
        let router = self.router();
        let names: Vec<&str> = if !self.health.to.is_empty() {
            self.health.to.iter().map(String::as_str).collect()
        } else if self.aliases.contains_key("root") {
            vec!["root"]
        } else {
            return self.recipients();
        };
        let mut out: Vec<Recipient> = Vec::new();
        for r in names
            .iter()
            .filter_map(|n| router.resolve(n).ok())
            .flatten()
        {
            if !out.contains(&r) {
                out.push(r);
            }
        }
        out
    }

    /// Checks that need the daemon's privileges: for each relay with a
    /// username, the password the daemon will read exists, is a private
    /// regular file and is not empty (the same read as at each login, so
    /// `relayctl check` cannot pass what the daemon will not find).
    pub fn check_secrets(&self) -> Result<(), ConfigError> {
        for (section, relay) in self.relays() {
            if let (AuthMethod::Oauth2, Some(o)) = (relay.auth, &relay.oauth2) {
                // The client secret. The sign-in is not a reason to refuse
                // to start (alerts would have nowhere to go): without one
                // they wait, and `relayctl check` says so
                // ([`Config::check_sign_in`]).
                if let Some(path) = &o.client_secret_file {
                    PasswordSource::File(path.clone()).read().map_err(|m| {
                        ConfigError::one(
                            &self.path,
                            &format!("{section}.oauth2.client_secret_file"),
                            m,
                        )
                    })?;
                }
                continue;
            }
            if relay.username.is_none() {
                continue;
            }
            let source = relay.password_source();
            let key = match source {
                PasswordSource::File(_) => format!("{section}.password_file"),
                PasswordSource::Credential => format!("{section}.username"),
            };
            source
                .read()
                .map_err(|m| ConfigError::one(&self.path, &key, m))?;
        }
        Ok(())
    }

    /// With `relay.auth = "oauth2"`: that a sign-in of this client is
    /// stored (`relayctl check`; the daemon starts without one).
    pub fn check_sign_in(&self) -> Result<(), ConfigError> {
        if let (AuthMethod::Oauth2, Some(o)) = (self.relay.auth, &self.relay.oauth2) {
            let err = |e: crate::oauth2::TokenError| {
                ConfigError::one(&self.path, "relay.oauth2", e.to_string())
            };
            crate::oauth2::Client::new(o, &self.queue.dir)
                .map_err(err)?
                .stored()
                .map_err(err)?;
        }
        Ok(())
    }

    /// The most bytes one encrypted entry of a message can take, as
    /// `sendmail` writes it to `incoming/` and the daemon reads it back:
    /// the largest message with every bare LF made CRLF (twice its size),
    /// its padding, then armored (4/3, plus line ends: 11/8), and room for
    /// the header. Smaller, and a legitimate submission would be set aside
    /// after `sendmail` said it was taken.
    pub fn max_submission_bytes(&self) -> u64 {
        let plain = self
            .listen
            .max_message_size
            .0
            .saturating_mul(2)
            .saturating_add(64 << 10);
        let padding = match self.message.pad {
            crate::encrypt::Padding::None => 0,
            crate::encrypt::Padding::Padme => plain / 8,
            crate::encrypt::Padding::Multiple(n) => n,
        };
        plain.saturating_add(padding).saturating_mul(11) / 8 + (64 << 10)
    }

    /// The relays with the name of their section: `relay`, then
    /// `fallback` when configured.
    pub fn relays(&self) -> Vec<(&'static str, &Relay)> {
        let mut out = vec![("relay", &self.relay)];
        if let Some(f) = &self.fallback {
            out.push(("fallback", f));
        }
        out
    }

    /// The envelope sender through the fallback relay: `fallback.sender`,
    /// else its `username@domain`, else the primary's.
    pub fn fallback_sender(&self) -> Option<Result<Mailbox, String>> {
        let f = self.fallback.as_ref()?;
        Some(match (&f.sender, &f.username, &f.domain) {
            (Some(s), _, _) => Mailbox::parse(s),
            (None, Some(u), Some(d)) => Mailbox::parse(&format!("{u}@{d}")),
            _ => self.sender(),
        })
    }

    /// The banner and local-domain name: `listen.hostname`, else the
    /// system's host name.
    pub fn hostname(&self) -> String {
        self.listen
            .hostname
            .clone()
            .unwrap_or_else(crate::os::hostname)
    }

    /// The configured recipients, in order. Invalid addresses are skipped;
    /// a validated config has none.
    pub fn recipients(&self) -> Vec<Recipient> {
        self.recipients
            .iter()
            .filter_map(|r| Address::parse(&r.address).ok().map(Recipient))
            .collect()
    }

    /// The router for this config's recipients and aliases.
    /// The routes, compiled; a validated config has no problem with them.
    pub fn rules(&self) -> Result<crate::route::Rules, ConfigError> {
        crate::route::Rules::new(&self.routes, &self.router()).map_err(|problems| ConfigError {
            file: self.path.clone(),
            problems: problems
                .into_iter()
                .map(|(key, message)| Problem { key, message })
                .collect(),
        })
    }

    pub fn router(&self) -> Router {
        let aliases = self
            .aliases
            .iter()
            .map(|(k, v)| (k.clone(), v.to_vec()))
            .collect();
        Router::new(self.recipients(), aliases, &self.hostname())
    }

    /// The envelope sender and From of outgoing mail: `relay.sender`, else
    /// `username@domain`.
    pub fn sender(&self) -> Result<Mailbox, String> {
        match (&self.relay.sender, &self.relay.username, &self.relay.domain) {
            (Some(s), _, _) => Mailbox::parse(s),
            (None, Some(u), Some(d)) => Mailbox::parse(&format!("{u}@{d}")),
            _ => Err("is missing: set relay.sender, or relay.username and relay.domain".into()),
        }
    }
}

/// A mailbox as `relay.sender` holds it: `addr` or `Display Name <addr>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: Address,
}

impl Mailbox {
    pub fn parse(s: &str) -> Result<Mailbox, String> {
        let t = s.trim();
        if let Some(open) = t.rfind('<') {
            let name = t[..open].trim().trim_matches('"').trim();
            let address = Address::parse(&t[open..])?;
            let name = (!name.is_empty()).then(|| name.to_string());
            return Ok(Mailbox { name, address });
        }
        Ok(Mailbox {
            name: None,
            address: Address::parse(t)?,
        })
    }
}

fn toml_error(path: &Path, text: &str, key: &str, e: &toml::de::Error) -> ConfigError {
    let mut message = e.message().trim().to_string();
    if let Some(span) = e.span() {
        let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
        message = format!("{message} (line {line})");
    }
    ConfigError::one(path, key, message)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    const GOOD: &str = r#"
[listen]
addresses = ["127.0.0.1:2525"]
hostname = "mon.example.org"

[relay]
host = "smtp.example.net"
username = "ossec"
domain = "example.net"

[[recipients]]
address = "alerts@example.org"
key = "/etc/alert-relay/ossec.pub"
fingerprint = "FD720AD9EBA34B1C123456789ABCDEF012345678"

[aliases]
root = "alerts@example.org"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("relay.toml"))
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn a_minimal_config_gets_the_documented_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.relay.port, 587);
        assert_eq!(c.relay.tls_mode(), TlsMode::Starttls);
        assert_eq!(c.listen.max_message_size, ByteSize(10 << 20));
        assert_eq!(c.queue.retry.len(), 5);
        assert_eq!(c.message.format, MessageFormat::PgpMime);
        assert_eq!(c.message.subject, SubjectPolicy::Scrub);
        assert_eq!(c.relay.sasl_identity().unwrap(), "ossec@example.net");
        assert_eq!(c.sender().unwrap().address.as_str(), "ossec@example.net");
        assert_eq!(c.router().resolve("root@mon.example.org").unwrap().len(), 1);
    }

    #[test]
    fn port_465_means_implicit_tls() {
        let c = parse(&GOOD.replace("host = ", "port = 465\nhost = ")).unwrap();
        assert_eq!(c.relay.tls_mode(), TlsMode::Implicit);
    }

    #[test]
    fn unknown_keys_name_the_section_and_key() {
        let e = error_of(&GOOD.replace("hostname =", "hostnme ="));
        assert!(
            e.starts_with("relay.toml: listen.hostnme: unknown field `hostnme`, expected one of"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_name_the_dotted_key_path() {
        let e = error_of(&GOOD.replace("FD720AD9EBA34B1C123456789ABCDEF012345678", "FD72"));
        assert!(
            e.contains("recipients[0].fingerprint: \"FD72\" is not an OpenPGP fingerprint"),
            "{e}"
        );

        let e = error_of(&format!("{GOOD}\n[queue]\nmax_lifetime = \"forever\"\n"));
        assert!(
            e.contains("queue.max_lifetime: \"forever\" is not a duration"),
            "{e}"
        );

        let e = error_of(&GOOD.replace(
            "hostname = ",
            "max_message_size = \"10 parsecs\"\nhostname = ",
        ));
        assert!(e.contains("listen.max_message_size"), "{e}");

        let e = error_of(&GOOD.replace("username = ", "fingerprints = [\"AB:CD\"]\nusername = "));
        assert!(
            e.contains("relay.fingerprints[0]: \"AB:CD\" has 4 hex digits"),
            "{e}"
        );

        let e =
            error_of(&GOOD.replace("host = \"smtp.example.net\"", "host = \"x\"\ntls = \"ssl\""));
        assert!(e.contains("relay.tls: unknown variant `ssl`"), "{e}");

        let e = error_of(&GOOD.replace("127.0.0.1:2525", "localhost"));
        assert!(e.contains("listen.addresses[0]"), "{e}");
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let e = error_of("[listen]\naddresses = [\n");
        assert!(e.starts_with("relay.toml: "), "{e}");
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn missing_relay_section_is_named() {
        let e = error_of("[listen]\nallow_remote = false\n");
        assert!(e.contains("missing field `relay`"), "{e}");
    }

    #[test]
    fn remote_addresses_need_allow_remote() {
        let text = GOOD.replace("127.0.0.1:2525", "0.0.0.0:25");
        let e = error_of(&text);
        assert!(
            e.contains("listen.addresses[0]: 0.0.0.0:25 is not a loopback address"),
            "{e}"
        );
        let ok = text.replace(
            "hostname = \"mon.example.org\"",
            "hostname = \"mon.example.org\"\nallow_remote = true",
        );
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn every_semantic_problem_is_listed() {
        let text = r#"
[relay]
host = ""
password_file = "/nonexistent"

[[recipients]]
address = "not an address"
key = "k"
fingerprint = "FD720AD9EBA34B1C123456789ABCDEF012345678"

[aliases]
root = "someone@elsewhere.org"
"#;
        let e = parse(text).unwrap_err();
        let keys: Vec<&str> = e.problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "relay.host",
            "relay.username",
            "relay.sender",
            "recipients[0].address",
            "aliases.root",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
    }

    #[test]
    fn duplicate_recipients_are_refused() {
        let dup = GOOD.replace(
            "[aliases]",
            "[[recipients]]\naddress = \"ALERTS@example.org\"\nkey = \"k\"\nfingerprint = \"FD720AD9EBA34B1C123456789ABCDEF012345678\"\n\n[aliases]",
        );
        let e = error_of(&dup);
        assert!(
            e.contains("recipients[1].address: ALERTS@example.org is listed twice"),
            "{e}"
        );
    }

    #[test]
    fn password_file_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("sasl_password");
        std::fs::write(&pw, "secret").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = GOOD.replace(
            "username = ",
            &format!(
                "password_file = {:?}\nusername = ",
                pw.display().to_string()
            ),
        );
        let c = parse(&text).unwrap();
        let e = c.check_secrets().unwrap_err().to_string();
        assert!(e.contains("relay.password_file"), "{e}");
        assert!(e.contains("mode 0644"), "{e}");
        assert!(
            !e.contains("secret"),
            "the password must never be printed: {e}"
        );
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        c.check_secrets().unwrap();
    }

    #[test]
    fn sender_with_display_name() {
        let m = Mailbox::parse("OSSEC HIDS <ossec@example.net>").unwrap();
        assert_eq!(m.name.as_deref(), Some("OSSEC HIDS"));
        assert_eq!(m.address.as_str(), "ossec@example.net");
    }
}
