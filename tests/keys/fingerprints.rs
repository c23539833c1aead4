// The test keys' fingerprints, as `tests/keys/generate.sh` lists them in
// `fingerprints.txt`: one reader for the unit tests (`include!`), the
// integration tests, the benchmark and the fuzz targets (`#[path]`).

/// The fingerprint of test key `name` ("alerts", "journalist", ...), in
/// the form `[[recipients]].fingerprint` takes.
pub fn fingerprint(name: &str) -> String {
    include_str!("fingerprints.txt")
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no test key {name} in tests/keys/fingerprints.txt"))
}
