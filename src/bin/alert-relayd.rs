//! alert-relayd: receives local mail on loopback SMTP and spools it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Receives local mail on loopback SMTP, encrypts it to each recipient's
/// OpenPGP key and relays it over verified TLS. Runs in the foreground.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The config file [default: $ALERT_RELAY_CONFIG, else /etc/alert-relay/relay.toml]
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let path = alert_relay::config::resolve_path(args.config);
    ExitCode::from(alert_relay::daemon::run(&path))
}
