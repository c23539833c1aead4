#!/usr/bin/env bash
# The Ansible role (packaging/ansible/) applied to this machine with
# --connection=local, as CI runs it, as root, on a throwaway machine:
# against the tests' relay (aiosmtpd with STARTTLS and AUTH), with
# SecureDrop's variables, a SecureDrop-like firewall file, and then
# SecureDrop's own order of installs:
#
# 1. the role on a machine without alert-relay: the package, the config,
#    the password file, the keys, the firewall rules, `relayctl check`
#    and `relayctl test --no-send` as the daemon's user all pass;
# 2. the role again: nothing changes (changed=0);
# 3. what `securedrop-admin install` does next (apt installs postfix,
#    procmail and mailutils): apt removes alert-relay in favour of
#    Postfix; the package says so, and keeps the spool and the config;
# 4. the role again puts alert-relay back (Postfix goes, its config
#    stays), and a further run changes nothing.
#
# Usage: packaging/ansible-test.sh [path/to/alert-relay.deb]
# Destructive: it purges alert-relay and postfix. CI machines only.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

pass() { echo "  ✓ $*"; }
fail() { echo "  ✗ $*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
    echo "SKIPPED: the role installs a package, as root"; exit 0
fi
other_mta=$(dpkg-query -W -f '${Package} ${Provides} ${Status}\n' 2>/dev/null \
    | awk '/mail-transport-agent/ && / installed/ && $1 != "alert-relay" { print $1 }')
if [ -n "$other_mta" ]; then
    echo "SKIPPED: this machine has another MTA ($other_mta); the test starts without one"
    exit 0
fi

work=$(mktemp -d /tmp/ansible-test.XXXXXX)
relay_pid=
cleanup() {
    if [ -n "$relay_pid" ]; then kill "$relay_pid" 2>/dev/null || true; fi
    exec 3>&- 2>/dev/null || true
    dpkg --purge alert-relay >/dev/null 2>&1 || true
    dpkg --purge postfix >/dev/null 2>&1 || true
    rm -rf /var/spool/alert-relay /etc/alert-relay /var/cache/alert-relay "$work"
    deluser --quiet --system alert-relay >/dev/null 2>&1 || true
}
cleanup_first() { dpkg --purge alert-relay >/dev/null 2>&1 || true; rm -rf /var/spool/alert-relay /etc/alert-relay; }
cleanup_first
trap cleanup EXIT

deb=${1:-}
if [ -z "$deb" ]; then
    echo "== cargo deb (crypto-nettle)"
    cargo deb --quiet
    deb=$(ls -t target/debian/alert-relay_*.deb | head -1)
fi
deb=$(readlink -f "$deb")

echo "== ansible-core"
venv=$root/target/ansible-venv
if [ ! -x "$venv/bin/ansible-playbook" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet ansible-core
fi
"$venv/bin/ansible-playbook" --version | head -1

echo "== the tests' relay (aiosmtpd, STARTTLS, AUTH)"
py=python3
[ -x target/test-venv/bin/python3 ] && py=$root/target/test-venv/bin/python3
"$py" -c 'import aiosmtpd' 2>/dev/null || fail "aiosmtpd is missing: run ./test.sh first, which installs it"
chmod 0600 certs/relay.key
# smtpd.py runs until its stdin closes: a fifo that fd 3 holds open.
mkfifo "$work/relay.in"
exec 3<>"$work/relay.in"
"$py" tests/relay/smtpd.py --outdir "$work" --port 0 --cert certs/relay.pem --key certs/relay.key \
    < "$work/relay.in" > "$work/relay.out" 2> "$work/relay.err" &
relay_pid=$!
port=
for _ in $(seq 100); do
    port=$(sed -n 's/^READY //p' "$work/relay.out")
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || fail "the relay did not start: $(cat "$work/relay.err")"
pass "relay on 127.0.0.1:$port"

echo "== SecureDrop's variables, keys and firewall"
mkdir "$work/sd"
cp tests/keys/alerts.asc "$work/sd/ossec.pub"
cp tests/keys/journalist.asc "$work/sd/journalist.pub"
fpr() { awk -v n="$1" '$1 == n { print $2 }' tests/keys/fingerprints.txt; }
sha1=$(openssl x509 -in certs/relay.pem -noout -fingerprint -sha1 | cut -d= -f2)
cat > "$work/site-specific" <<VARS
---
ssh_users: sd
dns_server:
  - 8.8.8.8
smtp_relay: 127.0.0.1
smtp_relay_port: $port
sasl_username: ossec
sasl_domain: example.net
sasl_password: "correct horse battery staple"
smtp_relay_fingerprint: "$sha1"
ossec_alert_email: alerts@example.org
ossec_alert_gpg_public_key: ossec.pub
ossec_gpg_fpr: $(fpr alerts)
journalist_alert_email: journalist@example.org
journalist_alert_gpg_public_key: journalist.pub
journalist_gpg_fpr: $(fpr journalist)
VARS
cat > "$work/rules_v4" <<'RULES'
*filter
:OUTPUT DROP [0:0]
-A OUTPUT -p tcp --dport 587 -m owner --uid-owner postfix -j ACCEPT -m comment --comment "postfix smtp"
-A OUTPUT -p udp --dport 53 -m owner --uid-owner postfix -j ACCEPT
-A OUTPUT -m owner --uid-owner postfixadmin -j DROP
COMMIT
RULES
cat > "$work/test.yml" <<VARS
alert_relay_deb: $deb
alert_relay_keys_from: $work/sd
alert_relay_iptables_rules: [$work/rules_v4, $work/absent.v4]
alert_relay_iptables_apply: false
alert_relay_start: false
VARS

play() { # log-name: runs the playbook, prints its recap line
    ANSIBLE_NOCOLOR=1 ANSIBLE_STDOUT_CALLBACK=default "$venv/bin/ansible-playbook" \
        -i localhost, --connection=local -e alert_relay_hosts=localhost \
        -e ansible_python_interpreter="$venv/bin/python3" \
        -e @"$work/site-specific" -e @"$work/test.yml" \
        packaging/ansible/playbook.yml > "$work/$1.log" 2>&1 \
        || { cat "$work/$1.log" >&2; fail "ansible-playbook ($1) failed"; }
    grep -q "correct horse" "$work/$1.log" && fail "the SASL password is in Ansible's output ($1)"
    grep -E '^localhost +:' "$work/$1.log"
}
changed() { sed -n 's/.*changed=\([0-9]*\).*/\1/p' <<<"$1"; }

echo "== 1. the role, on a machine without alert-relay"
recap=$(play first)
echo "  $recap"
[ "$(changed "$recap")" -gt 0 ] || fail "the first run changed nothing"
[ "$(stat -c '%U:%G %a' /etc/alert-relay/relay.toml)" = "root:alert-relay 640" ] || fail "relay.toml mode"
[ "$(stat -c '%U:%G %a' /etc/alert-relay/sasl_password)" = "alert-relay:alert-relay 600" ] || fail "sasl_password mode"
[ "$(cat /etc/alert-relay/sasl_password)" = "correct horse battery staple" ] || fail "sasl_password content"
grep -q 'action = "securedrop-journalist"' /etc/alert-relay/relay.toml || fail "no journalist route"
pass "relay.toml root:alert-relay 640, sasl_password alert-relay 600, the journalist's route"
grep -q -- '--uid-owner postfix ' "$work/rules_v4" && fail "a postfix rule is left: $(cat "$work/rules_v4")"
[ "$(grep -c -- '--uid-owner alert-relay ' "$work/rules_v4")" = 2 ] || fail "rules: $(cat "$work/rules_v4")"
grep -q -- '--uid-owner postfixadmin ' "$work/rules_v4" || fail "the rule for another user changed"
pass "the firewall's postfix rules now name alert-relay (and nothing else changed)"
grep -q 'relayctl test --no-send' "$work/first.log" || fail "relayctl test did not run"
pass "relayctl check and relayctl test --no-send passed as the daemon's user"

echo "== 2. the role again: nothing changes"
recap=$(play second)
echo "  $recap"
[ "$(changed "$recap")" = 0 ] || { cat "$work/second.log"; fail "the second run changed something"; }
pass "changed=0"

echo "== 3. what securedrop-admin install does next: apt installs postfix, procmail, mailutils"
if ! apt-cache show postfix >/dev/null 2>&1; then
    echo "SKIPPED the rest: apt knows no postfix here (no package lists)"; exit 0
fi
sim=$(apt-get -s install postfix procmail mailutils)
grep -q '^Remv alert-relay' <<<"$sim" || fail "apt would not remove alert-relay: $sim"
pass "apt-get install postfix removes alert-relay (Conflicts: mail-transport-agent)"
echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
out=$(DEBIAN_FRONTEND=noninteractive apt-get install -y -q postfix 2>&1) || fail "apt-get install postfix: $out"
grep -q "alert-relay: WARNING: alert-relay is being removed" <<<"$out" \
    || fail "the removal said nothing: $out"
pass "the removal warns, on the terminal and in the journal"
[ "$(dpkg-query -W -f '${Status}' alert-relay 2>/dev/null)" = "deinstall ok config-files" ] \
    || fail "alert-relay: $(dpkg-query -W -f '${Status}' alert-relay 2>&1)"
[ -f /etc/alert-relay/relay.toml ] && [ -d /var/spool/alert-relay ] || fail "the removal lost the config or the spool"
pass "alert-relay removed; its config and spool kept"

echo "== 4. the role again puts alert-relay back"
recap=$(play third)
echo "  $recap"
[ "$(changed "$recap")" -gt 0 ] || fail "the run after Postfix changed nothing"
[ "$(dpkg-query -W -f '${Status}' alert-relay)" = "install ok installed" ] || fail "alert-relay is not installed"
case "$(dpkg-query -W -f '${Status}' postfix 2>/dev/null)" in
*" installed") fail "postfix is still installed" ;;
esac
pass "alert-relay installed, postfix removed"
recap=$(play fourth)
echo "  $recap"
[ "$(changed "$recap")" = 0 ] || { cat "$work/fourth.log"; fail "the run after that changed something"; }
pass "and again: changed=0"
echo "== 5. a key file that is not there stops the role before it changes anything"
set +e
ANSIBLE_NOCOLOR=1 "$venv/bin/ansible-playbook" -i localhost, --connection=local \
    -e alert_relay_hosts=localhost -e ansible_python_interpreter="$venv/bin/python3" \
    -e @"$work/site-specific" -e @"$work/test.yml" -e alert_relay_keys_from="$work/nowhere" \
    packaging/ansible/playbook.yml > "$work/fifth.log" 2>&1
code=$?
set -e
[ "$code" != 0 ] || fail "the role went on without the key files"
grep -q "does not exist: set alert_relay_keys_from" "$work/fifth.log" || { cat "$work/fifth.log"; fail "no reason given"; }
grep -E '^localhost +:' "$work/fifth.log" | grep -q 'changed=0' || { cat "$work/fifth.log"; fail "it changed something"; }
pass "stopped at the check, changed=0"
echo "ansible-test: all checks passed"
