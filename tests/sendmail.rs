//! The `sendmail` command, run as cron and scripts run it.

mod common;

use common::{Setup, contains, plain};

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn spools_while_the_daemon_is_stopped_and_the_daemon_picks_it_up() {
    let setup = Setup::new();
    let message = b"Subject: cron job\n\noutput\n.\nmore output after a lone dot\n";
    let out = setup.sendmail(&["-oi", "root"], message);
    assert!(out.status.success(), "{}", stderr(&out));
    let incoming = setup.entries("incoming");
    assert_eq!(incoming.len(), 1);
    // Read to EOF: the lone "." did not end the message.
    assert!(
        !contains(&incoming[0].payload, b"more output"),
        "no plaintext in the spool"
    );
    assert!(
        contains(
            &plain(&incoming[0]),
            b"output\n.\nmore output after a lone dot\n"
        ),
        "a lone dot must not truncate"
    );

    let daemon = setup.start();
    let queued = setup.wait_queued(1);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].id, incoming[0].id);
    assert_eq!(queued[0].recipient, "alerts@example.org");
    assert!(setup.entries("incoming").is_empty());
    let log = daemon.wait_log("via=sendmail");
    assert!(log.contains(&format!("id={}", queued[0].id)), "{log}");
}

#[test]
fn a_running_daemon_picks_up_without_restart() {
    let setup = Setup::new();
    let _daemon = setup.start();
    let out = setup.sendmail(&["ossec"], b"Subject: two\n\nfor both recipients\n");
    assert!(out.status.success(), "{}", stderr(&out));
    let queued = setup.wait_queued(2);
    let mut to: Vec<String> = queued.iter().map(|e| e.recipient.clone()).collect();
    to.sort();
    assert_eq!(to, vec!["alerts@example.org", "journalist@example.org"]);
}

#[test]
fn dash_t_reads_to_cc_bcc_and_removes_bcc() {
    let setup = Setup::new();
    let message = b"From: cron@mon\nTo: root@localhost\nCc: \"J\" <journalist@example.org>\nBcc: alerts@example.org\nSubject: t\n\nbody\n";
    let out = setup.sendmail(&["-t", "-i"], message);
    assert!(out.status.success(), "{}", stderr(&out));
    let incoming = setup.entries("incoming");
    assert_eq!(incoming.len(), 2, "root and alerts@ are the same recipient");
    for e in &incoming {
        let inner = plain(e);
        let text = String::from_utf8_lossy(&inner);
        assert!(!text.to_lowercase().contains("bcc:"), "{text}");
        assert!(
            text.contains("Cc: \"J\" <journalist@example.org>"),
            "{text}"
        );
    }
}

#[test]
fn no_recipient_arguments_means_the_headers() {
    let setup = Setup::new();
    let out = setup.sendmail(&[], b"To: root\nSubject: t\n\nbody\n");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(setup.entries("incoming").len(), 1);
}

#[test]
fn unknown_recipient_exits_ex_nouser_and_spools_nothing() {
    let setup = Setup::new();
    let out = setup.sendmail(&["root", "someone@gmail.com"], b"Subject: t\n\nbody\n");
    assert_eq!(out.status.code(), Some(67));
    assert!(
        stderr(&out).contains("someone@gmail.com is not a configured recipient"),
        "{}",
        stderr(&out)
    );
    assert!(setup.entries("incoming").is_empty());
}

#[test]
fn usage_errors_exit_ex_usage() {
    let setup = Setup::new();
    let out = setup.sendmail(&["-Z", "root"], b"x");
    assert_eq!(out.status.code(), Some(64));
    assert!(
        stderr(&out).contains("unknown option -Z"),
        "{}",
        stderr(&out)
    );
    let out = setup.sendmail(&[], b"Subject: nobody\n\nbody\n");
    assert_eq!(out.status.code(), Some(64));
    assert!(stderr(&out).contains("no recipients"), "{}", stderr(&out));
    assert!(setup.entries("incoming").is_empty());
}

#[test]
fn help_prints_the_options_and_queues_nothing() {
    let setup = Setup::new();
    let out = setup.sendmail(&["--help"], b"Subject: not a message\n\nx\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("usage: sendmail [-t]"), "{text}");
    assert!(text.contains("Exit status: 0 queued, 64 usage"), "{text}");
    assert!(setup.entries("incoming").is_empty());
    // A usage error points at --help.
    let out = setup.sendmail(&["-Z"], b"x");
    assert!(
        stderr(&out).contains("sendmail --help says more"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn oversize_input_exits_ex_dataerr() {
    let setup = Setup::with_listen("max_message_size = \"1KiB\"");
    let out = setup.sendmail(&["root"], &b"x".repeat(5000));
    assert_eq!(out.status.code(), Some(65));
    assert!(
        stderr(&out).contains("max_message_size"),
        "{}",
        stderr(&out)
    );
    assert!(setup.entries("incoming").is_empty());
}

#[test]
fn bad_config_exits_ex_config_naming_the_key() {
    let setup = Setup::new();
    setup.write_config(&setup.config_text("").replace("127.0.0.1:0", "nowhere"));
    let out = setup.sendmail(&["root"], b"x");
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("listen.addresses[0]"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unwritable_spool_exits_non_zero_with_the_reason() {
    let setup = Setup::new();
    // A file where the spool directory should be.
    std::fs::write(setup.spool(), b"not a directory").unwrap();
    let out = setup.sendmail(&["root"], b"Subject: t\n\nbody\n");
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("not a directory"), "{}", stderr(&out));
}

#[test]
fn mailq_and_newaliases_by_argv0() {
    let setup = Setup::new();
    let empty = setup.sendmail_as("mailq", &[], b"");
    assert!(empty.status.success());
    assert_eq!(
        String::from_utf8_lossy(&empty.stdout),
        "Mail queue is empty\n"
    );
    assert!(
        setup
            .sendmail(&["-v", "root"], b"Subject: q\n\nq\n")
            .status
            .success()
    );
    let listed = setup.sendmail_as("mailq", &[], b"");
    let text = String::from_utf8_lossy(&listed.stdout);
    let id = setup.entries("incoming")[0].id.to_string();
    assert!(
        text.contains(&id) && text.contains("alerts@example.org"),
        "{text}"
    );
    let same = setup.sendmail(&["-bp"], b"");
    assert_eq!(same.stdout, listed.stdout);
    let na = setup.sendmail_as("newaliases", &[], b"");
    assert!(na.status.success());
}

#[test]
fn dash_bs_speaks_smtp_on_stdio() {
    let setup = Setup::new();
    let session = b"HELO cron\r\nMAIL FROM:<cron@mon>\r\nRCPT TO:<root>\r\nRCPT TO:<evil@gmail.com>\r\nDATA\r\nSubject: bs\r\n\r\nvia -bs\r\n.\r\nQUIT\r\n";
    let out = setup.sendmail(&["-bs"], session);
    assert!(out.status.success(), "{}", stderr(&out));
    let replies = String::from_utf8_lossy(&out.stdout);
    let codes: Vec<&str> = replies.lines().map(|l| &l[..3]).collect();
    assert_eq!(
        codes,
        vec!["220", "250", "250", "250", "550", "354", "250", "221"],
        "{replies}"
    );
    let incoming = setup.entries("incoming");
    assert_eq!(incoming.len(), 1);
    assert!(plain(&incoming[0]).ends_with(b"\r\n\r\nvia -bs\r\n"));
}

#[test]
#[ignore = "needs root (other users, setgid): ./test.sh runs it as root"]
fn an_unprivileged_submitter_with_a_write_only_incoming_gets_exit_0() {
    // The installed layout: incoming/ is 3730, so a submitter (setgid
    // sendmail, here a user in the spool's group) can create files there
    // but cannot open the directory to fsync it. Needs root to set up.
    assert!(common::users::is_root(), "needs root");
    use std::os::unix::fs::PermissionsExt;
    let setup = Setup::new();
    let mode = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    // nobody:nogroup may read the config and traverse to it.
    mode(setup.path("").as_path(), 0o755);
    mode(&setup.config_path(), 0o644);
    let spool = setup.spool();
    std::fs::create_dir_all(spool.join("incoming")).unwrap();
    let nogroup = 65534;
    std::os::unix::fs::chown(&spool, Some(0), Some(nogroup)).unwrap();
    std::os::unix::fs::chown(spool.join("incoming"), Some(0), Some(nogroup)).unwrap();
    mode(&spool, 0o710);
    mode(&spool.join("incoming"), 0o3730);

    let mut child = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::SENDMAIL)
        .args(["-C", setup.config_path().to_str().unwrap(), "root"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Subject: from nobody\n\nbody\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let entries = setup.entries("incoming");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].recipient, "alerts@example.org");
}
