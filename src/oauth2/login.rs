//! `relayctl oauth2 login`: the first sign-in, on a server without a
//! browser.
//!
//! - Device authorization grant (RFC 8628), where the provider has it
//!   (Microsoft): print the address and the code, poll the token
//!   endpoint at the interval it asks for (5 s more at each `slow_down`)
//!   until the admin has signed in elsewhere, or the code expires.
//! - Authorization code grant with PKCE (RFC 7636) otherwise (Google,
//!   whose device flow does not allow the mail scope): print the
//!   address to open in any browser; the browser ends at the redirect
//!   address (nothing needs to listen there) and the admin pastes that
//!   address, or the code alone, back.
//!
//! Either way the refresh token goes to the store, never to the screen.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{Client, Grant, TokenError, http};

/// What the device authorization endpoint answers (RFC 8628 3.2).
#[derive(Deserialize)]
struct DeviceAuthorization {
    device_code: Zeroizing<String>,
    user_code: String,
    #[serde(alias = "verification_url")]
    verification_uri: String,
    #[serde(default, deserialize_with = "super::lenient_u64")]
    expires_in: Option<u64>,
    #[serde(default, deserialize_with = "super::lenient_u64")]
    interval: Option<u64>,
}

/// Signs in by the device flow when the provider has one, else by the
/// code flow; `out` is the terminal, `input` what the admin types. The
/// account that signed in, when the endpoint says.
pub async fn login(
    client: &Client,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
) -> Result<Option<String>, TokenError> {
    client.store.check_writable().map_err(TokenError::Store)?;
    match &client.endpoints.device {
        Some(device) => device_flow(client, device, out).await,
        None => code_flow(client, out, input).await,
    }
}

async fn device_flow(
    client: &Client,
    device: &str,
    out: &mut dyn Write,
) -> Result<Option<String>, TokenError> {
    let answer = client
        .request(device, &[("scope", &client.endpoints.scope)])
        .await?;
    if answer.status != 200 {
        return Err(answer.refusal());
    }
    let auth: DeviceAuthorization =
        serde_json::from_slice(&answer.body).map_err(|_| TokenError::Unreachable {
            endpoint: answer.endpoint.clone(),
            why: "a device authorization answer without its codes".into(),
        })?;
    let lifetime = Duration::from_secs(auth.expires_in.unwrap_or(900).min(3600));
    let mut interval = Duration::from_secs(auth.interval.unwrap_or(5).clamp(1, 60));
    let _ = writeln!(
        out,
        "To sign in, open {} in a browser (on any device) and enter the code\n\n    {}\n\n\
         as the mailbox alert-relay sends from. Waiting up to {} minutes...",
        tidy_url(&auth.verification_uri),
        auth.user_code
            .chars()
            .filter(|c| !c.is_control())
            .collect::<String>(),
        lifetime.as_secs().div_ceil(60)
    );
    let _ = out.flush();
    let deadline = Instant::now() + lifetime;
    loop {
        tokio::time::sleep(interval).await;
        if Instant::now() > deadline {
            return Err(TokenError::SignIn(
                "the code expired before anyone signed in with it: run relayctl oauth2 login \
                 again"
                    .into(),
            ));
        }
        let answer = client
            .request(
                &client.endpoints.token,
                &[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                    ("device_code", &auth.device_code),
                ],
            )
            .await;
        let answer = match answer {
            // A lost poll is no reason to give up the sign-in.
            Err(e) if e.is_temporary() => continue,
            other => other?,
        };
        if answer.status == 200 {
            let grant = answer.grant()?;
            return client.keep(&grant, SystemTime::now());
        }
        match answer.refusal() {
            TokenError::Refused { error, .. } if error == "authorization_pending" => {}
            TokenError::Refused { error, .. } if error == "slow_down" => {
                interval += Duration::from_secs(5);
            }
            TokenError::Refused { error, .. }
                if matches!(
                    error.as_str(),
                    "access_denied" | "authorization_declined" | "expired_token"
                ) =>
            {
                return Err(TokenError::SignIn(format!(
                    "{error}: the sign-in was declined or its code expired; run relayctl oauth2 \
                     login again"
                )));
            }
            e if e.is_temporary() => {}
            e => return Err(e),
        }
    }
}

/// The authorization request: the address to open, and the PKCE
/// verifier and state to check the answer with.
pub struct CodeRequest {
    pub url: String,
    verifier: Zeroizing<String>,
    state: String,
}

impl CodeRequest {
    pub fn new(client: &Client) -> Result<CodeRequest, TokenError> {
        let authorization = client.endpoints.authorization.as_deref().ok_or_else(|| {
            TokenError::Setup(
                "relay.oauth2 has neither a device_authorization_endpoint nor an \
                 authorization_endpoint"
                    .into(),
            )
        })?;
        let verifier = Zeroizing::new(random_url_safe(32)?);
        let state = random_url_safe(16)?;
        let challenge = {
            use sha2::Digest as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(sha2::Sha256::digest(verifier.as_bytes()))
        };
        let mut url = authorization.to_string();
        url.push(if url.contains('?') { '&' } else { '?' });
        let mut query = String::new();
        for (i, (k, v)) in [
            ("client_id", client.client_id.as_str()),
            ("redirect_uri", &client.endpoints.redirect_uri),
            ("response_type", "code"),
            ("scope", &client.endpoints.scope),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
            ("state", &state),
            // For a refresh token (Google).
            ("access_type", "offline"),
            ("prompt", "consent"),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                query.push('&');
            }
            query.push_str(k);
            query.push('=');
            http::encode_into(&mut query, v);
        }
        url.push_str(&query);
        Ok(CodeRequest {
            url,
            verifier,
            state,
        })
    }

    /// The code in what the admin pasted: the address the browser ended
    /// at (its `state` must be this request's), or the code alone.
    pub fn code_from(&self, pasted: &str) -> Result<Zeroizing<String>, TokenError> {
        let pasted = pasted.trim();
        let refused = |what: &str, why: String| TokenError::SignIn(format!("{what}: {why}"));
        let Some((_, query)) = pasted.split_once('?') else {
            if pasted.is_empty() || pasted.contains(char::is_whitespace) {
                return Err(refused(
                    "no code",
                    "paste the whole address the browser ended at, or its code".into(),
                ));
            }
            return Ok(Zeroizing::new(pasted.to_string()));
        };
        let query = query.split('#').next().unwrap_or("");
        let mut code = None;
        let mut state = None;
        let mut error = None;
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = Zeroizing::new(percent_decode(v));
            match k {
                "code" => code = Some(v),
                "state" => state = Some(v),
                "error" => error = Some(v.to_string()),
                _ => {}
            }
        }
        if let Some(e) = error {
            return Err(refused(
                &e,
                "the sign-in was not completed in the browser".into(),
            ));
        }
        if state.as_deref().map(|s| s.as_str()) != Some(self.state.as_str()) {
            return Err(refused(
                "state mismatch",
                "that address is not the answer to this sign-in: run relayctl oauth2 login \
                 again and paste the address its sign-in ends at"
                    .into(),
            ));
        }
        code.filter(|c| !c.is_empty())
            .ok_or_else(|| refused("no code", "the address holds no code".into()))
    }
}

async fn code_flow(
    client: &Client,
    out: &mut dyn Write,
    input: &mut dyn BufRead,
) -> Result<Option<String>, TokenError> {
    let request = CodeRequest::new(client)?;
    let _ = writeln!(
        out,
        "To sign in, open this address in a browser (on any device), as the mailbox \
         alert-relay sends from:\n\n{}\n\nThe browser then goes to {}, which may show an error: \
         nothing needs to answer there. Paste the whole address it went to (or its code) here:",
        request.url, client.endpoints.redirect_uri
    );
    let _ = out.flush();
    let mut line = Zeroizing::new(String::new());
    std::io::Read::take(input, 16 << 10)
        .read_line(&mut line)
        .map_err(|e| TokenError::Setup(format!("cannot read the pasted address: {e}")))?;
    let code = request.code_from(&line)?;
    let answer = client
        .request(
            &client.endpoints.token,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &client.endpoints.redirect_uri),
                ("code_verifier", &request.verifier),
            ],
        )
        .await?;
    let grant: Grant = answer.grant()?;
    client.keep(&grant, SystemTime::now())
}

/// `n` random bytes as unpadded base64url: 43 characters for 32 bytes,
/// the PKCE verifier RFC 7636 4.1 recommends.
fn random_url_safe(n: usize) -> Result<String, TokenError> {
    use ring::rand::SecureRandom;
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| TokenError::Setup("the system's random generator failed".into()))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&*bytes))
}

/// `%XX` and `+` in a query value.
fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                match (
                    bytes.get(i + 1).and_then(|b| hex(*b)),
                    bytes.get(i + 2).and_then(|b| hex(*b)),
                ) {
                    (Some(h), Some(l)) => {
                        out.push(h << 4 | l);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An address from the endpoint, safe to print.
fn tidy_url(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .take(500)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding_of_a_pasted_code() {
        assert_eq!(percent_decode("4%2F0AX4XfWh"), "4/0AX4XfWh");
        assert_eq!(percent_decode("a+b%20c%"), "a b c%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }

    #[test]
    fn pkce_verifier_and_challenge_follow_rfc_7636() {
        let v = random_url_safe(32).unwrap();
        assert_eq!(v.len(), 43);
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        // RFC 7636 appendix B.
        use sha2::Digest as _;
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            sha2::Sha256::digest(b"dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
        );
        assert_eq!(challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
    }

    #[test]
    fn the_pasted_address_must_answer_this_request() {
        let request = CodeRequest {
            url: String::new(),
            verifier: Zeroizing::new("v".into()),
            state: "S1".into(),
        };
        let code = request
            .code_from("http://127.0.0.1:8085/?state=S1&code=4%2F0A-b&scope=x\n")
            .unwrap();
        assert_eq!(&*code, "4/0A-b");
        assert_eq!(&*request.code_from("  4/0A-b  ").unwrap(), "4/0A-b");
        for (pasted, want) in [
            (
                "http://127.0.0.1:8085/?state=OTHER&code=c",
                "state mismatch",
            ),
            ("http://127.0.0.1:8085/?code=c", "state mismatch"),
            (
                "http://127.0.0.1:8085/?state=S1&error=access_denied",
                "access_denied",
            ),
            ("http://127.0.0.1:8085/?state=S1", "no code"),
            ("", "no code"),
            ("two words", "no code"),
        ] {
            match request.code_from(pasted) {
                Err(TokenError::SignIn(why)) => assert!(why.starts_with(want), "{pasted}: {why}"),
                _ => panic!("{pasted} was taken"),
            }
        }
    }
}
