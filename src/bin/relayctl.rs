//! relayctl: the admin's tool.

use std::path::PathBuf;
use std::process::ExitCode;

use alert_relay::config::{self, Config};
use alert_relay::control;
use alert_relay::spool::Spool;
use alert_relay::sysexits;
use clap::{Parser, Subcommand};

/// Checks and manages alert-relay.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The config file [default: $ALERT_RELAY_CONFIG, else /etc/alert-relay/relay.toml]
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validates the config completely; exits non-zero with the reasons.
    Check,
    /// Lists the messages in the spool.
    Queue,
    /// Shows the path of an alert on loopback, with no setup.
    Demo,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let path = config::resolve_path(cli.config);
    let code = match cli.command {
        Command::Check => {
            let (report, ok) = control::check(Config::load(&path));
            if ok {
                print!("{report}");
                sysexits::OK
            } else {
                eprint!("{report}");
                sysexits::CONFIG
            }
        }
        Command::Demo => match alert_relay::demo::run() {
            Ok(()) => sysexits::OK,
            Err(e) => {
                eprintln!("relayctl demo: {e}");
                sysexits::SOFTWARE
            }
        },
        Command::Queue => match Config::load(&path) {
            Err(e) => {
                eprintln!("{e}");
                sysexits::CONFIG
            }
            Ok(c) => match Spool::at(&c.queue.dir).list() {
                Ok(rows) => {
                    print!("{}", control::queue_table(&rows));
                    sysexits::OK
                }
                Err(e) => {
                    eprintln!("relayctl: {e}");
                    sysexits::TEMPFAIL
                }
            },
        },
    };
    ExitCode::from(code)
}
