//! `relayctl oauth2 login` and `relayctl oauth2 status`: the first
//! sign-in for `relay.auth = "oauth2"`, and what is stored (never the
//! tokens themselves).

use std::path::Path;

use crate::config::{AuthMethod, Config};
use crate::oauth2::{Client, TokenError};
use crate::sysexits;

/// The OAuth 2.0 client of the config at `path`, or the exit code.
fn client(path: &Path) -> Result<(Config, Client), u8> {
    let config = Config::load(path).map_err(|e| {
        eprintln!("{e}");
        sysexits::CONFIG
    })?;
    let relay = &config.relay;
    let oauth2 = match (relay.auth, &relay.oauth2) {
        (AuthMethod::Oauth2, Some(o)) => o.clone(),
        _ => {
            eprintln!(
                "relayctl oauth2: {} has relay.auth = \"password\"; set auth = \"oauth2\" and \
                 [relay.oauth2] first (README: OAuth 2.0)",
                path.display()
            );
            return Err(sysexits::CONFIG);
        }
    };
    let client = Client::new(&oauth2, &config.queue.dir).map_err(|e| {
        eprintln!("relayctl oauth2: {e}");
        sysexits::CONFIG
    })?;
    Ok((config, client))
}

/// The exit code for a token error.
fn code(e: &TokenError) -> u8 {
    match e {
        TokenError::Unreachable { .. } => sysexits::TEMPFAIL,
        TokenError::Setup(_) => sysexits::CONFIG,
        TokenError::Store(_) => sysexits::CANTCREAT,
        _ => sysexits::NOPERM,
    }
}

/// `relayctl oauth2 login`: signs in, stores the refresh token, and
/// makes the alerts that waited for it due now.
pub fn login(path: &Path) -> u8 {
    let (config, client) = match client(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // Looked at before the sign-in: once it is stored, a running daemon
    // may renew it and end the failure before this looks again.
    let spool = crate::spool::Spool::at(&config.queue.dir);
    let auth_failed = crate::health::Record::load(&spool)
        .ok()
        .flatten()
        .and_then(|r| r.failure)
        .is_some_and(|f| f.class == crate::health::Class::Auth);
    let runtime = match crate::runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("relayctl oauth2 login: {e}");
            return sysexits::OSERR;
        }
    };
    let mut out = std::io::stdout();
    let mut input = std::io::stdin().lock();
    match runtime.block_on(crate::oauth2::login::login(&client, &mut out, &mut input)) {
        Ok(account) => {
            println!(
                "\nSigned in{}. The refresh token is in {} (the daemon's, mode 0600); a running \
                 daemon tries it at once.",
                account
                    .as_deref()
                    .map(|a| format!(" as {a}"))
                    .unwrap_or_default(),
                client.store.path().display()
            );
            let mailbox = config.relay.sasl_identity().unwrap_or_default();
            if let Some(a) = account.filter(|a| !a.eq_ignore_ascii_case(&mailbox)) {
                eprintln!(
                    "relayctl oauth2 login: warning: the provider says {a} signed in, but \
                     alert-relay sends as {mailbox} (relay.username): a relay refuses one \
                     account's token for another. Unless {a} is another name of that mailbox, \
                     run relayctl oauth2 login again and sign in as {mailbox} (a private \
                     browser window keeps the browser's own account out of it), or set \
                     relay.username"
                );
            }
            release_waiting(&spool, auth_failed);
            println!("Next: relayctl test");
            sysexits::OK
        }
        Err(e) => {
            eprintln!("relayctl oauth2 login: {e}");
            code(&e)
        }
    }
}

/// After a sign-in: the daemon is woken to renew it at once; when its
/// last attempt before the sign-in had failed to sign in
/// (`auth_failed`), the alerts waiting are due now too, rather than at
/// their next retry, hours away.
fn release_waiting(spool: &crate::spool::Spool, auth_failed: bool) {
    if !auth_failed {
        // The daemon renews the new sign-in at once.
        spool.wake();
        return;
    }
    match spool.flush(None) {
        Ok(0) => spool.wake(),
        Ok(n) => {
            spool.wake();
            println!(
                "{n} alert{} waiting since the sign-in failed {} due now: the daemon sends \
                 {} at once (relayctl queue shows {}).",
                if n == 1 { "" } else { "s" },
                if n == 1 { "is" } else { "are" },
                if n == 1 { "it" } else { "them" },
                if n == 1 { "it" } else { "them" },
            );
        }
        Err(e) => eprintln!(
            "relayctl oauth2 login: the waiting alerts wait for their next retry ({e}); \
             relayctl flush sends them now"
        ),
    }
}

/// `relayctl oauth2 status`: the endpoints and what is stored, without
/// a token or a network request.
pub fn status(path: &Path) -> u8 {
    let (config, client) = match client(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let e = &client.endpoints;
    println!(
        "mailbox:        {}",
        config.relay.sasl_identity().unwrap_or_default()
    );
    println!("client id:      {}", client.client_id);
    println!("token endpoint: {}", e.token);
    println!(
        "sign-in by:     {}",
        if e.device.is_some() {
            "device code (relayctl oauth2 login prints a code to enter)"
        } else {
            "browser and pasted address (authorization code with PKCE)"
        }
    );
    println!("scope:          {}", e.scope);
    match client.stored() {
        Ok(s) => {
            println!(
                "refresh token:  stored in {}, signed in {}{}",
                client.store.path().display(),
                crate::when::rfc3339(crate::health::time(s.signed_in)),
                s.rotated
                    .map(|t| format!(
                        ", last renewed {}",
                        crate::when::rfc3339(crate::health::time(t))
                    ))
                    .unwrap_or_default()
            );
            println!(
                "account:        {}",
                s.account.as_deref().unwrap_or(
                    "not said by the provider (with openid in relay.oauth2.scope, its answer \
                     names the account)"
                )
            );
            println!(
                "access token:   fetched by the daemon when it needs one, kept in its memory \
                 only; relayctl test fetches one to check the sign-in"
            );
            sysexits::OK
        }
        Err(err) => {
            println!("refresh token:  none usable: {err}");
            code(&err)
        }
    }
}
