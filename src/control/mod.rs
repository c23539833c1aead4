//! What `relayctl` and `mailq` do for an admin, one file per kind of
//! command; `crate::cli::relayctl` reads the command line and calls them.

mod check;
mod fingerprint;
mod health;
mod import;
mod oauth2;
mod queue;
mod release;
mod route;

pub use check::{check, check_command, key_command, key_report};
pub use fingerprint::{fingerprint, fingerprint_report};
pub use health::{Format as HealthFormat, health_command};
pub use import::import_securedrop;
pub use oauth2::{login as oauth2_login, status as oauth2_status};
pub use queue::{delete, flush, mailq, parse_id, queue, queue_json, queue_table};
pub use release::{ReleaseError, release, release_command};
pub use route::{route, route_command};
