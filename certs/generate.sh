#!/bin/sh
# Regenerates the TLS test material in this folder. Never edit the outputs
# by hand: change this script and run it again.
#
#   ca.pem / ca.key            a test CA
#   relay.pem / relay.key      the relay's certificate, signed by the CA,
#                              for localhost, 127.0.0.1 and ::1
#   relay2.pem / relay2.key    a second certificate with a new key, same
#                              names: a certificate rotation
#   relay-renewed.pem          a renewal of relay.pem with the same key
#                              (its SPKI pin stays the same)
#   selfsigned.pem / .key      a self-signed relay certificate, as small
#                              relays use with fingerprint pinning
#
# Everything expires in 2125, so tests do not rot.
set -eu
cd "$(dirname "$0")"
days=36500
san="subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout ca.key -out ca.pem -days "$days" -subj "/CN=alert-relay test CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"

leaf() { # name key-to-reuse-or-empty
    if [ -z "$2" ]; then
        openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key"
        key="$1.key"
    else
        key="$2"
    fi
    openssl req -new -key "$key" -subj "/CN=localhost" -out "$1.csr"
    printf '%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$san" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
        -days "$days" -extfile "$1.ext" -out "$1.pem"
    rm -f "$1.csr" "$1.ext"
}
leaf relay ""
leaf relay2 ""
leaf relay-renewed relay.key

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout selfsigned.key -out selfsigned.pem -days "$days" -subj "/CN=localhost" \
    -addext "$san"
rm -f ca.srl
chmod 600 ./*.key
