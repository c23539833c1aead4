//! `relayctl release ID`: a held alert, encrypted to its recipient's key
//! as configured now, back in the queue.

use std::path::Path;

use crate::config::{Config, ConfigError};
use crate::sysexits;

/// `relayctl release ID`: prints what was done; exit 0, 65 while the key
/// still cannot encrypt, 67 when there is no such held message, 78 for a
/// bad config.
pub fn release_command(path: &Path, id: &str) -> u8 {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return sysexits::CONFIG;
        }
    };
    let id = match super::parse_id(id) {
        Ok(id) => id,
        Err(code) => return code,
    };
    match release(config, &id) {
        Ok(said) => {
            print!("{said}");
            sysexits::OK
        }
        Err(e) => {
            eprintln!("relayctl: {id}: {e}");
            match e {
                ReleaseError::StillCannotEncrypt(_) => sysexits::DATAERR,
                ReleaseError::Config(_) => sysexits::CONFIG,
                _ => sysexits::NOUSER,
            }
        }
    }
}

/// Why `relayctl release` did not release.
#[derive(Debug)]
pub enum ReleaseError {
    Config(ConfigError),
    Spool(crate::spool::SpoolError),
    NotConfigured(String),
    StillCannotEncrypt(crate::encrypt::CannotEncrypt),
    /// The held original is encrypted to the hold key, which this user
    /// cannot read, or which does not open it.
    HoldKey(String),
}

impl std::fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReleaseError::Config(e) => write!(f, "{e}"),
            ReleaseError::Spool(e) => write!(f, "{e}"),
            ReleaseError::NotConfigured(to) => write!(
                f,
                "{to} is no longer a configured recipient; add it back to [[recipients]] \
                 or delete the message"
            ),
            ReleaseError::StillCannotEncrypt(why) => write!(
                f,
                "still cannot encrypt: {why}; fix the recipient's key file (relayctl key FILE), \
                 then release again"
            ),
            ReleaseError::HoldKey(e) => write!(f, "{e}"),
        }
    }
}

/// `relayctl release ID`: encrypts a held original with the key as it is
/// configured now and queues it under the same id.
pub fn release(config: Config, id: &crate::spool::QueueId) -> Result<String, ReleaseError> {
    use crate::route::{Address, Recipient};
    use crate::spool::{Entry, Kind, Spool};
    let ctx = crate::context::Context::new(config).map_err(ReleaseError::Config)?;
    let spool = Spool::at(&ctx.config.queue.dir);
    let held = spool.read_held(id).map_err(ReleaseError::Spool)?;
    let recipient = Address::parse(&held.recipient)
        .map(Recipient)
        .map_err(|_| ReleaseError::NotConfigured(held.recipient.clone()))?;
    let key = ctx
        .keyring
        .get(&recipient)
        .ok_or_else(|| ReleaseError::NotConfigured(held.recipient.clone()))?;
    let original = match held.kind {
        Kind::HeldSealed => crate::encrypt::hold::open(spool.root(), &held.payload)
            .map_err(ReleaseError::HoldKey)?,
        _ => held.payload,
    };
    let message = ctx
        .sealer
        .outgoing(&original, key, std::time::SystemTime::now())
        .map_err(ReleaseError::StillCannotEncrypt)?;
    drop(original);
    let outgoing = Entry::with_id(
        id.clone(),
        Kind::Outgoing,
        &held.sender,
        &held.recipient,
        message,
    );
    spool.release(&outgoing).map_err(ReleaseError::Spool)?;
    spool.wake();
    Ok(format!(
        "{id} encrypted to {} and queued\n",
        key.fingerprint
    ))
}
