//! relayctl: the admin's tool (`alert_relay::cli::relayctl`).

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(alert_relay::cli::relayctl::main())
}
