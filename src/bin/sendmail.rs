//! sendmail: the sendmail-compatible submission command (also `mailq` and
//! `newaliases` through argv[0]).

use std::process::ExitCode;

fn main() -> ExitCode {
    alert_relay::cli::die_on_broken_pipe();
    let argv: Vec<String> = std::env::args().collect();
    ExitCode::from(alert_relay::cli::sendmail::run(&argv))
}
