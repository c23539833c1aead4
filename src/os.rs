//! The operating-system calls that std does not offer, in one place:
//! privileges and users (what `sendmail` needs to hold its group for one
//! step only, what `relayctl` needs to hand the files it writes to the
//! daemon's user), processes, core dumps, sockets passed by systemd, file
//! system syncs and the allocator.
//!
//! rustix makes the calls it has, without unsafe code but for madvise;
//! libc the few it lacks (fork, setresgid for every thread, the password
//! database, mallopt, signal dispositions), each with the reason it is
//! safe.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::io;
use std::net::TcpListener;
use std::os::fd::{BorrowedFd, FromRawFd, RawFd};

/// The effective user id.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The real user id.
pub fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    euid() == 0
}

/// Whether this process runs with privileges its user does not have
/// (setgid or setuid), and so must not trust its caller's choices.
pub fn is_privileged() -> bool {
    use rustix::process::{getegid, geteuid, getgid, getuid};
    getuid() != geteuid() || getgid() != getegid()
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
/// (Best effort: the call cannot fail for this argument.)
pub fn forbid_core_dumps() {
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
}

/// Makes writes to a closed pipe or socket fail with EPIPE instead of
/// killing the process.
pub fn ignore_sigpipe() {
    // SAFETY: sets one signal's disposition; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// Lets SIGPIPE end the process, as for any Unix tool: `relayctl queue |
/// head` ends quietly instead of failing to print (Rust ignores SIGPIPE
/// by default).
pub fn die_on_broken_pipe() {
    // SAFETY: sets one signal's disposition, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Caps glibc's malloc arenas at two, and gives every allocation of 1 MiB
/// or more its own mapping, returned to the system when freed.
///
/// glibc gives each thread that meets contention an arena of its own and
/// keeps freed memory there: with the blocking pool's threads (spool
/// writes, encryption), the daemon's peak with 10,000 alerts queued and
/// delivered was about a fifth higher than with two arenas (tests/faults,
/// burst-memory, measures it). And glibc raises its mmap threshold to the size of each
/// large block freed (up to 32 MiB), after which large messages come from
/// the heap, which keeps their pages: a fixed threshold keeps the
/// resident size near what the messages in flight hold (tests/faults,
/// burst-large). Alerts are a few KiB, far below it; the two 4 MiB
/// buffers each alert's encryption takes are [`KeepBlocks`]' business.
pub fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; the daemon calls
    // this before it starts any thread.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// The daemon's allocator: the system's, except that freed blocks of
/// exactly 4 MiB are kept (up to [`KEPT_BLOCKS`]) for the next request of
/// that size.
///
/// Sequoia's streaming writer buffers each partial-body packet in a 4 MiB
/// vector, two per alert, of which a 2 KB alert touches a page. Above
/// [`tune_malloc`]'s threshold each was an mmap and a munmap, the munmap
/// a TLB shootdown on the other core: 0.05–0.07 ms of the daemon's CPU
/// per alert (benches/README.md). Raising the threshold instead kept
/// large messages' pages in the heap (burst-large's peak 100 → 110 MiB).
///
/// A block is zeroed over its first [`KEPT_RESIDENT`] bytes when it is
/// kept (one of the two held the alert's plaintext), and the rest of its
/// pages go back to the system (`MADV_DONTNEED`: for an alert's block,
/// pages nobody touched, which costs a page-table walk and no shootdown).
pub struct KeepBlocks {
    slots: [std::sync::atomic::AtomicPtr<u8>; KEPT_BLOCKS],
}

/// The size of the blocks kept.
const KEPT_BLOCK: usize = 4 << 20;
/// Blocks kept at most: two per encryption, for eight at once.
pub const KEPT_BLOCKS: usize = 16;
/// What a kept block keeps resident (zeroed): an alert and its headers
/// fit in it.
const KEPT_RESIDENT: usize = 16 << 10;

impl KeepBlocks {
    pub const fn new() -> KeepBlocks {
        KeepBlocks {
            slots: [const { std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()) }; KEPT_BLOCKS],
        }
    }

    /// Whether a block of `layout` may be kept: exactly 4 MiB, with an
    /// alignment malloc gives every block (so a kept block suits any such
    /// layout, and the system frees it whatever the layout).
    fn keeps(layout: std::alloc::Layout) -> bool {
        layout.size() == KEPT_BLOCK && layout.align() <= std::mem::align_of::<libc::max_align_t>()
    }
}

impl Default for KeepBlocks {
    fn default() -> KeepBlocks {
        KeepBlocks::new()
    }
}

/// Readies a freed 4 MiB block for keeping: its first [`KEPT_RESIDENT`]
/// bytes zeroed, the pages beyond them given back to the system (they
/// read as zeros afterwards). The range given back is rounded inward to
/// whole pages, so it never reaches past the block.
///
/// # Safety
///
/// `block` is a freed block of [`KEPT_BLOCK`] bytes that nobody else holds.
unsafe fn clear_for_keeping(block: *mut u8) {
    // SAFETY: the first KEPT_RESIDENT bytes lie inside the block, which
    // the caller holds alone.
    unsafe { std::ptr::write_bytes(block, 0, KEPT_RESIDENT) };
    #[cfg(target_os = "linux")]
    {
        let page = rustix::param::page_size();
        let start = (block as usize + KEPT_RESIDENT).next_multiple_of(page);
        let end = (block as usize + KEPT_BLOCK) / page * page;
        if end > start {
            // SAFETY: [start, end) is whole pages inside the block, held
            // by the caller alone; MADV_DONTNEED only drops their contents
            // (the range stays mapped and reads zeros). glibc keeps nothing
            // inside a block it handed out. An error leaves the pages as
            // they were, and rustix's raw call leaves errno alone.
            let _ = unsafe {
                rustix::mm::madvise(
                    start as *mut std::ffi::c_void,
                    end - start,
                    rustix::mm::Advice::LinuxDontNeed,
                )
            };
        }
    }
}

// SAFETY: every pointer this allocator returns comes from `System` for a
// layout of the same size and an alignment malloc gives every block, or
// is such a block returned earlier and kept; every pointer it frees goes
// back to `System` or into a slot, where one owner at a time holds it (the
// slots are swapped atomically). So each block is freed once, by the
// allocator that made it, with a layout it accepts.
unsafe impl std::alloc::GlobalAlloc for KeepBlocks {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::sync::atomic::Ordering;
        if Self::keeps(layout) {
            for slot in &self.slots {
                if slot.load(Ordering::Relaxed).is_null() {
                    continue;
                }
                let kept = slot.swap(std::ptr::null_mut(), Ordering::Acquire);
                if !kept.is_null() {
                    return kept;
                }
            }
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: std::alloc::Layout) {
        use std::sync::atomic::Ordering;
        let room = || {
            self.slots
                .iter()
                .any(|s| s.load(Ordering::Relaxed).is_null())
        };
        if Self::keeps(layout) && room() {
            // SAFETY: the caller has freed `block` (of KEPT_BLOCK bytes).
            unsafe { clear_for_keeping(block) };
            for slot in &self.slots {
                let put = slot.compare_exchange(
                    std::ptr::null_mut(),
                    block,
                    Ordering::Release,
                    Ordering::Relaxed,
                );
                if put.is_ok() {
                    return;
                }
            }
        }
        // SAFETY: `block` came from `System` with this layout (see above).
        unsafe { std::alloc::System.dealloc(block, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        // A kept block is not zeroed: zeroed ones come from the system.
        // SAFETY: the caller's layout, passed on.
        unsafe { std::alloc::System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(
        &self,
        block: *mut u8,
        layout: std::alloc::Layout,
        new_size: usize,
    ) -> *mut u8 {
        // SAFETY: the caller's block and layout; `new_size` is non-zero
        // and fits the alignment, as GlobalAlloc::realloc requires.
        unsafe {
            let new_layout =
                std::alloc::Layout::from_size_align_unchecked(new_size, layout.align());
            if !Self::keeps(layout) && !Self::keeps(new_layout) {
                return std::alloc::System.realloc(block, layout, new_size);
            }
            // To or from a keepable size: through alloc and dealloc above,
            // as the trait's own default does.
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(block, new, layout.size().min(new_size));
                self.dealloc(block, layout);
            }
            new
        }
    }
}

/// Keeps library errors (anyhow's, std's `Backtrace::capture`) from
/// capturing a backtrace each, unless `RUST_LIB_BACKTRACE` asks for it:
/// with `RUST_BACKTRACE=1` in the environment, as when an admin debugs a
/// crash, every error Sequoia builds and drops while it searches a key's
/// signatures would unwind the stack. Panics keep their backtraces
/// (they read `RUST_BACKTRACE` alone).
pub fn no_library_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // SAFETY: the daemon calls this before it starts any thread, so
        // nothing reads the environment concurrently.
        unsafe { std::env::set_var("RUST_LIB_BACKTRACE", "0") };
    }
}

/// This host's name, or "localhost" when it has none.
pub fn hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// Syncs the whole file system `file` is on (syncfs(2)): what a process
/// that may not open a directory to fsync it can do instead.
pub fn syncfs(file: &File) -> io::Result<()> {
    rustix::fs::syncfs(file).map_err(io::Error::from)
}

/// Opens `path` for reading without following a symbolic link in its last
/// component, and without blocking on a FIFO.
pub fn open_nofollow(path: &std::path::Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
}

/// Creates `path` (it must not exist) for writing with `mode`, without
/// following a symbolic link planted at it.
pub fn create_nofollow(path: &std::path::Path, mode: u32) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Bytes an unprivileged user may still write on the file system of
/// `path` (statvfs(3): available blocks times the fragment size).
pub fn free_bytes(path: &std::path::Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path).map_err(io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Whether a process with this id exists (in this PID namespace).
pub fn process_exists(pid: u32) -> bool {
    pid != 0 && std::path::Path::new("/proc").join(pid.to_string()).exists()
}

/// What an I/O error says, where the reason decides what to do.
pub fn is_disk_full(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// The error of opening a symbolic link with [`open_nofollow`].
pub fn is_symlink_refused(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// The error of binding an address family or address the host lacks (an
/// IPv6 loopback on a host without IPv6).
pub fn is_address_unavailable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EADDRNOTAVAIL | libc::EAFNOSUPPORT)
    )
}

/// Takes a listening socket that systemd passed as descriptor `fd`: it
/// must be a listening IPv4 or IPv6 stream socket; it is marked
/// close-on-exec, as sd_listen_fds does, and made non-blocking.
///
/// # Safety
///
/// `fd` must be a descriptor handed to this process for it alone, as
/// systemd hands those of `LISTEN_FDS`: from here the listener owns it.
pub unsafe fn adopt_listening_tcp(fd: RawFd) -> Result<TcpListener, String> {
    use rustix::net::sockopt::{socket_acceptconn, socket_domain, socket_type};
    use rustix::net::{AddressFamily, SocketType};
    // SAFETY: the caller guarantees `fd` is ours; it is only borrowed here.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let err = |e: rustix::io::Errno| io::Error::from(e).to_string();
    if socket_type(borrowed).map_err(err)? != SocketType::STREAM {
        return Err("not a stream socket".into());
    }
    if !socket_acceptconn(borrowed).map_err(err)? {
        return Err("not listening".into());
    }
    let domain = socket_domain(borrowed).map_err(err)?;
    if domain != AddressFamily::INET && domain != AddressFamily::INET6 {
        return Err("not an IP socket".into());
    }
    rustix::io::fcntl_setfd(borrowed, rustix::io::FdFlags::CLOEXEC).map_err(err)?;
    // SAFETY: checked above to be a listening stream socket, and ours
    // alone (the caller's guarantee): the listener owns and closes it.
    let listener = unsafe { TcpListener::from_raw_fd(fd) };
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(listener)
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
    let pid = rustix::process::Pid::from_raw(child)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a process id"))?;
    loop {
        match rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty()) {
            Ok(Some((_, status))) => return Ok(status.exit_status()),
            Ok(None) => continue,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
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
    use std::alloc::{GlobalAlloc, Layout};

    const BLOCK: Layout = match Layout::from_size_align(4 << 20, 8) {
        Ok(l) => l,
        Err(_) => panic!("a valid layout"),
    };

    #[test]
    fn freed_4_mib_blocks_are_kept_cleared() {
        let a = KeepBlocks::new();
        unsafe {
            let blocks: Vec<*mut u8> = (0..3).map(|_| a.alloc(BLOCK)).collect();
            assert!(blocks.iter().all(|b| !b.is_null()));
            for b in &blocks {
                b.write(0x5a);
                b.add(1 << 20).write(0x5a);
                a.dealloc(*b, BLOCK);
            }
            // All three kept and handed out again.
            let again: Vec<*mut u8> = (0..3).map(|_| a.alloc(BLOCK)).collect();
            assert!(blocks.iter().all(|b| again.contains(b)));
            // Nothing the last user wrote is left: the first 16 KiB were
            // zeroed, the pages beyond went back to the system.
            assert!(again.iter().all(|b| b.read() == 0));
            assert!(again.iter().all(|b| b.add(1 << 20).read() == 0));
            // A zeroed block is never a kept one.
            let z = a.alloc_zeroed(BLOCK);
            assert_eq!(std::slice::from_raw_parts(z, 4096), &[0u8; 4096][..]);
            for b in again.into_iter().chain([z]) {
                a.dealloc(b, BLOCK);
            }
        }
    }

    #[test]
    fn other_sizes_and_reallocations_keep_their_contents() {
        let a = KeepBlocks::new();
        unsafe {
            let small = Layout::from_size_align(100, 8).unwrap();
            let p = a.alloc(small);
            p.write_bytes(7, 100);
            // Up to the kept size, then beyond it, then down again.
            let p = a.realloc(p, small, 4 << 20);
            assert_eq!(std::slice::from_raw_parts(p, 100), &[7u8; 100][..]);
            let p = a.realloc(p, BLOCK, 8 << 20);
            assert_eq!(std::slice::from_raw_parts(p, 100), &[7u8; 100][..]);
            let big = Layout::from_size_align(8 << 20, 8).unwrap();
            let p = a.realloc(p, big, 200);
            assert_eq!(std::slice::from_raw_parts(p, 100), &[7u8; 100][..]);
            a.dealloc(p, Layout::from_size_align(200, 8).unwrap());
            // The 4 MiB block freed by the second realloc was kept.
            let kept = a.alloc(BLOCK);
            assert!(!kept.is_null());
            a.dealloc(kept, BLOCK);
        }
    }

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
    fn only_a_listening_tcp_socket_is_adopted() {
        use std::os::fd::{AsRawFd, IntoRawFd};
        let file = File::open("/dev/null").unwrap();
        // SAFETY: the descriptors are this test's; a refused one is not
        // taken, and the one adopted was given up with into_raw_fd.
        assert!(unsafe { adopt_listening_tcp(file.as_raw_fd()) }.is_err());
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        assert_eq!(
            unsafe { adopt_listening_tcp(udp.as_raw_fd()) }.unwrap_err(),
            "not a stream socket"
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let adopted = unsafe { adopt_listening_tcp(listener.into_raw_fd()) }.unwrap();
        assert_eq!(adopted.local_addr().unwrap(), addr);
    }

    #[test]
    fn the_host_has_a_name() {
        assert!(!hostname().is_empty());
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
