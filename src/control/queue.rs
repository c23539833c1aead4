//! The queue as an admin sees it and acts on it: `relayctl queue`,
//! `mailq`, `relayctl flush` and `relayctl delete`.

use std::path::Path;

use crate::config::Config;
use crate::spool::{Listing, QueueId, Spool};
use crate::sysexits::{self, Failure};

/// The queue as a table, oldest first, or "Mail queue is empty".
pub fn queue_table(rows: &[Listing]) -> String {
    if rows.is_empty() {
        return "Mail queue is empty\n".into();
    }
    let mut out = format!(
        "{:<24}  {:<8}  {:>8}  {:<20}  {:>8}  {:<20}  {:<28}  {}\n",
        "ID", "STATE", "SIZE", "ARRIVED", "ATTEMPTS", "NEXT TRY", "RECIPIENT", "LAST ERROR"
    );
    let mut total = 0;
    for r in rows {
        total += r.size;
        let next = r
            .next_attempt
            .map(crate::when::rfc3339)
            .unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{:<24}  {:<8}  {:>8}  {:<20}  {:>8}  {:<20}  {:<28}  {}\n",
            r.id,
            r.state,
            r.size,
            crate::when::rfc3339(r.created),
            r.attempts,
            next,
            r.recipient,
            r.last_error
        ));
    }
    out.push_str(&format!(
        "-- {} Kbytes in {} request{}.\n",
        total.div_ceil(1024),
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    ));
    out
}

/// `mailq`, `sendmail -bp`: the queue, for root and the spool's owner.
pub fn mailq(config: &Config) -> Result<(), Failure> {
    match crate::spool::Spool::at(&config.queue.dir).list() {
        Ok(rows) => {
            print!("{}", queue_table(&rows));
            Ok(())
        }
        Err(crate::spool::SpoolError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            Err(Failure::new(
                sysexits::NOPERM,
                format!(
                    "the queue in {} is readable by root and the daemon's user only: \
                     run `sudo mailq` (or `sudo relayctl queue`)",
                    config.queue.dir.display()
                ),
            ))
        }
        Err(e) => Err(Failure::new(e.exit_code(), e.to_string())),
    }
}

/// One queue row as `relayctl queue --json` prints it.
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    id: &'a str,
    state: &'a str,
    recipient: &'a str,
    size: u64,
    created: String,
    attempts: u32,
    next_attempt: Option<String>,
    last_error: Option<&'a str>,
}

/// The queue as one JSON array, with the keys `relayctl queue --help` names.
pub fn queue_json(rows: &[Listing]) -> String {
    let rfc3339 = crate::when::rfc3339;
    let rows: Vec<JsonRow<'_>> = rows
        .iter()
        .map(|r| JsonRow {
            id: &r.id,
            state: r.state,
            recipient: &r.recipient,
            size: r.size,
            created: rfc3339(r.created),
            attempts: r.attempts,
            next_attempt: r.next_attempt.map(rfc3339),
            last_error: (!r.last_error.is_empty()).then_some(r.last_error.as_str()),
        })
        .collect();
    serde_json::to_string_pretty(&rows).unwrap_or_else(|_| "[]".into()) + "\n"
}

/// `relayctl queue [--json]`: the listing; exit 0, 78 for a bad config,
/// 75 when the spool cannot be read.
pub fn queue(path: &Path, json: bool) -> u8 {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return sysexits::CONFIG;
        }
    };
    match Spool::at(&config.queue.dir).list() {
        Ok(rows) if json => {
            print!("{}", queue_json(&rows));
            sysexits::OK
        }
        Ok(rows) => {
            print!("{}", queue_table(&rows));
            if !rows.is_empty()
                && let Some(note) = pacing_note(&Spool::at(&config.queue.dir))
            {
                println!("{note}");
            }
            sysexits::OK
        }
        Err(e) => {
            eprintln!("relayctl: {e}");
            sysexits::TEMPFAIL
        }
    }
}

/// `relayctl flush [ID]`: makes queued messages due now and wakes the
/// daemon; the exit code.
pub fn flush(path: &Path, id: Option<&str>) -> u8 {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return sysexits::CONFIG;
        }
    };
    let id = match id.map(|s| QueueId::parse(s).ok_or(s)) {
        Some(Err(s)) => {
            eprintln!("relayctl: {s:?} is not a queue id (relayctl queue lists them)");
            return sysexits::USAGE;
        }
        Some(Ok(id)) => Some(id),
        None => None,
    };
    let spool = Spool::at(&config.queue.dir);
    match spool.flush(id.as_ref()) {
        Ok(0) if id.is_some() => {
            eprintln!(
                "relayctl: no queued message {}",
                id.map(|i| i.to_string()).unwrap_or_default()
            );
            sysexits::NOUSER
        }
        Ok(n) => {
            spool.wake();
            println!("{n} message{} due now", if n == 1 { "" } else { "s" });
            sysexits::OK
        }
        Err(e) => {
            eprintln!("relayctl: {e}");
            sysexits::TEMPFAIL
        }
    }
}

/// A queue id from the command line, or the usage error (exit 64).
pub fn parse_id(s: &str) -> Result<QueueId, u8> {
    QueueId::parse(s).ok_or_else(|| {
        eprintln!("relayctl: {s:?} is not a queue id (relayctl queue lists them)");
        sysexits::USAGE
    })
}

/// `relayctl delete ID [--yes]`: removes one message wherever it is,
/// after asking; the exit code.
pub fn delete(path: &Path, id: &str, yes: bool) -> u8 {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return sysexits::CONFIG;
        }
    };
    let id = match parse_id(id) {
        Ok(id) => id,
        Err(code) => return code,
    };
    let spool = Spool::at(&config.queue.dir);
    let row = spool
        .list()
        .ok()
        .and_then(|rows| rows.into_iter().find(|r| r.id == id.as_str()));
    let Some(row) = row else {
        eprintln!("relayctl: no message {id} in the spool");
        return sysexits::NOUSER;
    };
    if !yes {
        eprint!(
            "delete {id} ({}, to {}, {} bytes)? [y/N] ",
            row.state, row.recipient, row.size
        );
        let mut answer = String::new();
        if std::io::stdin().read_line(&mut answer).is_err()
            || !answer.trim().eq_ignore_ascii_case("y")
        {
            eprintln!("not deleted");
            return sysexits::TEMPFAIL;
        }
    }
    match spool.delete(&id) {
        Ok(Some(dir)) => {
            println!("{id} deleted from {dir}/");
            sysexits::OK
        }
        Ok(None) => {
            eprintln!("relayctl: no message {id} in the spool");
            sysexits::NOUSER
        }
        Err(e) => {
            eprintln!("relayctl: {e}");
            sysexits::TEMPFAIL
        }
    }
}

/// What the running daemon's health record says of pacing: which of the
/// relay's limits holds due alerts back, and until when. Nothing when
/// none does, or the record is not a running daemon's.
fn pacing_note(spool: &Spool) -> Option<String> {
    let record = crate::health::Record::load(spool).ok()??;
    let updated = crate::health::time(record.updated);
    let fresh = std::time::SystemTime::now()
        .duration_since(updated)
        .is_ok_and(|age| age < crate::health::STALE_AFTER);
    let paced = record.paced.filter(|_| fresh && record.stopped.is_none())?;
    Some(format!(
        "Delivery is paced: {}; the next alert leaves at {}.",
        paced.reason,
        crate::when::rfc3339(crate::health::time(paced.until))
    ))
}
