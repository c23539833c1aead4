//! `relayctl key` and `relayctl fingerprint`, checked against what gpg and
//! openssl say about the same key and certificate.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{Gpg, Relay, Setup, key_path, openssl_fingerprint, openssl_spki_pin};

fn relayctl(args: &[&str]) -> (i32, String) {
    let out = Command::new(common::RELAYCTL).args(args).output().unwrap();
    common::code_and_text(&out)
}

fn gpg_fingerprint(file: &str) -> String {
    let out = Command::new("gpg")
        .args(["--batch", "--with-colons", "--show-keys"])
        .arg(key_path(file))
        .env("GNUPGHOME", tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("fpr:::::::::"))
        .map(|f| f.trim_end_matches(':').to_string())
        .expect("gpg printed a fingerprint")
}

#[test]
fn key_prints_the_fingerprint_gpg_reports() {
    for file in ["alerts.asc", "alerts.gpg", "journalist.asc"] {
        let (code, text) = relayctl(&["key", key_path(file).to_str().unwrap()]);
        assert_eq!(code, 0, "{text}");
        let want = format!("fingerprint = \"{}\"\n", gpg_fingerprint(file));
        assert!(text.starts_with(&want), "{file}: want {want:?} in\n{text}");
        assert!(text.contains("encryption subkey: "), "{text}");
        assert!(text.contains("can encrypt: yes"), "{text}");
    }
    let (_, text) = relayctl(&["key", key_path("alerts.asc").to_str().unwrap()]);
    assert!(
        text.contains("user ID: Alerts <alerts@example.org>"),
        "{text}"
    );
    assert!(text.contains("4096 bits"), "{text}");
}

#[test]
fn key_that_cannot_encrypt_exits_non_zero_with_the_reason() {
    for (file, why) in [
        (
            "expired.asc",
            "can encrypt: no: the key expired on 2020-01-02",
        ),
        ("revoked.asc", "can encrypt: no: the key is revoked"),
        (
            "signonly.asc",
            "can encrypt: no: the key has no valid encryption subkey",
        ),
    ] {
        let (code, text) = relayctl(&["key", key_path(file).to_str().unwrap()]);
        assert_eq!(code, 65, "{file}: {text}");
        assert!(text.contains(why), "{file}: {text}");
    }
    let setup = Setup::new();
    let junk = setup.path("junk.asc");
    std::fs::write(&junk, "not a key").unwrap();
    let (code, text) = relayctl(&["key", junk.to_str().unwrap()]);
    assert_eq!(code, 65);
    assert!(text.contains("is not an OpenPGP public key"), "{text}");
}

#[test]
fn fingerprint_equals_what_openssl_says_of_the_served_certificate() {
    let relay = Relay::start(&["--cert", "relay2.pem"]);
    let (code, text) = relayctl(&["fingerprint", &format!("127.0.0.1:{}", relay.port)]);
    assert_eq!(code, 0, "{text}");
    let sha1 = openssl_fingerprint("relay2.pem", "sha1");
    let sha256 = openssl_fingerprint("relay2.pem", "sha256");
    let spki = openssl_spki_pin("relay2.pem");
    assert!(text.contains(&format!("SHA-1:    {sha1}\n")), "{text}");
    assert!(text.contains(&format!("SHA-256:  {sha256}\n")), "{text}");
    assert!(
        text.contains(&format!(
            "fingerprints = [\"{sha1}\", \"{sha256}\", \"{spki}\"]"
        )),
        "{text}"
    );
    assert!(text.contains("subject:  CN=localhost"), "{text}");
    assert!(text.contains("(STARTTLS)"), "{text}");
    // The relay saw no AUTH and no envelope, and a proper end: QUIT
    // inside TLS (a TLS alert instead makes Postfix log a TLS problem).
    assert_eq!(relay.count("auth") + relay.count("mail"), 0);
    let quits: Vec<String> = relay
        .events()
        .into_iter()
        .filter(|e| e.contains("\"event\": \"quit\""))
        .collect();
    assert_eq!(quits.len(), 1, "{:?}", relay.events());
    assert!(quits[0].contains("\"tls\": true"), "{quits:?}");

    let implicit = Relay::start(&["--implicit"]);
    let (code, text) = relayctl(&[
        "fingerprint",
        "--implicit",
        &format!("127.0.0.1:{}", implicit.port),
    ]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&openssl_fingerprint("relay.pem", "sha256")),
        "{text}"
    );
    assert_eq!(implicit.count("quit"), 1, "{:?}", implicit.events());
}

#[test]
fn fingerprint_of_a_closed_port_says_how_to_fix_it() {
    let (code, text) = relayctl(&["fingerprint", "127.0.0.1:1"]);
    assert_eq!(code, 69, "{text}");
    assert!(text.contains("cannot connect to 127.0.0.1:1"), "{text}");
    let (code, text) = relayctl(&["fingerprint", "127.0.0.1:notaport"]);
    assert_eq!(code, 64, "{text}");
}

fn relayctl_in(setup: &Setup, args: &[&str], stdin: &[u8]) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(common::RELAYCTL)
        .args(args)
        .env("ALERT_RELAY_CONFIG", setup.config_path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    common::code_and_text(&out)
}

const ALERT: &[u8] = b"Subject: held alert\n\nMARKER-RELEASED\n";

#[test]
fn queue_json_lists_a_deferred_message_with_its_schedule() {
    let setup = Setup::new();
    let daemon = setup.start();
    assert!(setup.sendmail(&["root"], ALERT).status.success());
    daemon.wait_log("status=deferred");
    let (code, text) = relayctl_in(&setup, &["queue", "--json"], b"");
    assert_eq!(code, 0, "{text}");
    let rows: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{text}");
    let row = &rows[0];
    for key in [
        "id",
        "state",
        "recipient",
        "size",
        "created",
        "attempts",
        "next_attempt",
        "last_error",
    ] {
        assert!(row.get(key).is_some(), "{key} missing: {text}");
    }
    assert_eq!(row["state"], "deferred");
    assert_eq!(row["recipient"], "alerts@example.org");
    assert_eq!(row["attempts"], 1);
    assert!(
        row["next_attempt"].as_str().unwrap().ends_with('Z'),
        "{text}"
    );
    assert!(
        row["last_error"]
            .as_str()
            .unwrap()
            .contains("cannot connect"),
        "{text}"
    );
    let (_, table) = relayctl_in(&setup, &["queue"], b"");
    assert!(
        table.contains("deferred") && table.contains("cannot connect"),
        "{table}"
    );
}

/// `relayctl queue | head -1` and `mailq | head -1` on a queue longer than
/// a pipe holds: the listing stops quietly, as other Unix tools do, rather
/// than panicking on the broken pipe.
#[test]
fn a_listing_piped_into_head_ends_quietly() {
    let setup = Setup::new();
    assert!(setup.sendmail(&["root"], ALERT).status.success());
    // 2,000 rows (about 300 KB) from copies of the one entry.
    let incoming = setup.spool().join("incoming");
    let entry = std::fs::read_dir(&incoming)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "msg"))
        .unwrap();
    let queue = setup.spool().join("queue");
    std::fs::create_dir_all(&queue).unwrap();
    for n in 0..2000 {
        std::fs::copy(&entry, queue.join(format!("{n:08}.msg"))).unwrap();
    }
    let mailq = setup.path("mailq");
    std::os::unix::fs::symlink(common::SENDMAIL, &mailq).unwrap();
    for program in [common::RELAYCTL, mailq.to_str().unwrap()] {
        let script = format!(
            "'{program}' {} | head -1",
            if program == common::RELAYCTL {
                "queue"
            } else {
                ""
            }
        );
        let out = Command::new("sh")
            .args(["-c", &script])
            .env("ALERT_RELAY_CONFIG", setup.config_path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("ID"),
            "{program}: {stderr}"
        );
        assert!(stderr.is_empty(), "{program} said: {stderr}");
    }
}

#[test]
fn release_encrypts_a_held_message_once_the_key_is_fixed() {
    let setup = Setup::new();
    setup.write_config(&setup.config_with_key("alerts", "expired", ""));
    assert!(setup.sendmail(&["root"], ALERT).status.success());
    let held = setup.entries("incoming");
    let held = held
        .iter()
        .find(|e| e.kind == alert_relay::spool::Kind::Held)
        .expect("the original, held")
        .clone();
    assert!(
        held.payload.ends_with(ALERT),
        "the original, in the clear, only in held"
    );
    let id = held.id.to_string();
    // The daemon moves it to held/.
    let daemon = setup.start();
    daemon.wait_log(&format!("id={id}"));
    assert_eq!(setup.entries("held").len(), 1);

    // Still the expired key: nothing changes.
    let (code, text) = relayctl_in(&setup, &["release", &id], b"");
    assert_eq!(code, 65, "{text}");
    assert!(
        text.contains("still cannot encrypt: the key expired"),
        "{text}"
    );
    assert_eq!(setup.entries("held").len(), 1);

    // The admin fixes the key; release encrypts it under the same id.
    setup.write_config(&setup.config_text(""));
    let (code, text) = relayctl_in(&setup, &["release", &id], b"");
    assert_eq!(code, 0, "{text}");
    assert!(setup.entries("held").is_empty());
    let queued = setup.queued();
    let released = queued
        .iter()
        .find(|e| e.id.to_string() == id)
        .expect("queued under its id");
    assert!(!common::contains(&released.payload, b"MARKER-RELEASED"));
    assert!(common::contains(
        &common::plain(released),
        b"MARKER-RELEASED"
    ));
}

#[test]
fn delete_asks_unless_yes() {
    let setup = Setup::new();
    assert!(setup.sendmail(&["root"], ALERT).status.success());
    let id = setup.entries("incoming")[0].id.to_string();
    let (code, text) = relayctl_in(&setup, &["delete", &id], b"n\n");
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("not deleted"), "{text}");
    assert_eq!(setup.entries("incoming").len(), 1);
    let (code, text) = relayctl_in(&setup, &["delete", &id], b"y\n");
    assert_eq!(code, 0, "{text}");
    assert!(setup.entries("incoming").is_empty());
    let (code, _) = relayctl_in(&setup, &["delete", &id, "--yes"], b"");
    assert_eq!(code, 67, "gone already");
    let (code, _) = relayctl_in(&setup, &["delete", "nonsense", "--yes"], b"");
    assert_eq!(code, 64);
}

/// `relayctl test` against a real relay; returns (exit code, output).
fn test_against(setup: &Setup, args: &[&str]) -> (i32, String) {
    let mut all = vec!["test"];
    all.extend_from_slice(args);
    relayctl_in(setup, &all, b"")
}

#[test]
fn test_passes_end_to_end_and_the_alert_decrypts() {
    let relay = Relay::start(&[]);
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let (code, text) = test_against(&setup, &[]);
    assert_eq!(code, 0, "{text}");
    for step in [
        "✓ config",
        "✓ key for alerts@example.org",
        "✓ key for journalist@example.org",
        "✓ password",
        "✓ DNS",
        "✓ TCP",
        "✓ TLS: TLSv1.3 over STARTTLS",
        "✓ AUTH",
        "✓ MAIL/RCPT",
        "✓ DATA",
    ] {
        assert!(text.contains(step), "{step} missing:\n{text}");
    }
    assert!(!text.contains('✗'), "{text}");
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal: {text}"
    );
    assert!(text.contains("queued as TEST1"), "{text}");
    let got = relay.wait_messages(1);
    assert_eq!(got.len(), 1);
    let inner = common::Gpg::with_keys(&["alerts"]).decrypt(&got[0]);
    assert!(common::contains(&inner, b"alerts reach you encrypted"));
}

#[test]
fn test_no_send_stops_after_rcpt() {
    let relay = Relay::start(&[]);
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let (code, text) = test_against(&setup, &["--no-send", "--to", "ossec"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("✓ MAIL/RCPT: ossec@example.net to alerts@example.org accepted"),
        "{text}"
    );
    assert!(
        !text.contains("✓ DATA") && !text.contains("✗ DATA"),
        "{text}"
    );
    assert!(relay.messages().is_empty());
}

#[test]
fn test_with_a_wrong_pin_fails_at_tls_and_its_advice_fixes_it() {
    let relay = Relay::start(&["--cert", "relay2.pem"]);
    let setup = Setup::new();
    let old = openssl_fingerprint("relay.pem", "sha256");
    setup.use_relay(relay.port, &format!("fingerprints = [\"{old}\"]\n"));
    let (code, text) = test_against(&setup, &[]);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("✗ TLS: certificate not verified"), "{text}");
    assert!(
        !text.contains("AUTH"),
        "stops at the first failing network step: {text}"
    );
    assert_eq!(relay.count("auth"), 0);
    // Paste what it printed into the config: the next test passes.
    let line = text
        .split("set fingerprints = ")
        .nth(1)
        .and_then(|rest| rest.split(" (").next())
        .expect("a fingerprints line to paste");
    setup.use_relay(relay.port, &format!("fingerprints = {line}\n"));
    let (code, text) = test_against(&setup, &["--no-send"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("certificate matches relay.fingerprints"),
        "{text}"
    );
}

#[test]
fn test_with_a_wrong_password_fails_at_auth() {
    let relay = Relay::start(&["--password", "not this one"]);
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let (code, text) = test_against(&setup, &[]);
    assert_ne!(code, 0);
    assert!(text.contains("✓ TLS"), "{text}");
    assert!(text.contains("✗ AUTH: authentication failed: check relay.username, relay.domain and relay.password_file"), "{text}");
    assert!(!text.contains(common::RELAY_PASSWORD));
}

#[test]
fn test_with_a_password_file_others_can_read_fails_and_sends_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let relay = Relay::start(&[]);
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    std::fs::set_permissions(
        setup.path("sasl_password"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (code, text) = test_against(&setup, &[]);
    assert_eq!(code, 69, "{text}");
    assert!(
        text.contains("✗ password:") && text.contains("mode 0644"),
        "{text}"
    );
    assert!(
        text.contains("✗ AUTH: cannot read the SASL password:")
            && text.contains("so it is not used"),
        "{text}"
    );
    assert!(!text.contains("✓ DATA"), "{text}");
    assert_eq!(relay.count("auth"), 0, "the password never left the host");
    assert!(relay.messages().is_empty());
}

/// `relayctl test --json`: one object on stdout, parsed as JSON.
fn test_json(setup: &Setup, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["test", "--json"];
    all.extend_from_slice(args);
    let out = Command::new(common::RELAYCTL)
        .args(&all)
        .env("ALERT_RELAY_CONFIG", setup.config_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}"));
    (out.status.code().unwrap_or(-1), value)
}

fn json_steps(report: &serde_json::Value) -> Vec<(String, bool, String)> {
    report["steps"]
        .as_array()
        .expect("steps is an array")
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["ok"].as_bool().unwrap(),
                s["detail"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn test_json_reports_every_step() {
    let relay = Relay::start(&[]);
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let (code, report) = test_json(&setup, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["sent"], true, "{report}");
    let steps = json_steps(&report);
    let names: Vec<&str> = steps.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "config",
            "key for alerts@example.org",
            "key for journalist@example.org",
            "password",
            "DNS",
            "TCP",
            "TLS",
            "AUTH",
            "MAIL/RCPT",
            "DATA"
        ],
        "{report}"
    );
    assert!(steps.iter().all(|s| s.1), "{report}");
    assert!(steps[9].2.contains("queued as TEST1"), "{report}");
    assert_eq!(relay.wait_messages(1).len(), 1);

    // --no-send: everything checked, nothing sent, and the report says so.
    let (code, report) = test_json(&setup, &["--no-send"]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(
        (report["ok"].clone(), report["sent"].clone()),
        (true.into(), false.into())
    );
    assert_eq!(json_steps(&report).last().unwrap().0, "MAIL/RCPT");
}

#[test]
fn test_json_names_the_failing_step_and_its_fix() {
    let relay = Relay::start(&["--password", "not this one"]);
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let (code, report) = test_json(&setup, &[]);
    assert_ne!(code, 0, "{report}");
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["sent"], false, "{report}");
    let steps = json_steps(&report);
    let (last, passed) = steps.split_last().unwrap();
    assert_eq!(last.0, "AUTH", "{report}");
    assert!(!last.1, "{report}");
    assert!(
        last.2
            .contains("check relay.username, relay.domain and relay.password_file"),
        "{report}"
    );
    assert!(passed.iter().all(|s| s.1), "{report}");
    assert!(!report.to_string().contains(common::RELAY_PASSWORD));
}

#[test]
fn test_with_the_relay_down_fails_at_connect() {
    let setup = Setup::new();
    setup.use_relay(1, "");
    let (code, text) = test_against(&setup, &[]);
    assert_ne!(code, 0);
    assert!(text.contains("✓ DNS"), "{text}");
    assert!(
        text.contains("✗ TCP: cannot connect to 127.0.0.1:1"),
        "{text}"
    );
    assert!(text.contains("firewall"), "{text}");
}

#[test]
fn test_with_a_mismatched_key_fails_at_the_key_step() {
    let relay = Relay::start(&[]);
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let text = std::fs::read_to_string(setup.config_path())
        .unwrap()
        .replacen("tests/keys/alerts.asc", "tests/keys/journalist.asc", 1);
    setup.write_config(&text);
    let (code, out) = test_against(&setup, &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("✓ config"), "{out}");
    assert!(
        out.contains("✗ keys:") && out.contains("recipients[0].fingerprint"),
        "{out}"
    );
    assert!(
        out.contains(&common::fingerprint("journalist")),
        "names the key the file holds: {out}"
    );
}

#[test]
fn test_with_a_bad_config_fails_at_the_config_step_and_goes_no_further() {
    let setup = Setup::new();
    setup.write_config("[listen]\nbogus = 1\n");
    let (code, text) = test_against(&setup, &[]);
    assert_ne!(code, 0);
    assert!(
        text.contains("✗ config: ") && text.contains("listen.bogus: unknown field"),
        "{text}"
    );
    assert!(!text.contains("TCP"), "{text}");
}

/// The value `relayctl fingerprint` or `relayctl key` printed for `key`.
fn printed(text: &str, prefix: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {text}"))
        .to_string()
}

#[test]
fn the_readme_five_steps_take_the_minimal_config_to_a_delivered_alert() {
    // The README's "Use it with your own relay", against aiosmtpd: the
    // minimal config, its two values filled in from what relayctl prints.
    let relay = Relay::start(&[]);
    let setup = Setup::new();
    let (code, fpr_text) = relayctl(&["fingerprint", &format!("127.0.0.1:{}", relay.port)]);
    assert_eq!(code, 0, "{fpr_text}");
    let pins = printed(&fpr_text, "fingerprints = ");
    let (code, key_text) = relayctl(&["key", common::key_path("alerts.asc").to_str().unwrap()]);
    assert_eq!(code, 0, "{key_text}");
    let fingerprint = printed(&key_text, "fingerprint = ");
    let pw = setup.path("sasl_password");
    std::fs::write(&pw, format!("{}\n", common::RELAY_PASSWORD)).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let minimal =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/minimal.toml"))
            .unwrap();
    let config = minimal
        .replace("host = \"smtp.example.net\"", "host = \"127.0.0.1\"")
        .replace("port = 587", &format!("port = {}", relay.port))
        .replace(
            "fingerprints = [\"sha256-spki:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\"]",
            &format!("fingerprints = {pins}"),
        )
        .replace("username = \"alerts\"", "username = \"ossec\"")
        .replace("/etc/alert-relay/sasl_password", pw.to_str().unwrap())
        .replace(
            "/etc/alert-relay/alerts.asc",
            common::key_path("alerts.asc").to_str().unwrap(),
        )
        .replace("\"0000000000000000000000000000000000000000\"", &fingerprint)
        .replace(
            "[relay]",
            &format!("[queue]\ndir = \"{}\"\n\n[relay]", setup.spool().display()),
        );
    assert_ne!(config, minimal);
    setup.write_config(&config);
    let check = setup.relayctl(&["check"]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let (code, said) = test_against(&setup, &["--to", "root"]);
    assert_eq!(code, 0, "{said}");
    let got = relay.wait_messages(1);
    assert_eq!(got.len(), 1);
    assert!(common::contains(
        &Gpg::with_keys(&["alerts"]).decrypt(&got[0]),
        b"If you can read this, alerts reach you encrypted."
    ));
}

#[test]
fn the_minimal_config_as_shipped_names_what_to_fill_in() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/minimal.toml");
    let out = Command::new(common::RELAYCTL)
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{said}");
    assert!(
        said.contains("recipients[0].key: cannot read the key file /etc/alert-relay/alerts.asc"),
        "{said}"
    );
}

/// `relayctl ARGS` with `$CREDENTIALS_DIRECTORY` set, as under the unit.
fn relayctl_with_credentials(
    setup: &Setup,
    creds: &std::path::Path,
    args: &[&str],
) -> (i32, String) {
    let out = Command::new(common::RELAYCTL)
        .args(args)
        .env("ALERT_RELAY_CONFIG", setup.config_path())
        .env("CREDENTIALS_DIRECTORY", creds)
        .output()
        .unwrap();
    common::code_and_text(&out)
}

#[test]
fn a_username_without_a_password_where_the_daemon_reads_it_fails_check_test_and_start() {
    let relay = Relay::start(&[]);
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    // No relay.password_file: the password is the systemd credential.
    let config = std::fs::read_to_string(setup.config_path()).unwrap();
    let without: String = config
        .lines()
        .filter(|l| !l.starts_with("password_file"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, config);
    setup.write_config(&without);
    let creds = setup.path("credentials");
    std::fs::create_dir(&creds).unwrap();

    let (code, text) = relayctl_with_credentials(&setup, &creds, &["check"]);
    assert_eq!(code, 78, "{text}");
    assert!(
        text.contains("relay.username")
            && text.contains(&format!("{}/sasl_password", creds.display()))
            && text.contains("set relay.password_file"),
        "{text}"
    );
    let (code, text) = relayctl_with_credentials(&setup, &creds, &["test", "--no-send"]);
    assert_ne!(code, 0, "{text}");
    assert!(text.contains("✗ password:"), "{text}");
    assert!(!text.contains("✓ password"), "{text}");
    assert_eq!(relay.count("auth"), 0, "{text}");
    let daemon = Command::new(common::DAEMON)
        .arg("--config")
        .arg(setup.config_path())
        .env("CREDENTIALS_DIRECTORY", &creds)
        .output()
        .unwrap();
    assert_eq!(
        daemon.status.code(),
        Some(78),
        "the daemon refuses to start"
    );
    assert!(String::from_utf8_lossy(&daemon.stderr).contains("sasl_password"));

    // The credential where systemd puts it: every step passes, the alert arrives.
    let pw = creds.join("sasl_password");
    std::fs::write(&pw, format!("{}\n", common::RELAY_PASSWORD)).unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, text) = relayctl_with_credentials(&setup, &creds, &["check"]);
    assert_eq!(code, 0, "{text}");
    let (code, text) = relayctl_with_credentials(&setup, &creds, &["test"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains(&format!(
            "✓ password: {} (the systemd credential sasl_password)",
            pw.display()
        )),
        "{text}"
    );
    assert!(text.contains("✓ AUTH"), "{text}");
    assert!(!text.contains(common::RELAY_PASSWORD), "{text}");
    assert_eq!(relay.wait_messages(1).len(), 1);
}
