//! `[[routes]]` through the real daemon and sendmail, against aiosmtpd,
//! what arrived decrypted with GnuPG: drop, also, to, first match wins;
//! and `relayctl route` on saved messages.

mod common;

use common::{Gpg, Relay, Setup};

/// Routes on the standard config's recipients (alerts: the admin;
/// journalist: the on-call person here).
const ROUTES: &str = r#"
[[routes]]
name = "cron-noise"
match_header = { Subject = "^Cron <root@mon> /usr/local/bin/backup" }
drop = true

[[routes]]
name = "wazuh-critical"
match_header = { X-Wazuh-Level = "^1[2-9]$" }
also = ["journalist@example.org"]

[[routes]]
name = "submissions"
match_body = "(?m)^ossec: output: 'head -1 /var/lib/securedrop/submissions_today.txt'"
to = ["journalist@example.org"]
"#;

fn with_routes(relay: &Relay) -> Setup {
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let config = std::fs::read_to_string(setup.config_path()).unwrap();
    setup.write_config(&format!("{config}\n{ROUTES}"));
    setup
}

const NOISE: &[u8] =
    b"Subject: Cron <root@mon> /usr/local/bin/backup\r\n\r\nbackup done: MARKER-NOISE\r\n";
const CRITICAL: &[u8] =
    b"Subject: Wazuh alert\r\nX-Wazuh-Level: 13\r\n\r\nrootkit found: MARKER-CRITICAL\r\n";
const SUBMISSIONS: &[u8] = b"Subject: OSSEC Notification - mon - Alert level 1\r\n\r\n\
OSSEC HIDS Notification.\r\n\r\nReceived From: mon->/var/lib/securedrop/submissions_today.txt\r\n\
Rule: 400600 fired (level 1) -> \"Daily submissions\"\r\n\
ossec: output: 'head -1 /var/lib/securedrop/submissions_today.txt'\r\n3\r\nMARKER-SUBMISSIONS\r\n";
const ORDINARY: &[u8] =
    b"Subject: OSSEC Notification - disk\r\n\r\ndisk 91% full: MARKER-ORDINARY\r\n";

/// Which markers each key can read among what the relay received.
fn read_by(relay: &Relay, key: &str) -> Vec<String> {
    decrypt_all(relay, key)
        .iter()
        .map(|text| {
            text.split_whitespace()
                .find(|w| w.starts_with("MARKER-"))
                .unwrap_or("?")
                .to_string()
        })
        .collect()
}

#[test]
fn routes_drop_add_and_redirect_mail_over_smtp_first_match_winning() {
    let relay = Relay::start(&[]);
    let setup = with_routes(&relay);
    let daemon = setup.start();
    let mut replies = Vec::new();
    for message in [NOISE, CRITICAL, SUBMISSIONS, ORDINARY] {
        let mut client = daemon.connect();
        replies.push(client.send_message("root", message));
    }
    assert!(
        replies[0].contains("250 2.0.0 Ok: discarded by a route"),
        "{replies:?}"
    );
    // The critical alert twice (admin and on-call), the other two once.
    relay.wait_messages(4);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(relay.messages().len(), 4);
    let mut admin = read_by(&relay, "alerts");
    admin.sort();
    assert_eq!(admin, ["MARKER-CRITICAL", "MARKER-ORDINARY"]);
    let mut oncall = read_by(&relay, "journalist");
    oncall.sort();
    assert_eq!(oncall, ["MARKER-CRITICAL", "MARKER-SUBMISSIONS"]);

    let log = daemon.log();
    assert!(
        log.contains("route=cron-noise action=drop"),
        "the drop is logged: {log}"
    );
    assert!(log.contains("route=wazuh-critical action=also"), "{log}");
    assert!(log.contains("route=submissions action=to"), "{log}");
    assert!(!log.contains("MARKER-"), "no content in the log: {log}");
}

#[test]
fn routes_apply_to_what_sendmail_submits_too() {
    let relay = Relay::start(&[]);
    let setup = with_routes(&relay);
    let _daemon = setup.start();
    let out = setup.sendmail(&["root"], SUBMISSIONS);
    assert!(out.status.success(), "{out:?}");
    let out = setup.sendmail(&["-v", "root"], NOISE);
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("discarded by a route"),
        "{out:?}"
    );
    relay.wait_messages(1);
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(read_by(&relay, "journalist"), ["MARKER-SUBMISSIONS"]);
    assert!(read_by(&relay, "alerts").is_empty());
    assert!(setup.entries("incoming").is_empty());
}

#[test]
fn relayctl_route_says_where_a_saved_message_goes() {
    let relay = Relay::start(&[]);
    let setup = with_routes(&relay);
    let saved = |name: &str, message: &[u8]| {
        let path = setup.path(name);
        let mut with_to = b"To: root\r\n".to_vec();
        with_to.extend_from_slice(message);
        std::fs::write(&path, with_to).unwrap();
        path.to_str().unwrap().to_string()
    };
    let cases = [
        (
            saved("noise.eml", NOISE),
            "route: cron-noise (drop)\nto: nobody",
        ),
        (
            saved("critical.eml", CRITICAL),
            "route: wazuh-critical (also)\nto: alerts@example.org, journalist@example.org\n",
        ),
        (
            saved("submissions.eml", SUBMISSIONS),
            "route: submissions (to)\nto: journalist@example.org\n",
        ),
        (
            saved("ordinary.eml", ORDINARY),
            "route: none matches: it goes to the envelope's recipients\nto: alerts@example.org\n",
        ),
    ];
    for (file, want) in &cases {
        let out = setup.relayctl(&["route", file]);
        let (code, text) = common::code_and_text(&out);
        assert_eq!(code, 0, "{text}");
        assert!(text.starts_with("envelope: alerts@example.org\n"), "{text}");
        assert!(text.contains(want), "{want:?} not in {text}");
    }
    // --to sets the envelope.
    let out = setup.relayctl(&["route", &cases[3].0, "--to", "ossec"]);
    let (code, text) = common::code_and_text(&out);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("to: alerts@example.org, journalist@example.org"),
        "{text}"
    );
    assert!(relay.messages().is_empty(), "relayctl route sends nothing");

    // Bad input: a missing file, an unknown recipient, no recipient.
    let (code, text) = common::code_and_text(&setup.relayctl(&["route", "/nonexistent.eml"]));
    assert_eq!(code, 66, "{text}");
    let (code, text) =
        common::code_and_text(&setup.relayctl(&["route", &cases[3].0, "--to", "x@gmail.com"]));
    assert_eq!(code, 67, "{text}");
    assert!(text.contains("x@gmail.com"), "{text}");
    let bare = setup.path("bare.eml");
    std::fs::write(&bare, ORDINARY).unwrap();
    let (code, text) = common::code_and_text(&setup.relayctl(&["route", bare.to_str().unwrap()]));
    assert_eq!(code, 64, "{text}");
    assert!(text.contains("--to ADDR"), "{text}");
}

/// The standard config with SecureDrop's route, the journalist notified.
fn securedrop(relay: &Relay, to: &str) -> Setup {
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let config = std::fs::read_to_string(setup.config_path()).unwrap();
    setup.write_config(&format!(
        "{config}\n[[routes]]\nname = \"submissions\"\n\
         match_body = \"ossec: output: 'head -1 /var/lib/securedrop/submissions_today.txt'\"\n\
         action = \"securedrop-journalist\"\n{to}\n"
    ));
    setup
}

/// A rule-400600 alert whose line after the marker is `count`.
fn daily(count: &str) -> Vec<u8> {
    format!(
        "Subject: OSSEC Notification - mon - Alert level 1\r\n\r\n\
         OSSEC HIDS Notification.\r\n2026 Nov 29 04:00:00\r\n\r\n\
         Received From: mon->head -1 /var/lib/securedrop/submissions_today.txt\r\n\
         Rule: 400600 fired (level 1) -> \"Daily submissions\"\r\nPortion of the log(s):\r\n\r\n\
         ossec: output: 'head -1 /var/lib/securedrop/submissions_today.txt':\r\n{count}\r\n\r\n\
         --END OF NOTIFICATION\r\n"
    )
    .into_bytes()
}

fn decrypt_all(relay: &Relay, key: &str) -> Vec<String> {
    let gpg = Gpg::with_keys(&[key]);
    relay
        .messages()
        .iter()
        .filter_map(|m| {
            let out = gpg.try_decrypt(m);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .collect()
}

#[test]
fn the_journalist_hears_of_submissions_once_a_day_in_messages_of_one_size() {
    let relay = Relay::start(&[]);
    let setup = securedrop(&relay, "to = [\"journalist@example.org\"]");
    let mut daemon = setup.start();
    daemon.connect().send_message("ossec", &daily("3"));
    let got = relay.wait_messages(1);
    let journalist = decrypt_all(&relay, "journalist");
    assert_eq!(journalist.len(), 1);
    assert!(
        journalist[0].contains("Subject: Submissions in the past 24h"),
        "{}",
        journalist[0]
    );
    assert!(
        journalist[0].contains("There has been submission activity in the past 24 hours."),
        "{}",
        journalist[0]
    );
    assert!(
        !journalist[0].contains("Rule: 400600"),
        "the alert itself is not sent"
    );
    assert!(
        decrypt_all(&relay, "alerts").is_empty(),
        "the admin gets nothing"
    );
    // Encrypted to the journalist's key alone, and not compressed.
    let packets = Gpg::with_keys(&["journalist"]).list_packets(&got[0]);
    assert!(!packets.contains("compressed packet"), "{packets}");
    assert_eq!(
        packets.matches(":pubkey enc packet:").count(),
        1,
        "{packets}"
    );

    // Within 1410 minutes: suppressed, across a restart too.
    daemon.connect().send_message("ossec", &daily("0"));
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit();
    let daemon = setup.start();
    daemon.connect().send_message("ossec", &daily("5"));
    daemon.wait_log("journalist notification suppressed");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(relay.messages().len(), 1);

    // 1411 minutes later: the "no activity" text, of the same size.
    let earlier = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 1411 * 60;
    std::fs::write(
        setup.spool().join("journalist.stamp"),
        format!("{earlier}\n"),
    )
    .unwrap();
    daemon.connect().send_message("ossec", &daily("0"));
    let got = relay.wait_messages(2);
    let journalist = decrypt_all(&relay, "journalist");
    assert!(
        journalist[1].contains("There has been no submission activity in the past 24 hours."),
        "{}",
        journalist[1]
    );
    assert_eq!(journalist[0].len(), journalist[1].len());
    assert_eq!(
        common::armored_block(&got[0]).len(),
        common::armored_block(&got[1]).len()
    );
    assert_eq!(got[0].len(), got[1].len(), "every header of one length too");
    assert!(
        !daemon.log().contains("There has been"),
        "no content in the log"
    );
}

#[test]
fn a_daily_alert_without_a_count_goes_to_the_admin_as_an_error_and_others_as_before() {
    let relay = Relay::start(&[]);
    let setup = securedrop(&relay, "to = [\"journalist@example.org\"]");
    let daemon = setup.start();
    daemon.connect().send_message("ossec", &daily("three"));
    daemon.connect().send_message("root", ORDINARY);
    relay.wait_messages(2);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(relay.messages().len(), 2);
    assert!(decrypt_all(&relay, "journalist").is_empty());
    let admin = decrypt_all(&relay, "alerts");
    let error = admin
        .iter()
        .find(|p| p.contains("Subject: SecureDrop Submissions Error"))
        .expect("the error report");
    assert!(
        error.contains("Rule: 400600 fired"),
        "the alert itself: {error}"
    );
    assert!(error.contains("\nthree"), "{error}");
    assert!(admin.iter().any(|p| p.contains("MARKER-ORDINARY")));
    assert!(!setup.spool().join("journalist.stamp").exists());

    // relayctl route says what each would do.
    for (count, want) in [
        ("three", "to: alerts@example.org: no count after the marker"),
        (
            "3",
            "to: journalist@example.org: \"Submissions in the past 24h\" (activity)",
        ),
        ("0", "(no activity)"),
    ] {
        let file = setup.path("daily.eml");
        std::fs::write(&file, daily(count)).unwrap();
        let out = setup.relayctl(&["route", file.to_str().unwrap(), "--to", "ossec"]);
        let (code, text) = common::code_and_text(&out);
        assert_eq!(code, 0, "{text}");
        assert!(
            text.contains("route: submissions (securedrop-journalist)"),
            "{text}"
        );
        assert!(text.contains(want), "{want} not in {text}");
    }
}

#[test]
fn without_a_journalist_the_notification_is_not_sent_and_the_log_says_so() {
    let relay = Relay::start(&[]);
    let setup = securedrop(&relay, "");
    let daemon = setup.start();
    let reply = daemon.connect().send_message("ossec", &daily("2"));
    assert!(reply.contains("250"), "{reply}");
    daemon.wait_log("no journalist is configured");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(relay.messages().is_empty());
}
