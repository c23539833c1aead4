//! `relayctl demo`, the README's first command.

mod common;

#[test]
fn demo_runs_the_path_and_cleans_up() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(common::RELAYCTL)
        .arg("demo")
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    // The demo's key, certificate, config and spool are gone with it.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "the demo left {left:?} behind");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("S: 250 2.0.0 Ok: queued as "), "{text}");
    assert!(text.contains("S: 221 2.0.0 Bye"), "{text}");
    // Both messages reached the stand-in relay over TLS with AUTH...
    let relayed: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("relay got ") && l.ends_with("authenticated as ossec@example.net"))
        .collect();
    assert_eq!(relayed.len(), 2, "{text}");
    // ...and left the spool empty.
    let after = text.split_once("6. The spool afterwards:").unwrap().1;
    assert!(after.contains("Mail queue is empty"), "{text}");
    // What the relay got is PGP/MIME, and the demo's own decryption shows the alert.
    assert!(
        text.contains(
            "| Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";"
        ),
        "{text}"
    );
    let (relayed, decrypted) = text.split_once("5. Their decryption").unwrap();
    assert!(!relayed.contains("User login failed"), "{text}");
    assert!(!relayed.contains("backup finished"), "{text}");
    assert!(
        decrypted.contains("| Rule: 5503 fired (level 7) -> \"User login failed.\""),
        "{text}"
    );
    assert!(decrypted.contains("| backup finished"), "{text}");
    let config_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("config"))
        .unwrap();
    let config = config_line.split_whitespace().last().unwrap();
    assert!(
        !std::path::Path::new(config).exists(),
        "the demo removes its files"
    );
}
