//! OAuth 2.0 sign-in to the relay (`relay.auth = "oauth2"`): the token
//! endpoint client, the stored refresh token, and the access token the
//! daemon keeps in memory.
//!
//! - `relayctl oauth2 login` ([`login`]) signs in once, by the device
//!   authorization grant (RFC 8628; Microsoft) or the authorization code
//!   grant with PKCE (RFC 7636; Google), and stores the refresh token in
//!   the spool ([`store`]), the daemon's own, mode 0600.
//! - The daemon ([`TokenSource`]) exchanges it for an access token when
//!   it needs one, keeps that in memory until shortly before it expires,
//!   and writes a rotated refresh token back atomically (write, fsync,
//!   rename), so that a crash never loses the only valid one.
//! - Neither token is ever logged, put in an error message or on a
//!   command line; both live in zeroized memory.
//!
//! A token endpoint that cannot be reached, or answers 5xx, is a
//! temporary failure: the alert waits, with the reason. `invalid_grant`
//! (the sign-in expired or was revoked) needs a person: the error says to
//! sign in again, and it is a health problem of class `auth`.

pub mod http;
pub mod login;
pub mod store;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use tokio_rustls::rustls::ClientConfig;
use zeroize::Zeroizing;

use crate::config::{Endpoints, OAuth2Config, Relay};
use store::{Store, Stored};

/// An access token is refreshed this long before it expires, so that it
/// does not expire between the check and the relay's reading of it.
const MARGIN: Duration = Duration::from_secs(300);
/// One exchange with the token endpoint, from connect to the last byte.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Why no access token could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// This host's setup: the CA file, the client secret file.
    Setup(String),
    /// No refresh token is stored (never signed in), or it belongs to
    /// another client or endpoint.
    NotSignedIn { store: PathBuf, why: String },
    /// The endpoint could not be reached, or failed (5xx, 429,
    /// `temporarily_unavailable`): temporary.
    Unreachable { endpoint: String, why: String },
    /// The endpoint refused: `invalid_grant` and `interaction_required`
    /// mean signing in again; the others, the app registration or the
    /// config.
    Refused { error: String, description: String },
    /// The rotated refresh token could not be written back.
    Store(String),
    /// `relayctl oauth2 login` did not complete: the code expired, the
    /// pasted address was not the answer.
    SignIn(String),
}

impl TokenError {
    /// Whether waiting can fix it.
    pub fn is_temporary(&self) -> bool {
        matches!(self, TokenError::Unreachable { .. })
    }

    /// Whether the stored sign-in is no longer any good.
    pub fn needs_sign_in(&self) -> bool {
        match self {
            TokenError::NotSignedIn { .. } => true,
            TokenError::Refused { error, .. } => {
                matches!(error.as_str(), "invalid_grant" | "interaction_required")
            }
            _ => false,
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Setup(e) => write!(f, "OAuth 2.0: {e}"),
            TokenError::NotSignedIn { store, why } => write!(
                f,
                "OAuth 2.0: {why} ({}): run relayctl oauth2 login",
                store.display()
            ),
            TokenError::Unreachable { endpoint, why } => write!(
                f,
                "cannot get an access token from {endpoint} ({why}): the alert waits; check the \
                 network and that the firewall lets alert-relay reach it over HTTPS"
            ),
            TokenError::Refused { error, description } if self.needs_sign_in() => write!(
                f,
                "the token endpoint refused the stored sign-in ({error}: {description}): it \
                 expired or was revoked (a password change, an admin, 90 days unused at \
                 Microsoft, 7 days for a Google app still in testing); run relayctl oauth2 login"
            ),
            TokenError::Refused { error, description } => write!(
                f,
                "the token endpoint refused alert-relay's request ({error}: {description}): \
                 check relay.oauth2 (client_id, tenant, scope, client_secret_file) against the \
                 app registration"
            ),
            TokenError::Store(e) => write!(f, "OAuth 2.0: cannot store the new refresh token: {e}"),
            TokenError::SignIn(why) => write!(f, "the sign-in did not complete: {why}"),
        }
    }
}

/// Runs `work` (the stored sign-in's file I/O, an fsync among it) on the
/// blocking pool: the daemon's runtime is one thread, which a slow disk
/// must not stop from taking alerts.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, TokenError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| TokenError::Store(format!("the task reading or writing it failed: {e}")))
}

/// An access token and when it expires.
pub struct AccessToken {
    pub token: Zeroizing<String>,
    pub expires: SystemTime,
}

/// What a token endpoint answers with 200.
#[derive(Deserialize)]
struct Grant {
    access_token: Zeroizing<String>,
    #[serde(default)]
    refresh_token: Option<Zeroizing<String>>,
    /// Some servers send it as a string.
    #[serde(default, deserialize_with = "lenient_u64")]
    expires_in: Option<u64>,
    /// An OpenID Connect ID token, when the scope has `openid`: only its
    /// claim of whose account this is is read.
    #[serde(default)]
    id_token: Option<String>,
}

/// Never the tokens.
impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Grant {{ refresh_token: {}, expires_in: {:?}, id_token: {} }}",
            if self.refresh_token.is_some() {
                "yes"
            } else {
                "no"
            },
            self.expires_in,
            if self.id_token.is_some() { "yes" } else { "no" }
        )
    }
}

/// What it answers otherwise (RFC 6749 5.2).
#[derive(Deserialize)]
struct Refusal {
    error: String,
    #[serde(default)]
    error_description: String,
}

/// A number, or a string holding one.
fn lenient_u64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        N(u64),
        S(String),
    }
    Ok(match Option::<N>::deserialize(d)? {
        Some(N::N(n)) => Some(n),
        Some(N::S(s)) => s.trim().parse().ok(),
        None => None,
    })
}

/// A token endpoint's text for a log line or a terminal: its first line,
/// without control characters, at most 300 characters.
fn tidy(text: &str) -> String {
    text.lines()
        .next()
        .unwrap_or("")
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect()
}

/// The token endpoint, as configured.
pub struct Client {
    pub endpoints: Endpoints,
    pub client_id: String,
    secret_file: Option<PathBuf>,
    tls: Arc<ClientConfig>,
    pub store: Store,
}

impl Client {
    /// The client for `[relay.oauth2]`, its refresh token stored in `spool`.
    pub fn new(oauth2: &OAuth2Config, spool: &Path) -> Result<Client, TokenError> {
        let endpoints = oauth2
            .endpoints()
            .map_err(|(key, why)| TokenError::Setup(format!("relay.oauth2.{key}: {why}")))?;
        let tls =
            crate::deliver::tls::ca_checked_config(oauth2.ca_file.as_deref()).map_err(|e| {
                TokenError::Setup(
                    e.to_string()
                        .replace("relay.ca_file", "relay.oauth2.ca_file"),
                )
            })?;
        Ok(Client {
            endpoints,
            client_id: oauth2.client_id.clone(),
            secret_file: oauth2.client_secret_file.clone(),
            tls,
            store: Store::in_spool(spool),
        })
    }

    /// The client for a relay with `auth = "oauth2"`.
    pub fn for_relay(relay: &Relay, spool: &Path) -> Option<Result<Client, TokenError>> {
        match (relay.auth, &relay.oauth2) {
            (crate::config::AuthMethod::Oauth2, Some(o)) => Some(Client::new(o, spool)),
            _ => None,
        }
    }

    /// POSTs a grant to `endpoint` with the client's id (and secret),
    /// and reads the answer.
    async fn request(&self, endpoint: &str, fields: &[(&str, &str)]) -> Result<Answer, TokenError> {
        let url = http::Url::parse(endpoint).map_err(TokenError::Setup)?;
        let secret = match &self.secret_file {
            Some(path) => Some(
                crate::config::PasswordSource::File(path.clone())
                    .read()
                    .map_err(|e| {
                        TokenError::Setup(format!("relay.oauth2.client_secret_file: {e}"))
                    })?,
            ),
            None => None,
        };
        let mut all: Vec<(&str, &str)> = vec![("client_id", &self.client_id)];
        if let Some(s) = &secret {
            all.push(("client_secret", s));
        }
        all.extend_from_slice(fields);
        let body = http::form(&all);
        let unreachable = |why: String| TokenError::Unreachable {
            endpoint: url.to_string(),
            why,
        };
        let response = http::post_form(&url, &body, &self.tls, TIMEOUT)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Answer {
            status: response.status,
            body: response.body,
            endpoint: url.to_string(),
        })
    }

    /// Exchanges the stored refresh token for an access token, and
    /// stores the new refresh token when the endpoint rotates it.
    pub async fn refresh(&self) -> Result<AccessToken, TokenError> {
        let (token, unsaved) = self.refresh_from(self.stored()?).await?;
        match unsaved {
            Some((_, e)) => Err(TokenError::Store(e)),
            None => Ok(token),
        }
    }

    /// [`Client::refresh`] from `stored`; a rotated refresh token that
    /// could not be written back is returned with the reason, so that
    /// the daemon keeps using it (the old one may be void) and delivery
    /// goes on while the disk is full.
    async fn refresh_from(
        &self,
        stored: Stored,
    ) -> Result<(AccessToken, Option<(Stored, String)>), TokenError> {
        let answer = self
            .request(
                &self.endpoints.token,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &stored.refresh_token),
                    // Microsoft wants the scope on refresh too (AADSTS900144).
                    ("scope", &self.endpoints.scope),
                ],
            )
            .await?;
        let grant = answer.grant()?;
        let mut unsaved = None;
        if let Some(new) = &grant.refresh_token
            && **new != *stored.refresh_token
        {
            let rotated = stored.rotated(new.clone());
            let store = self.store.clone();
            let used = stored.refresh_token.clone();
            unsaved = blocking(move || {
                // A sign-in stored meanwhile (relayctl oauth2 login) is
                // newer than this one: it stays.
                let replaced = store.read().is_ok_and(|now| *now.refresh_token != *used);
                match replaced {
                    true => None,
                    false => store.write(&rotated).err().map(|e| (rotated, e)),
                }
            })
            .await?;
        }
        Ok((grant.access(), unsaved))
    }

    /// The stored sign-in, if it is this client's.
    pub fn stored(&self) -> Result<Stored, TokenError> {
        let not_signed_in = |why: String| TokenError::NotSignedIn {
            store: self.store.path().to_path_buf(),
            why,
        };
        // Not readable by this user (an admin's relayctl without sudo):
        // no sign-in is missing, and signing in again would not help.
        if let Err(e) = crate::os::open_nofollow(self.store.path())
            && e.kind() == std::io::ErrorKind::PermissionDenied
        {
            return Err(TokenError::Setup(format!(
                "{} is the daemon's and this user cannot read it ({e}): run this as root or as \
                 the daemon's user",
                self.store.path().display()
            )));
        }
        let stored = self.store.read().map_err(not_signed_in)?;
        if stored.token_endpoint != self.endpoints.token || stored.client_id != self.client_id {
            return Err(not_signed_in(format!(
                "the stored sign-in is for client {} at {}, not relay.oauth2's",
                stored.client_id, stored.token_endpoint
            )));
        }
        Ok(stored)
    }

    /// A new sign-in's grant, stored; the account, when it says.
    fn keep(&self, grant: &Grant, now: SystemTime) -> Result<Option<String>, TokenError> {
        let refresh = grant
            .refresh_token
            .clone()
            .ok_or_else(|| TokenError::Refused {
                error: "no refresh_token".into(),
                description: "the sign-in gave no refresh token; the scope must allow offline \
                          access (offline_access for Microsoft, access_type=offline for Google)"
                    .into(),
            })?;
        let account = grant.account();
        self.store
            .write(&Stored::new(
                refresh,
                &self.endpoints.token,
                &self.client_id,
                account.clone(),
                now,
            ))
            .map_err(TokenError::Store)?;
        Ok(account)
    }
}

/// A token endpoint's answer, not yet judged.
struct Answer {
    status: u16,
    body: Zeroizing<Vec<u8>>,
    endpoint: String,
}

impl Answer {
    /// The grant of a 200, or the error.
    fn grant(&self) -> Result<Grant, TokenError> {
        match self.status {
            200 => {
                serde_json::from_slice::<Grant>(&self.body).map_err(|_| TokenError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    why: "an answer without an access token".into(),
                })
            }
            _ => Err(self.refusal()),
        }
    }

    /// What a non-200 answer means.
    fn refusal(&self) -> TokenError {
        let unreachable = |why: String| TokenError::Unreachable {
            endpoint: self.endpoint.clone(),
            why,
        };
        if self.status >= 500 || self.status == 429 {
            return unreachable(format!("HTTP {}", self.status));
        }
        match serde_json::from_slice::<Refusal>(&self.body) {
            Ok(r) if r.error == "temporarily_unavailable" || r.error == "server_error" => {
                unreachable(format!(
                    "{}: {}",
                    tidy(&r.error),
                    tidy(&r.error_description)
                ))
            }
            Ok(r) => TokenError::Refused {
                error: tidy(&r.error),
                description: tidy(&r.error_description),
            },
            Err(_) => unreachable(format!("HTTP {} without an OAuth 2.0 error", self.status)),
        }
    }
}

/// The longest account name kept (an address is at most 254 octets).
const MAX_ACCOUNT: usize = 254;

impl Grant {
    /// The account the endpoint says signed in: the ID token's `email`,
    /// else `preferred_username` (Microsoft) or `upn`. The token is not
    /// verified: the name is shown to the admin and compared with
    /// relay.username, never trusted for anything (the relay checks the
    /// access token itself).
    fn account(&self) -> Option<String> {
        use base64::Engine as _;
        let payload = self.id_token.as_deref()?.split('.').nth(1)?;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .ok()?;
        let claims: serde_json::Value = serde_json::from_slice(&json).ok()?;
        ["email", "preferred_username", "upn"]
            .iter()
            .filter_map(|c| claims.get(*c)?.as_str())
            // Taken whole or not at all: a name cut or cleaned is another
            // name. Letters, digits and ASCII punctuation only: no control
            // or invisible format characters (a right-to-left override)
            // reach the terminal.
            .find(|name| {
                !name.is_empty()
                    && name.len() <= MAX_ACCOUNT
                    && name
                        .chars()
                        .all(|c| c.is_alphanumeric() || c.is_ascii_punctuation())
            })
            .map(str::to_string)
    }

    fn access(&self) -> AccessToken {
        // Without expires_in, an hour, the common lifetime; whatever the
        // endpoint says, between a minute and a day (a number near
        // u64::MAX would overflow the clock).
        let lifetime = Duration::from_secs(self.expires_in.unwrap_or(3600).clamp(60, 86_400));
        let now = SystemTime::now();
        AccessToken {
            token: self.access_token.clone(),
            expires: now.checked_add(lifetime).unwrap_or(now),
        }
    }
}

/// The daemon's access token: fetched when needed, kept in memory until
/// [`MARGIN`] before it expires.
pub struct TokenSource {
    client: Arc<Client>,
    cached: tokio::sync::Mutex<Cached>,
    /// The stored sign-in as last looked at by [`TokenSource::sign_in_changed`].
    seen: std::sync::Mutex<Seen>,
}

/// The stored sign-in's file time and sign-in time, as last seen.
#[derive(Default)]
struct Seen {
    /// Whether it has looked at all: what it first sees is no change.
    looked: bool,
    modified: Option<SystemTime>,
    signed_in: Option<u64>,
}

#[derive(Default)]
struct Cached {
    access: Option<AccessToken>,
    /// A rotated refresh token the store could not take: used until it
    /// can (the one on disk may be void).
    unsaved: Option<Stored>,
    /// The last refusal of a stored sign-in (`invalid_grant`): that
    /// refresh token, when, and the error.
    refused: Option<Refused>,
    /// When the sign-in of the last access token was stored (seconds).
    signed_in: Option<u64>,
}

/// A sign-in the endpoint refused: not offered again for
/// [`REFUSAL_HOLD`] (a flood of alerts would otherwise ask once per
/// attempt, and Entra ID throttles a client that asks in a loop,
/// AADSTS50196), unless `relayctl oauth2 login` stores another.
struct Refused {
    refresh_token: Zeroizing<String>,
    /// Monotonic: a clock stepped back does not stretch the hold.
    at: Instant,
    error: TokenError,
}

/// How long a refused sign-in is not offered again. Not for ever: a
/// refusal for missing consent or a Conditional Access policy ends when
/// an admin grants or changes it, with the same refresh token.
const REFUSAL_HOLD: Duration = Duration::from_secs(60);

impl TokenSource {
    pub fn new(client: Client) -> TokenSource {
        TokenSource {
            client: Arc::new(client),
            cached: tokio::sync::Mutex::new(Cached::default()),
            seen: std::sync::Mutex::new(Seen::default()),
        }
    }

    /// An access token: the cached one, unless `fresh` (the relay refused
    /// it) or it is about to expire.
    pub async fn get(&self, fresh: bool) -> Result<Zeroizing<String>, TokenError> {
        let mut cached = self.cached.lock().await;
        let now = SystemTime::now();
        if !fresh
            && let Some(t) = cached.access.as_ref()
            && t.expires > now + MARGIN
        {
            return Ok(t.token.clone());
        }
        let unsaved = cached.unsaved.take();
        let client = self.client.clone();
        let stored = blocking(move || match unsaved {
            // A sign-in stored meanwhile (relayctl oauth2 login, which the
            // log line asks for) replaces the one kept in memory.
            Some(s)
                if client
                    .stored()
                    .is_ok_and(|now| now.signed_in != s.signed_in) =>
            {
                client.stored()
            }
            // The store may have room again.
            Some(s) => match client.store.write(&s) {
                Ok(()) => client.stored(),
                Err(_) => Ok(s),
            },
            None => client.stored(),
        })
        .await??;
        if let Some(r) = &cached.refused
            && *r.refresh_token == *stored.refresh_token
            && r.at.elapsed() < REFUSAL_HOLD
        {
            return Err(r.error.clone());
        }
        let refresh_token = stored.refresh_token.clone();
        let signed_in = stored.signed_in;
        let (token, unsaved) = match self.client.refresh_from(stored).await {
            Ok(got) => got,
            Err(error) => {
                if error.needs_sign_in() {
                    cached.refused = Some(Refused {
                        refresh_token,
                        at: Instant::now(),
                        error: error.clone(),
                    });
                }
                return Err(error);
            }
        };
        cached.refused = None;
        cached.signed_in = Some(signed_in);
        if let Some((s, e)) = unsaved {
            tracing::error!(
                store = %self.client.store.path().display(),
                "cannot store the rotated OAuth 2.0 refresh token ({e}); it is kept in memory \
                 until it can be (free space in the spool): after a restart meanwhile, run \
                 relayctl oauth2 login"
            );
            cached.unsaved = Some(s);
        }
        let out = token.token.clone();
        cached.access = Some(token);
        Ok(out)
    }

    /// When the cached access token expires, if there is one.
    pub async fn expires(&self) -> Option<SystemTime> {
        self.cached.lock().await.access.as_ref().map(|t| t.expires)
    }

    /// When the sign-in behind the last access token was stored
    /// (seconds), if there was one.
    pub async fn signed_in(&self) -> Option<u64> {
        self.cached.lock().await.signed_in
    }

    /// Whether `relayctl oauth2 login` stored a sign-in (the first, or
    /// another) since the last look: then the daemon tries it at once. One
    /// stat per look; the file is read only when it changed, and a
    /// rotated refresh token written back changes the file, not the
    /// sign-in time.
    pub fn sign_in_changed(&self) -> bool {
        let path = self.client.store.path();
        let modified = std::fs::symlink_metadata(path)
            .and_then(|m| m.modified())
            .ok();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let first = !std::mem::replace(&mut seen.looked, true);
        if !first && seen.modified == modified {
            return false;
        }
        seen.modified = modified;
        if modified.is_none() {
            seen.signed_in = None;
            return false;
        }
        let Ok(stored) = self.client.store.read() else {
            return false;
        };
        // A first sign-in while the daemon runs is a change too.
        let before = seen.signed_in.replace(stored.signed_in);
        !first && before != Some(stored.signed_in)
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSource({})", self.client.endpoints.token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            body: Zeroizing::new(body.as_bytes().to_vec()),
            endpoint: "https://idp.example/token".into(),
        }
    }

    #[test]
    fn answers_are_judged_by_what_fixes_them() {
        let ok = answer(
            200,
            r#"{"access_token":"AT","expires_in":"3599","token_type":"Bearer"}"#,
        )
        .grant()
        .unwrap();
        assert_eq!(&*ok.access_token, "AT");
        assert_eq!(ok.expires_in, Some(3599));
        assert!(ok.refresh_token.is_none());

        let revoked = answer(
            400,
            r#"{"error":"invalid_grant","error_description":"AADSTS700082: The refresh token has expired due to inactivity.\r\nTrace ID: x"}"#,
        )
        .grant()
        .unwrap_err();
        assert!(revoked.needs_sign_in() && !revoked.is_temporary());
        let text = revoked.to_string();
        assert!(
            text.contains("AADSTS700082") && !text.contains("Trace ID"),
            "{text}"
        );
        assert!(text.contains("relayctl oauth2 login"), "{text}");

        let client = answer(
            401,
            r#"{"error":"invalid_client","error_description":"AADSTS7000218"}"#,
        )
        .grant()
        .unwrap_err();
        assert!(!client.needs_sign_in() && !client.is_temporary());
        assert!(client.to_string().contains("app registration"));

        for (status, body) in [
            (503, "<html>down</html>"),
            (429, ""),
            (400, r#"{"error":"temporarily_unavailable"}"#),
            (400, "not json"),
            (200, r#"{"token_type":"Bearer"}"#),
        ] {
            let e = answer(status, body).grant().unwrap_err();
            assert!(e.is_temporary(), "{status} {body}: {e}");
            assert!(e.to_string().contains("the alert waits"), "{e}");
        }
    }

    #[test]
    fn the_account_is_read_from_an_id_token_and_a_bad_one_is_no_account() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let with = |id_token: &str| {
            answer(
                200,
                &serde_json::json!({"access_token": "AT", "id_token": id_token}).to_string(),
            )
            .grant()
            .unwrap()
            .account()
        };
        let token = |claims: &str| format!("{}.{}.sig", b64("{}"), b64(claims));
        assert_eq!(
            with(&token(r#"{"preferred_username":"a@example.org"}"#)).as_deref(),
            Some("a@example.org")
        );
        // email first; a claim that is empty or not a string is skipped.
        assert_eq!(
            with(&token(r#"{"email":"e@example.org","upn":"u@x"}"#)).as_deref(),
            Some("e@example.org")
        );
        assert_eq!(
            with(&token(r#"{"email":"","upn":7,"preferred_username":"p@x"}"#)).as_deref(),
            Some("p@x")
        );
        // A claim with a control or format character, or a space, is
        // no name (the next one is taken): it goes to a terminal.
        for bad in [
            "a\\u001b[2Jb@x",
            "ossec@example.net\\nx",
            "a\\u202eb@x",
            "a\\u200bb@x",
            "a b@x",
        ] {
            assert_eq!(
                with(&token(&format!("{{\"email\":\"{bad}\",\"upn\":\"u@x\"}}"))).as_deref(),
                Some("u@x"),
                "{bad}"
            );
        }
        assert_eq!(
            with(&token(r#"{"email":"jörg@exämple.org"}"#)).as_deref(),
            Some("jörg@exämple.org")
        );
        let long = format!(r#"{{"email":"{}@x"}}"#, "a".repeat(400));
        for bad in [
            "".to_string(),
            "one-part".to_string(),
            format!("{}.!!!.sig", b64("{}")),
            format!("{}.{}.sig", b64("{}"), b64("not json")),
            token(r#"{"sub":"1234"}"#),
            token(&long),
        ] {
            assert_eq!(with(&bad), None, "{bad}");
        }
        assert_eq!(
            answer(200, r#"{"access_token":"AT"}"#)
                .grant()
                .unwrap()
                .account(),
            None
        );
    }
}
