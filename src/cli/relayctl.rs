//! The `relayctl` command line: parses it and runs the subcommand, which
//! lives in [`crate::control`] (or [`crate::diagnose`] for `test`).

use clap::Parser;

use super::{Command, Relayctl};
use crate::config;
use crate::control;
use crate::sysexits;

/// The whole `relayctl` command; returns the exit code.
pub fn main() -> u8 {
    // It reads the SASL password, the hold key and held alerts.
    crate::os::forbid_core_dumps();
    super::die_on_broken_pipe();
    run(Relayctl::parse())
}

/// Runs one parsed command line.
pub fn run(cli: Relayctl) -> u8 {
    let path = config::resolve_path(cli.config);
    match cli.command {
        Command::Check => control::check_command(&path),
        Command::Demo => demo(),
        Command::Flush { id } => control::flush(&path, id.as_deref()),
        Command::ImportSecuredrop {
            file,
            password_file,
            keys_from,
            force,
        } => control::import_securedrop(&path, &file, password_file, keys_from, force),
        Command::Test { to, no_send, json } => {
            use crate::diagnose::{Options, Output};
            let opts = Options {
                config: &path,
                to: to.as_deref(),
                no_send,
                output: if json {
                    Output::Json
                } else {
                    Output::text_for_stdout()
                },
            };
            if crate::diagnose::run(&opts) {
                sysexits::OK
            } else {
                sysexits::UNAVAILABLE
            }
        }
        Command::Key { file } => control::key_command(&file),
        Command::Fingerprint {
            relay,
            starttls,
            implicit,
        } => control::fingerprint(&path, relay.as_deref(), starttls, implicit),
        Command::Release { id } => control::release_command(&path, &id),
        Command::Delete { id, yes } => control::delete(&path, &id, yes),
        Command::Queue { json } => control::queue(&path, json),
        Command::Route { file, to } => control::route_command(&path, &file, &to),
        Command::Oauth2 { action } => match action {
            crate::cli::Oauth2Action::Login => control::oauth2_login(&path),
            crate::cli::Oauth2Action::Status => control::oauth2_status(&path),
        },
        Command::Health { json, prometheus } => control::health_command(
            &path,
            match (json, prometheus) {
                (true, _) => control::HealthFormat::Json,
                (_, true) => control::HealthFormat::Prometheus,
                _ => control::HealthFormat::Text,
            },
        ),
    }
}

/// `relayctl demo`, when this relayctl was built with it.
fn demo() -> u8 {
    #[cfg(feature = "demo")]
    return match crate::demo::run() {
        Ok(()) => sysexits::OK,
        Err(e) => {
            eprintln!("relayctl demo: {e}");
            sysexits::SOFTWARE
        }
    };
    #[cfg(not(feature = "demo"))]
    {
        eprintln!("relayctl demo: this relayctl was built without it (cargo feature demo)");
        sysexits::UNAVAILABLE
    }
}
