//! `relay.auth = "oauth2"` and `[relay.oauth2]`: signing in to the relay
//! with OAuth 2.0 (SASL XOAUTH2 or OAUTHBEARER) instead of a password.
//!
//! The providers' presets fill in what is the same for every user of
//! them: Microsoft's endpoints under the tenant and the Exchange Online
//! scope, Google's endpoints and the mail scope (section 11 of the
//! design; sources in README "OAuth 2.0").

use std::path::PathBuf;

use serde::Deserialize;

/// How alert-relay logs in to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// SASL PLAIN or LOGIN with the password file.
    #[default]
    Password,
    /// SASL XOAUTH2 or OAUTHBEARER with an access token from `[relay.oauth2]`.
    Oauth2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Microsoft,
    Google,
    Custom,
}

/// `[relay.oauth2]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    pub provider: Provider,
    pub client_id: String,
    /// Google's desktop clients have one (not secret, but required);
    /// Microsoft's public clients must not.
    pub client_secret_file: Option<PathBuf>,
    /// Microsoft: the directory (tenant) id or domain the app is in.
    pub tenant: Option<String>,
    pub token_endpoint: Option<String>,
    pub device_authorization_endpoint: Option<String>,
    pub authorization_endpoint: Option<String>,
    pub scope: Option<String>,
    /// Where the browser is sent after sign-in in the code flow. Nothing
    /// needs to listen there: the admin pastes the address it shows.
    pub redirect_uri: Option<String>,
    /// The CA that signs the token endpoint's certificate (default: the
    /// system's roots).
    pub ca_file: Option<PathBuf>,
}

/// Where and how to sign in: the config with the preset filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub token: String,
    /// The device authorization grant (RFC 8628), where the provider has it.
    pub device: Option<String>,
    /// The authorization code grant with PKCE (RFC 7636).
    pub authorization: Option<String>,
    pub scope: String,
    pub redirect_uri: String,
}

/// The redirect of the code flow when none is configured: a loopback
/// address, which Google allows for desktop clients (RFC 8252 7.3).
pub const DEFAULT_REDIRECT: &str = "http://127.0.0.1:8085/";

/// Microsoft: Exchange Online's SMTP scope, first (a token is issued for
/// the resource of the first scope), offline_access for a refresh token,
/// and openid and profile, as Microsoft's own MSAL always asks, for an
/// ID token that names the account that signed in (`relayctl oauth2
/// login` warns when it is not relay.username).
pub const MICROSOFT_SCOPE: &str =
    "https://outlook.office.com/SMTP.Send offline_access openid profile";
/// Google: the mail scope, and openid and email for the same ID token.
pub const GOOGLE_SCOPE: &str = "https://mail.google.com/ openid email";

impl OAuth2Config {
    /// The endpoints and scope, or what is missing.
    pub fn endpoints(&self) -> Result<Endpoints, (&'static str, String)> {
        let redirect_uri = self
            .redirect_uri
            .clone()
            .unwrap_or_else(|| DEFAULT_REDIRECT.to_string());
        let pick = |own: &Option<String>, preset: String| own.clone().unwrap_or(preset);
        let endpoints = match self.provider {
            Provider::Microsoft => {
                let tenant = self.tenant.as_deref().ok_or((
                    "tenant",
                    "is missing: set the directory (tenant) id of the app registration, as \
                     Entra ID shows it"
                        .to_string(),
                ))?;
                if tenant.is_empty()
                    || !tenant
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
                {
                    return Err(("tenant", format!("{tenant:?} is not a tenant id or domain")));
                }
                let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
                Endpoints {
                    token: pick(&self.token_endpoint, format!("{base}/token")),
                    device: Some(pick(
                        &self.device_authorization_endpoint,
                        format!("{base}/devicecode"),
                    )),
                    authorization: Some(pick(
                        &self.authorization_endpoint,
                        format!("{base}/authorize"),
                    )),
                    scope: pick(&self.scope, MICROSOFT_SCOPE.to_string()),
                    redirect_uri,
                }
            }
            // Google's device flow does not allow the mail scope.
            Provider::Google => Endpoints {
                token: pick(
                    &self.token_endpoint,
                    "https://oauth2.googleapis.com/token".into(),
                ),
                device: None,
                authorization: Some(pick(
                    &self.authorization_endpoint,
                    "https://accounts.google.com/o/oauth2/v2/auth".into(),
                )),
                scope: pick(&self.scope, GOOGLE_SCOPE.to_string()),
                redirect_uri,
            },
            Provider::Custom => {
                let token = self.token_endpoint.clone().ok_or((
                    "token_endpoint",
                    "is missing: provider = \"custom\" needs the token endpoint".to_string(),
                ))?;
                let scope = self.scope.clone().ok_or((
                    "scope",
                    "is missing: provider = \"custom\" needs the scope to ask for".to_string(),
                ))?;
                if self.device_authorization_endpoint.is_none()
                    && self.authorization_endpoint.is_none()
                {
                    return Err((
                        "device_authorization_endpoint",
                        "is missing, and so is authorization_endpoint: relayctl oauth2 login \
                         needs one of them"
                            .to_string(),
                    ));
                }
                Endpoints {
                    token,
                    device: self.device_authorization_endpoint.clone(),
                    authorization: self.authorization_endpoint.clone(),
                    scope,
                    redirect_uri,
                }
            }
        };
        for (key, url) in [
            ("token_endpoint", Some(&endpoints.token)),
            ("device_authorization_endpoint", endpoints.device.as_ref()),
            ("authorization_endpoint", endpoints.authorization.as_ref()),
        ] {
            if let Some(url) = url
                && crate::oauth2::http::Url::parse(url).is_err()
            {
                return Err((key, format!("{url:?} is not an https:// address")));
            }
        }
        Ok(endpoints)
    }

    /// The sending limits the provider's preset brings, for the relay
    /// keys the admin left unset: (per minute, per day).
    pub fn preset_limits(&self) -> (Option<u32>, Option<u32>) {
        match self.provider {
            // 30 messages a minute, 10,000 recipients a day.
            Provider::Microsoft => (Some(30), Some(10_000)),
            // 500 a day: a free account's limit, under Workspace's 2,000.
            Provider::Google => (None, Some(500)),
            Provider::Custom => (None, None),
        }
    }

    /// Problems with the values, as (key under `relay.oauth2`, message).
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.client_id.trim().is_empty() {
            out.push((
                "client_id",
                "is empty: the application (client) id".to_string(),
            ));
        }
        if let Err(p) = self.endpoints() {
            out.push(p);
        }
        match (self.provider, &self.client_secret_file) {
            (Provider::Microsoft, Some(_)) => out.push((
                "client_secret_file",
                "is set, but a Microsoft public client must not send a secret (AADSTS700025): \
                 remove it, and allow public client flows in the app registration"
                    .to_string(),
            )),
            (Provider::Google, None) => out.push((
                "client_secret_file",
                "is missing: Google's desktop clients send their client secret (from the \
                 downloaded client JSON) to the token endpoint"
                    .to_string(),
            )),
            _ => {}
        }
        out
    }
}
