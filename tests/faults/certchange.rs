//! The relay changes its certificate (a new key) in the middle of a load,
//! with the old one pinned by its digest: what SecureDrop's Monitor
//! Servers met when Gmail rotated. Nothing acked may be lost.
//!
//! Without a fallback, the admin must be told at once (`relayctl health`
//! CRITICAL, class tls, with the fix), and once the new pins from
//! `relayctl fingerprint` are in the config, everything queued must go
//! out. With one, the alerts must go on through it after
//! `fallback_after`, the admin's warning first, with no one touching the
//! config.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{RELAYCTL, Relay, openssl_fingerprint};
use crate::support::{Figures, Install, Outcome, RCPT, Suite, Tally, alert, submit, wait_until};

/// Alerts before the change, and after it.
const BEFORE: usize = 100;
const AFTER: usize = 100;

pub fn run(suite: &Suite) -> Outcome {
    let port = crate::common::free_port();
    let old = Relay::start_on(port, &["--pipelining"]);
    let pin = openssl_fingerprint("relay.pem", "sha256");
    let install = Install::new(port, &format!("fingerprints = [\"{pin}\"]\n"), "\"1h\"");
    let daemon = install.setup.start();
    let daemon_port = install.port;
    let send = |from: usize, n: usize| send(suite, daemon_port, "certchange", from, n);
    let (mut acked, before_ok, mut delivered) =
        before_the_change(suite, &install, "certchange", &old);

    // The rotation: the same port, a certificate with another key.
    drop(old);
    let new = Relay::start_on(port, &["--pipelining", "--cert", "relay2.pem"]);
    let changed = Instant::now();
    let mut told_after = None;
    let mut told = String::new();
    std::thread::scope(|s| {
        let sender = s.spawn(|| send(BEFORE, AFTER));
        while changed.elapsed() < Duration::from_secs(30) {
            let (code, json) = health(&install);
            if code == 2 && json["failure"]["class"] == "tls" {
                told_after = Some(changed.elapsed());
                told = json["problems"][0]["fix"].to_string();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        acked.extend(sender.join().unwrap());
    });
    let queued_after_change = install.entries("queue");

    // The admin's fix: the pins the relay presents now, then a reload.
    let line = presented_pins(port);
    let config = std::fs::read_to_string(install.setup.config_path()).unwrap();
    let fixed = config.replace(&format!("fingerprints = [\"{pin}\"]"), &line);
    install.setup.write_config(&fixed);
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("reloaded");
    install.flush();
    let drained = install.wait_drained(Duration::from_secs(60));
    delivered.extend(new.messages());
    let tally = Tally::of(suite, &["journalist"], &delivered);
    suite.leaks.scan_install(&install, Some(new.outdir.path()));
    let lost = tally.lost(&acked);

    let mut f = Figures::new();
    f.set("alerts", acked.len())
        .set("before_change", BEFORE)
        .set("queued_after_change", queued_after_change)
        .set(
            "admin_told_after",
            told_after.map_or("never".into(), |t| format!("{:.2}s", t.as_secs_f64())),
        )
        .set("delivered", acked.len() - lost)
        .set("lost", lost)
        .set("duplicates", tally.duplicates());
    f.check(before_ok, "the alerts before the change were not delivered")
        .check(
            told_after.is_some(),
            "relayctl health never said CRITICAL with class tls",
        )
        .check(
            told.contains("relayctl fingerprint"),
            "the health report does not name the fix",
        )
        .check(
            queued_after_change > 0,
            "nothing waited after the change: the rotation was not seen",
        )
        .check(drained, "the queue did not drain once the pins were fixed")
        .check(lost == 0, format!("{lost} acked alerts never arrived"))
        .check(
            new.count("auth") > 0,
            "nothing authenticated to the new relay",
        );
    f.done()
}

/// The same rotation with a fallback relay configured (taking over after
/// 2 s, within the second: the record keeps whole seconds).
pub fn with_fallback(suite: &Suite) -> Outcome {
    let port = crate::common::free_port();
    let old = Relay::start_on(port, &["--pipelining"]);
    let fallback = Relay::start(&["--pipelining"]);
    let pin = openssl_fingerprint("relay.pem", "sha256");
    let install = Install::new(port, &format!("fingerprints = [\"{pin}\"]\n"), "\"1s\"");
    let config = std::fs::read_to_string(install.setup.config_path()).unwrap();
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/ca.pem");
    install.setup.write_config(&format!(
        "{config}\n[fallback]\nhost = \"127.0.0.1\"\nport = {}\nca_file = \"{}\"\n\
         username = \"ossec\"\ndomain = \"example.net\"\npassword_file = \"{}\"\n\
         timeout = \"5s\"\nfallback_after = \"2s\"\n",
        fallback.port,
        ca.display(),
        install.setup.path("sasl_password").display()
    ));
    let _daemon = install.setup.start();
    let tag = "certchange-fallback";
    let daemon_port = install.port;
    let send = |from: usize, n: usize| send(suite, daemon_port, tag, from, n);
    let (mut acked, before_ok, mut delivered) = before_the_change(suite, &install, tag, &old);

    drop(old);
    let _new = Relay::start_on(port, &["--pipelining", "--cert", "relay2.pem"]);
    let changed = Instant::now();
    let mut told_after = None;
    std::thread::scope(|s| {
        let sender = s.spawn(|| send(BEFORE, AFTER));
        // The warning is the first message through the fallback.
        while changed.elapsed() < Duration::from_secs(30) {
            if !fallback.messages().is_empty() {
                told_after = Some(changed.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        acked.extend(sender.join().unwrap());
    });
    // No one touches the config: the fallback carries the rest.
    let drained = install.wait_drained(Duration::from_secs(60));
    let through_fallback = fallback.messages();
    // The admin (root's recipient) reads the first with their key.
    let first_is_warning = through_fallback.first().is_some_and(|m| {
        let out = crate::common::Gpg::with_keys(&["alerts"]).try_decrypt(m);
        out.status.success()
            && crate::common::contains(&out.stdout, b"alerts now go through the fallback relay")
    });
    delivered.extend(through_fallback.iter().cloned());
    let tally = Tally::of(suite, &["journalist"], &delivered);
    suite
        .leaks
        .scan_install(&install, Some(fallback.outdir.path()));
    let lost = tally.lost(&acked);

    let mut f = Figures::new();
    f.set("alerts", acked.len())
        .set("before_change", BEFORE)
        .set("through_fallback", through_fallback.len())
        .set(
            "admin_told_after",
            told_after.map_or("never".into(), |t| format!("{:.2}s", t.as_secs_f64())),
        )
        .set("delivered", acked.len() - lost)
        .set("lost", lost)
        .set("duplicates", tally.duplicates());
    f.check(before_ok, "the alerts before the change were not delivered")
        .check(told_after.is_some(), "nothing came through the fallback")
        .check(
            first_is_warning,
            "the first message through the fallback was not the warning",
        )
        .check(drained, "the queue did not drain through the fallback")
        .check(lost == 0, format!("{lost} acked alerts never arrived"));
    f.done()
}

/// Alerts `from..from + n`, marked with `tag`, each acked by the daemon
/// listening on `port`.
fn send(suite: &Suite, port: u16, tag: &str, from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| {
            let marker = suite.marker(tag, i, 0);
            submit(port, RCPT, &alert(RCPT, &marker))
                .unwrap_or_else(|e| panic!("submission refused: {e}"));
            marker
        })
        .collect()
}

/// The [`BEFORE`] alerts through the old certificate: the markers acked,
/// whether all arrived, and what the relay received.
fn before_the_change(
    suite: &Suite,
    install: &Install,
    tag: &str,
    old: &Relay,
) -> (Vec<String>, bool, Vec<Vec<u8>>) {
    let acked = send(suite, install.port, tag, 0, BEFORE);
    let arrived = wait_until(Duration::from_secs(30), || old.messages().len() >= BEFORE);
    (acked, arrived, old.messages())
}

/// `relayctl health --json`: (exit code, the report).
fn health(install: &Install) -> (i32, serde_json::Value) {
    let out = Command::new(RELAYCTL)
        .args(["health", "--json"])
        .env("ALERT_RELAY_CONFIG", install.setup.config_path())
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_default();
    (out.status.code().unwrap_or(-1), json)
}

/// The `fingerprints = [...]` line `relayctl fingerprint` prints.
fn presented_pins(port: u16) -> String {
    let out = Command::new(RELAYCTL)
        .args(["fingerprint", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("fingerprints = ["))
        .unwrap_or_else(|| panic!("no fingerprints line: {out:?}"))
        .to_string()
}
