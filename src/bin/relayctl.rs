//! relayctl: the admin's tool.

use std::process::ExitCode;

use alert_relay::cli::{Command, Relayctl};
use alert_relay::config::{self, Config};
use alert_relay::control;
use alert_relay::spool::Spool;
use alert_relay::sysexits;
use clap::Parser;

fn main() -> ExitCode {
    // It reads the SASL password, the hold key and held alerts.
    alert_relay::os::forbid_core_dumps();
    alert_relay::cli::die_on_broken_pipe();
    let cli = Relayctl::parse();
    let path = config::resolve_path(cli.config);
    let code = match cli.command {
        Command::Check => {
            let (report, ok) = control::check(Config::load(&path));
            if ok {
                print!("{report}");
                sysexits::OK
            } else {
                eprint!("{report}");
                sysexits::CONFIG
            }
        }
        Command::Demo => match alert_relay::demo::run() {
            Ok(()) => sysexits::OK,
            Err(e) => {
                eprintln!("relayctl demo: {e}");
                sysexits::SOFTWARE
            }
        },
        Command::Flush { id } => flush(&path, id.as_deref()),
        Command::ImportSecuredrop {
            file,
            password_file,
            force,
        } => import_securedrop(&path, &file, password_file, force),
        Command::Test { to, no_send, json } => {
            use alert_relay::diagnose::{Options, Output};
            let opts = Options {
                config: &path,
                to: to.as_deref(),
                no_send,
                output: if json {
                    Output::Json
                } else {
                    Output::text_for_stdout()
                },
            };
            if alert_relay::diagnose::run(&opts) {
                sysexits::OK
            } else {
                sysexits::UNAVAILABLE
            }
        }
        Command::Key { file } => {
            let (report, ok) = control::key_report(&file);
            print!("{report}");
            if ok { sysexits::OK } else { sysexits::DATAERR }
        }
        Command::Fingerprint {
            relay,
            starttls,
            implicit,
        } => fingerprint(&path, relay.as_deref(), starttls, implicit),
        Command::Release { id } => match (Config::load(&path), parse_id(&id)) {
            (Err(e), _) => {
                eprintln!("{e}");
                sysexits::CONFIG
            }
            (_, Err(code)) => code,
            (Ok(c), Ok(id)) => match control::release(c, &id) {
                Ok(said) => {
                    print!("{said}");
                    sysexits::OK
                }
                Err(e) => {
                    eprintln!("relayctl: {id}: {e}");
                    match e {
                        control::ReleaseError::StillCannotEncrypt(_) => sysexits::DATAERR,
                        control::ReleaseError::Config(_) => sysexits::CONFIG,
                        _ => sysexits::NOUSER,
                    }
                }
            },
        },
        Command::Delete { id, yes } => delete(&path, &id, yes),
        Command::Queue { json } => match Config::load(&path) {
            Err(e) => {
                eprintln!("{e}");
                sysexits::CONFIG
            }
            Ok(c) => match Spool::at(&c.queue.dir).list() {
                Ok(rows) => {
                    if json {
                        print!("{}", control::queue_json(&rows));
                    } else {
                        print!("{}", control::queue_table(&rows));
                    }
                    sysexits::OK
                }
                Err(e) => {
                    eprintln!("relayctl: {e}");
                    sysexits::TEMPFAIL
                }
            },
        },
    };
    ExitCode::from(code)
}

fn flush(path: &std::path::Path, id: Option<&str>) -> u8 {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return sysexits::CONFIG;
        }
    };
    let id = match id.map(|s| alert_relay::spool::QueueId::parse(s).ok_or(s)) {
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

fn fingerprint(path: &std::path::Path, relay: Option<&str>, starttls: bool, implicit: bool) -> u8 {
    use alert_relay::config::TlsMode;
    use alert_relay::deliver::client::{Connection, PasswordSource, Settings};
    use alert_relay::deliver::tls::Tls;

    let (host, port, configured_mode, timeout) = match relay {
        Some(r) => {
            let (host, port) = match r.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(':') => match p.parse::<u16>() {
                    Ok(p) => (h.trim_matches(['[', ']']).to_string(), p),
                    Err(_) => {
                        eprintln!("relayctl: {p:?} is not a port");
                        return sysexits::USAGE;
                    }
                },
                _ => (r.to_string(), 587),
            };
            (host, port, None, std::time::Duration::from_secs(30))
        }
        None => match Config::load(path) {
            Ok(c) => (
                c.relay.host.clone(),
                c.relay.port,
                Some(c.relay.tls_mode()),
                c.relay.timeout.0,
            ),
            Err(e) => {
                eprintln!("{e}\n(or name the relay: relayctl fingerprint HOST:PORT)");
                return sysexits::CONFIG;
            }
        },
    };
    let mode = if implicit {
        TlsMode::Implicit
    } else if starttls {
        TlsMode::Starttls
    } else {
        configured_mode.unwrap_or(if port == 465 {
            TlsMode::Implicit
        } else {
            TlsMode::Starttls
        })
    };
    let tls = match Tls::record_only(&host) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("relayctl: {e}");
            return sysexits::USAGE;
        }
    };
    let settings = Settings {
        host: host.clone(),
        port,
        mode,
        tls,
        timeout,
        helo: "relayctl".into(),
        identity: None,
        password: PasswordSource::Credential,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("relayctl: {e}");
            return sysexits::OSERR;
        }
    };
    match runtime.block_on(Connection::certificate(&settings)) {
        Ok(cert) => {
            let how = if mode == TlsMode::Implicit {
                "implicit TLS"
            } else {
                "STARTTLS"
            };
            print!(
                "{}",
                control::fingerprint_report(&format!("{} ({how})", settings.relay()), &cert)
            );
            sysexits::OK
        }
        Err(e) => {
            eprintln!("relayctl: {}: {e}", settings.relay());
            sysexits::UNAVAILABLE
        }
    }
}

fn import_securedrop(
    config: &std::path::Path,
    file: &std::path::Path,
    password_file: Option<std::path::PathBuf>,
    force: bool,
) -> u8 {
    use alert_relay::securedrop::{Targets, import};
    let dir = config
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let targets = Targets {
        config: config.to_path_buf(),
        password_file: password_file.unwrap_or_else(|| dir.join("sasl_password")),
        keys_dir: dir,
        force,
    };
    let imported = match import(file, &targets) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("relayctl import-securedrop: {}: {e}", file.display());
            return match e {
                alert_relay::securedrop::ImportError::Exists(_) => sysexits::CANTCREAT,
                alert_relay::securedrop::ImportError::Write { .. } => sysexits::CANTCREAT,
                alert_relay::securedrop::ImportError::Read { .. } => sysexits::NOINPUT,
                _ => sysexits::DATAERR,
            };
        }
    };
    for path in &imported.written {
        println!("wrote {}", path.display());
    }
    println!("recipients: {}", imported.recipients.join(", "));
    let (report, ok) = control::check(Config::load(config));
    print!("{report}");
    if ok {
        println!(
            "next: relayctl test (then systemctl enable --now alert-relay.socket alert-relay.service)"
        );
        sysexits::OK
    } else {
        sysexits::CONFIG
    }
}

fn parse_id(s: &str) -> Result<alert_relay::spool::QueueId, u8> {
    alert_relay::spool::QueueId::parse(s).ok_or_else(|| {
        eprintln!("relayctl: {s:?} is not a queue id (relayctl queue lists them)");
        sysexits::USAGE
    })
}

fn delete(path: &std::path::Path, id: &str, yes: bool) -> u8 {
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
