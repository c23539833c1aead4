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
    common::code_and_text(&out)
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

#[test]
fn in_securedrops_own_layout_the_keys_are_found_in_ansible_base() {
    // install_files/ansible-base/ holds the keys, and
    // group_vars/all/site-specific names them relative to it.
    let flat = securedrop_dir(2525, "");
    let base = flat.path().join("install_files/ansible-base");
    let all = base.join("group_vars/all");
    std::fs::create_dir_all(&all).unwrap();
    for key in ["ossec.pub", "journalist.pub"] {
        std::fs::rename(flat.path().join(key), base.join(key)).unwrap();
    }
    std::fs::rename(flat.path().join("site-specific"), all.join("site-specific")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, text) = import(&all, out.path(), &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("recipients: alerts@example.org, journalist@example.org"),
        "{text}"
    );
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
fn a_config_that_signs_in_with_oauth2_is_not_switched_back_to_a_password_even_with_force() {
    let sd = securedrop_dir(2525, "");
    let out = tempfile::tempdir().unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 0, "{text}");
    // The admin moved the relay to OAuth 2.0 by hand (README).
    let config = out.path().join("relay.toml");
    let oauth2 = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .map(|l| match l.starts_with("password_file") {
            true => "auth = \"oauth2\"",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&config, &oauth2).unwrap();
    let password = std::fs::read(out.path().join("sasl_password")).unwrap();
    for args in [&[][..], &["--force"]] {
        let (code, text) = import(sd.path(), out.path(), args);
        assert_eq!(code, 73, "{args:?}: {text}");
        assert!(
            text.contains("signs in with OAuth 2.0 (relay.auth = \"oauth2\")")
                && text.contains("Nothing was written, even with --force"),
            "{text}"
        );
        assert_eq!(std::fs::read_to_string(&config).unwrap(), oauth2);
        assert_eq!(
            std::fs::read(out.path().join("sasl_password")).unwrap(),
            password
        );
    }
    // Moved aside, the import writes a password config again.
    std::fs::rename(&config, out.path().join("relay.toml.oauth2")).unwrap();
    let (code, text) = import(sd.path(), out.path(), &["--force"]);
    assert_eq!(code, 0, "{text}");
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
fn a_key_whose_fingerprint_differs_is_refused_before_anything_is_written() {
    let sd = securedrop_dir(2525, "");
    // The file holds the journalist's key, not the one ossec_gpg_fpr names.
    std::fs::copy(key_path("journalist.asc"), sd.path().join("ossec.pub")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 65, "{text}");
    assert!(
        text.contains(&format!(
            "ossec_alert_gpg_public_key: {} holds the key {}, but ossec_gpg_fpr is {}",
            sd.path().join("ossec.pub").display(),
            common::fingerprint("journalist"),
            common::fingerprint("alerts")
        )),
        "{text}"
    );
    assert!(files(out.path()).is_empty());
}

#[test]
fn a_file_that_is_no_key_is_never_copied() {
    // What `ossec_alert_gpg_public_key: /etc/shadow` did: a copy of any
    // file root can read. Here a stand-in secret, mode 0600.
    let sd = securedrop_dir(2525, "");
    let secret = sd.path().join("shadow");
    std::fs::write(&secret, "root:$6$MARKER-SHADOW-HASH:19000:0:99999:7:::\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let vars = std::fs::read_to_string(sd.path().join("site-specific")).unwrap();
    std::fs::write(
        sd.path().join("site-specific"),
        vars.replace(
            "ossec_alert_gpg_public_key: ossec.pub",
            &format!("ossec_alert_gpg_public_key: {}", secret.display()),
        ),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 65, "{text}");
    assert!(text.contains("is not an OpenPGP public key"), "{text}");
    assert!(!text.contains("MARKER-SHADOW"), "{text}");
    assert!(files(out.path()).is_empty(), "nothing written");
}

#[test]
fn the_imported_key_is_the_public_key_alone() {
    // A file with the secret key too: only the public key is copied.
    let sd = securedrop_dir(2525, "");
    std::fs::copy(key_path("alerts.sec.asc"), sd.path().join("ossec.pub")).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 0, "{text}");
    let copied = std::fs::read(out.path().join("ossec.pub")).unwrap();
    let gpg = common::Gpg::with_keys(&[]);
    let listed = gpg.run(&["--show-keys", "--with-colons"], &copied);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains(&common::fingerprint("alerts")), "{listed}");
    assert!(listed.lines().any(|l| l.starts_with("pub:")), "{listed}");
    assert!(
        !listed
            .lines()
            .any(|l| l.starts_with("sec:") || l.starts_with("ssb:")),
        "{listed}"
    );
}

#[test]
#[ignore = "needs root (other users, setgid): ./test.sh runs it as root"]
fn imported_as_root_the_daemons_user_can_read_what_it_needs() {
    use common::users::{self, User, as_user, own};
    let [daemon, _, _] = users::ensure("import as root");
    let root = User::by_name("root").unwrap();
    // The package's layout: /etc/alert-relay is root:alert-relay 0750.
    let base = tempfile::tempdir().unwrap();
    own(base.path(), &root, 0, 0o755);
    let etc = base.path().join("etc");
    std::fs::create_dir(&etc).unwrap();
    own(&etc, &root, daemon.gid, 0o750);
    let sd = securedrop_dir(2525, "");
    let (code, text) = import(sd.path(), &etc, &[]);
    assert_eq!(code, 0, "{text}");

    use std::os::unix::fs::MetadataExt;
    let meta = |name: &str| {
        let m = std::fs::metadata(etc.join(name)).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o777)
    };
    assert_eq!(meta("relay.toml"), (0, daemon.gid, 0o640));
    assert_eq!(meta("sasl_password"), (daemon.uid, daemon.gid, 0o600));
    // As the daemon's user, the config checks.
    let out = Command::new("setpriv")
        .args(as_user(&daemon))
        .arg(common::RELAYCTL)
        .arg("--config")
        .arg(etc.join("relay.toml"))
        .arg("check")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // relayctl test, as root, looks through the eyes of the spool's owner.
    let spool = base.path().join("spool");
    std::fs::create_dir(&spool).unwrap();
    own(&spool, &daemon, daemon.gid, 0o710);
    let config = etc.join("relay.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{text}\n[queue]\ndir = \"{}\"\n", spool.display()),
    )
    .unwrap();
    let (_, said) = relayctl(&config, &["test", "--no-send"]);
    assert!(
        said.contains(
            "✓ daemon user: alert-relay can read the config, the keys and the secrets, and write the spool"
        ),
        "{said}"
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (code, said) = relayctl(&config, &["test", "--no-send"]);
    assert_ne!(code, 0);
    assert!(
        said.contains("✗ daemon user: alert-relayd runs as alert-relay, which cannot use what it needs: the config:")
            && said.contains("mode 0600) keeps alert-relay out; let its group read it: chgrp alert-relay"),
        "{said}"
    );
}

#[test]
fn the_example_config_the_package_ships_is_replaced_without_force() {
    let sd = securedrop_dir(2525, "");
    let out = tempfile::tempdir().unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/relay.toml");
    std::fs::copy(&shipped, out.path().join("relay.toml")).unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 0, "{text}");
    let written = std::fs::read_to_string(out.path().join("relay.toml")).unwrap();
    assert!(written.contains("import-securedrop"), "{written}");
    // An admin's edit of it is theirs: kept without --force.
    let edited = std::fs::read_to_string(&shipped).unwrap() + "\n# mine\n";
    std::fs::write(out.path().join("relay.toml"), &edited).unwrap();
    std::fs::remove_file(out.path().join("sasl_password")).unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 73, "{text}");
    assert_eq!(
        std::fs::read_to_string(out.path().join("relay.toml")).unwrap(),
        edited
    );
}

#[test]
fn the_imported_server_notifies_the_journalist_and_gives_the_admin_the_rest() {
    let relay = Relay::start(&[]);
    let sd = securedrop_dir(relay.port, "");
    let out = tempfile::tempdir().unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 0, "{text}");
    let config_path = out.path().join("relay.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert!(
        config.contains("action = \"securedrop-journalist\""),
        "{config}"
    );
    // The imported file, run on loopback with a spool of the test's own.
    std::fs::write(
        &config_path,
        format!(
            "{config}\n[listen]\naddresses = [\"127.0.0.1:0\"]\n\n[queue]\ndir = \"{}\"\n",
            out.path().join("spool").display()
        ),
    )
    .unwrap();
    let daemon = common::Daemon::start(&config_path, &out.path().join("daemon.log"));
    let daily = b"Subject: OSSEC Notification - mon - Alert level 1\r\n\r\n\
Rule: 400600 fired (level 1) -> \"Daily submissions\"\r\n\
ossec: output: 'head -1 /var/lib/securedrop/submissions_today.txt':\r\n4\r\n";
    daemon.connect().send_message("ossec", daily);
    daemon.connect().send_message(
        "ossec",
        b"Subject: OSSEC Notification - disk\r\n\r\nMARKER-REST\r\n",
    );
    let got = relay.wait_messages(2);
    let journalist = common::Gpg::with_keys(&["journalist"]);
    let admin = common::Gpg::with_keys(&["alerts"]);
    let mut to_journalist = Vec::new();
    let mut to_admin = Vec::new();
    for m in &got {
        let j = journalist.try_decrypt(m);
        if j.status.success() {
            to_journalist.push(String::from_utf8_lossy(&j.stdout).into_owned());
        } else {
            to_admin.push(String::from_utf8_lossy(&admin.decrypt(m)).into_owned());
        }
    }
    assert_eq!(to_journalist.len(), 1, "{to_journalist:?}");
    assert!(to_journalist[0].contains("There has been submission activity in the past 24 hours."));
    assert_eq!(to_admin.len(), 1, "{to_admin:?}");
    assert!(to_admin[0].contains("MARKER-REST"));
    assert!(!to_admin[0].contains("Rule: 400600"));
}

#[test]
fn without_journalist_variables_no_route_is_written() {
    let relay = Relay::start(&[]);
    let sd = securedrop_dir(relay.port, "");
    let site = sd.path().join("site-specific");
    let text: String = std::fs::read_to_string(&site)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("journalist_"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&site, text).unwrap();
    let out = tempfile::tempdir().unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 0, "{text}");
    let config = std::fs::read_to_string(out.path().join("relay.toml")).unwrap();
    assert!(!config.contains("[[routes]]"), "{config}");
}

/// The lines relayctl printed for the files, as (verb, file name).
fn file_lines(text: &str) -> Vec<(String, String)> {
    let mut lines: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let (verb, path) = l.split_once(' ')?;
            ["wrote", "unchanged"].contains(&verb).then(|| {
                let name = Path::new(path).file_name().unwrap().to_string_lossy();
                (verb.to_string(), name.into_owned())
            })
        })
        .collect();
    lines.sort();
    lines
}

#[test]
fn a_second_import_of_the_same_variables_changes_nothing_and_needs_no_force() {
    // As root the password file goes to the daemon's user when it
    // exists: made now, not by another test between the two imports
    // (which would change the owner the second one wants).
    if common::users::is_root() {
        common::users::ensure("a second import");
    }
    let sd = securedrop_dir(2525, "");
    let out = tempfile::tempdir().unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 0, "{text}");
    let all = ["journalist.pub", "ossec.pub", "relay.toml", "sasl_password"];
    let said = |verb: &str, names: &[&str]| -> Vec<(String, String)> {
        names
            .iter()
            .map(|n| (verb.to_string(), n.to_string()))
            .collect()
    };
    assert_eq!(file_lines(&text), said("wrote", &all), "{text}");
    let config = out.path().join("relay.toml");
    let before = std::fs::metadata(&config).unwrap();

    // Again, without --force: nothing is written, not even touched.
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 0, "{text}");
    assert_eq!(file_lines(&text), said("unchanged", &all), "{text}");
    let after = std::fs::metadata(&config).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&before),
        std::os::unix::fs::MetadataExt::ino(&after),
        "relay.toml was replaced"
    );

    // A file whose mode an admin loosened is written again, with the
    // mode it must have.
    let password = out.path().join("sasl_password");
    std::fs::set_permissions(&password, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, text) = import(sd.path(), out.path(), &["--force"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        file_lines(&text).contains(&("wrote".into(), "sasl_password".into())),
        "{text}"
    );
    assert!(
        file_lines(&text).contains(&("unchanged".into(), "relay.toml".into())),
        "{text}"
    );
    let mode = std::fs::metadata(&password).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // A changed variable changes the config only, and only with --force.
    let file = sd.path().join("site-specific");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("smtp_relay_port: 2525", "smtp_relay_port: 2526"),
    )
    .unwrap();
    let (code, text) = import(sd.path(), out.path(), &[]);
    assert_eq!(code, 73, "{text}");
    assert!(text.contains("relay.toml exists"), "{text}");
    let (code, text) = import(sd.path(), out.path(), &["--force"]);
    assert_eq!(code, 0, "{text}");
    let mut want = said(
        "unchanged",
        &["journalist.pub", "ossec.pub", "sasl_password"],
    );
    want.push(("wrote".into(), "relay.toml".into()));
    want.sort();
    assert_eq!(file_lines(&text), want, "{text}");
}

/// `relayctl import-securedrop -` with `text` on standard input.
fn import_stdin(out: &Path, cwd: &Path, args: &[&str], text: &[u8]) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(common::RELAYCTL)
        .arg("--config")
        .arg(out.join("relay.toml"))
        .args(["import-securedrop", "-"])
        .args(args)
        .current_dir(cwd)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A refused input may be closed before it is all written.
    let _ = child.stdin.take().unwrap().write_all(text);
    common::code_and_text(&child.wait_with_output().unwrap())
}

#[test]
fn the_variables_can_come_on_standard_input_with_the_keys_elsewhere() {
    let sd = securedrop_dir(2525, "");
    let text = std::fs::read(sd.path().join("site-specific")).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();

    // --keys-from names the keys' directory.
    let out = tempfile::tempdir().unwrap();
    let keys_from = sd.path().to_str().unwrap();
    let (code, said) = import_stdin(
        out.path(),
        elsewhere.path(),
        &["--keys-from", keys_from],
        &text,
    );
    assert_eq!(code, 0, "{said}");
    assert!(
        said.contains("recipients: alerts@example.org, journalist@example.org"),
        "{said}"
    );
    let config = std::fs::read_to_string(out.path().join("relay.toml")).unwrap();
    assert!(config.contains("import-securedrop -`"), "{config}");
    assert_eq!(
        std::fs::read_to_string(out.path().join("sasl_password"))
            .unwrap()
            .trim_end(),
        common::RELAY_PASSWORD
    );

    // Without it, the keys are looked for in the current directory.
    let out = tempfile::tempdir().unwrap();
    let (code, said) = import_stdin(out.path(), sd.path(), &[], &text);
    assert_eq!(code, 0, "{said}");
    let (code, said) = import_stdin(out.path(), elsewhere.path(), &["--force"], &text);
    assert_eq!(code, 66, "{said}");
    assert!(said.contains("ossec.pub"), "{said}");

    // More than any site-specific file is refused, and nothing written.
    let out = tempfile::tempdir().unwrap();
    let mut huge = text.clone();
    huge.extend(std::iter::repeat_n(b'#', 2 << 20));
    let (code, said) = import_stdin(out.path(), sd.path(), &[], &huge);
    assert_eq!(code, 66, "{said}");
    assert!(said.contains("more than 1048576 bytes"), "{said}");
    assert!(files(out.path()).is_empty());
}
