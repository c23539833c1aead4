#!/bin/sh
# Regenerates the OpenPGP test keys in this folder with GnuPG. Never edit
# the outputs by hand: change this script and run it again.
#
#   alerts       RSA-4096 with an RSA-4096 encryption subkey
#   journalist   Ed25519 with a Curve25519 encryption subkey
#   expired      an encryption subkey that expired in 2020
#   revoked      a revoked key
#   signonly     a key with no encryption subkey
#   rsa2048      RSA-2048 with an RSA-2048 encryption subkey (the smallest RSA
#                the policy accepts: src/encrypt/rsa.rs pads to its length)
#
# NAME.asc is the public key, NAME.sec.asc the secret key (no passphrase;
# tests decrypt with it), alerts.gpg the public key in binary form, and
# fingerprints.txt lists "NAME FINGERPRINT".
set -eu
cd "$(dirname "$0")"
home=$(mktemp -d)
trap 'rm -rf "$home"' EXIT
g() { gpg --homedir "$home" --batch --quiet --pinentry-mode loopback --passphrase '' "$@"; }
fpr() { g --with-colons --list-keys "$1" | awk -F: '/^fpr:/ { print $10; exit }'; }

g --quick-gen-key 'Alerts <alerts@example.org>' rsa4096 sign never
g --quick-add-key "$(fpr alerts@example.org)" rsa4096 encr never
g --quick-gen-key 'Journalist <journalist@example.org>' ed25519 sign never
g --quick-add-key "$(fpr journalist@example.org)" cv25519 encr never
g --faked-system-time 20200101T000000 --quick-gen-key 'Expired <expired@example.org>' ed25519 sign never
g --faked-system-time 20200101T000000 --quick-add-key "$(fpr expired@example.org)" cv25519 encr 1d
g --quick-gen-key 'Revoked <revoked@example.org>' ed25519 sign never
g --quick-add-key "$(fpr revoked@example.org)" cv25519 encr never
g --quick-gen-key 'Sign Only <signonly@example.org>' ed25519 sign never
g --quick-gen-key 'RSA 2048 <rsa2048@example.org>' rsa2048 sign never
g --quick-add-key "$(fpr rsa2048@example.org)" rsa2048 encr never

# GnuPG writes a revocation certificate for every key; importing it revokes.
rev="$home/openpgp-revocs.d/$(fpr revoked@example.org).rev"
sed 's/^:-----BEGIN/-----BEGIN/' "$rev" > "$home/revoke.asc"
g --import "$home/revoke.asc"

: > fingerprints.txt
for name in alerts journalist expired revoked signonly rsa2048; do
    g --armor --export "$name@example.org" > "$name.asc"
    g --armor --export-secret-keys "$name@example.org" > "$name.sec.asc"
    echo "$name $(fpr "$name@example.org")" >> fingerprints.txt
done
g --export alerts@example.org > alerts.gpg
