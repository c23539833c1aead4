//! The operating-system calls that std does not offer, in one place, each
//! with the reason it is safe.
//!
//! Privileges, users and processes: what `sendmail` needs to hold its
//! group for one step only, what `relayctl` needs to hand the files it
//! writes to the daemon's user, and what every binary does to keep alert
//! text out of core dumps.

use std::ffi::{CStr, CString};
use std::io;

/// The effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// The real user id.
pub fn uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    euid() == 0
}

/// Whether this process runs with privileges its user does not have
/// (setgid or setuid), and so must not trust its caller's choices.
pub fn is_privileged() -> bool {
    // SAFETY: these getters have no preconditions.
    unsafe { libc::getuid() != libc::geteuid() || libc::getgid() != libc::getegid() }
}

/// Gives up setgid and setuid privileges for good: real, effective and
/// saved ids all become the real ones, so nothing later in this process
/// (a bug in a parser, say) can take them back. Verified after the calls.
pub fn drop_privileges() -> io::Result<()> {
    // SAFETY: plain system calls on this process's own credentials. The
    // process has one thread here (sendmail drops before it starts any),
    // so no other thread keeps the old ids.
    let ok = unsafe {
        let (uid, gid) = (libc::getuid(), libc::getgid());
        libc::setresgid(gid, gid, gid) == 0
            && libc::setresuid(uid, uid, uid) == 0
            && libc::getegid() == gid
            && libc::geteuid() == uid
    };
    if ok {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Keeps this process out of core dumps and ptrace by other processes of
/// the same user: it holds alert plaintext, keys and the relay password.
/// (Best effort: the call cannot fail for these arguments.)
pub fn forbid_core_dumps() {
    // SAFETY: prctl(PR_SET_DUMPABLE) only changes a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
}

/// Makes writes to a closed pipe or socket fail with EPIPE instead of
/// killing the process (the default SIGPIPE).
pub fn ignore_sigpipe() {
    // SAFETY: sets one signal's disposition; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// The result of [`fork`], as seen by each process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Child,
    Parent { child: i32 },
}

/// Splits the process in two.
///
/// # Safety
///
/// The process must have one thread: after fork the child has only the
/// calling thread, and a lock another thread held stays locked forever.
pub unsafe fn fork() -> io::Result<Forked> {
    // SAFETY: the caller guarantees a single-threaded process.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        child => Ok(Forked::Parent { child }),
    }
}

/// Waits for a child; its exit code, or `None` when a signal ended it.
pub fn wait_child(child: i32) -> io::Result<Option<i32>> {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes the status into the local we pass.
        let rc = unsafe { libc::waitpid(child, &mut status, 0) };
        if rc == child {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)))
}

/// Ends the process at once, without running destructors or flushing
/// std's buffers twice (for a forked child).
pub fn exit_now(code: u8) -> ! {
    // SAFETY: _exit has no preconditions; it does not return.
    unsafe { libc::_exit(i32::from(code)) }
}

/// A user account, as the password database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl User {
    /// The user called `name`, if there is one.
    pub fn by_name(name: &str) -> Option<User> {
        let c_name = CString::new(name).ok()?;
        lookup(|pwd, buf, result| {
            // SAFETY: every pointer is valid for the call; getpwnam_r
            // writes only into `pwd` and `buf` (of the length we give).
            unsafe { libc::getpwnam_r(c_name.as_ptr(), pwd, buf.as_mut_ptr(), buf.len(), result) }
        })
    }

    /// The user with id `uid`, if there is one.
    pub fn by_uid(uid: u32) -> Option<User> {
        lookup(|pwd, buf, result| {
            // SAFETY: as in `by_name`.
            unsafe { libc::getpwuid_r(uid, pwd, buf.as_mut_ptr(), buf.len(), result) }
        })
    }

    /// Every group the user is in: the primary one and the supplementary
    /// ones from the group database.
    pub fn groups(&self) -> Vec<u32> {
        let Ok(name) = CString::new(self.name.as_str()) else {
            return vec![self.gid];
        };
        let mut n: libc::c_int = 64;
        loop {
            let mut groups = vec![0 as libc::gid_t; usize::try_from(n).unwrap_or(64)];
            let mut count = n;
            // SAFETY: `groups` has room for `count` ids; getgrouplist
            // writes at most that many and sets `count` to the total.
            let rc = unsafe {
                libc::getgrouplist(name.as_ptr(), self.gid, groups.as_mut_ptr(), &mut count)
            };
            if rc >= 0 {
                groups.truncate(usize::try_from(count).unwrap_or(0));
                return groups;
            }
            if count <= n || n >= 65536 {
                return vec![self.gid];
            }
            n = count;
        }
    }
}

/// What access [`User::may`] checks for on the last component of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    /// Create and remove files in a directory.
    WriteDir,
}

impl User {
    /// Whether this user may read `path` (or create files in it), by the
    /// owner, group and mode of each component on the way, as the kernel
    /// decides it without ACLs: every directory must let the user search
    /// it. The error names the component in the way, its owner and mode.
    pub fn may(&self, path: &std::path::Path, access: Access) -> Result<(), String> {
        use std::os::unix::fs::MetadataExt;
        if self.uid == 0 {
            return Ok(());
        }
        let resolved =
            std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let groups = self.groups();
        let allowed = |meta: &std::fs::Metadata, bits: u32| {
            let mode = meta.mode();
            let class = if meta.uid() == self.uid {
                mode >> 6
            } else if groups.contains(&meta.gid()) {
                mode >> 3
            } else {
                mode
            };
            class & bits == bits
        };
        let ancestors: Vec<&std::path::Path> = resolved.ancestors().collect();
        for (i, p) in ancestors.iter().rev().enumerate() {
            let meta = std::fs::metadata(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let last = i + 1 == ancestors.len();
            let bits = match (last, access) {
                (false, _) => 0o1,
                (true, Access::Read) if meta.is_dir() => 0o5,
                (true, Access::Read) => 0o4,
                (true, Access::WriteDir) => 0o3,
            };
            if !allowed(&meta, bits) {
                let owner = |id: u32, name: Option<String>| name.unwrap_or_else(|| id.to_string());
                return Err(format!(
                    "{} ({}:{}, mode {:04o}) keeps {} out",
                    p.display(),
                    owner(meta.uid(), User::by_uid(meta.uid()).map(|u| u.name)),
                    meta.gid(),
                    meta.mode() & 0o7777,
                    self.name
                ));
            }
        }
        Ok(())
    }
}

/// Runs a `get*_r` lookup with a buffer that grows until the entry fits.
fn lookup(
    call: impl Fn(*mut libc::passwd, &mut [libc::c_char], *mut *mut libc::passwd) -> libc::c_int,
) -> Option<User> {
    let mut size = 1024;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        // SAFETY: an all-zero passwd is a valid value of the plain C struct.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = call(&mut pwd, &mut buf, &mut result);
        if rc == libc::ERANGE && size < 1 << 20 {
            size *= 4;
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points to a NUL-terminated string
        // inside `buf`, which is still alive.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned();
        return Some(User {
            name,
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        });
    }
}

/// The login name of the real user, for a default envelope sender.
pub fn login_name() -> String {
    User::by_uid(uid())
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid{}", uid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_in_the_password_database() {
        let root = User::by_name("root").expect("root exists");
        assert_eq!((root.uid, root.gid), (0, 0));
        assert_eq!(User::by_uid(0).unwrap().name, "root");
        assert!(root.groups().contains(&0));
        assert!(User::by_name("no-such-user-alert-relay-test").is_none());
        assert!(User::by_name("nul\0inside").is_none());
    }

    #[test]
    fn access_follows_owner_group_and_other_bits_on_every_component() {
        use std::os::unix::fs::PermissionsExt;
        let nobody = User {
            name: "nobody".into(),
            uid: 65534,
            gid: 65534,
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("relay.toml");
        std::fs::write(&file, "x").unwrap();
        let set = |p: &std::path::Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
        };
        set(dir.path(), 0o755);
        set(&file, 0o644);
        assert_eq!(nobody.may(&file, Access::Read), Ok(()));
        set(&file, 0o640);
        let e = nobody.may(&file, Access::Read).unwrap_err();
        assert!(
            e.contains("relay.toml") && e.contains("mode 0640") && e.contains("keeps nobody out"),
            "{e}"
        );
        set(&file, 0o644);
        set(dir.path(), 0o700);
        assert!(
            nobody
                .may(&file, Access::Read)
                .unwrap_err()
                .contains("mode 0700")
        );
        assert!(nobody.may(dir.path(), Access::WriteDir).is_err());
        let root = User::by_name("root").unwrap();
        assert_eq!(root.may(&file, Access::Read), Ok(()));
    }

    #[test]
    fn a_forked_child_exit_code_reaches_the_parent() {
        // The test harness runs tests on threads; fork here only calls
        // _exit in the child, which touches no lock.
        // SAFETY: the child calls nothing but exit_now.
        match unsafe { fork() }.unwrap() {
            Forked::Child => exit_now(42),
            Forked::Parent { child } => assert_eq!(wait_child(child).unwrap(), Some(42)),
        }
    }
}
