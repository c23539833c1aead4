//! The loopback SMTP listener, driven over real sockets against the real
//! `alert-relayd` binary.

mod common;

use common::{Client, Setup, code, contains, plain, smtplib_send};

/// What OSSEC's maild sends (os_maild/sendmail.c): HELO, MAIL and RCPT with
/// its own spelling, then headers with duplicate To lines, no Message-ID,
/// 8-bit bytes, no dot-stuffing, and the data sent in pieces before the
/// one read of the reply.
#[test]
fn ossec_transcript_gets_one_reply_per_command() {
    let setup = Setup::new();
    let daemon = setup.start();
    let mut c = daemon.connect();
    let mut codes = vec![code(&c.recv())];
    for line in [
        "Helo notify.ossec.net",
        "Mail From: <ossecm@mon.example.org>",
        "Rcpt To: <root@localhost>",
        "Rcpt To: <journalist@example.org>",
        "DATA",
    ] {
        codes.push(c.cmd(line));
    }
    c.send(b"To: <root@localhost>\r\nTo: <journalist@example.org>\r\n");
    c.send(b"From: OSSEC HIDS <ossecm@mon.example.org>\r\n");
    c.send(b"Subject: OSSEC Notification - (app) 10.20.2.2 - Alert level 7\r\n");
    c.send(b"X-IDS-OSSEC: 7\r\n\r\n");
    c.send(
        b"OSSEC HIDS Notification.\r\nRule: 5503 fired (level 7) -> \"caf\xe9 login failed\"\r\n",
    );
    c.send(b"\r\n.\r\n");
    codes.push(code(&c.recv()));
    codes.push(c.cmd("QUIT"));
    assert_eq!(codes, vec![220, 250, 250, 250, 250, 354, 250, 221]);

    let queued = setup.wait_queued(2);
    assert_eq!(queued.len(), 2, "one entry per recipient");
    let mut to: Vec<&str> = queued.iter().map(|e| e.recipient.as_str()).collect();
    to.sort();
    assert_eq!(to, vec!["alerts@example.org", "journalist@example.org"]);
    for e in &queued {
        assert!(
            !contains(&e.payload, b"login failed"),
            "the spool holds no plaintext"
        );
        let inner = plain(e);
        assert!(contains(&inner, b"caf\xe9 login failed"), "8-bit body kept");
        assert!(contains(
            &inner,
            b"To: <root@localhost>\nTo: <journalist@example.org>\n"
        ));
        assert_eq!(e.sender, "ossecm@mon.example.org");
    }
}

#[test]
fn smtplib_submission_is_spooled_with_dots_unstuffed() {
    let setup = Setup::new();
    let daemon = setup.start();
    let message = b"Subject: disk\r\n\r\nline one\r\n.leading dot\r\n";
    let outcome = smtplib_send(daemon.port, "cron@mon", &["root"], message);
    assert_eq!(outcome, "ok []");
    let queued = setup.wait_queued(1);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].recipient, "alerts@example.org");
    // smtplib stuffs the leading dot; the encrypted message holds the original line.
    let inner = plain(&queued[0]);
    assert!(
        contains(&inner, b"\r\n\r\nline one\r\n.leading dot\r\n"),
        "{}",
        String::from_utf8_lossy(&inner)
    );
    let log = daemon.wait_log("queued");
    assert!(
        log.contains(&format!("id={} to=alerts@example.org", queued[0].id)),
        "{log}"
    );
    assert!(!log.contains("leading dot"), "no alert content in the log");
}

#[test]
fn unknown_recipient_is_refused_and_the_next_client_served() {
    let setup = Setup::new();
    let daemon = setup.start();
    let outcome = smtplib_send(
        daemon.port,
        "x@y",
        &["someone@gmail.com"],
        b"Subject: x\r\n\r\nx\r\n",
    );
    assert!(outcome.starts_with("refused"), "{outcome}");
    let mut c = daemon.connect();
    c.recv();
    c.cmd("EHLO test");
    c.cmd("MAIL FROM:<x@y>");
    c.send(b"RCPT TO:<root@elsewhere.org>\r\n");
    let reply = c.recv();
    assert!(reply.starts_with("550 5.1.1"), "{reply}");
    assert_eq!(
        smtplib_send(daemon.port, "x@y", &["root"], b"Subject: ok\r\n\r\nok\r\n"),
        "ok []"
    );
    assert_eq!(setup.wait_queued(1).len(), 1);
}

#[test]
fn oversize_message_gets_552_and_nothing_is_kept() {
    let setup = Setup::with_listen("max_message_size = \"1KiB\"");
    let daemon = setup.start();
    let mut c = daemon.connect();
    let banner = c.recv();
    assert_eq!(code(&banner), 220);
    c.send(b"EHLO t\r\n");
    assert!(c.recv().contains("SIZE 1024"));
    assert_eq!(c.cmd("MAIL FROM:<x@y> SIZE=5000"), 552);
    assert_eq!(c.cmd("MAIL FROM:<x@y>"), 250);
    assert_eq!(c.cmd("RCPT TO:<root>"), 250);
    assert_eq!(c.cmd("DATA"), 354);
    c.send(&b"x".repeat(3000));
    c.send(b"\r\n.\r\n");
    let reply = c.recv();
    assert!(reply.starts_with("552 5.3.4"), "{reply}");
    // The session is still in step: a small message now goes through.
    assert_eq!(c.cmd("MAIL FROM:<x@y>"), 250);
    assert_eq!(c.cmd("RCPT TO:<root>"), 250);
    assert_eq!(c.cmd("DATA"), 354);
    c.send(b"small\r\n.\r\n");
    assert_eq!(code(&c.recv()), 250);
    let queued = setup.wait_queued(1);
    assert_eq!(queued.len(), 1);
    assert!(plain(&queued[0]).ends_with(b"\r\n\r\nsmall\r\n"));
}

#[test]
fn overlong_command_line_gets_500_and_the_session_goes_on() {
    let setup = Setup::new();
    let daemon = setup.start();
    let mut c = daemon.connect();
    c.recv();
    let long = format!("NOOP {}", "a".repeat(10_000));
    c.send(format!("{long}\r\n").as_bytes());
    let reply = c.recv();
    assert!(reply.starts_with("500 5.5.2"), "{reply}");
    assert_eq!(c.cmd("NOOP"), 250);
}

#[test]
fn too_many_recipients_get_452() {
    let setup = Setup::with_listen("max_recipients = 2");
    let daemon = setup.start();
    let mut c = daemon.connect();
    c.recv();
    assert_eq!(c.cmd("HELO t"), 250);
    assert_eq!(c.cmd("MAIL FROM:<x@y>"), 250);
    assert_eq!(c.cmd("RCPT TO:<root>"), 250);
    assert_eq!(c.cmd("RCPT TO:<journalist@example.org>"), 250);
    assert_eq!(c.cmd("RCPT TO:<alerts@example.org>"), 452);
    assert_eq!(c.cmd("DATA"), 354);
    c.send(b"two recipients\r\n.\r\n");
    assert_eq!(code(&c.recv()), 250);
    assert_eq!(setup.wait_queued(2).len(), 2);
}

#[test]
fn silent_client_gets_421_and_others_are_served() {
    let setup = Setup::with_listen("idle_timeout = \"1s\"");
    let daemon = setup.start();
    let mut slow = daemon.connect();
    slow.recv();
    // While the slow client sits there, another one is served.
    assert_eq!(
        smtplib_send(daemon.port, "x@y", &["root"], b"Subject: a\r\n\r\na\r\n"),
        "ok []"
    );
    let rest = slow.read_to_close();
    assert!(rest.starts_with("421 4.4.2"), "{rest:?}");
}

#[test]
fn clients_that_never_read_their_replies_are_dropped_and_a_ninth_gets_through() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    // Eight clients push commands and never read a reply: once their
    // buffers are full, each is dropped within the write timeout (here
    // the idle timeout, 2 s), and their slots are free for an alert.
    let setup = Setup::with_listen("max_connections = 8\nidle_timeout = \"2s\"");
    let daemon = setup.start();
    let start = Instant::now();
    let dropped_after: Vec<Option<Duration>> = std::thread::scope(|s| {
        let flooders: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let mut c = std::net::TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
                    // Bounded, so that a server that never drops it ends the test.
                    c.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
                    let burst = b"HELP\r\n".repeat(10_000);
                    loop {
                        match c.write_all(&burst) {
                            Ok(()) => {}
                            Err(e)
                                if e.kind() == std::io::ErrorKind::WouldBlock
                                    || e.kind() == std::io::ErrorKind::TimedOut =>
                            {
                                return None;
                            }
                            Err(_) => return Some(start.elapsed()),
                        }
                    }
                })
            })
            .collect();
        // The ninth: an alert, retried on 421 as a mailer does.
        std::thread::sleep(Duration::from_millis(500));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mut c = Client::connect(daemon.port);
            let banner = c.recv();
            if banner.starts_with("220") {
                for (line, want) in [
                    ("HELO ossec", 250),
                    ("MAIL FROM:<ossecm@mon>", 250),
                    ("RCPT TO:<root>", 250),
                    ("DATA", 354),
                ] {
                    assert_eq!(c.cmd(line), want, "{line}");
                }
                c.send(b"Subject: through\r\n\r\nthe ninth\r\n.\r\n");
                assert_eq!(code(&c.recv()), 250);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the ninth client never got a slot: {banner:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        flooders.into_iter().map(|f| f.join().unwrap()).collect()
    });
    for (i, d) in dropped_after.iter().enumerate() {
        let d = d.unwrap_or_else(|| panic!("flooder {i} was never dropped"));
        assert!(
            d < Duration::from_secs(10),
            "flooder {i} dropped after {d:?}"
        );
    }
    assert_eq!(setup.wait_queued(1).len(), 1);
    // The log line follows the hang-up the flooder saw: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while daemon
        .log()
        .matches("dropped a client: it stopped reading its replies")
        .count()
        < 8
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = daemon.log();
    assert!(
        log.matches("dropped a client: it stopped reading its replies")
            .count()
            >= 8,
        "{log}"
    );
}

#[test]
fn a_client_that_drips_bytes_is_ended_at_the_session_deadline() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    // One byte every half second keeps the idle timer (1 s) happy; the
    // session's deadline (six idle timeouts) ends it anyway.
    let setup = Setup::with_listen("idle_timeout = \"1s\"");
    let daemon = setup.start();
    let mut c = std::net::TcpStream::connect(("127.0.0.1", daemon.port)).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let start = Instant::now();
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while start.elapsed() < Duration::from_secs(15) {
        if c.write_all(b"N").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
        match c.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
    }
    let ended = start.elapsed();
    let text = String::from_utf8_lossy(&seen);
    assert!(
        text.contains("421 4.4.2 Error: session too long"),
        "{text:?}"
    );
    assert!(
        ended >= Duration::from_secs(5) && ended < Duration::from_secs(9),
        "ended after {ended:?}"
    );
    daemon.wait_log("its session reached its deadline");
}

#[test]
fn connections_over_the_limit_get_421() {
    let setup = Setup::with_listen("max_connections = 1");
    let daemon = setup.start();
    let mut first = daemon.connect();
    assert_eq!(code(&first.recv()), 220);
    let mut second = daemon.connect();
    let reply = second.read_to_close();
    assert!(reply.starts_with("421 4.7.0"), "{reply:?}");
    // The first client is unaffected.
    assert_eq!(first.cmd("NOOP"), 250);
    assert_eq!(first.cmd("QUIT"), 221);
    drop(first);
    // Its slot is free again.
    let mut third = Client::connect(daemon.port);
    let mut banner = third.recv();
    for _ in 0..50 {
        if banner.starts_with("220") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        third = Client::connect(daemon.port);
        banner = third.recv();
    }
    assert_eq!(code(&banner), 220);
}

#[test]
fn accepted_mail_survives_kill_9() {
    let setup = Setup::new();
    let mut daemon = setup.start();
    let reply = daemon
        .connect()
        .send_message("root", b"Subject: survive\r\n\r\nmust not be lost\r\n");
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let id = reply.trim_end().rsplit(' ').next().unwrap().to_string();
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit();

    let restarted = setup.start();
    let queued = setup.queued();
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].id.as_str(), id);
    let inner = plain(&queued[0]);
    assert!(contains(&inner, b"Subject: survive\r\n"));
    assert!(inner.ends_with(b"\r\n\r\nmust not be lost\r\n"));
    let listing = setup.relayctl(&["queue"]);
    assert!(String::from_utf8_lossy(&listing.stdout).contains(&id));
    drop(restarted);
}

#[test]
fn sigterm_finishes_the_transaction_in_flight() {
    let setup = Setup::new();
    let mut daemon = setup.start();
    let mut idle = daemon.connect();
    idle.recv();
    let mut c = daemon.connect();
    c.recv();
    c.cmd("HELO t");
    c.cmd("MAIL FROM:<x@y>");
    c.cmd("RCPT TO:<root>");
    assert_eq!(c.cmd("DATA"), 354);
    c.send(b"Subject: in flight\r\n\r\nfirst half\r\n");
    daemon.signal(libc::SIGTERM);
    daemon.wait_log("stopping");
    // The idle client is told to come back later.
    let bye = idle.read_to_close();
    assert!(bye.starts_with("421 4.3.2"), "{bye:?}");
    c.send(b"second half\r\n.\r\n");
    // 250 for the message, then (maybe in the same read) 421: the session
    // ends, since the daemon is stopping.
    let reply = c.recv();
    assert!(reply.starts_with("250 2.0.0 Ok: queued as "), "{reply}");
    let status = daemon.wait_exit();
    assert!(status.success(), "{status}");
    assert_eq!(setup.queued().len(), 1);
}

#[test]
fn sighup_reloads_and_a_bad_config_keeps_the_old_one() {
    let setup = Setup::new();
    let daemon = setup.start();
    let mut c = daemon.connect();
    c.recv();
    c.cmd("MAIL FROM:<x@y>");
    assert_eq!(c.cmd("RCPT TO:<webmaster>"), 550);

    setup.write_config(&setup.config_text("webmaster = \"alerts@example.org\""));
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("reloaded");
    let mut c = daemon.connect();
    c.recv();
    c.cmd("MAIL FROM:<x@y>");
    assert_eq!(c.cmd("RCPT TO:<webmaster>"), 250);

    setup.write_config("[listen]\nbogus = 1\n");
    daemon.signal(libc::SIGHUP);
    let log = daemon.wait_log("config rejected");
    assert!(log.contains("listen.bogus: unknown field"), "{log}");
    let mut c = daemon.connect();
    c.recv();
    c.cmd("MAIL FROM:<x@y>");
    assert_eq!(
        c.cmd("RCPT TO:<webmaster>"),
        250,
        "the old config still runs"
    );
}
