//! sendmail: the sendmail-compatible submission command (also `mailq` and
//! `newaliases` through argv[0]).

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    ExitCode::from(alert_relay::ingest::sendmail::run(&argv))
}
