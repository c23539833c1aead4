//! The fallback relay, against two real relays (aiosmtpd): when the
//! primary has failed with a temporary class for `fallback_after`, alerts
//! go through the fallback, the admin's warning first; the primary takes
//! over again as soon as it works; a 5xx from the primary is final.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{Gpg, Relay, Setup};

/// A setup whose primary relay is 127.0.0.1:`primary` (with `extra`
/// [relay] lines) and whose fallback is `fallback`, taking over after
/// 2 s; retries every second.
fn with_fallback(primary: u16, extra: &str, fallback: &Relay) -> Setup {
    with_fallback_checked(primary, extra, fallback, None)
}

/// The same, the fallback checked by `pins` instead of the test CA.
fn with_fallback_checked(primary: u16, extra: &str, fallback: &Relay, pins: Option<&str>) -> Setup {
    let setup = Setup::new();
    setup.use_relay(primary, extra);
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/ca.pem");
    let check = match pins {
        Some(p) => format!("fingerprints = [\"{p}\"]"),
        None => format!("ca_file = \"{}\"", ca.display()),
    };
    let config = std::fs::read_to_string(setup.config_path())
        .unwrap()
        .replace("retry = [\"1h\"]", "retry = [\"1s\"]");
    setup.write_config(&format!(
        "{config}\n[fallback]\nhost = \"127.0.0.1\"\nport = {}\n{check}\n\
         username = \"ossec\"\ndomain = \"example.net\"\npassword_file = \"{}\"\n\
         timeout = \"5s\"\nfallback_after = \"2s\"\n",
        fallback.port,
        setup.path("sasl_password").display()
    ));
    setup
}

fn send(setup: &Setup, marker: &str) {
    let out = setup.sendmail(
        &["root"],
        format!("Subject: alert\n\n{marker}\n").as_bytes(),
    );
    assert!(out.status.success(), "{out:?}");
}

/// What `gpg` decrypts of `relay`'s messages.
fn plaintexts(relay: &Relay, gpg: &Gpg) -> Vec<String> {
    relay
        .messages()
        .iter()
        .map(|m| String::from_utf8_lossy(&gpg.decrypt(m)).into_owned())
        .collect()
}

fn health_json(setup: &Setup) -> serde_json::Value {
    let out = Command::new(common::RELAYCTL)
        .args(["health", "--json"])
        .env("ALERT_RELAY_CONFIG", setup.config_path())
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap()
}

fn wait(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "never {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The primary fails as `primary` does (`None`: its port is closed);
/// after fallback_after, the warning and the alert arrive through the
/// fallback, the warning naming `cause`.
fn fallback_takes_over(primary: Option<&[&str]>, pins: &str, cause: &str) {
    let fallback = Relay::start(&[]);
    let (primary_relay, port) = match primary {
        Some(args) => {
            let r = Relay::start(args);
            let port = r.port;
            (Some(r), port)
        }
        None => (None, common::free_port()),
    };
    let setup = with_fallback(port, pins, &fallback);
    let daemon = setup.start();
    send(&setup, "MARKER-ONE");
    // The primary fails, is retried each second, and after 2 s of failing
    // the fallback takes the alert: the warning first.
    let got = fallback.wait_messages(2);
    assert_eq!(got.len(), 2);
    let gpg = Gpg::with_keys(&["alerts"]);
    let plain = plaintexts(&fallback, &gpg);
    assert!(
        plain[0].contains("alerts now go through the fallback relay"),
        "{}",
        plain[0]
    );
    assert!(plain[0].contains(cause), "{cause} not in {}", plain[0]);
    assert!(plain[0].contains("Fix: "), "{}", plain[0]);
    assert!(plain[1].contains("MARKER-ONE"), "{}", plain[1]);
    if let Some(r) = &primary_relay {
        assert!(r.messages().is_empty());
    }
    let log = daemon.log();
    assert!(
        log.contains(&format!("status=sent relay=127.0.0.1:{}", fallback.port)),
        "{log}"
    );
    assert!(
        log.contains(&format!("status=deferred relay=127.0.0.1:{port}")),
        "{log}"
    );
    // Health: the primary is to fix, but nothing waits: a WARNING.
    wait("health saying so", Duration::from_secs(12), || {
        let json = health_json(&setup);
        json["status"] == "WARNING"
            && json["problems"][0]["what"]
                .as_str()
                .is_some_and(|w| w.contains("alerts go through the fallback relay"))
    });
}

#[test]
fn the_fallback_takes_over_from_a_primary_that_cannot_be_reached() {
    fallback_takes_over(None, "", "cannot connect to 127.0.0.1");
}

#[test]
fn the_fallback_takes_over_from_a_primary_presenting_another_certificate() {
    let old = common::openssl_fingerprint("relay.pem", "sha256");
    fallback_takes_over(
        Some(&["--cert", "relay2.pem"]),
        &format!("fingerprints = [\"{old}\"]\n"),
        "certificate not verified",
    );
}

#[test]
fn the_fallback_takes_over_from_a_primary_refusing_the_login() {
    fallback_takes_over(
        Some(&["--password", "changed by the provider"]),
        "",
        "authentication failed",
    );
}

#[test]
fn the_primary_takes_over_again_as_soon_as_it_works() {
    let fallback = Relay::start(&[]);
    let port = common::free_port();
    let setup = with_fallback(port, "", &fallback);
    let _daemon = setup.start();
    send(&setup, "MARKER-DOWN");
    fallback.wait_messages(2);

    // The primary comes back: within its retry step, alerts go to it.
    let primary = Relay::start_on(port, &[]);
    let mut n = 0;
    wait("an alert at the primary", Duration::from_secs(15), || {
        n += 1;
        send(&setup, &format!("MARKER-BACK-{n}"));
        std::thread::sleep(Duration::from_millis(400));
        !primary.messages().is_empty()
    });
    let gpg = Gpg::with_keys(&["alerts"]);
    let at_primary = plaintexts(&primary, &gpg);
    assert!(at_primary[0].contains("MARKER-BACK-"), "{}", at_primary[0]);
    // Nothing lost: every alert arrived at one of the two.
    let all: Vec<String> = plaintexts(&fallback, &gpg)
        .into_iter()
        .chain(plaintexts(&primary, &gpg))
        .collect();
    setup.wait_queue_empty();
    for i in 1..=n {
        let marker = format!("MARKER-BACK-{i}\n");
        assert!(
            all.iter().any(|p| p.contains(marker.trim_end())),
            "{marker} lost"
        );
    }
    // And the record says the primary works again.
    wait("the failure over", Duration::from_secs(12), || {
        let json = health_json(&setup);
        json["failure"].is_null() && json["status"] == "OK"
    });
    // The next alert goes to the primary.
    let before = primary.messages().len();
    send(&setup, "MARKER-AFTER");
    primary.wait_messages(before + 1);
}

#[test]
fn a_final_refusal_from_the_primary_is_never_retried_through_the_fallback() {
    let fallback = Relay::start(&[]);
    let primary = Relay::start(&["--rcpt-reply", "550 5.7.1 not allowed"]);
    let setup = with_fallback(primary.port, "", &fallback);
    let _daemon = setup.start();
    send(&setup, "MARKER-REFUSED");
    setup.wait_entries("failed", 1);
    // Past fallback_after and a few retry steps.
    std::thread::sleep(Duration::from_secs(4));
    assert!(fallback.messages().is_empty(), "the fallback got mail");
}

#[test]
fn relayctl_test_walks_the_fallback_too() {
    let fallback = Relay::start(&[]);
    let primary = Relay::start(&[]);
    let setup = with_fallback(primary.port, "", &fallback);
    let out = setup.relayctl(&["test", "--no-send"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    for step in [
        "✓ TLS:",
        "✓ AUTH:",
        "✓ fallback password:",
        "✓ fallback TCP:",
        "✓ fallback TLS:",
        "✓ fallback AUTH:",
        "✓ fallback MAIL/RCPT:",
    ] {
        assert!(text.contains(step), "{step} missing:\n{text}");
    }
    drop(fallback);
    let out = setup.relayctl(&["test", "--no-send"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(69), "{text}");
    assert!(text.contains("✓ MAIL/RCPT"), "{text}");
    assert!(text.contains("✗ fallback TCP:"), "{text}");
}

#[test]
fn a_refusal_from_the_fallback_leaves_the_alert_queued_for_the_primary() {
    let fallback = Relay::start(&["--rcpt-reply", "554 5.7.1 Relay access denied"]);
    let port = common::free_port();
    let setup = with_fallback(port, "", &fallback);
    let daemon = setup.start();
    send(&setup, "MARKER-KEPT");
    // Past fallback_after: the fallback is tried, and refuses.
    daemon.wait_log(&format!(
        "status=deferred relay=127.0.0.1:{}",
        fallback.port
    ));
    assert!(setup.entries("failed").is_empty(), "{}", daemon.log());
    assert_eq!(setup.queued().len(), 1);
    // The primary comes back and takes it.
    let primary = Relay::start_on(port, &[]);
    let got = primary.wait_messages(1);
    let gpg = Gpg::with_keys(&["alerts"]);
    assert!(common::contains(&gpg.decrypt(&got[0]), b"MARKER-KEPT"));
}

#[test]
fn an_alert_the_primary_may_have_is_not_sent_again_through_the_fallback() {
    // The primary takes every message and hangs up before its reply.
    let primary = Relay::start(&["--fault", "drop-after-dot", "--fault-count", "-1"]);
    let fallback = Relay::start(&[]);
    let setup = with_fallback(primary.port, "", &fallback);
    let daemon = setup.start();
    send(&setup, "MARKER-MAYBE");
    // Past fallback_after, with retries each second.
    std::thread::sleep(Duration::from_secs(4));
    assert!(primary.messages().len() >= 2, "{}", daemon.log());
    assert!(
        fallback.messages().is_empty(),
        "sent twice through the fallback: {}",
        daemon.log()
    );
}

#[test]
fn a_fallback_certificate_pinned_by_digest_that_expires_soon_is_a_warning_too() {
    // The fallback presents a certificate valid 10 more days, pinned by
    // its digest; the primary is down, so the fallback gets used.
    let dir = tempfile::tempdir().unwrap();
    let cert = common::short_lived_cert(dir.path(), 10);
    let cert_name = cert.to_str().unwrap();
    let fallback = Relay::start(&["--cert", cert_name]);
    let digest = common::openssl_fingerprint(cert_name, "sha256");
    let setup = with_fallback_checked(common::free_port(), "", &fallback, Some(&digest));
    let _daemon = setup.start();
    send(&setup, "MARKER-PINNED");
    fallback.wait_messages(2);
    let spki = common::openssl_spki_pin(cert_name);
    wait(
        "the fallback's certificate warning",
        Duration::from_secs(12),
        || {
            let json = health_json(&setup);
            json["fallback_certificate"]["check"] == "certificate-pin"
                && json["problems"].as_array().unwrap().iter().any(|p| {
                    p["condition"] == "fallback-certificate"
                        && p["fix"].as_str().unwrap().contains(&spki)
                        && p["fix"].as_str().unwrap().contains("fallback.fingerprints")
                })
        },
    );
}

#[test]
fn when_the_primarys_quota_is_used_up_the_fallback_takes_the_alerts() {
    // Gmail refuses at MAIL FROM; Microsoft after the message, which is
    // an answer (the relay does not have it), not a lost reply.
    for at in ["mail", "data"] {
        quota_then_fallback(at);
    }
}

fn quota_then_fallback(at: &str) {
    let primary = Relay::start(&["--quota-after", "0", "--quota-at", at]);
    let fallback = Relay::start(&[]);
    let setup = with_fallback(primary.port, "", &fallback);
    let daemon = setup.start();
    send(&setup, "MARKER-OVER-QUOTA");
    // Deferred on the retry schedule (not for an hour), then past
    // fallback_after through the fallback.
    let got = fallback.wait_messages(2);
    let gpg = Gpg::with_keys(&["alerts"]);
    let texts = plaintexts(&fallback, &gpg);
    assert!(
        texts.iter().any(|t| t.contains("MARKER-OVER-QUOTA")),
        "{} messages: {}",
        got.len(),
        daemon.log()
    );
    assert!(primary.count("quota") >= 1);
    assert!(primary.messages().is_empty());
    assert!(setup.entries("failed").is_empty());
}

#[test]
fn when_the_primarys_daily_limit_is_reached_the_fallback_takes_the_rest() {
    let primary = Relay::start(&[]);
    let fallback = Relay::start(&[]);
    let setup = with_fallback(primary.port, "max_per_day = 1\n", &fallback);
    let daemon = setup.start();
    for n in 0..3 {
        send(&setup, &format!("MARKER-DAY-{n}"));
    }
    // One through the primary; past fallback_after the other two (and
    // the admins' notice) through the fallback.
    let got = fallback.wait_messages(3);
    assert!(got.len() >= 3, "{}", daemon.log());
    assert_eq!(primary.messages().len(), 1);
    let gpg = Gpg::with_keys(&["alerts"]);
    let mut texts = plaintexts(&primary, &gpg);
    texts.extend(plaintexts(&fallback, &gpg));
    for n in 0..3 {
        let marker = format!("MARKER-DAY-{n}");
        assert!(texts.iter().any(|t| t.contains(&marker)), "{marker}");
    }
    assert!(
        texts
            .iter()
            .any(|t| t.contains("relay.max_per_day = 1 reached")),
        "the notice names the limit"
    );
    assert!(setup.entries("failed").is_empty());
}
