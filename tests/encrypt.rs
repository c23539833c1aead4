//! What leaves the host: every alert encrypted to its recipient's own key,
//! checked with GnuPG and Python's email parser, never with our own code.

mod common;

use std::os::unix::fs::PermissionsExt;

use alert_relay::spool::Entry;
use common::{Gpg, Setup, contains, find, lf, plain};

/// An OSSEC alert with everything that must not be in the clear.
const OSSEC: &[u8] = b"Received: from mon (localhost [127.0.0.1])\r\n\
From: OSSEC HIDS <ossecm@mon.example.org>\r\n\
To: <root@localhost>\r\n\
To: <journalist@example.org>\r\n\
Reply-To: admin@internal.example\r\n\
X-Originating-IP: 10.20.2.2\r\n\
X-Mailer: OSSEC HIDS\r\n\
User-Agent: ossec-maild\r\n\
X-IDS-OSSEC: 7\r\n\
Subject: OSSEC Notification - (app) 10.20.2.2 - Alert level 7\r\n\
\r\n\
OSSEC HIDS Notification.\r\n\
Received From: (app) 10.20.2.2->/var/log/auth.log\r\n\
Rule: 5503 fired (level 7) -> \"MARKER-ALERT-BODY\"\r\n";

/// Submits through `sendmail`, then lets the daemon check and wrap what
/// it wrote: returns the outgoing entries in `queue/` (the test relay is a
/// closed port, so they stay there).
fn submit(setup: &Setup, message: &[u8], to: &[&str]) -> Vec<Entry> {
    let mut args = vec!["-i"];
    args.extend_from_slice(to);
    let out = setup.sendmail(&args, message);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let submitted = setup.entries("incoming").len();
    let _daemon = setup.start();
    let queued = setup.wait_queued(submitted);
    assert_eq!(queued.len(), submitted);
    queued
}

fn header_names(message: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap();
    head.lines()
        .filter(|l| !l.starts_with([' ', '\t']))
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect()
}

fn outer_subject(message: &[u8]) -> String {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap();
    head.lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or("")
        .to_string()
}

/// Python's email package reads the outer structure.
fn python_email(message: &[u8]) -> String {
    let script = r#"
import email, sys
from email import policy
m = email.message_from_bytes(sys.stdin.buffer.read(), policy=policy.default)
parts = [p.get_content_type() for p in m.iter_parts()] if m.is_multipart() else []
print(m.get_content_type(), m.get_param("protocol"), ",".join(parts), len(m.defects))
"#;
    common::python(script, &[], message)
}

#[test]
fn pgp_mime_is_rfc3156_and_holds_the_original_headers_and_body() {
    let setup = Setup::new();
    let entries = submit(&setup, OSSEC, &["root"]);
    assert_eq!(entries.len(), 1);
    let msg = &entries[0].payload;
    assert_eq!(
        python_email(msg),
        "multipart/encrypted application/pgp-encrypted application/pgp-encrypted,application/octet-stream 0"
    );
    assert!(contains(msg, b"\r\n\r\nVersion: 1\r\n"));
    let inner = plain(&entries[0]);
    let inner_text = String::from_utf8_lossy(&inner);
    assert!(inner_text.starts_with("Content-Type: text/plain; charset=\"utf-8\"; protected-headers=\"v1\"; hp=\"cipher\"\r\n"), "{inner_text}");
    for field in [
        "From: OSSEC HIDS <ossecm@mon.example.org>",
        "Subject: OSSEC Notification - (app) 10.20.2.2 - Alert level 7",
        "To: <root@localhost>\r\nTo: <journalist@example.org>",
        "X-Originating-IP: 10.20.2.2",
        "HP-Outer: Subject: OSSEC Notification - (app) - Alert level 7",
        "HP-Outer: From: \"OSSEC HIDS\" <ossec@example.net>",
        "HP-Outer: To: <alerts@example.org>",
    ] {
        assert!(
            inner_text.contains(field),
            "{field:?} missing from\n{inner_text}"
        );
    }
    assert!(
        inner_text.contains("Date: "),
        "a Date is added when missing"
    );
    let body = &OSSEC[find(OSSEC, b"\r\n\r\n").unwrap() + 4..];
    assert!(inner.ends_with(body), "{inner_text}");
}

#[test]
fn outer_headers_are_exactly_the_allow_list() {
    let setup = Setup::new();
    let entries = submit(&setup, OSSEC, &["root"]);
    let msg = &entries[0].payload;
    assert_eq!(
        header_names(msg),
        vec![
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "MIME-Version",
            "Content-Type"
        ]
    );
    let text = String::from_utf8_lossy(msg);
    for leak in [
        "10.20.2.2",
        "internal.example",
        "MARKER-ALERT-BODY",
        "ossecm@",
        "OSSEC HIDS Notification",
        "X-IDS-OSSEC",
    ] {
        assert!(!text.contains(leak), "{leak} is in the clear:\n{text}");
    }
    assert!(
        text.starts_with(
            "From: \"OSSEC HIDS\" <ossec@example.net>\r\nTo: <alerts@example.org>\r\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("\r\nMessage-ID: <") && text.contains("@example.net>\r\n"),
        "{text}"
    );
}

#[test]
fn subject_policies() {
    for (policy, want) in [
        (
            "keep",
            "OSSEC Notification - (app) 10.20.2.2 - Alert level 7",
        ),
        ("scrub", "OSSEC Notification - (app) - Alert level 7"),
        ("hide", "[...]"),
    ] {
        let setup = Setup::new();
        setup.write_config(&setup.config_text(&format!("\n[message]\nsubject = \"{policy}\"\n")));
        let entries = submit(&setup, OSSEC, &["root"]);
        assert_eq!(outer_subject(&entries[0].payload), want, "{policy}");
        // The true subject is always inside.
        assert!(contains(
            &plain(&entries[0]),
            b"Subject: OSSEC Notification - (app) 10.20.2.2 - Alert level 7"
        ));
    }
}

#[test]
fn inline_is_the_armored_body_alone() {
    let setup = Setup::new();
    setup.write_config(&setup.config_text("\n[message]\nformat = \"inline\"\n"));
    let entries = submit(&setup, OSSEC, &["root"]);
    let msg = &entries[0].payload;
    assert_eq!(python_email(msg), "text/plain None  0");
    let text = String::from_utf8_lossy(msg);
    let body = text.split_once("\r\n\r\n").unwrap().1;
    assert!(body.starts_with("-----BEGIN PGP MESSAGE-----"), "{text}");
    let body_in = &OSSEC[find(OSSEC, b"\r\n\r\n").unwrap() + 4..];
    // The original body, then (padding by default) blank lines.
    let padded = plain(&entries[0]);
    assert!(
        padded.starts_with(body_in),
        "{}",
        String::from_utf8_lossy(&padded)
    );
    assert!(padded.len() > body_in.len());
    assert!(padded[body_in.len()..].iter().all(|b| b" \r\n".contains(b)));

    let setup = Setup::new();
    setup.write_config(&setup.config_text("\n[message]\nformat = \"inline\"\npad = \"none\"\n"));
    let entries = submit(&setup, OSSEC, &["root"]);
    assert_eq!(
        plain(&entries[0]),
        body_in,
        "without padding the decryption is the original body, byte for byte"
    );
}

#[test]
fn each_recipient_gets_a_ciphertext_only_their_key_opens() {
    let setup = Setup::new();
    let entries = submit(&setup, OSSEC, &["ossec"]);
    assert_eq!(entries.len(), 2);
    let alerts_only = Gpg::with_keys(&["alerts"]);
    let journalist_only = Gpg::with_keys(&["journalist"]);
    for e in &entries {
        let (mine, other) = if e.recipient == "alerts@example.org" {
            (&alerts_only, &journalist_only)
        } else {
            (&journalist_only, &alerts_only)
        };
        assert!(contains(&mine.decrypt(&e.payload), b"MARKER-ALERT-BODY"));
        assert!(
            !other.try_decrypt(&e.payload).status.success(),
            "{} opened by the other key",
            e.recipient
        );
        let packets = mine.list_packets(&e.payload);
        assert_eq!(
            packets.matches(":pubkey enc packet:").count(),
            1,
            "{packets}"
        );
    }
}

#[test]
fn rsa4096_and_curve25519_recipients() {
    let setup = Setup::new();
    let entries = submit(&setup, OSSEC, &["ossec"]);
    let gpg = Gpg::with_keys(&["alerts", "journalist"]);
    for e in &entries {
        let packets = gpg.list_packets(&e.payload);
        let algo = if e.recipient == "alerts@example.org" {
            "algo 1"
        } else {
            "algo 18"
        };
        assert!(packets.contains(algo), "{}: {packets}", e.recipient);
    }
}

#[test]
fn rsa2048_recipient_decrypts_with_gpg() {
    // The RSA session-key packet is built in src/encrypt/rsa.rs, padded to
    // the modulus length: check the smallest RSA key as well as RSA-4096.
    let setup = Setup::new();
    with_key(&setup, "rsa2048", "");
    let entries = submit(&setup, OSSEC, &["alerts@example.org"]);
    assert_eq!(entries.len(), 1);
    let gpg = Gpg::with_keys(&["rsa2048"]);
    let packets = gpg.list_packets(&entries[0].payload);
    assert!(
        packets.contains(":pubkey enc packet: version 3, algo 1"),
        "{packets}"
    );
    assert!(contains(
        &gpg.decrypt(&entries[0].payload),
        b"MARKER-ALERT-BODY"
    ));
    assert!(
        !Gpg::with_keys(&["alerts"])
            .try_decrypt(&entries[0].payload)
            .status
            .success()
    );
}

fn with_key(setup: &Setup, name: &str, extra: &str) {
    setup.write_config(&setup.config_with_key("alerts", name, extra));
}

#[test]
fn a_key_that_cannot_encrypt_gets_a_generic_notice_and_the_original_is_held_encrypted() {
    for (name, reason) in [
        ("expired", "the key expired on 2020-01-02"),
        ("revoked", "the key is revoked"),
        ("signonly", "no valid encryption subkey"),
    ] {
        let setup = Setup::new();
        with_key(&setup, name, "");
        let daemon = setup.start();
        let out = setup.sendmail(&["root"], OSSEC);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Not even in incoming/ does the held original rest in plaintext.
        let queued = setup.wait_queued(1);
        assert_eq!(queued.len(), 1, "{name}: only the notice is queued");
        let notice = String::from_utf8_lossy(&queued[0].payload).to_string();
        // The notice is the same fixed text for every failure: what it
        // says crosses a third-party relay in the clear.
        let (head, body) = notice.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains("\r\nSubject: Failed to encrypt an alert\r\n"),
            "{head}"
        );
        assert_eq!(
            lf(body.as_bytes()),
            alert_relay::encrypt::NOTICE_TEXT.as_bytes(),
            "{name}"
        );
        for leak in [
            "MARKER-ALERT-BODY",
            "10.20.2.2",
            "OSSEC Notification",
            "ossecm",
            "5503",
            "mon.example.org",
            reason,
            &common::fingerprint(name),
        ] {
            assert!(
                !notice.contains(leak),
                "{name}: {leak:?} in the plaintext notice:\n{notice}"
            );
        }
        // The details are for the admin: in relayctl queue and the log.
        assert!(queued[0].note.contains(reason), "{:?}", queued[0].note);
        let held = setup.wait_entries("held", 1);
        assert_eq!(held.len(), 1, "{name}");
        assert!(held[0].note.contains(reason), "{:?}", held[0].note);
        assert!(
            !contains(&held[0].payload, b"MARKER-ALERT-BODY"),
            "{name}: held in plaintext"
        );
        // The spool's hold key opens it, and GnuPG agrees.
        let hold = Gpg::with_secret_file(&setup.spool().join("hold.key"));
        assert_eq!(hold.decrypt(&held[0].payload), OSSEC, "{name}");
        let mode = std::fs::metadata(setup.spool().join(format!("held/{}.msg", held[0].id)))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let log = daemon.wait_log("held: the recipient's key cannot encrypt");
        assert!(log.contains(reason), "{log}");
        assert!(!log.contains("MARKER"), "{log}");
        drop(daemon);
    }
}

#[test]
fn on_key_failure_drop_keeps_only_the_notice() {
    let setup = Setup::new();
    with_key(
        &setup,
        "expired",
        "\n[message]\non_key_failure = \"drop\"\n",
    );
    let daemon = setup.start();
    let reply = daemon.connect().send_message("root", OSSEC);
    assert_eq!(common::code(&reply), 250);
    let queued = setup.wait_queued(1);
    assert_eq!(queued.len(), 1);
    assert!(String::from_utf8_lossy(&queued[0].payload).contains("could not be encrypted"));
    assert!(setup.entries("held").is_empty());
    let log = daemon.wait_log("cannot encrypt");
    assert!(!log.contains("MARKER"), "{log}");
}

#[test]
fn hostile_input_is_encrypted_and_decrypts() {
    let mut nested = String::new();
    for i in 0..60 {
        nested.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    nested.push_str("Content-Type: text/plain\r\n\r\nMARKER-deep\r\n");
    let big_header = format!(
        "Subject: {}\r\nX-Long: {}\r\n\r\nMARKER-bighead\r\n",
        "S".repeat(100),
        "h".repeat(100 * 1024)
    );
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "8-bit without MIME",
            b"Subject: caf\xe9\r\n\r\nMARKER-8bit \xe9\xff\r\n".to_vec(),
        ),
        (
            "bare LF",
            b"Subject: lf\nTo: root\n\nMARKER-lf\nline two\n".to_vec(),
        ),
        (
            "NUL bytes",
            b"Subject: nul\r\n\r\nMARKER-nul \x00\x00 end\r\n".to_vec(),
        ),
        (
            "invalid UTF-8 subject",
            b"Subject: \xff\xfe\xc3 broken\r\n\r\nMARKER-utf8\r\n".to_vec(),
        ),
        ("deeply nested MIME", nested.into_bytes()),
        ("100 KB header", big_header.into_bytes()),
        (
            "no header at all",
            b"MARKER-noheader just a body\n".to_vec(),
        ),
        ("10 MiB body", {
            let mut m = b"Subject: big\r\n\r\nMARKER-big\r\n".to_vec();
            m.extend(std::iter::repeat_n(b'x', 10 << 20));
            m
        }),
    ];
    let setup = Setup::with_listen("max_message_size = \"12MiB\"");
    for (name, message) in cases {
        let out = setup.sendmail(&["root"], &message);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let entries = setup.entries("incoming");
        let entry = entries.last().unwrap();
        assert!(
            !contains(&entry.payload, b"MARKER"),
            "{name}: plaintext in the spool"
        );
        let inner = plain(entry);
        let marker = &message[find(&message, b"MARKER").unwrap()..][..10];
        assert!(
            contains(&inner, marker),
            "{name}: {:?}",
            String::from_utf8_lossy(&lf(&inner)[..inner.len().min(300)])
        );
        let outer_len = outer_subject(&entry.payload).len();
        assert!(
            outer_len <= 300,
            "{name}: outer subject of {outer_len} bytes"
        );
        for f in std::fs::read_dir(setup.spool().join("incoming")).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
    }
}

/// The value of an outer header field, unfolded.
fn outer_field(message: &[u8], name: &str) -> String {
    let text = String::from_utf8_lossy(message);
    let head = text.split("\r\n\r\n").next().unwrap().replace("\r\n ", " ");
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {head}"))
        .to_string()
}

#[test]
fn message_ids_and_boundaries_are_random_and_say_nothing_of_the_host() {
    let setup = Setup::new();
    let _daemon = setup.start();
    for _ in 0..2 {
        let out = setup.sendmail(&["root"], OSSEC);
        assert!(out.status.success());
    }
    let queued = setup.wait_queued(2);
    assert_eq!(queued.len(), 2);
    let mut locals = Vec::new();
    let mut boundaries = Vec::new();
    for e in &queued {
        let id = outer_field(&e.payload, "Message-ID");
        let local = id
            .trim_matches(['<', '>'])
            .split_once('@')
            .map(|(l, d)| {
                assert_eq!(d, "example.net");
                l.to_string()
            })
            .unwrap();
        let boundary = outer_field(&e.payload, "Content-Type")
            .split("boundary=\"")
            .nth(1)
            .unwrap()
            .trim_end_matches('"')
            .to_string();
        // Not the queue id, nor its time or pid (its 5-digit counter
        // could turn up in 32 random hex digits by chance).
        for part in [e.id.as_str(), &e.id.as_str()[..13], &e.id.as_str()[13..19]] {
            assert!(!local.to_uppercase().contains(part), "{local} holds {part}");
            assert!(
                !boundary.to_uppercase().contains(part),
                "{boundary} holds {part}"
            );
        }
        assert!(local.len() >= 32, "{local}");
        locals.push(local);
        boundaries.push(boundary);
    }
    // Two messages: nothing in common but the form.
    let common_prefix =
        |a: &str, b: &str| a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    assert!(common_prefix(&locals[0], &locals[1]) < 4, "{locals:?}");
    assert!(
        common_prefix(&boundaries[0][2..], &boundaries[1][2..]) < 4,
        "{boundaries:?}"
    );
}

/// An OSSEC-shaped alert whose body makes it about `size` bytes long.
fn alert_of(size: usize) -> Vec<u8> {
    let mut alert = b"Subject: OSSEC Notification - mon - Alert level 7\r\n\r\n\
OSSEC HIDS Notification.\r\nRule: 5503 fired (level 7) -> \"MARKER-PADDED\"\r\n"
        .to_vec();
    while alert.len() < size {
        alert.extend_from_slice(b"Nov 29 06:00:00 mon sshd[1234]: Failed password for root\r\n");
    }
    alert
}

/// Sends a 300-byte and a 3,000-byte alert through the daemon to
/// aiosmtpd with `message_config` and returns what the relay received,
/// in order.
fn short_and_long_through_the_relay(message_config: &str) -> Vec<Vec<u8>> {
    let relay = common::Relay::start(&[]);
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let config = std::fs::read_to_string(setup.config_path()).unwrap();
    setup.write_config(&format!("{config}\n[message]\n{message_config}\n"));
    let daemon = setup.start();
    for (n, size) in [300, 3000].into_iter().enumerate() {
        let reply = daemon.connect().send_message("root", &alert_of(size));
        assert!(reply.starts_with("250"), "{reply}");
        relay.wait_messages(n + 1);
    }
    relay.messages()
}

#[test]
fn a_padding_of_4kib_gives_a_short_and_a_long_alert_one_size_and_both_decrypt() {
    let gpg = Gpg::with_keys(&["alerts"]);
    for format in ["pgp-mime", "inline"] {
        let padded =
            short_and_long_through_the_relay(&format!("format = \"{format}\"\npad = \"4KiB\""));
        assert_eq!(padded.len(), 2);
        assert_eq!(
            padded[0].len(),
            padded[1].len(),
            "{format}: a 300- and a 3,000-byte alert in messages of one size"
        );
        for (message, size) in padded.iter().zip([300, 3000]) {
            let plain = gpg.decrypt(message);
            // The whole alert is there, and what pads it is an X-Padding
            // field (PGP/MIME) or blank lines (inline), nothing else.
            let alert = alert_of(size);
            let body = &alert[find(&alert, b"\r\n\r\n").unwrap() + 4..];
            let at = find(&plain, body).unwrap_or_else(|| panic!("{format}: body missing"));
            match format {
                "pgp-mime" => {
                    assert!(contains(&plain, b"\r\nX-Padding:\r\n x"), "{format}");
                    assert_eq!(&plain[at..], body, "{format}: the body ends the plaintext");
                }
                _ => {
                    assert_eq!(at, 0, "{format}");
                    let filler = &plain[body.len()..];
                    assert!(!filler.is_empty(), "{format}");
                    assert!(filler.iter().all(|b| b" \r\n".contains(b)), "{format}");
                }
            }
        }
    }
}

#[test]
fn without_padding_the_sizes_differ() {
    let sizes: Vec<usize> = short_and_long_through_the_relay("pad = \"none\"")
        .iter()
        .map(Vec::len)
        .collect();
    assert!(sizes[1] > sizes[0] + 2000, "{sizes:?}");
}

#[test]
fn a_message_at_the_size_limit_with_bare_lf_and_padding_is_taken_not_set_aside() {
    // Every bare LF becomes CRLF (twice the bytes), then the padding, then
    // the armor: what sendmail writes must not outgrow what the daemon
    // reads back, or an alert sendmail said it took would be set aside.
    let setup = Setup::with_listen("max_message_size = \"256KiB\"\n");
    setup.write_config(&setup.config_text("\n[message]\npad = \"1MiB\"\n"));
    let mut message = b"Subject: a long report\n\n".to_vec();
    while message.len() < 250 << 10 {
        message.extend_from_slice(b"x\n");
    }
    let entries = submit(&setup, &message, &["root"]);
    assert_eq!(entries.len(), 1);
    assert!(setup.entries("corrupt").is_empty());
    assert!(entries[0].payload.len() > 1 << 20, "padded to 1 MiB");
}
