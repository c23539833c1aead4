#!/usr/bin/env bash
# Builds the .deb with cargo-deb, installs it on this machine (CI runs as
# root on a throwaway machine), and checks what an admin relies on: the
# user, the modes of the spool design, setgid sendmail used by an
# unprivileged user, the daemon picking that up as its own user, the
# shipped config's placeholders, the installed units, a reinstall that
# keeps the admin's config, and removal and purge that keep queued mail.
#
# Usage: packaging/deb-test.sh [path/to/alert-relay.deb]
# Destructive: it purges any installed alert-relay with its spool and
# config. Run it on a throwaway machine (CI) only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

pass() { echo "  ✓ $*"; }
fail() { echo "  ✗ $*" >&2; exit 1; }
expect_mode() { # path owner:group mode
    local got
    got=$(stat -c '%U:%G %a' "$1")
    [ "$got" = "$2 $3" ] || fail "$1 is $got, want $2 $3"
    pass "$1 $2 $3"
}

if [ "$(id -u)" != 0 ]; then
    echo "SKIPPED: installing a .deb needs root"; exit 0
fi
other_mta=$(dpkg-query -W -f '${Package} ${Provides} ${Status}\n' 2>/dev/null \
    | awk '/mail-transport-agent/ && /installed/ && $1 != "alert-relay" { print $1 }')
if [ -n "$other_mta" ]; then
    echo "SKIPPED: this machine has another MTA ($other_mta); the .deb conflicts with it"
    exit 0
fi

# Start from, and leave, a machine without the package: a run that
# failed half-way must not leave a test config behind as a conffile.
cleanup() {
    dpkg --purge alert-relay >/dev/null 2>&1 || true
    rm -rf /var/spool/alert-relay /etc/alert-relay
    deluser --quiet --system alert-relay >/dev/null 2>&1 || true
    if [ -n "${daemon:-}" ]; then kill "$daemon" 2>/dev/null || true; fi
}
cleanup
trap cleanup EXIT

deb=${1:-}
if [ -z "$deb" ]; then
    echo "== cargo deb (crypto-nettle)"
    cargo deb --quiet
    deb=$(ls -t target/debian/alert-relay_*.deb | head -1)
fi
echo "== $deb"
info=$(dpkg-deb --info "$deb")
for field in "Provides: mail-transport-agent" "Conflicts: mail-transport-agent" "Replaces: mail-transport-agent"; do
    grep -q "$field" <<<"$info" || fail "control lacks $field"
    pass "$field"
done

echo "== dpkg -i"
dpkg -i "$deb" >/dev/null
getent passwd alert-relay >/dev/null || fail "no alert-relay user"
pass "user alert-relay"
expect_mode /usr/sbin/sendmail root:alert-relay 2755
expect_mode /usr/sbin/alert-relayd root:root 755
expect_mode /etc/alert-relay/relay.toml root:alert-relay 640
expect_mode /var/spool/alert-relay alert-relay:alert-relay 710
expect_mode /var/spool/alert-relay/incoming alert-relay:alert-relay 3730
expect_mode /var/spool/alert-relay/queue alert-relay:alert-relay 700
[ "$(readlink -f /usr/bin/mailq)" = /usr/sbin/sendmail ] || fail "mailq is not a link to sendmail"
[ "$(readlink -f /usr/sbin/newaliases)" = /usr/sbin/sendmail ] || fail "newaliases is not a link to sendmail"
pass "mailq and newaliases link to sendmail"
[ -f /usr/share/man/man8/relayctl-test.8.gz ] || [ -f /usr/share/man/man8/relayctl-test.8 ] || fail "no man pages"
pass "man pages"
[ -f /usr/share/doc/alert-relay/minimal.toml ] || fail "no minimal.toml, which the README's five steps start from"
set +e
out=$(relayctl check --config /usr/share/doc/alert-relay/minimal.toml 2>&1); code=$?
set -e
[ "$code" = 78 ] || fail "relayctl check on the shipped minimal.toml exited $code, want 78: $out"
pass "minimal.toml shipped, and names what to fill in"
unitdir=$(dirname "$(dpkg -L alert-relay | grep '/alert-relay.service$' | head -1)")
[ -f "$unitdir/alert-relay.socket" ] || fail "no socket unit installed"
pass "units in $unitdir"

echo "== relayctl check on the shipped config reports its placeholders"
set +e
out=$(relayctl check 2>&1); code=$?
set -e
[ "$code" = 78 ] || fail "relayctl check exited $code, want 78: $out"
grep -q "recipients\[0\]" <<<"$out" || fail "the report does not name the placeholder key: $out"
pass "exit 78: $(head -1 <<<"$out")"

echo "== the installed units"
out=$(systemd-analyze verify --man=no "$unitdir/alert-relay.service" "$unitdir/alert-relay.socket" 2>&1)
[ -z "$out" ] || fail "systemd-analyze verify: $out"
pass "systemd-analyze verify: clean"
exposure=$(systemd-analyze security --offline=yes "$unitdir/alert-relay.service" 2>&1 \
    | sed -n 's/.*Overall exposure level for alert-relay.service: \([0-9.]*\).*/\1/p')
awk -v e="$exposure" 'BEGIN { exit !(e != "" && e <= 1.5) }' || fail "exposure $exposure > 1.5"
pass "systemd-analyze security: exposure $exposure"

echo "== an admin's config; sendmail as an unprivileged user; the daemon as alert-relay"
cp "$root/tests/keys/alerts.asc" /etc/alert-relay/alerts.asc
fpr=$(awk '$1 == "alerts" { print $2 }' "$root/tests/keys/fingerprints.txt")
cat > /etc/alert-relay/relay.toml <<EOF
[listen]
addresses = ["127.0.0.1:2525"]
hostname = "mon.example.org"

[relay]
host = "127.0.0.1"
port = 9
sender = "OSSEC HIDS <ossec@example.net>"

[[recipients]]
address = "alerts@example.org"
key = "/etc/alert-relay/alerts.asc"
fingerprint = "$fpr"

[aliases]
root = "alerts@example.org"
EOF
config_sum=$(sha256sum /etc/alert-relay/relay.toml)
relayctl check >/dev/null || fail "relayctl check refuses the test config"
printf 'Subject: deb test\n\nMARKER-DEB-BODY\n' | setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/sbin/sendmail root \
    || fail "sendmail as nobody failed"
n=$(find /var/spool/alert-relay/incoming -name '*.msg' | wc -l)
[ "$n" = 1 ] || fail "incoming/ holds $n entries, want 1"
grep -rq MARKER-DEB-BODY /var/spool/alert-relay && fail "the alert rests in plaintext in the spool"
pass "nobody's message is in incoming/, encrypted"
setpriv --reuid=alert-relay --regid=alert-relay --clear-groups /usr/sbin/alert-relayd \
    > /tmp/deb-test-daemon.log 2>&1 &
daemon=$!
for _ in $(seq 100); do
    [ "$(find /var/spool/alert-relay/queue -name '*.msg' | wc -l)" = 1 ] && break
    sleep 0.1
done
kill "$daemon"; wait "$daemon" || true
daemon=
[ "$(find /var/spool/alert-relay/queue -name '*.msg' | wc -l)" = 1 ] \
    || fail "the daemon (as alert-relay) did not pick it up: $(cat /tmp/deb-test-daemon.log)"
pass "alert-relayd as alert-relay moved it to queue/"
mailq | grep -q "alerts@example.org" || fail "mailq does not list it"
pass "mailq lists it"

echo "== the daemon's user plants a symbolic link in the spool; postinst runs again"
victim=$(mktemp -d /tmp/deb-test-victim.XXXXXX)
chmod 0700 "$victim"
setpriv --reuid=alert-relay --regid=alert-relay --clear-groups sh -c \
    "rmdir /var/spool/alert-relay/held && ln -s '$victim' /var/spool/alert-relay/held" \
    || fail "could not plant the link as alert-relay"
dpkg -i "$deb" >/dev/null
expect_mode "$victim" root:root 700
[ -L /var/spool/alert-relay/held ] || fail "postinst replaced the planted link"
pass "postinst followed no link the daemon's user planted"
rm /var/spool/alert-relay/held
rmdir "$victim"
install -d -o alert-relay -g alert-relay -m 0700 /var/spool/alert-relay/held

echo "== reinstall, remove, purge"
dpkg -i "$deb" >/dev/null
[ "$(sha256sum /etc/alert-relay/relay.toml)" = "$config_sum" ] || fail "reinstalling changed the admin's config"
pass "reinstall kept the admin's config"
dpkg -r alert-relay >/dev/null
[ ! -e /usr/sbin/alert-relayd ] || fail "dpkg -r left the daemon"
[ "$(find /var/spool/alert-relay/queue -name '*.msg' | wc -l)" = 1 ] || fail "dpkg -r lost the queued message"
[ -f /etc/alert-relay/relay.toml ] || fail "dpkg -r removed the config"
pass "dpkg -r kept the queued message and the config"
out=$(dpkg --purge alert-relay 2>&1)
grep -q "still holds 1 message" <<<"$out" || fail "purge did not warn about the queued message: $out"
[ "$(find /var/spool/alert-relay/queue -name '*.msg' | wc -l)" = 1 ] || fail "purge destroyed queued mail"
pass "dpkg --purge warned and kept the spool with mail in it"
echo "deb-test: all checks passed"
