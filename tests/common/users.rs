//! Local accounts for the tests that need root: the daemon's user and
//! group, named as the package names them (`alert-relay`), and two
//! ordinary users. They are created once per machine, as system accounts
//! without a home, and left in place (CI machines are thrown away; the
//! README says so).

use std::path::Path;
use std::process::Command;

/// An account, from the password database.
pub use alert_relay::os::User;

/// Whether the tests run as root.
pub fn is_root() -> bool {
    alert_relay::os::euid() == 0
}

/// The daemon's user and group, as packaging/debian/postinst makes them.
pub const DAEMON: &str = "alert-relay";
/// Two users with nothing to do with alert-relay.
pub const ALICE: &str = "ar-test-alice";
pub const BOB: &str = "ar-test-bob";

/// The accounts. The tests that call it are `#[ignore]`d unless run as
/// root (`./test.sh` as root includes them): run otherwise, they fail
/// saying so, never pass.
pub fn ensure(test: &str) -> [User; 3] {
    assert!(
        is_root(),
        "{test}: needs root to create users and hand files to them (./test.sh as root)"
    );
    // One test binary at a time adds users (useradd locks /etc/passwd,
    // and a second one fails on what the first just made).
    let lock = std::fs::File::create("/tmp/alert-relay-test-users.lock").unwrap();
    lock.lock().unwrap();
    [DAEMON, ALICE, BOB].map(|name| {
        if let Some(u) = User::by_name(name) {
            return u;
        }
        let out = Command::new("useradd")
            .args(["--system", "--user-group", "--no-create-home"])
            .args([
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .output()
            .expect("useradd (Debian's passwd package)");
        User::by_name(name)
            .unwrap_or_else(|| panic!("useradd {name}: {}", String::from_utf8_lossy(&out.stderr)))
    })
}

/// Sets owner, group and mode of `path`.
pub fn own(path: &Path, user: &User, gid: u32, mode: u32) {
    std::os::unix::fs::chown(path, Some(user.uid), Some(gid)).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
}

/// `setpriv` arguments that run a command as `user`, with the user's own
/// groups only.
pub fn as_user(user: &User) -> Vec<String> {
    vec![
        format!("--reuid={}", user.uid),
        format!("--regid={}", user.gid),
        "--init-groups".into(),
    ]
}
