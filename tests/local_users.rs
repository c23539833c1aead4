//! Local users against the installed layout (packaging/README.md): a
//! setgid `sendmail`, a spool owned by the daemon's user, `alert-relayd`
//! running as that user, and ordinary users submitting with whatever
//! umask they have. What arrives at the relay (aiosmtpd) is decrypted with
//! GnuPG. These tests need root to create the users and set owners:
//! `cargo test` reports them as ignored, with the reason; `./test.sh` run
//! as root (as CI runs it) runs them.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use alert_relay::spool::Entry;
use common::users::{self, User, as_user, own};
use common::{Daemon, Gpg, Relay, Setup};

/// An installation in a temporary directory, as the package lays it out.
struct Installed {
    setup: Setup,
    daemon_user: User,
    alice: User,
    bob: User,
    sendmail: PathBuf,
    relay: Relay,
}

impl Installed {
    fn new(test: &str) -> Installed {
        let [daemon_user, alice, bob] = users::ensure(test);
        let setup = Setup::new();
        let relay = Relay::start(&[]);
        setup.use_relay(relay.port, "");
        let root = User::by_name("root").unwrap();
        let group = daemon_user.gid;
        own(setup.dir.path(), &root, 0, 0o755);
        own(&setup.config_path(), &root, group, 0o640);
        own(&setup.path("sasl_password"), &daemon_user, group, 0o600);
        std::fs::create_dir(setup.spool()).unwrap();
        own(&setup.spool(), &daemon_user, group, 0o710);
        let sendmail = setup.path("sendmail");
        std::fs::copy(common::SENDMAIL, &sendmail).unwrap();
        own(&sendmail, &root, group, 0o2755);
        Installed {
            setup,
            daemon_user,
            alice,
            bob,
            sendmail,
            relay,
        }
    }

    /// Rewrites the config, keeping its owner and mode.
    fn write_config(&self, text: &str) {
        self.setup.write_config(text);
    }

    fn start_daemon(&self) -> Daemon {
        let mut cmd = Command::new("setpriv");
        cmd.args(as_user(&self.daemon_user))
            .arg(common::DAEMON)
            .arg("--config")
            .arg(self.setup.config_path());
        Daemon::start_command(cmd, &self.setup.path("daemon.log"))
    }

    /// The setgid sendmail as `user`, with `umask`, reading `stdin`.
    fn sendmail(&self, user: &User, umask: &str, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self.sendmail_command(user, umask, args).spawn().unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    fn sendmail_command(&self, user: &User, umask: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("setpriv");
        cmd.args(as_user(user))
            .args(["sh", "-c", &format!("umask {umask}; exec \"$@\""), "sh"])
            .arg(&self.sendmail)
            .arg("-C")
            .arg(self.setup.config_path())
            .args(args)
            .env_remove("ALERT_RELAY_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// `relayctl` as `user` (root when `None`).
    fn relayctl(&self, user: Option<&User>, args: &[&str]) -> Output {
        let mut cmd = match user {
            Some(u) => {
                let mut c = Command::new("setpriv");
                c.args(as_user(u)).arg(common::RELAYCTL);
                c
            }
            None => Command::new(common::RELAYCTL),
        };
        cmd.args(args)
            .arg("--config")
            .arg(self.setup.config_path())
            .output()
            .unwrap()
    }

    /// The messages the relay received, decrypted by GnuPG.
    fn delivered(&self, n: usize) -> Vec<String> {
        let gpg = Gpg::with_keys(&["alerts", "journalist"]);
        self.relay
            .wait_messages(n)
            .iter()
            .map(|m| String::from_utf8_lossy(&gpg.decrypt(m)).into_owned())
            .collect()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
#[ignore = "needs root (other users, setgid): ./test.sh runs it as root"]
fn a_submitter_with_umask_077_blocks_nobody_and_every_users_mail_arrives() {
    let inst = Installed::new("umask 077");
    let _daemon = inst.start_daemon();
    let alice = inst.sendmail(
        &inst.alice,
        "077",
        &["root"],
        b"Subject: from alice\n\nMARKER-ALICE\n",
    );
    assert!(alice.status.success(), "{}", text(&alice));
    let bob = inst.sendmail(
        &inst.bob,
        "022",
        &["root"],
        b"Subject: from bob\n\nMARKER-BOB\n",
    );
    assert!(bob.status.success(), "{}", text(&bob));
    let got = inst.delivered(2);
    assert_eq!(got.len(), 2, "both users' mail arrives");
    assert!(got.iter().any(|m| m.contains("MARKER-ALICE")), "{got:?}");
    assert!(got.iter().any(|m| m.contains("MARKER-BOB")), "{got:?}");
    assert!(file_names(&inst.setup.spool().join("corrupt")).is_empty());
}

/// `Gid:` of /proc/PID/status: real, effective, saved, filesystem.
fn gids(pid: u32) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("Gid:")).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|g| g.parse().unwrap())
        .collect()
}

/// The pid of a child of `parent`, once there is one.
fn child_of(parent: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        for entry in std::fs::read_dir("/proc").unwrap() {
            let name = entry.unwrap().file_name();
            let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) {
                return pid;
            }
        }
        assert!(Instant::now() < deadline, "sendmail never forked");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
#[ignore = "needs root (other users, setgid): ./test.sh runs it as root"]
fn sendmail_reads_the_message_only_after_giving_up_the_spool_group_for_good() {
    let inst = Installed::new("privilege split");
    let _daemon = inst.start_daemon();
    let mut running = inst
        .sendmail_command(&inst.alice, "022", &["root"])
        .spawn()
        .unwrap();
    // setpriv and sh exec into sendmail: the pid is sendmail's. While it
    // waits for its input, look at both halves.
    let parent = running.id();
    let child = child_of(parent);
    let group = inst.daemon_user.gid;
    let parent_gids = gids(parent);
    assert_eq!(
        parent_gids[..2],
        [inst.alice.gid, group],
        "the writer keeps the group: {parent_gids:?}"
    );
    // The child drops the group right after the fork, before it reads
    // anything; give it that moment.
    let settled = Instant::now() + Duration::from_secs(5);
    while gids(child) != vec![inst.alice.gid; 4] && Instant::now() < settled {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        gids(child),
        vec![inst.alice.gid; 4],
        "the reader has no trace of the group"
    );
    // Neither half can be ptraced or dumped by alice: /proc says root.
    for pid in [parent, child] {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(format!("/proc/{pid}/status"))
            .unwrap()
            .uid();
        assert_eq!(owner, 0, "pid {pid} is dumpable");
    }
    running
        .stdin
        .take()
        .unwrap()
        .write_all(b"Subject: split\n\nMARKER-SPLIT\n")
        .unwrap();
    let out = running.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(inst.delivered(1)[0].contains("MARKER-SPLIT"));
}

#[test]
#[ignore = "needs root (other users, setgid): ./test.sh runs it as root"]
fn a_submission_the_daemon_cannot_read_is_listed_then_set_aside_and_the_rest_flows() {
    let inst = Installed::new("unreadable submission");
    // A first start lays out the spool; then the daemon is down.
    drop(inst.start_daemon());
    // What an older sendmail left under umask 077: alice's, mode 0600.
    let stuck = Entry::new("alice@mon", "alerts@example.org", b"x".to_vec());
    let stuck_path = inst
        .setup
        .spool()
        .join(format!("incoming/{}.msg", stuck.id));
    std::fs::write(&stuck_path, stuck.encode()).unwrap();
    own(&stuck_path, &inst.alice, inst.daemon_user.gid, 0o600);
    let bob = inst.sendmail(&inst.bob, "022", &["root"], b"Subject: b\n\nMARKER-BOB\n");
    assert!(bob.status.success(), "{}", text(&bob));

    // The daemon's user cannot read it, and its listing says so.
    let listed = inst.relayctl(Some(&inst.daemon_user), &["queue"]);
    let said = text(&listed);
    assert!(listed.status.success(), "{said}");
    let row = said
        .lines()
        .find(|l| l.contains(stuck.id.as_str()))
        .unwrap_or_else(|| panic!("the unreadable file is not listed:\n{said}"));
    assert!(
        row.contains("unreadable") && row.contains("Permission denied"),
        "{row}"
    );

    let daemon = inst.start_daemon();
    assert!(inst.delivered(1)[0].contains("MARKER-BOB"));
    let log = daemon.wait_log("corrupt spool file");
    assert_eq!(
        log.matches("corrupt spool file").count(),
        1,
        "one log line: {log}"
    );
    let corrupt = file_names(&inst.setup.spool().join("corrupt"));
    assert!(
        corrupt.contains(&format!("{}.msg", stuck.id)),
        "{corrupt:?}"
    );
    let listed = text(&inst.relayctl(Some(&inst.daemon_user), &["queue"]));
    assert!(
        listed.contains(stuck.id.as_str()) && listed.contains("corrupt"),
        "{listed}"
    );
}

#[test]
#[ignore = "needs root (other users, setgid): ./test.sh runs it as root"]
fn relayctl_release_as_root_writes_an_entry_the_daemon_can_deliver() {
    let inst = Installed::new("release as root");
    let good = inst.setup.config_text("");
    inst.write_config(&inst.setup.config_with_key("alerts", "expired", ""));
    let daemon = inst.start_daemon();
    let out = inst.sendmail(
        &inst.alice,
        "022",
        &["root"],
        b"Subject: held\n\nMARKER-HELD\n",
    );
    assert!(out.status.success(), "{}", text(&out));
    // The notice goes out; the original waits in held/, encrypted.
    let notice = inst.relay.wait_messages(1);
    assert_eq!(notice.len(), 1);
    let held = inst.setup.wait_entries("held", 1);
    assert_eq!(held.len(), 1);

    inst.write_config(&good);
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("reloaded");
    let released = inst.relayctl(None, &["release", held[0].id.as_str()]);
    assert!(released.status.success(), "{}", text(&released));
    let got = inst.relay.wait_messages(2);
    assert_eq!(got.len(), 2, "the released alert reaches the relay");
    let alert = Gpg::with_keys(&["alerts"]).decrypt(&got[1]);
    assert!(common::contains(&alert, b"MARKER-HELD"));
    assert!(file_names(&inst.setup.spool().join("corrupt")).is_empty());
}

#[test]
#[ignore = "needs root (other users, setgid): ./test.sh runs it as root"]
fn an_entry_in_queue_the_daemon_cannot_read_is_set_aside_once() {
    let inst = Installed::new("unreadable queue entry");
    drop(inst.start_daemon());
    // root:root 0600, as relayctl used to write them.
    let entry = Entry::new("root@mon", "alerts@example.org", b"ciphertext".to_vec());
    let path = inst.setup.spool().join(format!("queue/{}.msg", entry.id));
    std::fs::write(&path, entry.encode()).unwrap();
    own(&path, &User::by_name("root").unwrap(), 0, 0o600);
    let daemon = inst.start_daemon();
    let log = daemon.wait_log("corrupt spool file");
    let why = std::fs::read_to_string(
        inst.setup
            .spool()
            .join(format!("corrupt/{}.msg.why", entry.id)),
    )
    .unwrap();
    assert!(
        why.contains("Permission denied") && why.contains("owner uid 0"),
        "{why}"
    );
    assert!(!path.exists());
    assert!(!log.contains("cannot read a queued entry"), "{log}");
}

#[test]
#[ignore = "needs root (other users, setgid): ./test.sh runs it as root"]
fn the_daemon_cannot_be_dumped_or_traced_by_its_own_user() {
    let inst = Installed::new("not dumpable");
    use std::os::unix::fs::MetadataExt;
    let daemon = inst.start_daemon();
    let pid = daemon.child.id();
    let status = std::fs::metadata(format!("/proc/{pid}/status")).unwrap();
    // A dumpable process's /proc files belong to its user; PR_SET_DUMPABLE
    // 0 hands them to root, and ptrace by the same user is refused.
    assert_eq!(status.uid(), 0, "alert-relayd is dumpable");
    assert_eq!(gids(pid)[0], inst.daemon_user.gid);
}

#[test]
#[ignore = "needs root (other users, setgid): ./test.sh runs it as root"]
fn mailq_as_an_ordinary_user_says_what_to_do() {
    let inst = Installed::new("mailq as a user");
    drop(inst.start_daemon());
    // The setgid copy, and a plain one (a build without the install step).
    let plain = inst.setup.path("sendmail-plain");
    std::fs::copy(common::SENDMAIL, &plain).unwrap();
    own(&plain, &User::by_name("root").unwrap(), 0, 0o755);
    for (exe, want) in [
        (
            &inst.sendmail,
            "readable by root and the daemon's user only: run `sudo mailq`",
        ),
        (&plain, "it must be installed setgid to that group"),
    ] {
        let out = Command::new("setpriv")
            .args(as_user(&inst.alice))
            .arg(exe)
            .args(["-bp", "-C"])
            .arg(inst.setup.config_path())
            .output()
            .unwrap();
        let said = text(&out);
        assert_eq!(out.status.code(), Some(77), "{said}");
        assert!(said.contains(want), "{said}");
    }
}
