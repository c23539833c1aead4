//! The providers' sending limits, through the real daemon and aiosmtpd:
//! a quota reply (Gmail's `550 5.4.5`, Microsoft's `554 5.2.0 …
//! SubmissionQuotaExceededException`) defers alerts, never fails them,
//! and they go out once the relay accepts again; `relay.max_per_day` and
//! `relay.max_per_minute` hold alerts back and lose none.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::{Gpg, Relay, Setup};

fn alert(n: usize) -> Vec<u8> {
    format!("Subject: OSSEC Notification - {n}\r\n\r\nsshd: brute force MARKER-LIMIT-{n}\r\n")
        .into_bytes()
}

/// A setup on `relay` with `extra` [relay] lines.
fn setup(relay: &Relay, extra: &str) -> Setup {
    let setup = Setup::new();
    setup.use_relay(relay.port, extra);
    setup
}

/// Which alerts the relay has, by their numbers, read with GnuPG.
fn delivered(relay: &Relay) -> Vec<usize> {
    let gpg = Gpg::with_keys(&["alerts"]);
    let mut got: Vec<usize> = relay
        .messages()
        .iter()
        .map(|m| {
            let text = String::from_utf8_lossy(&gpg.decrypt(m)).into_owned();
            let at = text.find("MARKER-LIMIT-").expect("a marker");
            text[at + 13..]
                .split_whitespace()
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    got.sort();
    got
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_quota_reply_defers_alerts_and_they_go_out_once_the_relay_accepts_again() {
    let microsoft = "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; \
                     Failed to process message due to a permanent exception with message";
    for (args, said) in [
        (
            vec!["--quota-after", "2"],
            "5.4.5 Daily user sending limit exceeded",
        ),
        (
            vec![
                "--quota-after",
                "2",
                "--quota-at",
                "data",
                "--quota-reply",
                microsoft,
            ],
            "SubmissionQuotaExceededException",
        ),
    ] {
        let relay = Relay::start(&args);
        let setup = setup(&relay, "");
        let daemon = setup.start();
        for n in 0..5 {
            let reply = daemon.connect().send_message("root", &alert(n));
            assert!(reply.starts_with("250"), "{reply}");
        }
        let queue = || -> Vec<serde_json::Value> {
            let out = setup.relayctl(&["queue", "--json"]);
            serde_json::from_slice(&out.stdout).unwrap()
        };
        wait_for("three deferred alerts", || {
            let rows = queue();
            rows.len() == 3 && rows.iter().all(|r| r["last_error"].is_string())
        });
        assert_eq!(relay.messages().len(), 2, "{said}");
        assert!(
            setup.entries("failed").is_empty(),
            "{said}: a quota reply failed an alert"
        );

        // relayctl queue says why, and when they are tried again: not
        // before the quota can have room (an hour).
        let rows = queue();
        let in_an_hour = SystemTime::now() + Duration::from_secs(3500);
        for row in rows {
            let error = row["last_error"].as_str().unwrap();
            assert!(error.contains(said), "{error}");
            assert!(error.contains("sending quota is used up"), "{error}");
            let next = humantime::parse_rfc3339(row["next_attempt"].as_str().unwrap()).unwrap();
            assert!(next > in_an_hour, "{row}");
        }
        // The relay was asked once per batch, not once per alert.
        assert!(relay.count("quota") <= 3, "{}", relay.count("quota"));
        daemon.wait_log("class=quota");
        // relayctl health names the class (once the record is saved).
        wait_for("relayctl health to name the quota", || {
            let health = setup.relayctl(&["health", "--json"]);
            let health: serde_json::Value = serde_json::from_slice(&health.stdout).unwrap();
            health["failure"]["class"] == "quota"
        });

        // The account has room again; the admin flushes.
        std::fs::write(relay.outdir.path().join("quota-lifted"), "").unwrap();
        let out = setup.relayctl(&["flush"]);
        assert!(out.status.success());
        wait_for("all five at the relay", || relay.messages().len() == 5);
        assert_eq!(delivered(&relay), [0, 1, 2, 3, 4], "{said}");
        assert!(setup.wait_queue_empty());
        assert!(setup.entries("failed").is_empty());
    }
}

#[test]
fn max_per_day_holds_the_rest_back_without_failing_them_and_says_so() {
    let relay = Relay::start(&[]);
    let setup = setup(&relay, "max_per_day = 3\n");
    let daemon = setup.start();
    for n in 0..5 {
        let reply = daemon.connect().send_message("root", &alert(n));
        assert!(reply.starts_with("250"), "{reply}");
    }
    relay.wait_messages(3);
    let log = daemon.wait_log("pacing: relay.max_per_day = 3 reached");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(relay.messages().len(), 3, "{log}");
    assert_eq!(setup.queued().len(), 2);
    assert!(setup.entries("failed").is_empty());
    // Logged once, not once per held alert or per wake-up.
    assert_eq!(log.matches("pacing:").count(), 1, "{log}");

    // relayctl queue says why the two wait, once the record is saved.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = setup.relayctl(&["queue"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains("Delivery is paced: relay.max_per_day = 3 reached") {
            assert!(text.contains("2 requests"), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "relayctl queue says nothing of pacing:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_days_reserve_carries_the_warning_that_max_per_day_holds_alerts_back() {
    let relay = Relay::start(&[]);
    let setup = setup(&relay, "max_per_day = 10\n");
    let config = std::fs::read_to_string(setup.config_path()).unwrap();
    setup.write_config(&format!("{config}\n[health]\nwarn_after = \"1s\"\n"));
    let daemon = setup.start();
    for n in 0..11 {
        let reply = daemon.connect().send_message("root", &alert(n));
        assert!(reply.starts_with("250"), "{reply}");
    }
    // Alerts may use 9 of the 10: one is kept for the daemon's own mail.
    relay.wait_messages(9);
    let log = daemon.wait_log(
        "relay.max_per_day = 10 reached: 9 sent in the last 24 hours, 1 kept for alert-relay's \
         own warnings",
    );
    // Past warn_after, the warning takes the reserve (the record is
    // looked at every 10 s).
    let deadline = Instant::now() + Duration::from_secs(30);
    while relay.messages().len() < 10 {
        assert!(Instant::now() < deadline, "no warning came: {log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let messages = relay.messages();
    assert_eq!(messages.len(), 10, "the reserve is one message");
    let gpg = Gpg::with_keys(&["alerts"]);
    let texts: Vec<String> = messages
        .iter()
        .map(|m| String::from_utf8_lossy(&gpg.decrypt(m)).into_owned())
        .collect();
    let alerts = texts.iter().filter(|t| t.contains("MARKER-LIMIT-")).count();
    assert_eq!(alerts, 9);
    let warning = texts
        .iter()
        .find(|t| !t.contains("MARKER-LIMIT-"))
        .expect("the warning");
    assert!(
        warning.contains("relay.max_per_day = 10 reached") && warning.contains("class quota"),
        "{warning}"
    );
    assert_eq!(setup.queued().len(), 2);
    assert!(setup.entries("failed").is_empty());
    // And health still says why the two wait: the warning going out did
    // not end the hold.
    let health = setup.relayctl(&["health"]);
    let said = String::from_utf8_lossy(&health.stdout).into_owned();
    assert_eq!(health.status.code(), Some(1), "{said}");
    assert!(said.contains("class quota"), "{said}");
}

#[test]
fn max_per_minute_spaces_100_alerts_and_loses_none() {
    let relay = Relay::start(&[]);
    // One every 50 ms.
    let setup = setup(&relay, "max_per_minute = 1200\n");
    let daemon = setup.start();
    for n in 0..100 {
        let reply = daemon.connect().send_message("root", &alert(n));
        assert!(reply.starts_with("250"), "{reply}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while relay.messages().len() < 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(delivered(&relay), (0..100).collect::<Vec<_>>());
    // When each arrived at the relay: never two within the spacing (less
    // a margin for the time between our send and the relay's write).
    let mut times: Vec<SystemTime> = (1..=100)
        .map(|n| {
            std::fs::metadata(relay.outdir.path().join(format!("{n}.eml")))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();
    times.sort();
    for pair in times.windows(2) {
        let gap = pair[1].duration_since(pair[0]).unwrap();
        assert!(gap >= Duration::from_millis(40), "two alerts {gap:?} apart");
    }
    let span = times[99].duration_since(times[0]).unwrap();
    assert!(
        span >= Duration::from_millis(99 * 45),
        "100 alerts in {span:?}"
    );
    assert!(setup.wait_queue_empty());
}
