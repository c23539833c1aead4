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
    /// Makes queued messages due now (all, or the one named) and wakes the daemon.
    Flush {
        /// A queue id, as `relayctl queue` lists it.
        id: Option<String>,
    },
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
        Command::Flush { id } => flush(&path, id.as_deref()),
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

fn flush(path: &std::path::Path, id: Option<&str>) -> u8 {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return sysexits::CONFIG;
        }
    };
    let id = match id.map(|s| alert_relay::spool::QueueId::parse(s).ok_or(s)) {
        Some(Err(s)) => {
            eprintln!("relayctl: {s:?} is not a queue id (relayctl queue lists them)");
            return sysexits::USAGE;
        }
        Some(Ok(id)) => Some(id),
        None => None,
    };
    let spool = Spool::at(&config.queue.dir);
    match spool.flush(id.as_ref()) {
        Ok(0) if id.is_some() => {
            eprintln!(
                "relayctl: no queued message {}",
                id.map(|i| i.to_string()).unwrap_or_default()
            );
            sysexits::NOUSER
        }
        Ok(n) => {
            spool.wake();
            println!("{n} message{} due now", if n == 1 { "" } else { "s" });
            sysexits::OK
        }
        Err(e) => {
            eprintln!("relayctl: {e}");
            sysexits::TEMPFAIL
        }
    }
}
