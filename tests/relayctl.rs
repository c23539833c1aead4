//! `relayctl key` and `relayctl fingerprint`, checked against what gpg and
//! openssl say about the same key and certificate.

mod common;

use std::process::Command;

use common::{Relay, Setup, key_path, openssl_fingerprint, openssl_spki_pin};

fn relayctl(args: &[&str]) -> (i32, String) {
    let out = Command::new(common::RELAYCTL).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
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
    assert!(text.contains("user ID: Alerts <alerts@example.org>"), "{text}");
    assert!(text.contains("4096 bits"), "{text}");
}

#[test]
fn key_that_cannot_encrypt_exits_non_zero_with_the_reason() {
    for (file, why) in [
        ("expired.asc", "can encrypt: no: the key expired on 2020-01-02"),
        ("revoked.asc", "can encrypt: no: the key is revoked"),
        ("signonly.asc", "can encrypt: no: the key has no valid encryption subkey"),
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
    assert!(text.contains(&format!("fingerprints = [\"{sha1}\", \"{sha256}\", \"{spki}\"]")), "{text}");
    assert!(text.contains("subject:  CN=localhost"), "{text}");
    assert!(text.contains("(STARTTLS)"), "{text}");
    // The relay saw no AUTH and no envelope.
    assert_eq!(relay.count("auth") + relay.count("mail"), 0);

    let implicit = Relay::start(&["--implicit"]);
    let (code, text) = relayctl(&["fingerprint", "--implicit", &format!("127.0.0.1:{}", implicit.port)]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains(&openssl_fingerprint("relay.pem", "sha256")), "{text}");
}

#[test]
fn fingerprint_of_a_closed_port_says_how_to_fix_it() {
    let (code, text) = relayctl(&["fingerprint", "127.0.0.1:1"]);
    assert_eq!(code, 69, "{text}");
    assert!(text.contains("cannot connect to 127.0.0.1:1"), "{text}");
    let (code, text) = relayctl(&["fingerprint", "127.0.0.1:notaport"]);
    assert_eq!(code, 64, "{text}");
}
