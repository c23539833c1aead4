//! Delivery to a real relay (aiosmtpd with STARTTLS, implicit TLS and
//! AUTH on 127.0.0.1), checked with the relay's own records and GnuPG.

mod common;

use std::time::{Duration, Instant};

use common::{Gpg, Relay, Setup, contains, openssl_fingerprint, openssl_spki_pin};

const ALERT: &[u8] = b"From: OSSEC HIDS <ossecm@mon>\nTo: root\n\
Subject: OSSEC Notification - (app) 10.20.2.2 - Alert level 7\n\n\
Rule: 5503 fired (level 7) -> \"MARKER-DELIVERED\"\n";

fn use_relay(setup: &Setup, port: u16, extra: &str) {
    setup.use_relay(port, extra);
}

fn send_alert(setup: &Setup) {
    let out = setup.sendmail(&["root"], ALERT);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn decrypts(message: &[u8]) -> bool {
    let gpg = Gpg::with_keys(&["alerts"]);
    contains(&gpg.decrypt(message), b"MARKER-DELIVERED")
}

/// Waits until the daemon's log has `needle`, then returns the log.
fn wait_log(daemon: &common::Daemon, needle: &str) -> String {
    daemon.wait_log(needle)
}

/// Starts a relay with `relay_args` and a daemon pointed at it (`extra`
/// adds [relay] lines), sends one alert, and waits for its first
/// `status=` line; returns everything, with the log so far.
fn attempted(
    relay_args: &[&str],
    extra: &str,
    status: &str,
) -> (Relay, Setup, common::Daemon, String) {
    let relay = Relay::start(relay_args);
    let setup = Setup::new();
    use_relay(&setup, relay.port, extra);
    let daemon = setup.start();
    send_alert(&setup);
    let log = wait_log(&daemon, &format!("status={status}"));
    (relay, setup, daemon, log)
}

fn delivered_over(relay_args: &[&str], extra: &str) -> (Relay, String) {
    let relay = Relay::start(relay_args);
    let setup = Setup::new();
    use_relay(&setup, relay.port, extra);
    let daemon = setup.start();
    send_alert(&setup);
    let messages = relay.wait_messages(1);
    assert_eq!(messages.len(), 1, "{}", daemon.log());
    assert!(decrypts(&messages[0]));
    let log = wait_log(&daemon, "status=sent");
    assert!(setup.wait_queue_empty(), "the sent entry leaves the queue");
    assert!(
        !log.contains(common::RELAY_PASSWORD),
        "the password is never logged"
    );
    (relay, log)
}

#[test]
fn starttls_with_auth_plain_delivers_encrypted() {
    let (relay, log) = delivered_over(&["--mechanisms", "PLAIN"], "");
    let events = relay.events().join("\n");
    assert!(events.contains("\"event\": \"starttls\""), "{events}");
    assert!(
        events.contains("\"mechanism\": \"PLAIN\", \"ok\": true"),
        "{events}"
    );
    // Nothing but EHLO and STARTTLS before TLS.
    for e in relay.events() {
        if e.contains("\"tls\": false") {
            assert!(
                e.contains("ehlo") || e.contains("starttls"),
                "in the clear: {e}"
            );
        }
    }
    assert!(log.contains("status=sent relay=127.0.0.1:"), "{log}");
    assert!(log.contains("tls=TLSv1.3 attempt=1"), "{log}");
    assert!(log.contains("Ok: queued as TEST1"), "{log}");
}

#[test]
fn starttls_with_auth_login_delivers_encrypted() {
    let (relay, _) = delivered_over(&["--mechanisms", "LOGIN"], "");
    let events = relay.events().join("\n");
    assert!(
        events.contains("\"mechanism\": \"LOGIN\", \"ok\": true"),
        "{events}"
    );
}

#[test]
fn implicit_tls_delivers_encrypted() {
    let (relay, _) = delivered_over(&["--implicit"], "tls = \"implicit\"\n");
    assert_eq!(relay.count("starttls"), 0);
    assert!(relay.events().iter().all(|e| e.contains("\"tls\": true")));
}

#[test]
fn sha1_sha256_and_spki_pins_each_work_without_a_ca() {
    for pin in [
        openssl_fingerprint("selfsigned.pem", "sha1"),
        openssl_fingerprint("selfsigned.pem", "sha256"),
        openssl_fingerprint("selfsigned.pem", "sha256")
            .replace(':', "")
            .to_lowercase(),
        openssl_spki_pin("selfsigned.pem"),
    ] {
        delivered_over(
            &["--cert", "selfsigned.pem"],
            &format!("fingerprints = [\"{pin}\"]\n"),
        );
    }
}

#[test]
fn pin_mismatch_sends_no_auth() {
    let pin = openssl_fingerprint("relay.pem", "sha256");
    let (relay, setup, _daemon, log) = attempted(
        &["--cert", "relay2.pem"],
        &format!("fingerprints = [\"{pin}\"]\n"),
        "deferred",
    );
    assert_eq!(relay.count("auth"), 0, "{:?}", relay.events());
    assert_eq!(relay.count("mail"), 0, "{:?}", relay.events());
    assert!(relay.messages().is_empty());
    assert!(log.contains("certificate not verified"), "{log}");
    // What the relay really presented, ready to paste, as openssl prints it.
    let presented_sha1 = openssl_fingerprint("relay2.pem", "sha1");
    let presented_sha256 = openssl_fingerprint("relay2.pem", "sha256");
    assert!(log.contains(&presented_sha1), "{log}");
    assert!(
        log.contains(&format!(
            "fingerprints = [\\\"{presented_sha1}\\\", \\\"{presented_sha256}\\\""
        )),
        "{log}"
    );
    assert_eq!(setup.queued().len(), 1, "still queued");
}

#[test]
fn a_ca_that_did_not_sign_the_relay_is_refused() {
    let (relay, setup, _daemon, log) = attempted(&["--cert", "selfsigned.pem"], "", "deferred");
    assert!(log.contains("certificate not verified"), "{log}");
    assert_eq!(relay.count("auth"), 0);
    assert_eq!(setup.queued().len(), 1);
}

#[test]
fn old_and_new_pins_survive_a_certificate_swap() {
    let old = openssl_fingerprint("relay.pem", "sha256");
    let new = openssl_fingerprint("relay2.pem", "sha256");
    let relay = Relay::start(&[]);
    let port = relay.port;
    let setup = Setup::new();
    use_relay(
        &setup,
        port,
        &format!("fingerprints = [\"{old}\", \"{new}\"]\n"),
    );
    let daemon = setup.start();
    send_alert(&setup);
    assert_eq!(relay.wait_messages(1).len(), 1);
    drop(relay);
    let relay = Relay::start_on(port, &["--cert", "relay2.pem"]);
    // Let the kept-alive connection to the old relay go.
    std::thread::sleep(Duration::from_millis(200));
    send_alert(&setup);
    let got = relay.wait_messages(1);
    assert_eq!(got.len(), 1, "{}", daemon.log());
    assert!(decrypts(&got[0]));
    // The kept connection the old relay closed cost a new connection, not
    // a deferral.
    assert!(
        !daemon.log().contains("status=deferred"),
        "{}",
        daemon.log()
    );
}

#[test]
fn a_relay_without_starttls_gets_no_plaintext_auth() {
    let (relay, setup, _daemon, log) = attempted(&["--no-starttls"], "", "deferred");
    assert!(log.contains("does not offer STARTTLS"), "{log}");
    assert_eq!(relay.count("auth"), 0, "{:?}", relay.events());
    assert_eq!(relay.count("mail"), 0);
    assert_eq!(setup.queued().len(), 1);
}

#[test]
fn a_wrong_password_defers_with_the_fix() {
    let (_relay, setup, _daemon, log) = attempted(&["--password", "another one"], "", "deferred");
    assert!(
        log.contains(
            "authentication failed: check relay.username, relay.domain and relay.password_file"
        ),
        "{log}"
    );
    assert!(
        log.contains("status=deferred") && log.contains(" class=auth "),
        "{log}"
    );
    assert!(!log.contains(common::RELAY_PASSWORD));
    assert_eq!(setup.queued().len(), 1, "deferred, not failed");
    assert!(setup.entries("failed").is_empty());
}

#[test]
fn a_password_file_opened_to_others_while_running_is_refused_and_the_alert_deferred() {
    use std::os::unix::fs::PermissionsExt;
    let relay = Relay::start(&[]);
    let setup = Setup::new();
    use_relay(&setup, relay.port, "");
    let daemon = setup.start();
    let pw = setup.path("sasl_password");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    send_alert(&setup);
    let log = wait_log(&daemon, "status=deferred");
    assert!(
        log.contains("readable by group or others (mode 0644), so it is not used; run chmod 600"),
        "{log}"
    );
    assert!(!log.contains(common::RELAY_PASSWORD));
    assert_eq!(relay.count("auth"), 0, "the password never left the host");
    assert!(relay.messages().is_empty());
    // Fixed, it is used at the next attempt.
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(setup.relayctl(&["flush"]).status.success());
    assert_eq!(relay.wait_messages(1).len(), 1);
}

#[test]
fn relay_down_then_up_delivers_exactly_once_after_flush() {
    // A port nothing listens on, that the relay will take later.
    let port = common::free_port();
    let setup = Setup::new();
    use_relay(&setup, port, "");
    let daemon = setup.start();
    send_alert(&setup);
    let log = wait_log(&daemon, "status=deferred");
    assert!(log.contains("cannot connect to 127.0.0.1:"), "{log}");
    assert!(log.contains("check relay.host, relay.port"), "{log}");
    let relay = Relay::start_on(port, &[]);
    let flush = setup.relayctl(&["flush"]);
    assert!(
        flush.status.success(),
        "{}",
        String::from_utf8_lossy(&flush.stderr)
    );
    assert_eq!(relay.wait_messages(1).len(), 1);
    assert!(setup.wait_queue_empty());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(relay.messages().len(), 1, "exactly once");
    let log = daemon.log();
    assert!(
        log.contains("status=sent") && log.contains("attempt=2"),
        "{log}"
    );
}

#[test]
fn a_550_moves_the_message_to_failed_with_the_reply() {
    // Pipelined, the RCPT refusal is among three replies read at once.
    for pipelining in [&[][..], &["--pipelining"]] {
        let mut args = vec!["--rcpt-reply", "550 5.1.1 no such user here"];
        args.extend_from_slice(pipelining);
        let (_relay, setup, _daemon, log) = attempted(&args, "", "failed");
        assert!(log.contains("550 5.1.1 no such user here"), "{log}");
        let failed = setup.wait_entries("failed", 1);
        assert_eq!(failed.len(), 1);
        assert!(
            failed[0]
                .note
                .contains("RCPT TO refused: 550 5.1.1 no such user here"),
            "{pipelining:?}: {}",
            failed[0].note
        );
        assert!(setup.queued().is_empty());
    }
}

#[test]
fn two_hundred_queued_messages_go_out_over_one_connection() {
    two_hundred_over_one_connection(&[]);
}

#[test]
fn pipelined_two_hundred_go_out_over_one_connection() {
    two_hundred_over_one_connection(&["--pipelining"]);
}

/// 200 queued messages, then the relay: one connection, RSET between
/// transactions, every message once and decryptable.
fn two_hundred_over_one_connection(relay_args: &[&str]) {
    let port = common::free_port();
    let setup = Setup::new();
    use_relay(&setup, port, "");
    // Queue 200 with the daemon stopped, through one SMTP session of
    // `sendmail -bs` (one process, so this stays quick).
    let mut session = b"HELO t\r\n".to_vec();
    for i in 0..200 {
        session.extend_from_slice(
            b"MAIL FROM:<ossecm@mon>\r\nRCPT TO:<journalist@example.org>\r\nDATA\r\n",
        );
        session.extend_from_slice(format!("Subject: n{i}\r\n\r\nMARKER-{i}\r\n.\r\n").as_bytes());
    }
    session.extend_from_slice(b"QUIT\r\n");
    let out = setup.sendmail(&["-bs"], &session);
    assert!(out.status.success());
    assert_eq!(setup.entries("incoming").len(), 200);
    let relay = Relay::start_on(port, relay_args);
    let daemon = setup.start();
    let got = relay.wait_messages(200);
    assert_eq!(got.len(), 200, "{}", daemon.log());
    assert_eq!(relay.count("starttls"), 1, "one connection");
    assert_eq!(relay.count("auth"), 1);
    assert_eq!(relay.count("rset"), 199, "RSET between transactions");
    assert!(setup.wait_queue_empty());
    // Each exactly once, and each decrypts to its own marker.
    let gpg = common::Gpg::with_keys(&["journalist"]);
    let mut markers: Vec<String> = got
        .iter()
        .step_by(40)
        .map(|m| {
            let inner = String::from_utf8_lossy(&gpg.decrypt(m)).to_string();
            inner
                .split("MARKER-")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    markers.dedup();
    assert_eq!(markers.len(), 5);
    let subjects: std::collections::HashSet<String> = got
        .iter()
        .map(|m| {
            String::from_utf8_lossy(m)
                .lines()
                .find(|l| l.starts_with("Message-ID:"))
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(subjects.len(), 200, "no duplicates");
}

#[test]
fn past_max_lifetime_a_message_moves_to_failed_with_its_last_error() {
    let setup = Setup::new();
    use_relay(&setup, 1, "");
    setup.write_config(&setup.config_text("").replacen(
        "[queue]\n",
        "[queue]\nretry = [\"1h\"]\nmax_lifetime = \"1s\"\n",
        1,
    ));
    let daemon = setup.start();
    send_alert(&setup);
    wait_log(&daemon, "status=deferred");
    std::thread::sleep(Duration::from_millis(1200));
    assert!(setup.relayctl(&["flush"]).status.success());
    let log = wait_log(&daemon, "status=failed");
    assert!(
        log.contains("undelivered after 1s; last error: cannot connect"),
        "{log}"
    );
    assert_eq!(setup.wait_entries("failed", 1).len(), 1);
    assert!(setup.queued().is_empty());
}

#[test]
fn flush_with_a_bad_id_is_a_usage_error() {
    let setup = Setup::new();
    let out = setup.relayctl(&["flush", "../../etc/passwd"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a queue id"));
}

#[test]
fn an_unreachable_relay_costs_one_attempt_per_batch_not_one_per_message() {
    // A "relay" that accepts and hangs up at once, counting connections.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    let setup = Setup::new();
    use_relay(&setup, port, "");
    for _ in 0..5 {
        send_alert(&setup);
    }
    let daemon = setup.start();
    let deadline = Instant::now() + Duration::from_secs(15);
    while daemon.log().matches("status=deferred").count() < 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = daemon.log();
    assert_eq!(log.matches("status=deferred").count(), 5, "{log}");
    assert!(log.contains("connection lost at greeting"), "{log}");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "{log}"
    );
    assert_eq!(setup.queued().len(), 5);
}

/// A "relay" that greets with `220 ` and then sends one endless line, up
/// to 800 MB, to every connection; returns its port and a count of the
/// bytes each connection took before the client hung up.
fn endless_line_relay() -> (u16, std::sync::Arc<std::sync::Mutex<Vec<usize>>>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let taken = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = taken.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let record = record.clone();
            std::thread::spawn(move || {
                let mut s = stream.unwrap();
                let chunk = vec![b'x'; 64 << 10];
                let mut sent = 0;
                if s.write_all(b"220 ").is_ok() {
                    while sent < 800 << 20 && s.write_all(&chunk).is_ok() {
                        sent += chunk.len();
                    }
                }
                record.lock().unwrap().push(sent);
            });
        }
    });
    (port, taken)
}

#[test]
fn a_relay_that_sends_an_endless_line_is_cut_off_with_the_reason() {
    let (port, taken) = endless_line_relay();
    let setup = Setup::new();
    use_relay(&setup, port, "");
    send_alert(&setup);
    let daemon = setup.start();
    let log = wait_log(&daemon, "status=deferred");
    assert!(
        log.contains("unexpected answer at greeting") && log.contains("longer than 4096 bytes"),
        "{log}"
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(peak_kib < 40 * 1024, "the daemon grew to {peak_kib} KiB");

    // relayctl test stops at the same place, at once.
    let started = Instant::now();
    let out = setup.relayctl(&["test", "--no-send"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(69), "{said}");
    assert!(
        said.contains("✗ TLS") && said.contains("longer than 4096 bytes"),
        "{said}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // Each connection was dropped long before the 800 MB: what it wrote
    // is what the socket buffers held.
    let deadline = Instant::now() + Duration::from_secs(10);
    while taken.lock().unwrap().len() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let taken = taken.lock().unwrap().clone();
    assert!(taken.len() >= 2, "{taken:?}");
    assert!(taken.iter().all(|&n| n < 64 << 20), "{taken:?}");
}

#[test]
fn a_clean_stop_after_a_delivery_reports_no_partial_writes_at_the_next_start() {
    let relay = Relay::start(&[]);
    let setup = Setup::new();
    use_relay(&setup, relay.port, "");
    let mut daemon = setup.start();
    send_alert(&setup);
    assert_eq!(relay.wait_messages(1).len(), 1);
    wait_log(&daemon, "status=sent");
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait_exit().success());
    // The delivered entry left an emptied spare in tmp/: no news.
    let daemon = setup.start();
    let log = daemon.log();
    assert!(!log.contains("partial writes"), "{log}");
    // A real partial write (a crash mid-write) is reported.
    drop(daemon);
    std::fs::write(
        setup.spool().join("tmp/.66149ADF59FFE004CE300000.tmp"),
        b"half",
    )
    .unwrap();
    let daemon = setup.start();
    let log = daemon.wait_log("removed unacknowledged partial writes from tmp/");
    assert!(log.contains("files=1"), "{log}");
}
