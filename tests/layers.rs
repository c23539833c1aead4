//! The stages import downward only: a stage never names a stage after
//! it, nor the commands and the daemon that sit on top of them. A stage
//! that imports the stage after it, and is imported back, is two stages
//! that must change together (CRAFT: Stalwart's inbound never names
//! outbound; the queue tells delivery). This reads `src/` and fails on
//! any `crate::NAME` a module may not use.

use std::path::{Path, PathBuf};

/// The modules that sit on top: commands, the daemon, the demo.
const TOP: &[&str] = &["cli", "control", "daemon", "demo", "diagnose", "securedrop"];

/// Each lower module and the crate modules it must not name, on top of
/// [`TOP`].
const RULES: &[(&str, &[&str])] = &[
    (
        "os",
        &[
            "config", "route", "encrypt", "spool", "context", "health", "ingest", "deliver",
        ],
    ),
    (
        "route",
        &["encrypt", "spool", "context", "health", "ingest", "deliver"],
    ),
    (
        "encrypt",
        &["spool", "context", "health", "ingest", "deliver"],
    ),
    (
        "spool",
        &["encrypt", "route", "context", "health", "ingest", "deliver"],
    ),
    ("context", &["spool", "health", "ingest", "deliver"]),
    // What delivery reports and the commands read: below both.
    ("health", &["ingest", "deliver"]),
    ("ingest", &["deliver"]),
    ("deliver", &["ingest"]),
];

fn files(module: &str) -> Vec<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let single = src.join(format!("{module}.rs"));
    if single.exists() {
        return vec![single];
    }
    let mut out = Vec::new();
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|x| x == "rs") {
                out.push(path);
            }
        }
    }
    out
}

/// The crate modules a file names in code (comments are left out).
fn named(path: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push((n + 1, name));
        }
    }
    out
}

#[test]
fn stages_import_downward_only() {
    let mut problems = Vec::new();
    for (module, forbidden) in RULES {
        for file in files(module) {
            for (line, name) in named(&file) {
                if forbidden.contains(&name.as_str()) || TOP.contains(&name.as_str()) {
                    problems.push(format!(
                        "{}:{line}: {module} names crate::{name}",
                        file.display()
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_check_sees_what_it_looks_for() {
    // A canary: the rules would catch the import that was once here.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("smtp.rs");
    std::fs::write(
        &file,
        "use crate::deliver::runner::Arrivals; // crate::control in a comment\n",
    )
    .unwrap();
    let names: Vec<String> = named(&file).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["deliver"]);
}

#[test]
fn the_daemon_links_no_code_of_the_demo_or_its_certificate_generator() {
    // The stand-in relay and rcgen are `relayctl demo`'s (cargo feature
    // `demo`); the daemon never calls them, so the linker leaves them out.
    // nm lists the functions the binary holds (binutils, beside gcc).
    let symbols = |exe: &str| {
        let out = std::process::Command::new("nm")
            .args(["-C", "--defined-only", exe])
            .output()
            .expect("nm (binutils)");
        assert!(out.status.success(), "nm {exe}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let daemon = symbols(env!("CARGO_BIN_EXE_alert-relayd"));
    for crate_path in ["rcgen::", "alert_relay::demo::"] {
        let found = daemon.lines().filter(|l| l.contains(crate_path)).count();
        assert_eq!(
            found, 0,
            "alert-relayd holds {found} functions of {crate_path}"
        );
    }
    // The check can see them: relayctl, which has the demo, holds both.
    let relayctl = symbols(env!("CARGO_BIN_EXE_relayctl"));
    if cfg!(feature = "demo") {
        assert!(relayctl.contains("rcgen::") && relayctl.contains("alert_relay::demo::"));
    }
}
