//! `relayctl route FILE`: which route a saved message would take, and to
//! whom it would go, without sending anything, so that an admin can check
//! a rule against a real alert.

use std::io::Read;
use std::path::Path;

use crate::config::Config;
use crate::ingest::sendmail::{header_recipients, resolve_all};
use crate::sysexits::{self, Failure};

/// `relayctl route FILE [--to ADDR]...`: prints the route and the
/// recipients; exit 0, or the sysexits code of what is wrong.
pub fn route_command(path: &Path, file: &Path, to: &[String]) -> u8 {
    match route(path, file, to) {
        Ok(report) => {
            print!("{report}");
            sysexits::OK
        }
        Err(f) => {
            eprintln!("relayctl route: {}", f.message);
            f.code
        }
    }
}

/// The report: the route that matches (or none), its action, and whom
/// the message goes to. The envelope's recipients are `to`, else the
/// message's To, Cc and Bcc, as `sendmail -t` takes them.
pub fn route(path: &Path, file: &Path, to: &[String]) -> Result<String, Failure> {
    let config = Config::load(path).map_err(|e| Failure::new(sysexits::CONFIG, e.to_string()))?;
    let rules = config
        .rules()
        .map_err(|e| Failure::new(sysexits::CONFIG, e.to_string()))?;
    let limit = config.listen.max_message_size.0;
    let mut message = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(limit.saturating_add(1)).read_to_end(&mut message))
        .map_err(|e| Failure::new(sysexits::NOINPUT, format!("{}: {e}", file.display())))?;
    if message.len() as u64 > limit {
        return Err(Failure::new(
            sysexits::DATAERR,
            format!(
                "{} is larger than listen.max_message_size ({limit} bytes): it would be refused",
                file.display()
            ),
        ));
    }
    let addresses = if to.is_empty() {
        header_recipients(&message)
    } else {
        to.to_vec()
    };
    if addresses.is_empty() {
        return Err(Failure::new(
            sysexits::USAGE,
            format!(
                "{} names no recipient in To, Cc or Bcc: give the envelope's with --to ADDR",
                file.display()
            ),
        ));
    }
    let recipients = resolve_all(&config.router(), &addresses)?;
    let routed = rules.route(&recipients, &message);
    let list = |rs: &[crate::route::Recipient]| -> String {
        rs.iter()
            .map(|r| r.0.as_str().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!("envelope: {}\n", list(&recipients));
    match &routed.by {
        None => out.push_str("route: none matches: it goes to the envelope's recipients\n"),
        Some((name, action)) => out.push_str(&format!("route: {name} ({action})\n")),
    }
    use crate::route::journalist::{self, Count};
    match (&routed.journalist, journalist::count(&message)) {
        (Some(_), Count::Malformed) => out.push_str(&format!(
            "to: {}: no count after the marker, so the alert goes to the admin as \"{}\"\n",
            list(&config.admins()),
            journalist::ERROR_SUBJECT
        )),
        (Some(j), Count::Submissions(_)) if j.is_empty() => out.push_str(
            "to: nobody: no journalist is configured (the route has no to); the daemon logs it\n",
        ),
        (Some(j), Count::Submissions(n)) => out.push_str(&format!(
            "to: {}: \"{}\" ({}), unless one went out in the last 1410 minutes; \
             only for mail the daemon receives over SMTP (sendmail's goes to the envelope's \
             recipients)\n",
            list(j),
            journalist::SUBJECT,
            if n > 0 { "activity" } else { "no activity" }
        )),
        (None, _) if routed.recipients.is_empty() => {
            out.push_str("to: nobody: the message is discarded (and the daemon logs it)\n")
        }
        (None, _) => out.push_str(&format!("to: {}\n", list(&routed.recipients))),
    }
    Ok(out)
}
