//! OAuth 2.0 sign-in against real servers on loopback: tokend.py (an
//! OAuth 2.0 server over TLS: device flow, code flow with PKCE, refresh
//! grant, rotation, invalid_grant, down) and aiosmtpd with XOAUTH2 and
//! OAUTHBEARER accepting only the current access token. What the relay
//! received is decrypted with GnuPG.

mod common;

use std::io::{BufRead, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Gpg, Relay, Setup, TokenServer};

/// Longer than the daemon keeps an idle connection to the relay (5 s,
/// closed at its next wake-up).
const KEPT_CONNECTION_GONE: Duration = Duration::from_secs(7);

fn relay_for(tokens: &TokenServer, mechanisms: &str) -> Relay {
    let file = tokens.access_token_file();
    Relay::start(&[
        "--mechanisms",
        mechanisms,
        "--oauth-token-file",
        file.to_str().unwrap(),
    ])
}

/// The standard setup on `relay`, signing in with OAuth 2.0 at `tokens`
/// (`extra`: more `[relay.oauth2]` keys).
fn setup(relay: &Relay, tokens: &TokenServer, extra: &str) -> Setup {
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    tokens.configure(&setup, extra);
    setup
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn login(setup: &Setup) -> String {
    let out = setup.relayctl(&["oauth2", "login"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    said
}

fn alert(marker: &str) -> Vec<u8> {
    format!("Subject: OSSEC Notification\r\n\r\nrootcheck: {marker}\r\n").into_bytes()
}

fn send(daemon: &common::Daemon, marker: &str) {
    let reply = daemon.connect().send_message("root", &alert(marker));
    assert!(reply.starts_with("250"), "{reply}");
}

/// Whether every marker is among what the relay received, decrypted.
fn received(relay: &Relay, markers: &[&str]) -> bool {
    let gpg = Gpg::with_keys(&["alerts"]);
    let texts: Vec<String> = relay
        .messages()
        .iter()
        .map(|m| String::from_utf8_lossy(&gpg.decrypt(m)).into_owned())
        .collect();
    markers.iter().all(|m| texts.iter().any(|t| t.contains(m)))
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `relayctl health` is CRITICAL with an auth failure (the
/// record is written soon after it).
fn wait_auth_critical(setup: &Setup, what: &str) {
    wait_for(what, || {
        let health = setup.relayctl(&["health"]);
        health.status.code() == Some(2) && text(&health).contains("class auth")
    });
}

/// No token the server ever issued is in `haystack`.
fn assert_no_token(tokens: &TokenServer, what: &str, haystack: &str) {
    let issued = tokens.issued();
    assert!(!issued.is_empty());
    for t in &issued {
        assert!(!haystack.contains(t.as_str()), "a token is in {what}");
    }
}

/// Everything in the spool but the stored sign-in, as text.
fn spool_text(setup: &Setup) -> String {
    let mut all = String::new();
    let mut dirs = vec![setup.spool()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.file_name().is_some_and(|n| n != "oauth2.json") {
                all.push_str(&String::from_utf8_lossy(
                    &std::fs::read(&path).unwrap_or_default(),
                ));
            }
        }
    }
    all
}

#[test]
fn device_login_then_alerts_go_out_with_xoauth2_and_oauthbearer() {
    // Microsoft: XOAUTH2 only, and access tokens of some kilobytes, which
    // must follow a 334 (RFC 4954: no AUTH line over 512 octets). Google:
    // OAUTHBEARER offered too, short tokens sent with the AUTH command.
    // The first endpoint names the account that signed in (an ID
    // token), the second does not.
    for (mechanisms, long, inline) in [
        ("XOAUTH2", true, false),
        ("XOAUTH2 OAUTHBEARER", false, true),
    ] {
        let mut options = vec!["--pending", "2", "--slow-down"];
        if long {
            options.extend(["--long-tokens", "--account", "OSSEC@example.net"]);
        }
        let tokens = TokenServer::start(&options);
        let relay = relay_for(&tokens, mechanisms);
        let setup = setup(&relay, &tokens, "");

        // Before the sign-in, check and status say there is none.
        let out = setup.relayctl(&["check"]);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("run relayctl oauth2 login"),
            "{}",
            text(&out)
        );
        let out = setup.relayctl(&["oauth2", "status"]);
        assert!(!out.status.success());
        assert!(
            text(&out).contains("no sign-in is stored"),
            "{}",
            text(&out)
        );

        let said = login(&setup);
        assert!(
            said.contains("enter the code") && said.contains("WDJB-MJHT"),
            "{said}"
        );
        match long {
            // The mailbox, in another case: no warning.
            true => assert!(said.contains("Signed in as OSSEC@example.net."), "{said}"),
            false => assert!(said.contains("Signed in. "), "{said}"),
        }
        assert!(!said.contains("warning"), "{said}");
        // Pending twice, slowed down once, then signed in.
        assert_eq!(tokens.count("poll", None), 3);
        let stored = setup.spool().join("oauth2.json");
        let mode = std::fs::metadata(&stored).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let out = setup.relayctl(&["oauth2", "status"]);
        assert!(out.status.success(), "{}", text(&out));
        assert!(
            text(&out).contains("refresh token:  stored in"),
            "{}",
            text(&out)
        );
        let account = match long {
            true => "account:        OSSEC@example.net\n",
            false => "account:        not said by the provider",
        };
        assert!(text(&out).contains(account), "{}", text(&out));
        let out = setup.relayctl(&["check"]);
        assert!(out.status.success(), "{}", text(&out));

        let daemon = setup.start();
        send(&daemon, "MARKER-OAUTH-1");
        send(&daemon, "MARKER-OAUTH-2");
        wait_for("two alerts at the relay", || relay.messages().len() == 2);
        assert!(received(&relay, &["MARKER-OAUTH-1", "MARKER-OAUTH-2"]));
        // One refresh: the access token is kept in memory between alerts.
        assert_eq!(tokens.count("refresh", Some(true)), 1);
        let want = match mechanisms {
            "XOAUTH2" => "\"mechanism\": \"XOAUTH2\", \"ok\": true",
            _ => "\"mechanism\": \"OAUTHBEARER\", \"ok\": true",
        };
        assert!(
            relay.events().iter().any(|e| e.contains(want)),
            "{:?}",
            relay.events()
        );
        let how = format!("\"inline\": {inline}");
        assert!(
            relay
                .events()
                .iter()
                .any(|e| e.contains(want) && e.contains(&how)),
            "{how}"
        );

        let out = setup.relayctl(&["test", "--no-send"]);
        let said = text(&out);
        assert!(out.status.success(), "{said}");
        assert!(said.contains("✓ OAuth2"), "{said}");
        assert!(said.contains("✓ AUTH"), "{said}");

        // No token in the log, the spool, or what relayctl printed.
        assert_no_token(&tokens, "the daemon's log", &daemon.log());
        assert_no_token(&tokens, "the spool", &spool_text(&setup));
        assert_no_token(&tokens, "relayctl test", &said);
        let status = text(&setup.relayctl(&["oauth2", "status"]));
        assert_no_token(&tokens, "relayctl oauth2 status", &status);
    }
}

#[test]
fn expired_access_tokens_are_refreshed_and_a_rotated_refresh_token_survives_a_restart() {
    // Tokens that expire 303 s after issue: within the daemon's 300 s
    // margin 3 s later.
    let tokens = TokenServer::start(&["--rotate", "--expires-in", "303"]);
    let relay = relay_for(&tokens, "XOAUTH2");
    let setup = setup(&relay, &tokens, "");
    login(&setup);
    let mut daemon = setup.start();
    send(&daemon, "MARKER-ROT-1");
    wait_for("the first alert", || relay.messages().len() == 1);
    // Past the token's life, and the kept connection's (an SMTP session
    // stays signed in whatever becomes of its token).
    std::thread::sleep(KEPT_CONNECTION_GONE);
    send(&daemon, "MARKER-ROT-2");
    wait_for("the second alert", || relay.messages().len() == 2);
    assert_eq!(
        tokens.count("refresh", Some(true)),
        2,
        "refreshed when it expired"
    );

    // The stored refresh token is the one the server issued last.
    let stored = std::fs::read_to_string(setup.spool().join("oauth2.json")).unwrap();
    let current = tokens.file("refresh_token");
    assert!(
        stored.contains(current.trim()),
        "the rotated token was not stored"
    );

    // After a restart the daemon signs in with it (the first is void).
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit();
    let daemon = setup.start();
    send(&daemon, "MARKER-ROT-3");
    wait_for("the third alert", || relay.messages().len() == 3);
    assert!(received(
        &relay,
        &["MARKER-ROT-1", "MARKER-ROT-2", "MARKER-ROT-3"]
    ));
    assert_eq!(tokens.count("refresh", Some(false)), 0);
    assert_no_token(&tokens, "the daemon's log", &daemon.log());
}

#[test]
fn a_token_the_relay_refuses_is_refreshed_once_and_the_error_challenge_is_answered() {
    let tokens = TokenServer::start(&[]);
    let relay = relay_for(&tokens, "XOAUTH2");
    let setup = setup(&relay, &tokens, "");
    login(&setup);
    let daemon = setup.start();
    send(&daemon, "MARKER-REVOKED-1");
    wait_for("the first alert", || relay.messages().len() == 1);
    // The relay stops taking the token the daemon holds (revoked).
    std::fs::write(tokens.access_token_file(), "revoked").unwrap();
    std::thread::sleep(KEPT_CONNECTION_GONE);
    send(&daemon, "MARKER-REVOKED-2");
    let deadline = Instant::now() + Duration::from_secs(20);
    while relay.messages().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the second alert did not arrive: {}\n{:?}\n{}",
            daemon.log(),
            relay.events(),
            tokens.file("events.jsonl")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(received(&relay, &["MARKER-REVOKED-2"]));
    // Refused once, with the error challenge answered by an empty line,
    // then a fresh token taken.
    let events = relay.events();
    assert!(
        events
            .iter()
            .any(|e| e.contains("\"event\": \"auth-challenge-answer\"")
                && e.contains("\"answer\": \"\"")),
        "{events:?}"
    );
    assert_eq!(tokens.count("refresh", Some(true)), 2);
}

#[test]
fn an_endpoint_down_defers_and_invalid_grant_says_sign_in_again_asked_once_until_then() {
    let tokens = TokenServer::start(&[]);
    let relay = relay_for(&tokens, "XOAUTH2");
    let setup = setup(&relay, &tokens, "");
    login(&setup);
    tokens.set("down", true);
    let daemon = setup.start();
    send(&daemon, "MARKER-DOWN");
    daemon.wait_log("cannot get an access token from");
    assert!(
        daemon.log().contains("class=unreachable"),
        "{}",
        daemon.log()
    );
    assert_eq!(setup.queued().len(), 1);

    // The sign-in refused: the alerts wait with the reason naming the
    // fix, and the endpoint is asked once, not at each attempt.
    tokens.set("down", false);
    tokens.set("invalid_grant", true);
    assert!(setup.relayctl(&["flush"]).status.success());
    let log = daemon.wait_log("run relayctl oauth2 login");
    assert!(log.contains("class=auth"), "{log}");
    for n in 0..3 {
        send(&daemon, &format!("MARKER-GRANT-{n}"));
    }
    assert!(setup.relayctl(&["flush"]).status.success());
    wait_for("every alert tried and deferred", || {
        daemon.log().matches("run relayctl oauth2 login").count() >= 5
    });
    assert!(setup.entries("failed").is_empty());
    assert_eq!(setup.queued().len(), 4);
    assert_eq!(tokens.count("refresh", Some(false)), 1);

    // A new sign-in is tried at once, and releases what waited.
    tokens.set("invalid_grant", false);
    let said = login(&setup);
    assert!(said.contains("4 alerts waiting"), "{said}");
    wait_for("the alerts at the relay", || relay.messages().len() == 4);
    assert!(received(
        &relay,
        &[
            "MARKER-DOWN",
            "MARKER-GRANT-0",
            "MARKER-GRANT-1",
            "MARKER-GRANT-2"
        ]
    ));
    let out = setup.relayctl(&["test", "--no-send"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_no_token(&tokens, "the daemon's log", &daemon.log());
}

#[test]
fn code_flow_with_pkce_by_pasting_the_address_the_browser_ended_at() {
    let tokens = TokenServer::start(&["--client-secret", "not-so-secret"]);
    let relay = relay_for(&tokens, "OAUTHBEARER");
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "not-so-secret\n").unwrap();
    std::fs::set_permissions(secret.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let setup = setup(
        &relay,
        &tokens,
        &format!(
            "authorization_endpoint = \"{}\"\nclient_secret_file = \"{}\"\n",
            tokens.url("/authorize"),
            secret.path().display()
        ),
    );
    // The address the browser ended at; then another sign-in's (its
    // state forged).
    for ok in [true, false] {
        let mut child = Command::new(common::RELAYCTL)
            .args(["oauth2", "login"])
            .env("ALERT_RELAY_CONFIG", setup.config_path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut url = String::new();
        while !url.starts_with("https://") {
            url.clear();
            assert!(out.read_line(&mut url).unwrap() > 0, "no address printed");
        }
        // The browser: the authorization endpoint answers with a
        // redirect to the loopback address, with the code.
        let script = r#"
import ssl, sys, urllib.request
ctx = ssl.create_default_context(cafile=sys.argv[2])
class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a): return None
opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=ctx), NoRedirect)
try:
    opener.open(sys.argv[1])
except urllib.error.HTTPError as e:
    print(e.headers["Location"])
"#;
        let ca = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/ca.pem");
        let location = common::python(script, &[url.trim(), ca.to_str().unwrap()], b"");
        assert!(location.contains("code="), "{location}");
        let pasted = if ok {
            location.trim().to_string()
        } else {
            location.trim().replace("state=", "state=forged")
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{pasted}\n").as_bytes())
            .unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        let output = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&output.stderr).into_owned();
        if ok {
            assert!(output.status.success(), "{rest}{err}");
            assert!(rest.contains("Signed in"), "{rest}");
            assert_eq!(tokens.count("exchange", Some(true)), 1);
        } else {
            assert!(!output.status.success());
            assert!(err.contains("not the answer to this sign-in"), "{err}");
        }
    }
    let daemon = setup.start();
    send(&daemon, "MARKER-PKCE");
    wait_for("the alert at the relay", || relay.messages().len() == 1);
    assert!(received(&relay, &["MARKER-PKCE"]));
    assert_no_token(&tokens, "the daemon's log", &daemon.log());
}

#[test]
fn without_a_sign_in_the_daemon_starts_and_alerts_wait_for_one() {
    // A token endpoint that says its tokens never expire: a lifetime that
    // would overflow the clock is taken as a day.
    let tokens = TokenServer::start(&["--expires-in", "18446744073709551615"]);
    let relay = relay_for(&tokens, "XOAUTH2");
    let setup = setup(&relay, &tokens, "");
    let daemon = setup.start();
    send(&daemon, "MARKER-LATE-SIGN-IN");
    let log = daemon.wait_log("no sign-in is stored");
    assert!(log.contains("run relayctl oauth2 login"), "{log}");
    assert_eq!(setup.queued().len(), 1);
    assert!(relay.messages().is_empty());

    wait_auth_critical(&setup, "health CRITICAL for the missing sign-in");

    // The sign-in makes the alert that waited for it due at once: no
    // flush, no retry hours away.
    let said = login(&setup);
    assert!(
        said.contains("1 alert waiting since the sign-in failed is due now"),
        "{said}"
    );
    wait_for("the alert at the relay", || relay.messages().len() == 1);
    assert!(received(&relay, &["MARKER-LATE-SIGN-IN"]));
    wait_for("health without the sign-in failure", || {
        !text(&setup.relayctl(&["health"])).contains("class auth")
    });
    // And later alerts too: the runner did not die on the lifetime.
    send(&daemon, "MARKER-LATER");
    wait_for("the second alert", || relay.messages().len() == 2);
}

#[test]
fn a_sign_in_first_or_again_is_tried_at_once_and_ends_the_auth_failure_with_nothing_queued() {
    let tokens = TokenServer::start(&[]);
    let relay = relay_for(&tokens, "XOAUTH2");
    let setup = setup(&relay, &tokens, "");
    // Installed and started before anyone signed in; then, restarted,
    // the renewal at start finds the sign-in refused. Either way
    // CRITICAL with no alert having come, and nothing queued.
    let mut daemon = setup.start();
    for (round, before) in [
        ("a first sign-in", None),
        ("a new sign-in", Some("invalid_grant")),
    ] {
        if let Some(flag) = before {
            tokens.set(flag, true);
            daemon.signal(libc::SIGTERM);
            daemon.wait_exit();
            daemon = setup.start();
        }
        wait_auth_critical(&setup, &format!("health CRITICAL before {round}"));
        if let Some(flag) = before {
            tokens.set(flag, false);
        }
        let said = login(&setup);
        assert!(!said.contains("due now"), "{round}: {said}");
        // No alert and no flush: the daemon renewed the sign-in when the
        // login woke it.
        wait_for(&format!("health OK after {round}"), || {
            setup.relayctl(&["health"]).status.code() == Some(0)
        });
        assert!(
            daemon.log().contains("OAuth 2.0 sign-in renewed"),
            "{round}: {}",
            daemon.log()
        );
    }
    assert_eq!(tokens.count("refresh", Some(true)), 2);
}

#[test]
fn a_sign_in_as_another_account_than_the_mailbox_is_named_with_a_warning() {
    let tokens = TokenServer::start(&["--account", "someone.else@example.net"]);
    let relay = relay_for(&tokens, "XOAUTH2");
    let setup = setup(&relay, &tokens, "");
    let said = login(&setup);
    assert!(
        said.contains("Signed in as someone.else@example.net."),
        "{said}"
    );
    assert!(
        said.contains(
            "warning: the provider says someone.else@example.net signed in, but alert-relay \
             sends as ossec@example.net"
        ),
        "{said}"
    );
    // Nothing failed before: nothing was made due.
    assert!(!said.contains("due now"), "{said}");
    let out = setup.relayctl(&["oauth2", "status"]);
    assert!(
        text(&out).contains("account:        someone.else@example.net\n"),
        "{}",
        text(&out)
    );
}

#[test]
fn killed_while_refreshing_the_daemon_loses_neither_the_sign_in_nor_an_alert() {
    // Every delivery refreshes (tokens live 300 s, the daemon's margin),
    // and every refresh rotates the refresh token and writes it back; as
    // at Microsoft, an earlier refresh token stays valid.
    let tokens = TokenServer::start(&["--rotate", "--keep-old", "--expires-in", "300"]);
    let relay = relay_for(&tokens, "XOAUTH2");
    let setup = setup(&relay, &tokens, "");
    login(&setup);
    let mut markers = Vec::new();
    for round in 0..12 {
        let mut daemon = setup.start();
        let marker = format!("MARKER-KILL-{round}");
        send(&daemon, &marker);
        markers.push(marker);
        // Somewhere in the refresh, the write-back or the delivery.
        std::thread::sleep(Duration::from_millis(7 * round));
        daemon.signal(libc::SIGKILL);
        daemon.wait_exit();
        // Never a torn or half-written sign-in.
        let out = setup.relayctl(&["oauth2", "status"]);
        assert!(out.status.success(), "round {round}: {}", text(&out));
    }
    let daemon = setup.start();
    let all: Vec<&str> = markers.iter().map(String::as_str).collect();
    wait_for("every alert at the relay", || {
        relay.messages().len() >= all.len() && received(&relay, &all)
    });
    assert_eq!(
        tokens.count("refresh", Some(false)),
        0,
        "a refresh token was lost"
    );
    // What a killed writer left (a refresh token) is gone after the next write.
    let left: Vec<String> = std::fs::read_dir(setup.spool())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("oauth2.json.") && n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    drop(daemon);
}
