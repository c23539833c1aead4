//! Building the outgoing message for one recipient.
//!
//! Everything that goes into the spool passes through [`outgoing_payload`],
//! so that the spool only ever holds what will leave the host.
//!
//! Until OpenPGP encryption lands (issue 3), the payload is the received
//! message unchanged: this is the single function that encryption replaces.

use crate::route::Recipient;

/// The bytes to spool and deliver for `recipient`, given the message as
/// received.
pub fn outgoing_payload(message: &[u8], _recipient: &Recipient) -> Vec<u8> {
    message.to_vec()
}
