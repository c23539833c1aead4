//! What one received message becomes: per recipient, the message
//! encrypted to that recipient's key alone, or a notice and the held
//! original when the key cannot. The daemon stores the outgoing message at
//! once ([`entries`]); `sendmail` submits the sealed alert for the daemon
//! to check and wrap ([`submissions`], [`admit`]).

use std::time::SystemTime;

use crate::config::KeyFailurePolicy;
use crate::context::Context;
use crate::encrypt::{CannotEncrypt, RecipientKey, Sealed};
use crate::route::{Address, Recipient, Routed};
use crate::spool::{Entry, Kind, QueueId};

/// The longest envelope sender or note taken from a submission.
const MAX_FIELD: usize = 512;

/// What one received message becomes for one recipient, before it is
/// stored: by the daemon at once, by `sendmail` as a submission.
enum Sealing {
    /// Encrypted to the recipient's key.
    Sealed(Sealed),
    /// The key cannot encrypt: a notice goes instead.
    Notice(CannotEncrypt),
    /// The original, kept for `relayctl release`: encrypted to the hold
    /// key when `sealed`, in plaintext otherwise.
    Held {
        original: Vec<u8>,
        sealed: bool,
        reason: String,
    },
}

/// The spool entries for one message, as the daemon stores them, for
/// exactly these recipients (the routes, [`route`], come first): per
/// recipient, the message encrypted to that recipient's key alone; or,
/// when the key cannot encrypt, a notice with no alert content plus
/// (unless `on_key_failure = "drop"`) the original as a held entry,
/// encrypted to the hold key. The daemon's own warnings and heartbeats
/// come here without a route: none may redirect or drop them.
pub fn entries_for(
    ctx: &Context,
    sender: &str,
    recipients: &[Recipient],
    message: &[u8],
) -> Vec<Entry> {
    let now = SystemTime::now();
    seal_all(ctx, recipients, message, now)
        .into_iter()
        .map(|(id, to, sealing)| render(ctx, id, sender, to, sealing, now))
        .collect()
}

/// The same, as `sendmail` submits it into `incoming/`: the sealed
/// alerts and notices are wrapped by the daemon, after its check
/// ([`admit`]).
pub fn submissions(
    ctx: &Context,
    sender: &str,
    recipients: &[Recipient],
    message: &[u8],
) -> Vec<Entry> {
    let now = SystemTime::now();
    // SecureDrop's journalist notification needs the daemon's stamp: a
    // message it would take goes to its envelope's recipients (the
    // admin), as procmail's fallback did.
    let recipients = route(ctx, recipients, message).recipients;
    seal_all(ctx, &recipients, message, now)
        .into_iter()
        .map(|(id, to, sealing)| match sealing {
            Sealing::Sealed(sealed) => {
                Entry::with_id(id, Kind::Sealed, sender, to.0.as_str(), sealed.encode())
            }
            Sealing::Notice(reason) => {
                Entry::with_id(id, Kind::Notice, sender, to.0.as_str(), Vec::new())
                    .with_note(&format!("encryption failed: {reason}"))
            }
            held @ Sealing::Held { .. } => render(ctx, id, sender, to, held, now),
        })
        .collect()
}

/// The recipients after `[[routes]]` (before encryption: the rules read
/// the message). A route that applies is logged, by name and action,
/// never with the message's content; in `sendmail`, which logs nothing,
/// `-v` says it.
pub fn route(ctx: &Context, recipients: &[Recipient], message: &[u8]) -> Routed {
    let routed = ctx.rules.route(recipients, message);
    if let Some((name, action)) = &routed.by {
        let to: Vec<&str> = routed
            .journalist
            .as_ref()
            .unwrap_or(&routed.recipients)
            .iter()
            .map(|r| r.0.as_str())
            .collect();
        tracing::info!(route = %name, action = %action, to = ?to.join(" "), "routed");
    }
    routed
}

/// Takes a submission from `incoming/`, which anything with the
/// spool's group can write, and returns the entry to store in its
/// place, or why it is refused. The recipient must be configured now;
/// a sealed alert must be encrypted to that recipient's key alone
/// ([`Sealer::check`]); a notice carries nothing (the daemon writes its
/// fixed text); a held original is stored encrypted to the hold key.
/// An outgoing message is never taken from there: only the daemon
/// builds those.
pub fn admit(ctx: &Context, submitted: Entry) -> Result<Entry, String> {
    let key = configured(ctx, &submitted.recipient)?;
    let to = key.recipient.clone();
    let sender: String = submitted.sender.chars().take(MAX_FIELD).collect();
    let note: String = submitted.note.chars().take(MAX_FIELD).collect();
    let now = SystemTime::now();
    let sealing = match submitted.kind {
        Kind::Sealed => Sealing::Sealed(ctx.sealer.check(&submitted.payload, key)?),
        Kind::Notice if submitted.payload.is_empty() => {
            let stored = Entry::with_id(
                submitted.id,
                Kind::Outgoing,
                &sender,
                to.0.as_str(),
                ctx.sealer.notice(&to, now),
            );
            return Ok(stored.with_note(&note));
        }
        Kind::Notice => return Err("a notice with a payload".into()),
        Kind::HeldSealed => {
            let hold = ctx.hold.as_ref().ok_or("no hold key to check it with")?;
            Sealing::Held {
                original: hold.check(&submitted.payload)?,
                sealed: true,
                reason: note,
            }
        }
        Kind::Held => hold_original(ctx, submitted.payload, note),
        Kind::Outgoing => {
            return Err(
                "an outgoing message, which only the daemon builds (an older \
                        sendmail's, or forged)"
                    .into(),
            );
        }
    };
    let mut stored = render(ctx, submitted.id, &sender, &to, sealing, now);
    stored.created = submitted.created;
    Ok(stored)
}

/// The configured recipient's key for an address taken from a file.
fn configured<'c>(ctx: &'c Context, address: &str) -> Result<&'c RecipientKey, String> {
    let clipped: String = address.chars().take(80).collect();
    Address::parse(address)
        .ok()
        .and_then(|a| ctx.keyring.get(&Recipient(a)))
        .ok_or_else(|| format!("{clipped:?} is not a configured recipient"))
}

/// Encrypts the message for each recipient, with a new queue id each.
fn seal_all<'r>(
    ctx: &Context,
    recipients: &'r [Recipient],
    message: &[u8],
    now: SystemTime,
) -> Vec<(QueueId, &'r Recipient, Sealing)> {
    let mut out = Vec::with_capacity(recipients.len());
    for r in recipients {
        // The router only yields configured recipients, and the
        // keyring holds a key for each; a gap would be a bug.
        let Some(key) = ctx.keyring.get(r) else {
            tracing::error!(to = %r, "no key loaded for a configured recipient; message held");
            let held = hold_original(
                ctx,
                message.to_vec(),
                "no key loaded for this recipient".into(),
            );
            out.push((QueueId::generate(), r, held));
            continue;
        };
        match ctx.sealer.seal(message, key, now) {
            Ok(sealed) => out.push((QueueId::generate(), r, Sealing::Sealed(sealed))),
            Err(reason) => {
                if ctx.sealer.on_key_failure == KeyFailurePolicy::Hold {
                    let held = hold_original(ctx, message.to_vec(), reason.to_string());
                    out.push((QueueId::generate(), r, held));
                }
                out.push((QueueId::generate(), r, Sealing::Notice(reason)));
            }
        }
    }
    out
}

/// A held original, encrypted to the hold key when there is one.
fn hold_original(ctx: &Context, original: Vec<u8>, reason: String) -> Sealing {
    match ctx.hold.as_ref().map(|h| h.seal(&original)) {
        Some(Ok(sealed)) => Sealing::Held {
            original: sealed,
            sealed: true,
            reason,
        },
        Some(Err(e)) => {
            tracing::error!("{e}; the held original is kept in plaintext");
            Sealing::Held {
                original,
                sealed: false,
                reason,
            }
        }
        None => Sealing::Held {
            original,
            sealed: false,
            reason,
        },
    }
}

/// The entry the daemon stores for one sealing.
fn render(
    ctx: &Context,
    id: QueueId,
    sender: &str,
    to: &Recipient,
    sealing: Sealing,
    now: SystemTime,
) -> Entry {
    let to_text = to.0.as_str();
    match sealing {
        Sealing::Sealed(sealed) => Entry::with_id(
            id,
            Kind::Outgoing,
            sender,
            to_text,
            ctx.sealer.wrap(sealed, to),
        ),
        Sealing::Notice(reason) => Entry::with_id(
            id,
            Kind::Outgoing,
            sender,
            to_text,
            ctx.sealer.notice(to, now),
        )
        .with_note(&format!("encryption failed: {reason}")),
        Sealing::Held {
            original,
            sealed,
            reason,
        } => {
            let kind = if sealed { Kind::HeldSealed } else { Kind::Held };
            Entry::with_id(id, kind, sender, to_text, original).with_note(&reason)
        }
    }
}
