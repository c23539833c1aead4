//! The `sendmail` command line: which mode, with which config, holding
//! the spool's group for what. `mailq` is a control command
//! ([`crate::control::mailq`]); the `-bm` and `-bs` modes are submission
//! ([`crate::ingest::sendmail`]).

use std::path::Path;

use crate::ingest::sendmail::{self, Failure, HELP, Mode, USAGE, parse_args, root_controls};
use crate::sysexits;

/// The whole `sendmail` command; returns the exit code.
pub fn run(argv: &[String]) -> u8 {
    crate::os::forbid_core_dumps();
    let program = argv
        .first()
        .and_then(|p| Path::new(p).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("sendmail")
        .to_string();
    match run_inner(&program, argv.get(1..).unwrap_or_default()) {
        Ok(()) => sysexits::OK,
        Err(f) => {
            eprintln!("{program}: {}", f.message);
            f.code
        }
    }
}

fn run_inner(program: &str, argv: &[String]) -> Result<(), Failure> {
    let args = parse_args(program, argv).map_err(|e| {
        Failure::new(
            sysexits::USAGE,
            format!("{e}\n{USAGE}\n(sendmail --help says more)"),
        )
    })?;
    match args.mode {
        // Aliases live in relay.toml's [aliases]; there is no database to build.
        Mode::NewAliases => return Ok(()),
        Mode::Help => {
            print!("{HELP}");
            return Ok(());
        }
        _ => {}
    }
    let mut path = crate::config::resolve_path(args.config.clone());
    if crate::os::is_privileged() {
        // A config someone else than root controls: nothing of it may be
        // read with the group.
        match root_controls(&path) {
            Ok(resolved) => path = resolved,
            Err(_) => drop_privileges()?,
        }
    }
    if let Err(e) = std::fs::File::open(&path)
        && e.kind() == std::io::ErrorKind::PermissionDenied
    {
        return Err(Failure::new(
            sysexits::NOPERM,
            format!(
                "cannot read {}: {e}. sendmail reads it with the spool's group, so it must be \
                 installed setgid to that group (the package does it: dpkg-statoverride --list \
                 /usr/sbin/sendmail shows root alert-relay 2755); or run it as root",
                path.display()
            ),
        ));
    }
    let config = crate::config::Config::load(&path)
        .map_err(|e| Failure::new(sysexits::CONFIG, e.to_string()))?;
    match args.mode {
        Mode::NewAliases | Mode::Help => Ok(()),
        // The group cannot read queue/ anyway: list without it.
        Mode::ListQueue => {
            if crate::os::is_privileged() {
                drop_privileges()?;
            }
            crate::control::mailq(&config)
        }
        // A datagram to the daemon's socket, which only the group may write.
        Mode::Flush => {
            crate::spool::Spool::at(&config.queue.dir).wake();
            Ok(())
        }
        Mode::Smtp | Mode::Deliver => sendmail::accept(config, &args),
    }
}

/// Gives up setgid/setuid privileges for good, or says why not.
fn drop_privileges() -> Result<(), Failure> {
    crate::os::drop_privileges()
        .map_err(|e| Failure::new(sysexits::OSERR, format!("cannot drop privileges: {e}")))
}
