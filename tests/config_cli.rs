//! Config errors as an admin meets them: through `relayctl check` and
//! `alert-relayd` startup, each naming the file, the key and the problem.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::{DAEMON, Setup};

fn said_ok(out: &std::process::Output) -> bool {
    out_text(out).contains(": ok (2 recipients, relay 127.0.0.1:1)")
}

fn out_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// (what to change in the standard config, what the error must say)
const BAD: &[(&str, &str, &str)] = &[
    (
        "fingerprint = \"",
        "fingerprint = \"FD720AD9\" # \"",
        "recipients[0].fingerprint: \"FD720AD9\" is not an OpenPGP fingerprint",
    ),
    (
        "tests/keys/alerts.asc",
        "tests/keys/missing.asc",
        "recipients[0].key: cannot read the key file",
    ),
    (
        "tests/keys/journalist.asc",
        "tests/keys/journalist.sec.asc.nope",
        "recipients[1].key: cannot read the key file",
    ),
    (
        "dir = ",
        "retry = [\"1m\", \"soon\"]\ndir = ",
        "queue.retry[1]: \"soon\" is not a duration",
    ),
    (
        "hostname = ",
        "max_message_size = \"lots\"\nhostname = ",
        "listen.max_message_size: \"lots\" is not a size",
    ),
    (
        "host = \"127.0.0.1\"",
        "host = \"127.0.0.1\"\nfingerprints = [\"6D:87:EE\"]",
        "relay.fingerprints[0]: \"6D:87:EE\" has 6 hex digits",
    ),
    ("port = 1", "port = 99999", "relay.port"),
    (
        "hostname = ",
        "hostnme = \"typo\"\nhostname = ",
        "listen.hostnme: unknown field `hostnme`",
    ),
    (
        "127.0.0.1:0",
        "192.0.2.1:25",
        "listen.addresses[0]: 192.0.2.1:25 is not a loopback address",
    ),
    (
        "root = \"alerts@example.org\"",
        "root = \"someone@gmail.com\"",
        "aliases.root: someone@gmail.com is not a configured recipient or alias",
    ),
    (
        "hostname = ",
        "max_in_flight = \"1MiB\"\nhostname = ",
        "listen.max_in_flight: 1048576 is less than listen.max_message_size (10485760)",
    ),
    (
        "[aliases]",
        "[health]\nwarn_after = \"2h\"\n\n[aliases]",
        "health.critical_after: 1h is shorter than health.warn_after (2h)",
    ),
    (
        "[aliases]",
        "[health]\nto = [\"nobody@example.com\"]\n\n[aliases]",
        "health.to[0]: nobody@example.com is not a configured recipient or alias",
    ),
    (
        "[aliases]",
        "[heartbeat]\nto = [\"root\"]\n\n[aliases]",
        "heartbeat.every: is missing, but heartbeat.to is set",
    ),
    (
        "[aliases]",
        "[heartbeat]\nevery = \"500ms\"\n\n[aliases]",
        "heartbeat.every: 500ms is less than a second",
    ),
    (
        "[aliases]",
        "[heartbeat]\nevery = \"daily\"\n\n[aliases]",
        "heartbeat.every: \"daily\" is not a duration",
    ),
    (
        "host = \"127.0.0.1\"",
        "host = \"127.0.0.1\"\nfallback_after = \"5m\"",
        "relay.fallback_after: belongs in [fallback]",
    ),
    (
        "[aliases]",
        "[fallback]\nhost = \"127.0.0.1\"\nport = 1\n\n[aliases]",
        "fallback.host: is the primary relay itself",
    ),
    (
        "[aliases]",
        "[fallback]\nhost = \"smtp.example.com\"\nusername = \"u\"\n\n[aliases]",
        "fallback.password_file: is missing",
    ),
    (
        "[aliases]",
        "[fallback]\nhost = \"smtp.example.com\"\nfallback_after = \"soon\"\n\n[aliases]",
        "fallback.fallback_after: \"soon\" is not a duration",
    ),
    (
        "[aliases]",
        "[[routes]]\nmatch_header = { Subject = \"(unclosed\" }\ndrop = true\n\n[aliases]",
        "routes[0].match_header.Subject: not a valid expression",
    ),
    (
        "[aliases]",
        "[[routes]]\nmatch_body = \"x\"\nto = [\"someone@gmail.com\"]\n\n[aliases]",
        "routes[0].to[0]: someone@gmail.com is not a configured recipient or alias",
    ),
    (
        "[aliases]",
        "[[routes]]\nmatch_body = \"x\"\n\n[aliases]",
        "routes[0]: has no action",
    ),
    (
        "[aliases]",
        "[[routes]]\ndrop = true\n\n[aliases]",
        "routes[0]: matches nothing",
    ),
    (
        "[aliases]",
        "[[routes]]\nmatch_body = \"x\"\ndrop = true\nsend = true\n\n[aliases]",
        "routes[0].send: unknown field `send`",
    ),
    (
        "host = \"127.0.0.1\"",
        "host = \"127.0.0.1\"\nmax_per_minute = 0",
        "relay.max_per_minute: must be at least 1; leave it out for no limit",
    ),
    (
        "host = \"127.0.0.1\"",
        "host = \"127.0.0.1\"\nmax_per_day = -5",
        "relay.max_per_day: invalid value",
    ),
    (
        "host = \"127.0.0.1\"",
        "host = \"127.0.0.1\"\nauth = \"oauth2\"",
        "relay.oauth2: is missing: auth = \"oauth2\" needs [relay.oauth2]",
    ),
    (
        "host = \"127.0.0.1\"",
        "host = \"127.0.0.1\"\nauth = \"oauth2\"\nusername = \"u\"\noauth2 = { provider = \"microsoft\", client_id = \"x\" }",
        "relay.oauth2.tenant: is missing",
    ),
    (
        "host = \"127.0.0.1\"",
        "host = \"127.0.0.1\"\nauth = \"oauth2\"\noauth2 = { provider = \"microsoft\", client_id = \"x\", tenant = \"contoso.onmicrosoft.com\" }",
        "relay.username: is missing: with OAuth 2.0 it is the mailbox that signs in",
    ),
    (
        "host = \"127.0.0.1\"",
        "host = \"127.0.0.1\"\nauth = \"oauth2\"\nusername = \"u\"\noauth2 = { provider = \"google\", client_id = \"x\" }",
        "relay.oauth2.client_secret_file: is missing",
    ),
    (
        "host = \"127.0.0.1\"",
        "host = \"127.0.0.1\"\nauth = \"oauth2\"\nusername = \"u\"\noauth2 = { provider = \"custom\", client_id = \"x\", scope = \"s\", token_endpoint = \"http://idp/token\", device_authorization_endpoint = \"https://idp/device\" }",
        "relay.oauth2.token_endpoint: \"http://idp/token\" is not an https:// address",
    ),
    (
        "host = \"127.0.0.1\"",
        "host = \"127.0.0.1\"\nauth = \"oauth2\"\nusername = \"u\"\noauth2 = { provider = \"yahoo\", client_id = \"x\" }",
        "relay.oauth2.provider: unknown variant `yahoo`",
    ),
    (
        "host = \"127.0.0.1\"",
        "host = \"127.0.0.1\"\noauth2 = { provider = \"microsoft\", client_id = \"x\", tenant = \"t\" }",
        "relay.oauth2: is set, but relay.auth is \"password\"",
    ),
    (
        "host = \"127.0.0.1\"",
        "host = \"127.0.0.1\"\nauth = \"kerberos\"",
        "relay.auth: unknown variant `kerberos`",
    ),
    (
        "[aliases]",
        "[message]\npad = \"4 parsecs\"\n\n[aliases]",
        "message.pad: \"4 parsecs\" is not a padding; write \"padme\", \"none\" or a size",
    ),
    (
        "[aliases]",
        "[message]\npad = \"2MiB\"\n\n[aliases]",
        "message.pad: a padding of 2MiB is out of range; write a size from 64 bytes to 1MiB",
    ),
];

#[test]
fn each_bad_value_is_refused_by_check_and_by_the_daemon() {
    for (from, to, want) in BAD {
        let setup = Setup::new();
        let text = setup.config_text("");
        assert!(text.contains(from), "test mutation {from:?} does not apply");
        setup.write_config(&text.replacen(from, to, 1));

        let check = setup.relayctl(&["check"]);
        assert_eq!(check.status.code(), Some(78), "{want}");
        let said = out_text(&check);
        let file = setup.config_path().display().to_string();
        assert!(
            said.contains(&format!("{file}: ")),
            "names the file: {said}"
        );
        assert!(said.contains(want), "want {want:?} in {said}");

        let daemon = Command::new(DAEMON)
            .arg("--config")
            .arg(setup.config_path())
            .output()
            .unwrap();
        assert_eq!(daemon.status.code(), Some(78));
        assert!(out_text(&daemon).contains(want), "{}", out_text(&daemon));
        assert!(!setup.spool().exists(), "a refused config touches nothing");
    }
}

#[test]
fn a_good_config_checks_ok_with_config_before_or_after_the_subcommand() {
    let setup = Setup::new();
    let path = setup.config_path();
    let path = path.to_str().unwrap();
    for args in [["check", "--config", path], ["--config", path, "check"]] {
        let out = Command::new(common::RELAYCTL).args(args).output().unwrap();
        assert!(out.status.success(), "{}", out_text(&out));
        assert!(said_ok(&out), "{}", out_text(&out));
    }
}

#[test]
fn the_environment_names_the_config_and_a_missing_file_says_how_to_fix_it() {
    let out = Command::new(common::RELAYCTL)
        .arg("check")
        .env("ALERT_RELAY_CONFIG", "/nonexistent/relay.toml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let said = out_text(&out);
    assert!(
        said.contains("/nonexistent/relay.toml: cannot read the config"),
        "{said}"
    );
    assert!(said.contains("--config or ALERT_RELAY_CONFIG"), "{said}");
}

#[test]
fn a_password_file_readable_by_others_is_refused_and_never_printed() {
    let setup = Setup::new();
    let pw = setup.path("sasl_password");
    std::fs::write(&pw, "hunter2-secret").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    setup.write_config(&setup.config_text("").replace(
        "sender = ",
        &format!(
            "username = \"ossec\"\npassword_file = \"{}\"\nsender = ",
            pw.display()
        ),
    ));
    let check = setup.relayctl(&["check"]);
    assert_eq!(check.status.code(), Some(78));
    let said = out_text(&check);
    assert!(said.contains("relay.password_file"), "{said}");
    assert!(said.contains("chmod 600"), "{said}");
    assert!(!said.contains("hunter2"), "{said}");

    let daemon = Command::new(DAEMON)
        .arg("--config")
        .arg(setup.config_path())
        .output()
        .unwrap();
    assert_eq!(daemon.status.code(), Some(78));
    assert!(!out_text(&daemon).contains("hunter2"));

    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(setup.relayctl(&["check"]).status.success());

    // The package installs it empty: AUTH with an empty password is refused too.
    std::fs::write(&pw, "").unwrap();
    let check = setup.relayctl(&["check"]);
    assert_eq!(check.status.code(), Some(78));
    assert!(out_text(&check).contains("is empty: put the relay's password in it"));
}

#[test]
fn allow_remote_permits_a_non_loopback_address() {
    let setup = Setup::new();
    setup.write_config(
        &setup
            .config_text("")
            .replace("127.0.0.1:0", "0.0.0.0:0")
            .replace("hostname = ", "allow_remote = true\nhostname = "),
    );
    assert!(setup.relayctl(&["check"]).status.success());
}

#[test]
fn the_shipped_example_config_uses_only_known_keys() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/relay.toml");
    let config = alert_relay::config::Config::load(&path).unwrap();
    assert_eq!(
        config.relay.sasl_identity().as_deref(),
        Some("ossec@gmail.com")
    );
    assert_eq!(config.router().resolve("root").unwrap().len(), 1);
}

#[test]
fn a_key_whose_fingerprint_differs_names_both_fingerprints() {
    let setup = Setup::new();
    let alerts = common::fingerprint("alerts");
    let journalist = common::fingerprint("journalist");
    // The alerts recipient's file holds the journalist's key.
    setup.write_config(&setup.config_text("").replacen(
        "tests/keys/alerts.asc",
        "tests/keys/journalist.asc",
        1,
    ));
    let check = setup.relayctl(&["check"]);
    assert_eq!(check.status.code(), Some(78));
    let said = out_text(&check);
    assert!(
        said.contains(&format!("recipients[0].fingerprint: is {alerts}")),
        "{said}"
    );
    assert!(
        said.contains(&format!("holds the key {journalist}")),
        "{said}"
    );
}

#[test]
fn keys_that_cannot_encrypt_fail_check_but_not_the_daemon() {
    for (name, want) in [
        ("expired", "the key expired on 2020-01-02"),
        ("revoked", "the key is revoked"),
        ("signonly", "no valid encryption subkey"),
    ] {
        let setup = Setup::new();
        let text = setup.config_with_key("journalist", name, "");
        setup.write_config(&text);
        let check = setup.relayctl(&["check"]);
        assert_eq!(check.status.code(), Some(78), "{name}");
        let said = out_text(&check);
        assert!(said.contains("recipients[1].key"), "{said}");
        assert!(said.contains(want), "{name}: {said}");

        // The daemon starts, says so, and the other recipient's alerts flow.
        let daemon = setup.start();
        let log = daemon.wait_log("cannot encrypt");
        assert!(log.contains("to=journalist@example.org"), "{log}");
    }
}
