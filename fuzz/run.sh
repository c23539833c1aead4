#!/bin/sh
# Runs every fuzz target for SECONDS (default 30) each, from the seed
# corpus, keeping what libFuzzer finds in a scratch directory so the
# committed seeds stay small. Exits non-zero on a crash or a build error.
set -eu
cd "$(dirname "$0")"
seconds=${1:-30}
for target in transform smtp_session data_reader config relay_reply ehlo sendmail_args incoming token_response; do
    work=$(mktemp -d)
    log="$work.log"
    echo "== $target: $seconds s"
    if RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" "$work" "corpus/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=4096 >"$log" 2>&1; then
        grep -E '^(#[0-9]+.*DONE|Done )' "$log" || true
        rm -rf "$work" "$log"
    else
        tail -n 40 "$log"
        echo "$target failed; inputs that crash are in fuzz/artifacts/$target" >&2
        exit 1
    fi
done
