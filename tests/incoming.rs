//! `incoming/` is untrusted: anything with the spool's group can write
//! there, so the daemon takes only what `sendmail` legitimately writes and
//! sets everything else aside in `corrupt/`. Forged files are planted
//! beside a real submission; aiosmtpd must receive the real one alone.

mod common;

use alert_relay::spool::{Entry, Kind};
use common::{Gpg, Relay, Setup};

const DATE: &str = "Sat, 28 Nov 2026 10:00:00 +0000";

/// A sealed alert as sendmail writes it, around `armored`.
fn sealed(armored: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "format pgp-mime\nsubject forged\ndate {DATE}\nmessage-id 0123456789abcdef@example.net\n\n"
    )
    .into_bytes();
    out.extend_from_slice(armored);
    out
}

/// A spool entry of `kind`, written into incoming/ as a submitter would.
fn plant(setup: &Setup, kind: Kind, recipient: &str, payload: Vec<u8>) -> Entry {
    let entry = Entry {
        kind,
        ..Entry::new("mallory@mon", recipient, payload)
    };
    std::fs::write(
        setup.spool().join(format!("incoming/{}.msg", entry.id)),
        entry.encode(),
    )
    .unwrap();
    entry
}

/// GnuPG's own OpenPGP output, armored.
fn gpg_armor(gpg: &Gpg, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut all = vec!["--armor", "--trust-model", "always"];
    all.extend_from_slice(args);
    let out = gpg.run(&all, input);
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn forged_submissions_are_set_aside_and_never_sent() {
    let relay = Relay::start(&[]);
    let setup = Setup::new();
    setup.use_relay(relay.port, "");
    let daemon = setup.start();
    let gpg = Gpg::with_keys(&["alerts", "journalist"]);
    let alerts = common::fingerprint("alerts");
    let journalist = common::fingerprint("journalist");
    let secret = b"Subject: forged\n\nMARKER-FORGED exfiltrated text\n";
    let to_alerts = gpg_armor(&gpg, &["--encrypt", "-r", &alerts], secret);

    let forged = [
        (
            plant(
                &setup,
                Kind::Outgoing,
                "alerts@example.org",
                secret.to_vec(),
            ),
            "an outgoing message",
        ),
        (
            plant(&setup, Kind::Outgoing, "someone@gmail.com", secret.to_vec()),
            "is not a configured recipient",
        ),
        (
            plant(
                &setup,
                Kind::Sealed,
                "someone@gmail.com",
                sealed(&to_alerts),
            ),
            "is not a configured recipient",
        ),
        (
            plant(
                &setup,
                Kind::Sealed,
                "alerts@example.org",
                sealed(&gpg_armor(
                    &gpg,
                    &["--compress-algo", "none", "--store"],
                    secret,
                )),
            ),
            "a Literal Data Packet where only",
        ),
        (
            plant(
                &setup,
                Kind::Sealed,
                "alerts@example.org",
                sealed(&gpg_armor(&gpg, &["--encrypt", "-r", &journalist], secret)),
            ),
            "for another key",
        ),
        (
            plant(
                &setup,
                Kind::Sealed,
                "alerts@example.org",
                sealed(&gpg_armor(
                    &gpg,
                    &[
                        "--passphrase",
                        "known to all",
                        "--symmetric",
                        "--encrypt",
                        "-r",
                        &alerts,
                    ],
                    secret,
                )),
            ),
            "a Symmetric-Key Encrypted Session Key Packet where only",
        ),
        (
            plant(
                &setup,
                Kind::Sealed,
                "alerts@example.org",
                sealed(&to_alerts)
                    .into_iter()
                    .chain(
                        b"\nplaintext after the armor, MARKER-FORGED\n"
                            .iter()
                            .copied(),
                    )
                    .collect(),
            ),
            // Refused only if the armor is bad; otherwise the new armor
            // drops the tail (checked below: nothing forged is sent).
            "",
        ),
        (
            plant(
                &setup,
                Kind::Sealed,
                "alerts@example.org",
                String::from_utf8(sealed(&to_alerts))
                    .unwrap()
                    .replacen(
                        "subject forged\n",
                        "subject forged\nbcc: someone@gmail.com\n",
                        1,
                    )
                    .into_bytes(),
            ),
            "expected date",
        ),
        (
            plant(&setup, Kind::Notice, "alerts@example.org", secret.to_vec()),
            "a notice with a payload",
        ),
        (
            plant(
                &setup,
                Kind::HeldSealed,
                "alerts@example.org",
                to_alerts.clone(),
            ),
            "not encrypted to the hold key",
        ),
    ];

    let real = setup.sendmail(&["root"], b"Subject: real\n\nMARKER-REAL\n");
    assert!(
        real.status.success(),
        "{}",
        String::from_utf8_lossy(&real.stderr)
    );
    // The real one, and the sealed alert with text after its armor: that
    // forgery carries a real alert to its real recipient, so it goes out,
    // in armor made anew without the tail.
    let got = relay.wait_messages(2);
    assert_eq!(got.len(), 2);
    let alerts = Gpg::with_keys(&["alerts"]);
    let opened: Vec<Vec<u8>> = got.iter().map(|m| alerts.decrypt(m)).collect();
    assert!(opened.iter().any(|o| common::contains(o, b"MARKER-REAL")));
    let log = daemon.wait_log("corrupt spool file");
    // And the admin's warning that files were set aside, naming each but
    // carrying nothing of them.
    let all = relay.wait_messages(3);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let all_now = relay.messages();
    assert_eq!(all_now.len(), 3, "nothing else was sent");
    let warning = all
        .iter()
        .map(|m| String::from_utf8_lossy(&alerts.decrypt(m)).into_owned())
        .find(|p| p.contains("to fix before alerts stop"))
        .expect("a warning about the files set aside");
    assert!(warning.contains("WARNING corrupt"), "{warning}");
    // It names where the forgeries were addressed, for the admin, and
    // carries none of their content.
    assert!(warning.contains("to someone@gmail.com"), "{warning}");
    assert!(!warning.contains("MARKER-FORGED"), "{warning}");
    for m in &all {
        assert!(
            !common::contains(m, b"MARKER-FORGED") && !common::contains(m, b"someone@gmail"),
            "forged content left the host:\n{}",
            String::from_utf8_lossy(m)
        );
    }
    for e in relay.events() {
        assert!(!e.contains("gmail"), "{e}");
    }
    let corrupt = setup.spool().join("corrupt");
    for (entry, why) in &forged {
        let path = corrupt.join(format!("{}.msg.why", entry.id));
        if why.is_empty() {
            continue;
        }
        let reason = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!("{} ({why}) was not set aside:\n{}", entry.id, daemon.log())
        });
        assert!(
            reason.contains(why),
            "{}: want {why:?}, got {reason}",
            entry.id
        );
    }
    assert!(!log.contains("MARKER"), "{log}");
    assert!(setup.entries("incoming").is_empty());
}

#[test]
fn a_submission_for_a_recipient_removed_since_is_set_aside_with_the_reason() {
    let setup = Setup::new();
    let out = setup.sendmail(&["journalist@example.org"], b"Subject: j\n\nbody\n");
    assert!(out.status.success());
    let submitted = setup.entries("incoming");
    assert_eq!(submitted.len(), 1);
    // The journalist is gone from the config before the daemon runs.
    let text = setup.config_text("");
    let without = text
        .replace(
            &format!(
                "[[recipients]]\naddress = \"journalist@example.org\"\nkey = \"{}\"\nfingerprint = \"{}\"\n",
                common::key_path("journalist.asc").display(),
                common::fingerprint("journalist")
            ),
            "",
        )
        .replace(", \"journalist@example.org\"", "");
    assert_ne!(text, without);
    setup.write_config(&without);
    let daemon = setup.start();
    daemon.wait_log("corrupt spool file");
    let why = std::fs::read_to_string(
        setup
            .spool()
            .join(format!("corrupt/{}.msg.why", submitted[0].id)),
    )
    .unwrap();
    assert!(why.contains("is not a configured recipient"), "{why}");
    let listed = String::from_utf8(setup.relayctl(&["queue"]).stdout).unwrap();
    assert!(
        listed.contains("corrupt") && listed.contains("journalist@example.org"),
        "{listed}"
    );
}
