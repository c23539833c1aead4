//! `relayctl import-securedrop FILE`: relay.toml, the password file and
//! the keys from SecureDrop's variables, then `relayctl check`.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::securedrop::{ImportError, Targets, import};
use crate::sysexits;

/// The command; the exit code.
pub fn import_securedrop(
    config: &Path,
    file: &Path,
    password_file: Option<PathBuf>,
    keys_from: Option<PathBuf>,
    force: bool,
) -> u8 {
    let dir = config
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let targets = Targets {
        config: config.to_path_buf(),
        password_file: password_file.unwrap_or_else(|| dir.join("sasl_password")),
        keys_dir: dir,
        keys_from,
        force,
    };
    let imported = match import(file, &targets) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("relayctl import-securedrop: {}: {e}", file.display());
            return match e {
                ImportError::Exists(_) | ImportError::SignsInWithOAuth2(_) => sysexits::CANTCREAT,
                ImportError::Write { .. } => sysexits::CANTCREAT,
                ImportError::Read { .. } => sysexits::NOINPUT,
                _ => sysexits::DATAERR,
            };
        }
    };
    for (path, written) in &imported.files {
        let what = if *written { "wrote" } else { "unchanged" };
        println!("{what} {}", path.display());
    }
    println!("recipients: {}", imported.recipients.join(", "));
    let (report, ok) = super::check(Config::load(config));
    print!("{report}");
    if ok {
        println!(
            "next: relayctl test (then systemctl enable --now alert-relay.socket alert-relay.service)"
        );
        sysexits::OK
    } else {
        sysexits::CONFIG
    }
}
