#!/bin/sh
# The tests, on a machine with a Rust toolchain and nothing else: installs
# what they need when it is missing, then runs `cargo test` (any arguments
# go to cargo, e.g. --no-default-features --features crypto-nettle).
#
# - Debian packages (python3, gnupg, openssl, systemd; as root also
#   iproute2, nftables, passwd, util-linux; for crypto-nettle clang,
#   pkg-config, nettle-dev): installed with apt-get when run as root;
#   else this names them and stops.
# - aiosmtpd, the tests' SMTP relay, and prometheus_client, whose parser
#   reads `relayctl health --prometheus`: into a virtual environment of
#   the project's own (target/test-venv) when python3 cannot import them,
#   whose python3 the tests then find first on PATH.
# - Run as root, the tests that need it (other users, a setgid sendmail,
#   mounts, network namespaces) run too; otherwise they are reported as
#   ignored, with the reason.
set -eu
cd "$(dirname "$0")"

say() { printf 'test.sh: %s\n' "$*" >&2; }

root=no
[ "$(id -u)" = 0 ] && root=yes

# command -> Debian package that provides it; the second line only for
# the tests that run as root (accounts, namespaces, nftables).
needed="python3:python3 gpg:gnupg openssl:openssl systemd-analyze:systemd"
[ "$root" = yes ] && needed="$needed ip:iproute2 nft:nftables useradd:passwd setpriv:util-linux"
# The crypto-nettle backend builds against Nettle with bindgen.
case " $* " in
*crypto-nettle*) needed="$needed clang:clang pkg-config:pkg-config" ;;
esac
missing=
for pair in $needed; do
    cmd=${pair%%:*}
    pkg=${pair#*:}
    command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 \
        || missing="$missing $pkg"
done
case " $* " in
*crypto-nettle*)
    pkg-config --exists nettle hogweed 2>/dev/null || missing="$missing nettle-dev" ;;
esac
# The Python modules the tests import; the venv module, for their
# environment, is in its own package on Debian.
pymods="aiosmtpd prometheus_client"
pyimport="import $(echo $pymods | tr ' ' ',')"
if ! command -v python3 >/dev/null 2>&1; then
    missing="$missing python3-venv"
elif ! python3 -c "$pyimport" 2>/dev/null \
    && ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
    missing="$missing python3-venv"
fi
if [ -n "$missing" ]; then
    if [ "$root" = yes ] && command -v apt-get >/dev/null 2>&1; then
        say "installing:$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        # shellcheck disable=SC2086
        apt-get install -y -qq --no-install-recommends $missing >/dev/null
    else
        say "missing:$missing"
        say "install them (as root: apt-get install$missing), or run this as root"
        exit 1
    fi
fi

if ! python3 -c "$pyimport" 2>/dev/null; then
    venv=target/test-venv
    if [ ! -x "$venv/bin/python3" ] || ! "$venv/bin/python3" -c "$pyimport" 2>/dev/null; then
        say "installing $pymods into $venv"
        python3 -m venv "$venv"
        # shellcheck disable=SC2086
        "$venv/bin/python3" -m pip install --quiet $pymods
    fi
    PATH=$PWD/$venv/bin:$PATH
    export PATH
fi

if [ "$root" = yes ]; then
    # --include-ignored goes to the test binaries, after a `--`.
    for arg in "$@"; do
        if [ "$arg" = -- ]; then
            exec cargo test "$@" --include-ignored
        fi
    done
    exec cargo test "$@" -- --include-ignored
fi
exec cargo test "$@"
