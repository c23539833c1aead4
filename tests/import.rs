//! `relayctl import-securedrop`: SecureDrop's site-specific variables in,
//! a relay.toml out that `relayctl test` takes to a real relay, with the
//! alert decrypting in GnuPG.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Relay, key_path, openssl_fingerprint};

/// A SecureDrop admin's directory: the variables file and the keys beside it.
fn securedrop_dir(relay_port: u16, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(key_path("alerts.asc"), dir.path().join("ossec.pub")).unwrap();
    std::fs::copy(
        key_path("journalist.asc"),
        dir.path().join("journalist.pub"),
    )
    .unwrap();
    let sha1 = openssl_fingerprint("relay.pem", "sha1");
    let text = format!(
        "---\n### Used by the common role ###\nssh_users: sd\ndns_server:\n  - 8.8.8.8\n  - 8.8.4.4\n\
         daily_reboot_time: 4\n\n### Used by the mon role ###\n\
         ossec_alert_gpg_public_key: ossec.pub\nossec_gpg_fpr: {alerts}\nossec_alert_email: alerts@example.org\n\
         journalist_alert_gpg_public_key: journalist.pub\njournalist_gpg_fpr: \"{journalist}\"\n\
         journalist_alert_email: journalist@example.org\n\
         smtp_relay: 127.0.0.1\nsmtp_relay_port: {relay_port}\nsasl_username: ossec\nsasl_domain: example.net\n\
         sasl_password: '{password}'\nsmtp_relay_fingerprint: \"{sha1}\"\n{extra}",
        alerts = common::fingerprint("alerts"),
        journalist = common::fingerprint("journalist"),
        password = common::RELAY_PASSWORD,
    );
    std::fs::write(dir.path().join("site-specific"), text).unwrap();
    dir
}

fn relayctl(config: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(common::RELAYCTL)
        .arg("--config")
        .arg(config)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn import(sd: &Path, out: &Path, args: &[&str]) -> (i32, String) {
    let file = sd.join("site-specific");
    let mut all = vec!["import-securedrop", file.to_str().unwrap()];
    all.extend_from_slice(args);
    relayctl(&out.join("relay.toml"), &all)
}

#[test]
fn the_imported_config_passes_relayctl_test_and_the_alert_decrypts() {
    let relay = Relay::start(&[]);
    let sd = securedrop_dir(relay.port, "");
    let out = tempfile::tempdir().unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("recipients: alerts@example.org, journalist@example.org"),
        "{text}"
    );

    // The password is in its own 0600 file, and nowhere else.
    let password_file = out.path().join("sasl_password");
    let mode = std::fs::metadata(&password_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(&password_file).unwrap().trim_end(),
        common::RELAY_PASSWORD
    );
    let config = std::fs::read_to_string(out.path().join("relay.toml")).unwrap();
    assert!(!config.contains(common::RELAY_PASSWORD), "{config}");
    assert!(!text.contains(common::RELAY_PASSWORD), "{text}");
    assert!(config.contains("root = \"alerts@example.org\""), "{config}");

    // The whole path, through the relay, pinned by SecureDrop's SHA-1.
    let (code, text) = relayctl(
        &out.path().join("relay.toml"),
        &["test", "--to", "journalist"],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("the certificate matches relay.fingerprints"),
        "{text}"
    );
    let got = relay.wait_messages(1);
    let inner = common::Gpg::with_keys(&["journalist"]).decrypt(&got[0]);
    assert!(common::contains(&inner, b"alerts reach you encrypted"));
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn an_existing_config_is_never_overwritten_without_force() {
    let sd = securedrop_dir(2525, "");
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("relay.toml"), "# the admin's own\n").unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 73, "{text}");
    assert!(
        text.contains("relay.toml exists: nothing was written (--force replaces it)"),
        "{text}"
    );
    assert_eq!(files(out.path()), [out.path().join("relay.toml")]);
    assert_eq!(
        std::fs::read_to_string(out.path().join("relay.toml")).unwrap(),
        "# the admin's own\n"
    );
    let (code, text) = import(sd.path(), out.path(), &["--force"]);
    assert_eq!(code, 0, "{text}");

    // The empty password file the package installs is filled without --force.
    let fresh = tempfile::tempdir().unwrap();
    std::fs::write(fresh.path().join("sasl_password"), "").unwrap();
    let (code, text) = import(sd.path(), fresh.path(), &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(
        std::fs::read_to_string(fresh.path().join("sasl_password"))
            .unwrap()
            .trim_end(),
        common::RELAY_PASSWORD
    );
    assert!(
        std::fs::read_to_string(out.path().join("relay.toml"))
            .unwrap()
            .contains("port = 2525")
    );
}

#[test]
fn missing_or_bad_variables_are_named_and_nothing_is_written() {
    for (extra, remove, want) in [
        ("", "sasl_password:", "sasl_password is missing or empty"),
        (
            "",
            "smtp_relay_port:",
            "smtp_relay_port is missing or empty",
        ),
        ("", "ossec_gpg_fpr:", "ossec_gpg_fpr is missing or empty"),
        ("", "journalist_gpg_fpr:", "must be set together"),
        ("", "smtp_relay_fingerprint:", ""),
    ] {
        let sd = securedrop_dir(2525, extra);
        let path = sd.path().join("site-specific");
        let text: String = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with(remove))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&path, text).unwrap();
        let out = tempfile::tempdir().unwrap();
        let (code, text) = import(sd.path(), out.path(), &[]);
        if want.is_empty() {
            // No fingerprint: the system CAs check the relay instead.
            assert_eq!(code, 0, "{text}");
            let config = std::fs::read_to_string(out.path().join("relay.toml")).unwrap();
            assert!(
                config.contains("checked against the system's CAs"),
                "{config}"
            );
            continue;
        }
        assert_eq!(code, 65, "{remove}: {text}");
        assert!(text.contains(want), "{remove}: {text}");
        assert!(
            files(out.path()).is_empty(),
            "{remove}: wrote {:?}",
            files(out.path())
        );
    }
    // A variable this import needs, written as a list.
    let sd = securedrop_dir(2525, "");
    let path = sd.path().join("site-specific");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("smtp_relay: 127.0.0.1\n", "smtp_relay:\n  - 127.0.0.1\n"),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 65, "{text}");
    assert!(
        text.contains("smtp_relay: is a list or a map; a single value is needed"),
        "{text}"
    );
    assert!(files(out.path()).is_empty());
    // A line that is not YAML this reader takes names its number.
    std::fs::write(&path, "smtp_relay: [a, b]\n").unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 65, "{text}");
    assert!(text.contains("line 1: "), "{text}");
    assert!(files(out.path()).is_empty());

    // A bad fingerprint and a key file that is not there.
    let sd = securedrop_dir(2525, "");
    let path = sd.path().join("site-specific");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("smtp_relay_fingerprint: \"", "smtp_relay_fingerprint: \"ZZ"),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 65, "{text}");
    assert!(text.contains("smtp_relay_fingerprint: "), "{text}");
    std::fs::remove_file(sd.path().join("journalist.pub")).unwrap();
    let sd2 = securedrop_dir(2525, "");
    std::fs::remove_file(sd2.path().join("ossec.pub")).unwrap();
    let (code, text) = import(sd2.path(), out.path(), &[]);
    assert_eq!(code, 66, "{text}");
    assert!(text.contains("ossec.pub"), "{text}");
    assert!(files(out.path()).is_empty());
}

#[test]
fn a_key_whose_fingerprint_differs_fails_the_check_after_import() {
    let sd = securedrop_dir(2525, "");
    // SecureDrop's variables name the journalist key's fingerprint for the OSSEC key.
    std::fs::copy(key_path("journalist.asc"), sd.path().join("ossec.pub")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 78, "{text}");
    assert!(text.contains("recipients[0].fingerprint"), "{text}");
}
