//! alert-relayd: receives local mail on loopback SMTP, encrypts it and
//! relays it (`alert_relay::cli::Daemon` is its command line).

use std::process::ExitCode;

use clap::Parser;

/// glibc's malloc, with freed 4 MiB blocks kept for reuse (see the type).
#[global_allocator]
static ALLOCATOR: alert_relay::os::KeepBlocks = alert_relay::os::KeepBlocks::new();

fn main() -> ExitCode {
    let args = alert_relay::cli::Daemon::parse();
    let path = alert_relay::config::resolve_path(args.config);
    ExitCode::from(alert_relay::daemon::run(&path))
}
