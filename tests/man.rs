//! The man pages in `packaging/man/` are rendered from the command-line
//! definition (`src/cli/mod.rs`), so they cannot drift from `--help`. This test
//! fails when a committed page differs from what the definition renders;
//! `UPDATE_MAN=1 cargo test --test man` rewrites them. `sendmail.8` is
//! written by hand, since sendmail's command line is sendmail's own; it is
//! checked here against `sendmail --help`'s options.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/man")
}

/// Every page the CLI definition renders: (file name, roff).
fn rendered() -> Vec<(String, String)> {
    fn walk(cmd: clap::Command, out: &mut Vec<(String, String)>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub.clone(), out);
        }
        let examples = cmd.get_after_help().map(|h| h.to_string());
        let versioned = cmd.get_version().is_some();
        let man = clap_mangen::Man::new(cmd)
            .section("8")
            .manual("alert-relay");
        let mut roff = Vec::new();
        man.render_title(&mut roff).unwrap();
        man.render_name_section(&mut roff).unwrap();
        man.render_synopsis_section(&mut roff).unwrap();
        man.render_description_section(&mut roff).unwrap();
        man.render_options_section(&mut roff).unwrap();
        man.render_subcommands_section(&mut roff).unwrap();
        // The examples as written, line for line (clap_mangen would refill them).
        if let Some(text) = examples {
            let body = text.split_once('\n').map(|(_, rest)| rest).unwrap_or("");
            roff.extend_from_slice(b".SH EXAMPLES\n.nf\n");
            for line in body.lines() {
                let escaped = line.trim_start().replace('\\', "\\e").replace('-', "\\-");
                let escaped = if escaped.starts_with(['.', '\'']) {
                    format!("\\&{escaped}")
                } else {
                    escaped
                };
                roff.extend_from_slice(escaped.as_bytes());
                roff.push(b'\n');
            }
            roff.extend_from_slice(b".fi\n");
        }
        if versioned {
            man.render_version_section(&mut roff).unwrap();
        }
        out.push((man.get_filename(), String::from_utf8(roff).unwrap()));
    }
    let mut out = Vec::new();
    for cmd in [
        alert_relay::cli::Daemon::command(),
        alert_relay::cli::Relayctl::command(),
    ] {
        let mut cmd = cmd.disable_help_subcommand(true);
        cmd.build();
        walk(cmd, &mut out);
    }
    out.sort();
    out
}

#[test]
fn man_pages_are_rendered_from_the_cli_definition() {
    let pages = rendered();
    let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "alert-relayd.8",
        "relayctl.8",
        "relayctl-test.8",
        "relayctl-demo.8",
    ] {
        assert!(names.contains(&want), "{want} not rendered: {names:?}");
    }
    if std::env::var_os("UPDATE_MAN").is_some() {
        for (name, roff) in &pages {
            std::fs::write(man_dir().join(name), roff).unwrap();
        }
    }
    let mut stale = Vec::new();
    for (name, roff) in &pages {
        let committed = std::fs::read_to_string(man_dir().join(name)).unwrap_or_default();
        if &committed != roff {
            stale.push(name.as_str());
        }
    }
    assert!(
        stale.is_empty(),
        "packaging/man/ is out of date for {stale:?}: run UPDATE_MAN=1 cargo test --test man"
    );
    // The relayctl page lists every subcommand, and the test page its examples.
    let relayctl = &pages.iter().find(|(n, _)| n == "relayctl.8").unwrap().1;
    for sub in [
        "test",
        "fingerprint",
        "key",
        "check",
        "queue",
        "flush",
        "release",
        "delete",
        "demo",
    ] {
        assert!(
            relayctl.contains(&format!("relayctl\\-{sub}(8)")),
            "{sub} missing"
        );
    }
    let test = &pages
        .iter()
        .find(|(n, _)| n == "relayctl-test.8")
        .unwrap()
        .1;
    assert!(test.contains("relayctl test \\-\\-no\\-send"), "{test}");
}

#[test]
fn the_sendmail_page_documents_every_option_of_sendmail_help() {
    let page = std::fs::read_to_string(man_dir().join("sendmail.8")).unwrap();
    let help = alert_relay::ingest::sendmail::HELP;
    let mut options: Vec<&str> = help
        .split_whitespace()
        .filter(|w| w.starts_with('-') && w.len() > 1)
        .map(|w| w.trim_end_matches([',', ':', ';', ')', '.']))
        .collect();
    options.sort();
    options.dedup();
    assert!(options.len() > 15, "{options:?}");
    let roff_plain = page
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "")
        .replace("\\fI", "");
    for opt in options {
        assert!(
            roff_plain.contains(opt),
            "sendmail.8 does not mention {opt}"
        );
    }
}
