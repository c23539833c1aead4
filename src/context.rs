//! The loaded config and what is built from it once per load: the
//! recipients' keys, the router, the sealer, the spool's hold key. Every
//! stage reads it; the daemon swaps it whole on SIGHUP.

use crate::config::{Config, ConfigError};
use crate::encrypt::{HoldKey, Keyring, Sealer};
use crate::route::{Router, Rules};

/// One loaded config, with its keys read and checked (not per message).
#[derive(Debug)]
pub struct Context {
    pub config: Config,
    pub router: Router,
    /// `[[routes]]`, compiled.
    pub rules: Rules,
    pub hostname: String,
    pub keyring: Keyring,
    pub sealer: Sealer,
    /// The spool's hold key, once the daemon has made one: held originals
    /// are encrypted to it (`crate::encrypt::hold`).
    pub hold: Option<HoldKey>,
}

impl Context {
    /// Loads the recipients' keys; a missing, unreadable or mismatched key
    /// is a config error. The hold key is read from the spool when there.
    pub fn new(config: Config) -> Result<Context, ConfigError> {
        let hostname = config.hostname();
        let keyring = Keyring::load(&config)?;
        let sealer = Sealer::new(&config).map_err(|message| ConfigError {
            file: config.path.clone(),
            problems: vec![crate::config::Problem {
                key: "relay.sender".into(),
                message,
            }],
        })?;
        let hold = HoldKey::load(&config.queue.dir).ok().flatten();
        Ok(Context {
            rules: config.rules()?,
            router: config.router(),
            hostname,
            keyring,
            sealer,
            hold,
            config,
        })
    }
}
