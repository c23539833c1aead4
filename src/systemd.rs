//! The two parts of systemd's protocol the daemon speaks, without
//! libsystemd: socket activation (`sd_listen_fds(3)`: the listening sockets
//! arrive as descriptors 3, 4, ... with `LISTEN_PID` and `LISTEN_FDS` set)
//! and readiness notification (`sd_notify(3)`: datagrams such as `READY=1`
//! to the socket named by `NOTIFY_SOCKET`).
//!
//! With `alert-relay.socket` owning port 25, the daemon needs no
//! privilege at all; without it (tests, `relayctl demo`, a manual start)
//! the daemon binds `listen.addresses` itself and `notify` does nothing.

use std::io;
use std::os::fd::RawFd;
use std::os::unix::net::UnixDatagram;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Why inherited descriptors could not be used.
#[derive(Debug)]
pub enum ActivationError {
    /// `LISTEN_FDS` is not a number.
    BadCount(String),
    /// A passed descriptor is not a listening TCP socket.
    NotTcpListener { fd: RawFd, why: String },
}

impl std::fmt::Display for ActivationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActivationError::BadCount(v) => {
                write!(f, "LISTEN_FDS={v:?} is not a number of sockets")
            }
            ActivationError::NotTcpListener { fd, why } => write!(
                f,
                "descriptor {fd} from systemd is not a listening TCP socket ({why}): \
                 alert-relay.socket must use ListenStream= with an address and port"
            ),
        }
    }
}

/// The listening sockets systemd passed to this process, or `None` when
/// it was not socket-activated (no `LISTEN_PID`, or another process's).
pub fn listen_fds() -> Result<Option<Vec<std::net::TcpListener>>, ActivationError> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !for_us {
        return Ok(None);
    }
    let count = std::env::var("LISTEN_FDS").unwrap_or_default();
    let n: RawFd = count
        .parse()
        .ok()
        .filter(|n| (0..=64).contains(n))
        .ok_or(ActivationError::BadCount(count))?;
    let mut out = Vec::new();
    for fd in LISTEN_FDS_START..LISTEN_FDS_START + n {
        // SAFETY: LISTEN_PID names this process: systemd handed these
        // descriptors to it alone.
        let listener = unsafe { crate::os::adopt_listening_tcp(fd) }
            .map_err(|why| ActivationError::NotTcpListener { fd, why })?;
        out.push(listener);
    }
    Ok(Some(out))
}

/// Sends `state` (e.g. "READY=1\nSTATUS=...") to systemd when it asked
/// for notifications; `Ok(false)` when it did not.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    match bytes.strip_prefix(b"@") {
        // An abstract socket: '@' stands for the leading NUL.
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            socket.send_to(state.as_bytes(), &path)?;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_activated_without_our_pid() {
        // The test process has no LISTEN_PID (or another process's).
        assert!(listen_fds().unwrap().is_none());
    }
}
