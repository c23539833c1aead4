//! `relayctl health` against a real relay (aiosmtpd) in each state
//! delivery can be in: its exit code by the monitoring-plugin convention,
//! its JSON, and its Prometheus output read by a parser this project did
//! not write (prometheus_client's).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Gpg, Relay, Setup};

/// `relayctl health ARGS`: (exit code, stdout and stderr).
fn health(setup: &Setup, args: &[&str]) -> (i32, String) {
    let out = Command::new(common::RELAYCTL)
        .arg("health")
        .args(args)
        .env("ALERT_RELAY_CONFIG", setup.config_path())
        .output()
        .unwrap();
    common::code_and_text(&out)
}

fn health_json(setup: &Setup) -> (i32, serde_json::Value) {
    let (code, text) = health(setup, &["--json"]);
    let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (code, json)
}

/// Polls `relayctl health --json` until `ready` holds; panics after 15 s
/// (the daemon writes its health at a change, and every 10 s).
fn wait_health(
    setup: &Setup,
    what: &str,
    ready: impl Fn(i32, &serde_json::Value) -> bool,
) -> (i32, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (code, json) = health_json(setup);
        if ready(code, &json) {
            return (code, json);
        }
        assert!(Instant::now() < deadline, "never {what}: {code} {json:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn send_alert(setup: &Setup) {
    let out = setup.sendmail(&["root"], b"Subject: disk full\n\nMARKER\n");
    assert!(out.status.success(), "{out:?}");
}

fn conditions(json: &serde_json::Value) -> Vec<String> {
    json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["condition"].as_str().unwrap().to_string())
        .collect()
}

/// The samples of `relayctl health --prometheus`, as prometheus_client's
/// parser reads them: "name{k=v,...} value" per line, labels sorted.
fn prometheus_samples(setup: &Setup) -> Vec<String> {
    common::prereq::prometheus_client();
    let (_, text) = health(setup, &["--prometheus"]);
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(f"{s.name}{{{labels}}} {s.value}")
"#;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client refused it: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn sample(samples: &[String], name: &str) -> f64 {
    samples
        .iter()
        .find_map(|s| s.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {samples:#?}"))
        .parse()
        .unwrap()
}

#[test]
fn health_is_ok_while_alerts_flow_in_text_json_and_prometheus() {
    let relay = Relay::start(&[]);
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let _daemon = setup.start();
    send_alert(&setup);
    relay.wait_messages(1);
    let (code, json) = wait_health(&setup, "a success recorded", |_, j| {
        !j["last_success"].is_null()
    });
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(json["status"], "OK");
    assert_eq!(json["exit"], 0);
    assert_eq!(json["daemon"]["state"], "running");
    assert!(json["failure"].is_null(), "{json:#}");
    assert_eq!(json["relay_certificate"]["check"], "ca");
    assert_eq!(json["queue"]["queued"], 0);
    assert_eq!(json["keys"].as_array().unwrap().len(), 2);
    for key in [
        "checked",
        "daemon",
        "queue",
        "last_success",
        "failure",
        "relay_certificate",
        "totals",
        "keys",
        "free_bytes",
        "problems",
    ] {
        assert!(json.get(key).is_some(), "no {key} in {json:#}");
    }
    assert!(conditions(&json).is_empty());

    let (code, text) = health(&setup, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.starts_with("alert-relay OK - alerts are flowing\n"),
        "{text}"
    );
    assert!(text.contains("checked against a CA"), "{text}");

    // The totals reach the file within the daemon's save interval.
    let (_, json) = wait_health(&setup, "the totals saved", |_, j| {
        j["totals"]["sent"] == 1 && j["totals"]["accepted"] == 1
    });
    assert_eq!(json["totals"]["deferred"], 0);
    let samples = prometheus_samples(&setup);
    assert_eq!(sample(&samples, "alert_relay_health_status{}"), 0.0);
    assert_eq!(sample(&samples, "alert_relay_up{}"), 1.0);
    assert_eq!(
        sample(&samples, "alert_relay_deliveries_total{outcome=sent}"),
        1.0
    );
    assert_eq!(sample(&samples, "alert_relay_accepted_total{}"), 1.0);
    assert_eq!(
        sample(&samples, "alert_relay_queue_entries{state=queued}"),
        0.0
    );
    assert!(sample(&samples, "alert_relay_last_success_timestamp_seconds{}") > 1.7e9);
    assert!(sample(&samples, "alert_relay_spool_free_bytes{}") > 0.0);
    assert!(
        !samples
            .iter()
            .any(|s| s.starts_with("alert_relay_failing_since")),
        "{samples:#?}"
    );
}

#[test]
fn a_relay_that_cannot_be_reached_is_a_warning_then_critical_and_survives_a_restart() {
    // The relay's port is closed; the thresholds shortened for the test.
    let setup = Setup::new();
    setup.write_config(
        &setup.config_text("[health]\nwarn_after = \"1s\"\ncritical_after = \"4s\"\n"),
    );
    let mut daemon = setup.start();
    send_alert(&setup);
    let (code, json) = wait_health(&setup, "a failure recorded", |_, j| !j["failure"].is_null());
    assert_eq!(json["failure"]["class"], "unreachable", "{json:#}");
    assert!(
        json["failure"]["reason"]
            .as_str()
            .unwrap()
            .contains("check relay.host, relay.port")
    );
    assert!(code <= 1, "not yet critical: {json:#}");
    let since = json["failure"]["since"].as_u64().unwrap();

    let (_, json) = wait_health(&setup, "a warning", |code, _| code == 1);
    assert_eq!(json["status"], "WARNING");
    assert!(
        conditions(&json).contains(&"delivery".to_string()),
        "{json:#}"
    );
    let (_, json) = wait_health(&setup, "critical", |code, _| code == 2);
    assert_eq!(json["problems"][0]["grade"], "CRITICAL");
    let (_, text) = health(&setup, &[]);
    assert!(
        text.starts_with("alert-relay CRITICAL - delivery through 127.0.0.1:1 has failed since"),
        "{text}"
    );
    assert!(text.contains("fix: check relay.host, relay.port"), "{text}");
    let samples = prometheus_samples(&setup);
    assert_eq!(
        sample(
            &samples,
            "alert_relay_failing_since_timestamp_seconds{class=unreachable}"
        ),
        since as f64
    );

    // Stopped: CRITICAL, says so, and still reads the spool.
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit();
    let (code, json) = health_json(&setup);
    assert_eq!(code, 2, "{json:#}");
    assert_eq!(json["daemon"]["state"], "stopped");
    assert_eq!(conditions(&json)[0], "daemon", "{json:#}");
    assert_eq!(json["queue"]["queued"], 1);
    let (_, text) = health(&setup, &[]);
    assert!(
        text.starts_with("alert-relay CRITICAL - the daemon is not running: it stopped at"),
        "{text}"
    );
    assert!(text.contains("fix: systemctl start alert-relay"), "{text}");

    // Restarted: the failure began before the restart, and still did.
    let _daemon = setup.start();
    let (_, json) = wait_health(&setup, "the daemon running again", |_, j| {
        j["daemon"]["state"] == "running"
    });
    assert_eq!(json["failure"]["since"].as_u64(), Some(since), "{json:#}");
}

#[test]
fn a_pin_mismatch_and_a_refused_login_are_critical_at_once_with_their_fixes() {
    let relay = Relay::start(&["--cert", "relay2.pem"]);
    let setup = Setup::new();
    let old = common::openssl_fingerprint("relay.pem", "sha256");
    setup.use_relay(relay.port, &format!("fingerprints = [\"{old}\"]\n"));
    let _daemon = setup.start();
    send_alert(&setup);
    let (code, json) = wait_health(&setup, "a TLS failure", |_, j| {
        j["failure"]["class"] == "tls"
    });
    assert_eq!(
        code, 2,
        "critical although younger than warn_after: {json:#}"
    );
    assert!(
        json["problems"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("relayctl fingerprint"),
        "{json:#}"
    );
    assert_eq!(relay.count("auth"), 0);

    let relay = Relay::start(&["--password", "not this one"]);
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let _daemon = setup.start();
    send_alert(&setup);
    let (code, json) = wait_health(&setup, "an AUTH failure", |_, j| {
        j["failure"]["class"] == "auth"
    });
    assert_eq!(code, 2, "{json:#}");
    assert!(
        json["problems"][0]["fix"]
            .as_str()
            .unwrap()
            .contains("check relay.username, relay.domain and the password"),
        "{json:#}"
    );
}

/// A setup whose relay presents a certificate valid 10 more days, pinned
/// by its SHA-256 digest: the setup, the relay, and the certificate's
/// path.
fn pinned_to_a_short_lived_cert() -> (Setup, Relay, String) {
    let setup = Setup::new();
    let cert = common::short_lived_cert(setup.path("").as_path(), 10);
    let cert_name = cert.to_str().unwrap().to_string();
    let relay = Relay::start(&["--cert", &cert_name]);
    let digest = common::openssl_fingerprint(&cert_name, "sha256");
    setup.use_relay(relay.port, &format!("fingerprints = [\"{digest}\"]\n"));
    (setup, relay, cert_name)
}

#[test]
fn a_relay_certificate_pinned_by_digest_that_expires_soon_warns_with_its_spki_pin() {
    let (setup, relay, cert_name) = pinned_to_a_short_lived_cert();
    let daemon = setup.start();
    send_alert(&setup);
    relay.wait_messages(1);
    let (code, json) = wait_health(&setup, "the certificate recorded", |_, j| {
        !j["relay_certificate"].is_null()
    });
    assert_eq!(code, 1, "{json:#}");
    assert_eq!(json["relay_certificate"]["check"], "certificate-pin");
    assert_eq!(conditions(&json), vec!["relay-certificate"]);
    // The pin that survives a renewal keeping the key, as openssl computes it.
    let spki = common::openssl_spki_pin(&cert_name);
    let fix = json["problems"][0]["fix"].as_str().unwrap();
    assert!(fix.contains(&spki), "{spki} not in {fix}");
    let samples = prometheus_samples(&setup);
    let left = sample(
        &samples,
        "alert_relay_relay_certificate_expiry_seconds{check=certificate-pin,relay=primary}",
    );
    assert!(
        (9.0 * 86400.0..=10.0 * 86400.0).contains(&left),
        "{left} seconds"
    );

    // Pinned by its key instead: a renewal is no threat, no warning.
    setup.use_relay(relay.port, &format!("fingerprints = [\"{spki}\"]\n"));
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("reloaded");
    send_alert(&setup);
    relay.wait_messages(2);
    let (code, json) = wait_health(&setup, "the SPKI pin recorded", |_, j| {
        j["relay_certificate"]["check"] == "spki-pin"
    });
    assert_eq!(code, 0, "{json:#}");
}

#[test]
fn a_recipient_key_that_expires_within_the_warning_window_is_a_warning() {
    // A key GnuPG made, expiring in 20 days.
    let gpg = Gpg::with_keys(&[]);
    let setup = Setup::new();
    let (fpr, key) = expiring_key(&gpg, "journalist@example.org", 20, &setup.path(""));
    setup.write_config(&with_journalist_key(&setup, &fpr, &key));

    let _daemon = setup.start();
    let (code, json) = wait_health(&setup, "the daemon running", |_, j| {
        j["daemon"]["state"] == "running"
    });
    assert_eq!(code, 1, "{json:#}");
    assert_eq!(conditions(&json), vec![format!("key:{fpr}")]);
    assert!(
        json["problems"][0]["what"]
            .as_str()
            .unwrap()
            .contains("the key for journalist@example.org"),
        "{json:#}"
    );
    let samples = prometheus_samples(&setup);
    let left = sample(
        &samples,
        &format!(
            "alert_relay_key_expiry_seconds{{fingerprint={fpr},recipient=journalist@example.org}}"
        ),
    );
    assert!(
        (19.0 * 86400.0..=20.0 * 86400.0).contains(&left),
        "{left} seconds"
    );
}

#[test]
fn health_is_unknown_when_its_state_cannot_be_read() {
    let setup = Setup::new();
    setup.write_config("[relay]\nhost = \n");
    let (code, text) = health(&setup, &[]);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.starts_with("alert-relay UNKNOWN - the config cannot be used:"),
        "{text}"
    );
    let (code, _) = health(&setup, &["--prometheus"]);
    assert_eq!(code, 3);

    // A damaged record is not taken for a healthy one.
    let setup = Setup::new();
    std::fs::create_dir_all(setup.spool()).unwrap();
    std::fs::write(setup.spool().join("health.json"), b"{\"pid\": oops").unwrap();
    let (code, json) = health_json(&setup);
    assert_eq!(code, 3, "{json:#}");
    assert_eq!(json["status"], "UNKNOWN");
    assert!(
        json["problems"][0]["what"]
            .as_str()
            .unwrap()
            .contains("health.json is damaged"),
        "{json:#}"
    );

    // And a spool no daemon ever ran on is CRITICAL, not OK.
    let setup = Setup::new();
    let (code, text) = health(&setup, &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("the daemon has never run on the spool"),
        "{text}"
    );
}

/// What `gpg` can decrypt of what the relay received: the plaintexts.
fn readable(relay: &Relay, gpg: &Gpg) -> Vec<String> {
    relay
        .messages()
        .iter()
        .map(|m| gpg.try_decrypt(m))
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .collect()
}

fn warnings(plaintexts: &[String]) -> Vec<&String> {
    plaintexts
        .iter()
        .filter(|p| p.contains("to fix before alerts stop"))
        .collect()
}

#[test]
fn a_certificate_about_to_break_its_pin_is_told_by_mail_once_a_day_not_per_alert() {
    let (setup, relay, cert_name) = pinned_to_a_short_lived_cert();
    let mut daemon = setup.start();
    for _ in 0..3 {
        send_alert(&setup);
    }
    // Three alerts and one warning, to the admin (root's recipient).
    relay.wait_messages(4);
    let gpg = Gpg::with_keys(&["alerts"]);
    let plain = readable(&relay, &gpg);
    assert_eq!(plain.len(), 4);
    let told = warnings(&plain);
    assert_eq!(told.len(), 1, "{plain:#?}");
    let spki = common::openssl_spki_pin(&cert_name);
    assert!(told[0].contains(&spki), "{} not in {}", spki, told[0]);
    assert!(told[0].contains("fingerprints = ["), "{}", told[0]);
    assert!(told[0].contains("expires at"), "{}", told[0]);
    assert!(daemon.log().contains("queued a warning"));

    // A restart does not repeat it: the stamp is in the spool.
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit();
    let _daemon = setup.start();
    send_alert(&setup);
    relay.wait_messages(5);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(relay.messages().len(), 5);
    assert_eq!(warnings(&readable(&relay, &gpg)).len(), 1);
}

/// A key GnuPG made in `gpg`'s home, expiring in `days`: its fingerprint
/// and its public key file in `dir`.
fn expiring_key(gpg: &Gpg, address: &str, days: u32, dir: &Path) -> (String, std::path::PathBuf) {
    let expiry = format!("{days}d");
    let out = gpg.run(
        &[
            "--quick-gen-key",
            &format!("Soon <{address}>"),
            "ed25519",
            "sign,cert",
            &expiry,
        ],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let listing = gpg.run(&["--with-colons", "--list-keys", address], b"");
    let fpr = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("fpr:::::::::"))
        .map(|f| f.trim_end_matches(':').to_string())
        .unwrap();
    let out = gpg.run(&["--quick-add-key", &fpr, "cv25519", "encr", &expiry], b"");
    assert!(out.status.success(), "{out:?}");
    let exported = gpg.run(&["--armor", "--export", &fpr], b"");
    let key = dir.join("soon.asc");
    std::fs::write(&key, &exported.stdout).unwrap();
    (fpr, key)
}

/// The standard config with the journalist's key replaced by `key`.
fn with_journalist_key(setup: &Setup, fpr: &str, key: &Path) -> String {
    setup
        .config_text("")
        .replacen(
            common::key_path("journalist.asc").to_str().unwrap(),
            key.to_str().unwrap(),
            1,
        )
        .replacen(&common::fingerprint("journalist"), fpr, 1)
}

#[test]
fn a_key_about_to_expire_is_told_to_the_admin_and_to_its_owner_encrypted_to_that_key() {
    let relay = Relay::start(&[]);
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let owner = Gpg::with_keys(&[]);
    let (fpr, key) = expiring_key(&owner, "journalist@example.org", 20, &setup.path(""));
    setup.write_config(&with_journalist_key(&setup, &fpr, &key));
    let _daemon = setup.start();
    relay.wait_messages(2);
    let admin = readable(&relay, &Gpg::with_keys(&["alerts"]));
    let told = warnings(&admin);
    assert_eq!(told.len(), 1, "{admin:#?}");
    assert!(
        told[0].contains(&format!("WARNING key:{fpr}")),
        "{}",
        told[0]
    );
    assert!(
        told[0].contains("ask its owner to extend it"),
        "{}",
        told[0]
    );
    // The owner reads it with the key that is about to expire.
    let own = readable(&relay, &owner);
    let told = warnings(&own);
    assert_eq!(told.len(), 1, "{own:#?}");
    assert!(
        told[0].contains("the key for journalist@example.org"),
        "{}",
        told[0]
    );
    assert!(!told[0].contains("alerts@example.org"), "{}", told[0]);
}

/// A relay that refuses the journalist's address for good, and takes the
/// rest.
fn refusing_the_journalist() -> Relay {
    Relay::start(&[
        "--rcpt-reply",
        "550 5.1.1 no such mailbox",
        "--rcpt-only",
        "journalist@example.org",
    ])
}

#[test]
fn an_alert_the_relay_refuses_for_good_is_told_to_the_admin_with_the_reply() {
    let relay = refusing_the_journalist();
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let _daemon = setup.start();
    let out = setup.sendmail(&["journalist@example.org"], b"Subject: x\n\nSECRET-BODY\n");
    assert!(out.status.success(), "{out:?}");
    relay.wait_messages(1);
    let plain = readable(&relay, &Gpg::with_keys(&["alerts"]));
    let told = warnings(&plain);
    assert_eq!(told.len(), 1, "{plain:#?}");
    let failed = setup.entries("failed");
    assert_eq!(failed.len(), 1);
    assert!(told[0].contains(failed[0].id.as_str()), "{}", told[0]);
    assert!(told[0].contains("550 5.1.1 no such mailbox"), "{}", told[0]);
    // The warning itself went out: the relay works, the alert waits in
    // failed/ for a person.
    let (code, json) = wait_health(&setup, "the failure over", |_, j| j["failure"].is_null());
    assert_eq!(code, 1, "{json:#}");
    assert_eq!(conditions(&json), vec!["failed"], "{json:#}");
    assert!(told[0].contains("to journalist@example.org"), "{}", told[0]);
    assert!(!told[0].contains("SECRET-BODY"), "{}", told[0]);
}

#[test]
fn a_warning_the_relay_refuses_does_not_beget_another() {
    // Every RCPT refused: the alert fails, the warning about it fails too,
    // and that must not start a warning every few seconds.
    let relay = Relay::start(&["--rcpt-reply", "550 5.7.1 relaying denied"]);
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let daemon = setup.start();
    send_alert(&setup);
    setup.wait_entries("failed", 2);
    // Past two of the daemon's looks at its health.
    std::thread::sleep(Duration::from_secs(21));
    assert_eq!(setup.entries("failed").len(), 2, "{}", daemon.log());
    assert_eq!(daemon.log().matches("queued a warning").count(), 1);
    // A relay refusing everything is CRITICAL, and stays so.
    let (code, json) = health_json(&setup);
    assert_eq!(code, 2, "{json:#}");
    assert_eq!(json["failure"]["class"], "relay-5xx", "{json:#}");
}

#[test]
#[ignore = "needs root (mounts a tmpfs for the spool): ./test.sh runs it as root"]
fn a_spool_filling_up_is_a_warning_told_by_mail_then_critical() {
    let relay = Relay::start(&[]);
    let setup = Setup::with_listen("max_message_size = \"1MiB\"");
    setup.use_relay(relay.port, "");
    let config = std::fs::read_to_string(setup.config_path()).unwrap();
    setup.write_config(&format!("{config}\n[health]\nmin_free = \"4MiB\"\n"));
    std::fs::create_dir_all(setup.spool()).unwrap();
    let _mount = common::disk::Tmpfs::mount(&setup.spool(), "16m").unwrap();
    let _daemon = setup.start();
    let (code, _) = wait_health(&setup, "running", |_, j| j["daemon"]["state"] == "running");
    assert_eq!(code, 0);

    // Below health.min_free: a WARNING, and a mail saying so.
    common::disk::fill(&setup.spool().join("filler"), 3 << 20);
    let (_, json) = wait_health(&setup, "a disk warning", |code, _| code == 1);
    assert_eq!(conditions(&json), vec!["disk"], "{json:#}");
    relay.wait_messages(1);
    let plain = readable(&relay, &Gpg::with_keys(&["alerts"]));
    let told = warnings(&plain);
    assert_eq!(told.len(), 1, "{plain:#?}");
    assert!(told[0].contains("less than health.min_free"), "{}", told[0]);

    // Below the largest message: CRITICAL.
    common::disk::fill(&setup.spool().join("filler2"), 512 << 10);
    let (_, json) = wait_health(&setup, "critical", |code, _| code == 2);
    assert!(
        json["problems"][0]["what"]
            .as_str()
            .unwrap()
            .contains("the next alert may not fit"),
        "{json:#}"
    );
}

#[test]
fn heartbeats_come_every_period_and_have_one_size_whatever_the_counts() {
    // The relay refuses the journalist: the second heartbeat has a
    // problem to list that the first has not.
    let relay = refusing_the_journalist();
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let config = std::fs::read_to_string(setup.config_path()).unwrap();
    setup.write_config(&format!("{config}\n[heartbeat]\nevery = \"2s\"\n"));
    let daemon = setup.start();
    // The first at once, with nothing counted yet.
    relay.wait_messages(1);
    for _ in 0..25 {
        send_alert(&setup);
    }
    let out = setup.sendmail(&["journalist@example.org"], b"Subject: x\n\nrefused\n");
    assert!(out.status.success(), "{out:?}");
    setup.wait_entries("failed", 1);
    let beats = |relay: &Relay| -> Vec<Vec<u8>> {
        relay
            .messages()
            .into_iter()
            .filter(|m| common::contains(m, b"Subject: alert-relay heartbeat from mon.example.org"))
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(25);
    while beats(&relay).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "no second heartbeat: {}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let beats = beats(&relay);
    let gpg = Gpg::with_keys(&["alerts"]);
    let first = String::from_utf8(gpg.decrypt(&beats[0])).unwrap();
    let second = String::from_utf8(gpg.decrypt(&beats[1])).unwrap();
    let figure = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(figure(&first, "accepted"), 0, "{first}");
    // The 26 alerts, the first heartbeat itself and the warning about
    // the refused alert.
    assert_eq!(figure(&second, "accepted"), 28, "{second}");
    assert_eq!(figure(&second, "failed"), 1, "{second}");
    assert!(figure(&second, "delivered") >= 25, "{second}");
    assert!(
        first.contains("alert-relay on mon.example.org is alive at"),
        "{first}"
    );
    assert!(!first.contains("WARNING failed"), "{first}");
    assert!(
        second.contains("WARNING failed: 1 alert(s) in failed/"),
        "{second}"
    );
    // Very different counts, one size: on the wire, and inside.
    assert_eq!(
        common::armored_block(&beats[0]).len(),
        common::armored_block(&beats[1]).len()
    );
    assert_eq!(first.len(), second.len());
    assert!(daemon.log().contains("queued a heartbeat"));
}
