//! systemd integration: socket activation (the daemon takes the sockets
//! of alert-relay.socket through LISTEN_FDS) and readiness notification
//! (READY=1 and STATUS= to NOTIFY_SOCKET), driven the way systemd does it.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::{DAEMON, Setup};

/// alert-relayd started as systemd would start it from a socket unit:
/// `socket` becomes descriptor 3, LISTEN_FDS=1 and LISTEN_PID is the
/// daemon's own pid (a shell sets it to `$$`, then execs the daemon).
fn activated(setup: &Setup, socket: &impl AsRawFd) -> Command {
    activated_with(setup, socket, "1")
}

/// As [`activated`], with `LISTEN_FDS` set to `count`.
fn activated_with(setup: &Setup, socket: &impl AsRawFd, count: &str) -> Command {
    let fd = socket.as_raw_fd();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            r#"LISTEN_PID=$$ LISTEN_FDS={count} exec "$0" --config "$1""#
        ))
        .arg(DAEMON)
        .arg(setup.config_path());
    // SAFETY: dup2 and fcntl are async-signal-safe; they run in the child
    // between fork and exec. dup2 clears close-on-exec on descriptor 3,
    // except when the socket already is descriptor 3 (dup2 then does
    // nothing), so that case clears it with fcntl.
    unsafe {
        cmd.pre_exec(move || {
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

#[test]
fn delivers_through_a_socket_systemd_passed() {
    let setup = Setup::new();
    // listen.addresses names a port another socket holds: binding it
    // would fail, so the test passes only if the daemon takes descriptor 3.
    let occupied = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let text = std::fs::read_to_string(setup.config_path())
        .unwrap()
        .replace(
            "addresses = [\"127.0.0.1:0\"]",
            &format!("addresses = [\"{}\"]", occupied.local_addr().unwrap()),
        );
    setup.write_config(&text);
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let daemon =
        common::Daemon::start_command(activated(&setup, &socket), &setup.path("daemon.log"));
    assert_eq!(daemon.port, port, "{}", daemon.log());
    assert!(
        daemon.log().contains("from=\"systemd\""),
        "{}",
        daemon.log()
    );
    drop(socket);

    let mut client = daemon.connect();
    client.send_message("root", b"Subject: activated\r\n\r\nMARKER-ACTIVATED\r\n");
    let queued = setup.wait_entries("queue", 1);
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].recipient, "alerts@example.org");
}

#[test]
fn a_non_loopback_socket_from_systemd_is_refused() {
    let setup = Setup::new();
    let socket = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let out = activated(&setup, &socket).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("which is not loopback"), "{stderr}");
    assert!(stderr.contains("alert-relay.socket"), "{stderr}");
}

#[test]
fn a_descriptor_that_is_no_listening_socket_is_refused() {
    let setup = Setup::new();
    // A bound but not listening socket, as a misconfigured unit could pass.
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut cmd = activated(&setup, &udp);
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("descriptor 3 from systemd is not a listening TCP socket"),
        "{stderr}"
    );
}

#[test]
fn ready_and_status_reach_notify_socket() {
    let setup = Setup::new();
    let path = setup.path("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut cmd = Command::new(DAEMON);
    cmd.arg("--config")
        .arg(setup.config_path())
        .env("NOTIFY_SOCKET", &path);
    let mut daemon = common::Daemon::start_command(cmd, &setup.path("daemon.log"));
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("a notification");
    let message = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(message.contains("READY=1"), "{message}");
    assert!(
        message.contains("STATUS=0 queued, 0 held, 0 failed"),
        "{message}"
    );
    // READY=1 comes only once the daemon accepts mail.
    let mut client = daemon.connect();
    client.send_message("root", b"Subject: ready\r\n\r\nbody\r\n");

    daemon.signal(libc::SIGTERM);
    let n = notify.recv(&mut buf).expect("a stop notification");
    let message = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(message.starts_with("STOPPING=1"), "{message}");
    assert!(daemon.wait_exit().success());
}

#[test]
fn a_listen_fds_that_is_no_number_is_refused() {
    let setup = Setup::new();
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = activated_with(&setup, &socket, "two").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("LISTEN_FDS=\"two\" is not a number of sockets"),
        "{stderr}"
    );
}

#[test]
fn status_counts_what_was_set_aside_in_corrupt() {
    let setup = Setup::new();
    // A first start lays the spool out; then a file that is no entry
    // lands in incoming/, as anything with the spool's group could write.
    drop(setup.start());
    std::fs::write(setup.spool().join("incoming/forged.msg"), b"not an entry").unwrap();
    let path = setup.path("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut cmd = Command::new(DAEMON);
    cmd.arg("--config")
        .arg(setup.config_path())
        .env("NOTIFY_SOCKET", &path);
    let _daemon = common::Daemon::start_command(cmd, &setup.path("daemon.log"));
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).expect("a notification");
    let message = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        message.contains(
            "STATUS=0 queued, 0 held, 0 failed, 1 corrupt; WARNING: 1 file(s) in corrupt/"
        ),
        "{message}"
    );
}

#[test]
fn status_shows_the_worst_problem_while_delivery_fails() {
    // The relay's port is closed; the thresholds shortened for the test.
    let setup = Setup::new();
    setup.write_config(
        &setup.config_text("[health]\nwarn_after = \"1s\"\ncritical_after = \"2s\"\n"),
    );
    let path = setup.path("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut cmd = Command::new(DAEMON);
    cmd.arg("--config")
        .arg(setup.config_path())
        .env("NOTIFY_SOCKET", &path);
    let daemon = common::Daemon::start_command(cmd, &setup.path("daemon.log"));
    daemon
        .connect()
        .send_message("root", b"Subject: x\r\n\r\nbody\r\n");
    let mut buf = [0u8; 1024];
    let mut seen = Vec::new();
    loop {
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("{e}: {seen:#?}"));
        let message = String::from_utf8_lossy(&buf[..n]).to_string();
        if message.contains("STATUS=1 queued, 0 held, 0 failed; CRITICAL: delivery through 127.0.0.1:1 has failed since") {
            assert!(message.len() < 300, "one line for systemctl status: {message}");
            break;
        }
        seen.push(message);
    }
}
