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
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
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

/// A self-signed certificate for localhost valid `days` more days, made
/// with openssl in `dir`: (certificate path, its key's path).
fn short_lived_cert(dir: &Path, days: u32) -> std::path::PathBuf {
    common::prereq::openssl();
    let cert = dir.join("short.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            &days.to_string(),
            "-keyout",
        ])
        .arg(dir.join("short.key"))
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    cert
}

#[test]
fn a_relay_certificate_pinned_by_digest_that_expires_soon_warns_with_its_spki_pin() {
    let setup = Setup::new();
    let cert = short_lived_cert(setup.path("").as_path(), 10);
    let cert_name = cert.to_str().unwrap();
    let relay = Relay::start(&["--cert", cert_name]);
    let digest = common::openssl_fingerprint(cert_name, "sha256");
    setup.use_relay(relay.port, &format!("fingerprints = [\"{digest}\"]\n"));
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
    let spki = common::openssl_spki_pin(cert_name);
    let fix = json["problems"][0]["fix"].as_str().unwrap();
    assert!(fix.contains(&spki), "{spki} not in {fix}");
    let samples = prometheus_samples(&setup);
    let left = sample(
        &samples,
        "alert_relay_relay_certificate_expiry_seconds{check=certificate-pin}",
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
    let out = gpg.run(
        &[
            "--quick-gen-key",
            "Soon <journalist@example.org>",
            "ed25519",
            "sign,cert",
            "20d",
        ],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let listing = gpg.run(&["--with-colons", "--list-keys"], b"");
    let fpr = String::from_utf8_lossy(&listing.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("fpr:::::::::"))
        .map(|f| f.trim_end_matches(':').to_string())
        .unwrap();
    let out = gpg.run(&["--quick-add-key", &fpr, "cv25519", "encr", "20d"], b"");
    assert!(out.status.success(), "{out:?}");
    let setup = Setup::new();
    let exported = gpg.run(&["--armor", "--export", &fpr], b"");
    let key = setup.path("soon.asc");
    std::fs::write(&key, &exported.stdout).unwrap();
    let config = setup
        .config_text("")
        .replacen(
            common::key_path("journalist.asc").to_str().unwrap(),
            key.to_str().unwrap(),
            1,
        )
        .replacen(&common::fingerprint("journalist"), &fpr, 1);
    setup.write_config(&config);

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
