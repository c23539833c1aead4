#!/bin/bash
# alert-relayd measured with clients and a relay we did not write: Postfix's
# C tools on both sides, so that neither caps the figure.
#
#   smtp-source (one connection per alert, one write per line, as OSSEC's
#   maild sends) -> alert-relayd -> implicit TLS -> stunnel -> smtp-sink
#   (Postfix's C sink: dumps each message, exits after N; no AUTH, since
#   smtp-sink answers AUTH with 250, not 235, which a correct client refuses)
#
#   benches/external.sh [options] [BIN_DIR] [N] [SESSIONS] [FORMAT]
#     BIN_DIR      folder with alert-relayd (default target/release)
#     N            alerts (default 2000)
#     SESSIONS     concurrent clients (default 1)
#     FORMAT       pgp-mime | inline (default pgp-mime)
#     --key K      the recipient's key: rsa4096 (default) or cv25519
#     --paced R    one new client every 1/R s (R alerts/s) instead of
#                  SESSIONS clients sending as fast as they can
#     --perf FILE  record the daemon with `perf record -g` into FILE
#
# Prints the figures and the floor beneath them: the same smtp-source and
# smtp-sink talking straight to each other (what the tools alone manage on
# this machine now, and the CPU a C server that only speaks SMTP spends
# per alert at that pace), the CPU the kernel spends on one durable store
# of an alert-sized file at that pace (what a 250 promises costs that
# much at least), and a fixed CPU task's time (how fast the machine is
# now: a shared virtual machine varies from run to run).
#
# Needs root (smtp-sink -u), gnupg, python3, and the Debian packages postfix
# (smtp-source and smtp-sink; install it with debconf's "No configuration"
# so that no Postfix instance starts) and stunnel4. Uses the project's test
# material: certs/relay.pem and the keys in tests/keys.
set -euo pipefail

KEY=rsa4096 PACED="" PERF=""
while [ $# -gt 0 ]; do
    case "$1" in
    --key) KEY=$2; shift 2 ;;
    --paced) PACED=$2; shift 2 ;;
    --perf) PERF=$(realpath -m "$2"); shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "unknown option $1 (see --help)" >&2; exit 64 ;;
    *) break ;;
    esac
done
ROOT=$PWD
[ -f "$ROOT/certs/relay.pem" ] || { echo "run this from the project's root" >&2; exit 64; }
BIN=$(cd "${1:-target/release}" && pwd)
N=${2:-2000} S=${3:-1} FORMAT=${4:-pgp-mime}
case "$KEY" in
rsa4096) KEYNAME=alerts ;;
cv25519) KEYNAME=journalist ;;
*) echo "--key is rsa4096 or cv25519, not $KEY" >&2; exit 64 ;;
esac
for tool in /usr/sbin/smtp-source /usr/sbin/smtp-sink stunnel gpg python3; do
    command -v "$tool" >/dev/null || {
        echo "$tool is missing: apt-get install postfix stunnel4 gnupg python3 (see the header)" >&2
        exit 69
    }
done
EMAIL=$KEYNAME@example.org
FPR=$(awk -v k="$KEYNAME" '$1 == k { print $2 }' "$ROOT/tests/keys/fingerprints.txt")
SHA256=$(openssl x509 -in "$ROOT/certs/relay.pem" -noout -fingerprint -sha256 | cut -d= -f2)

W=$(mktemp -d /tmp/external-bench.XXXXXX)
chmod 755 "$W"
# smtp-sink writes each message before it answers; on this machine's ext4
# that costs it about 0.7 ms a message, which would cap the figures at its
# speed rather than ours. Its dumps go to memory when there is a tmpfs.
D=$W
if [ -d /dev/shm ] && [ -w /dev/shm ]; then D=$(mktemp -d /dev/shm/external-bench.XXXXXX); fi
chmod 755 "$D"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [ "${KEEP:-}" ]; then echo "kept $W $D"; else rm -rf "$W" "$D"; fi
}
trap cleanup EXIT

freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
now() { date +%s.%N; }
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
TCK=$(getconf CLK_TCK)

# A 2 KB OSSEC alert as maild writes it (header and body).
python3 - "$W/alert.eml" <<'EOF'
import sys
body = ["OSSEC HIDS Notification.", "2026 Nov 28 10:00:00", "",
        "Received From: (app) 10.20.2.2->/var/log/auth.log",
        "Rule: 5715 fired (level 3) -> \"SSHD authentication success.\"",
        "Portion of the log(s):", ""]
body += ["Nov 28 10:00:00 app sshd[1234]: Accepted publickey for admin from 10.20.2.3 port 52734 ssh2: ED25519 SHA256:%040d" % i for i in range(12)]
body += ["", " --END OF NOTIFICATION"]
head = ["To: <root@localhost>", "From: OSSEC HIDS <ossec@ossec.server>",
        "Date: Sat, 28 Nov 2026 10:00:00 +0000",
        "Subject: OSSEC Notification - app - Alert level 3 from 10.20.2.2"]
open(sys.argv[1], "w").write("\n".join(head + [""] + body) + "\n")
EOF

# An smtp-sink that dumps each message into DIR (and exits after N more
# arguments, as -M N).
sink() { # PORT DIR [-M N]
    mkdir -p "$2"; chmod 777 "$2"
    /usr/sbin/smtp-sink -a -u nobody "${@:3}" -d "$2/%H%M%S." 127.0.0.1:"$1" 256 >"$2.log" 2>&1 &
    pids+=("$!"); sinkpid=$!
}
wait_sink() { # the sink exits after N messages (at most 60 s)
    for _ in $(seq 1200); do kill -0 "$sinkpid" 2>/dev/null || return 0; sleep 0.05; done
}
# The clients: S sessions as fast as they can, or one new client every 1/R s.
clients() { # PORT
    if [ -z "$PACED" ]; then
        /usr/sbin/smtp-source -s "$S" -m "$N" -F "$W/alert.eml" -f ossec@ossec.server \
            -t root@localhost 127.0.0.1:"$1" >"$W/source.log" 2>&1
    else
        python3 - "$1" "$N" "$PACED" "$W/alert.eml" <<'EOF'
import subprocess, sys, time
port, n, rate, eml = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
argv = ["/usr/sbin/smtp-source", "-m", "1", "-F", eml, "-f", "ossec@ossec.server",
        "-t", "root@localhost", "127.0.0.1:" + port]
start, running = time.monotonic(), []
for i in range(n):
    time.sleep(max(0.0, start + i / rate - time.monotonic()))
    running.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
    running = [p for p in running if p.poll() is None]
for p in running:
    p.wait()
EOF
    fi
}
last_arrival() { find "$1" -type f -printf '%T@\n' | sort -n | tail -1; }

# --- the floor: the tools alone, then a fixed CPU task ---
# (This sink does not exit after N: smtp-source would lose the last reply.)
FLOORPORT=$(freeport)
sink "$FLOORPORT" "$D/floor"
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$FLOORPORT) 2>/dev/null && break; sleep 0.05; done
fc0=$(cpu "$sinkpid"); f0=$(now)
clients "$FLOORPORT"
f1=$(now); fc1=$(cpu "$sinkpid")
kill "$sinkpid"
# What the spool's promise costs the kernel here: a 2.6 KB file written,
# fsynced, renamed into a directory and the directory fsynced, as many
# times and at the pace of the run (at most 300), after the writes of
# earlier runs are out (it varies with the disk's state, as the daemon's
# figures do: compare the two).
sync
store_ms=$(python3 - "$W/store" "${PACED:-0}" "$N" <<'EOF'
import os, resource, sys, time
d, rate, n = sys.argv[1], float(sys.argv[2]), min(int(sys.argv[3]), 300)
os.makedirs(d + "/tmp"); os.makedirs(d + "/queue")
cpu = lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
c0, t0 = cpu(), time.monotonic()
for i in range(n):
    if rate:
        time.sleep(max(0.0, t0 + i / rate - time.monotonic()))
    tmp = "%s/tmp/%d" % (d, i)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, b"x" * 2600); os.fsync(fd); os.close(fd)
    os.rename(tmp, "%s/queue/%d" % (d, i))
    fd = os.open(d + "/queue", os.O_RDONLY); os.fsync(fd); os.close(fd)
print("%.3f" % ((cpu() - c0) * 1000 / n))
EOF
)
rm -rf "$W/store"
head -c 64M /dev/zero >"$W/zero"
z0=$(now); sha256sum "$W/zero" >/dev/null; z1=$(now)
rm -f "$W/zero"

# --- the relay: stunnel in front of smtp-sink ---
SINKPORT=$(freeport) TLSPORT=$(freeport) LISTEN=$(freeport)
sink "$SINKPORT" "$D/dump" -M "$N"
relaysink=$sinkpid
cat >"$W/stunnel.conf" <<EOF
foreground = yes
pid =
[smtps]
accept = 127.0.0.1:$TLSPORT
connect = 127.0.0.1:$SINKPORT
cert = $ROOT/certs/relay.pem
key = $ROOT/certs/relay.key
EOF
stunnel "$W/stunnel.conf" >"$W/stunnel.log" 2>&1 &
pids+=("$!")

# --- the daemon ---
mkdir -m 700 "$W/spool"
cat >"$W/relay.toml" <<EOF
[listen]
addresses = ["127.0.0.1:$LISTEN"]
hostname = "ossec.server"
max_connections = 64

[queue]
dir = "$W/spool"

[relay]
host = "127.0.0.1"
port = $TLSPORT
tls = "implicit"
fingerprints = ["$SHA256"]
sender = "ossec@example.net"

[message]
format = "$FORMAT"
subject = "scrub"

[[recipients]]
address = "$EMAIL"
key = "$ROOT/tests/keys/$KEYNAME.asc"
fingerprint = "$FPR"

[aliases]
root = "$EMAIL"
EOF
"$BIN/alert-relayd" --config "$W/relay.toml" 2>"$W/daemon.log" &
dpid=$!
pids+=("$dpid")
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$LISTEN) 2>/dev/null && break; sleep 0.05; done
# The daemon's start (keys, the relay's first TLS session) is not counted.
sleep 1
if [ "$PERF" ]; then
    perf record -q -g -o "$PERF" -p "$dpid" >/dev/null 2>&1 &
    perfpid=$!
    sleep 0.5
fi

sinkpid=$relaysink
c0=$(cpu "$dpid"); t0=$(now)
clients "$LISTEN"
t1=$(now)
wait_sink
c2=$(cpu "$dpid")
[ "$PERF" ] && { kill -INT "$perfpid"; wait "$perfpid" 2>/dev/null || true; }
got=$(find "$D/dump" -type f | wc -l)
t2=$(last_arrival "$D/dump")

sample=$(find "$D/dump" -type f -print -quit)
G=$(mktemp -d)
chmod 700 "$G"
gpg --homedir "$G" --batch --quiet --import "$ROOT/tests/keys/$KEYNAME.sec.asc" 2>/dev/null
if [ "$sample" ] && sed -n '/-----BEGIN PGP MESSAGE-----/,/-----END PGP MESSAGE-----/p' "$sample" |
    gpg --homedir "$G" --batch --quiet --decrypt 2>/dev/null | grep -q "Accepted publickey"; then
    dec=ok
else
    dec=FAILED
fi
gpgconf --homedir "$G" --kill all 2>/dev/null || true
rm -rf "$G"

mode="sessions=$S"
[ "$PACED" ] && mode="paced at $PACED/s"
python3 - <<EOF
n, got, tck = $N, $got, $TCK
t0, t1, t2, f0, f1 = $t0, $t1, ${t2:-$t1}, $f0, ${f1:-$f0}
cpu_ms = ($c2 - $c0) / tck * 1000 / n
print("external $FORMAT $KEY N=%d $mode: delivered %d/%d, end to end %.0f alerts/s, "
      "ingest %.0f alerts/s, last at the relay %.2f s after the last 250, "
      "daemon CPU %.3f ms/alert, sample decrypts: $dec" % (n, got, n, got / (t2 - t0), n / (t1 - t0), t2 - t1, cpu_ms))
print("  floor: smtp-source straight to smtp-sink %.0f alerts/s, smtp-sink's CPU %.3f ms/alert; "
      "a durable store (write, fsync, rename, directory fsync) %s ms of CPU; "
      "a fixed CPU task (sha256 of 64 MiB) %.0f ms"
      % (n / (f1 - f0), ($fc1 - $fc0) / tck * 1000 / n, "$store_ms", ($z1 - $z0) * 1000))
EOF
[ "$got" = "$N" ] && [ "$dec" = ok ]
