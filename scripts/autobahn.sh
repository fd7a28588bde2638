#!/usr/bin/env bash
# Runs the Autobahn|Testsuite WebSocket conformance cases against Crimson, both ways:
#
#   server: `wstest -m fuzzingclient` against `autobahn-echo` (a crimson-axum echo route)
#   client: `autobahn-client` (crimson-client) against `wstest -m fuzzingserver`
#
# then prints, for each, the count of OK / NON-STRICT / INFORMATIONAL / UNIMPLEMENTED /
# FAILED cases per section, and exits non-zero when a case FAILED or did worse than the bar
# (see scripts/autobahn-summary.py). Every case runs, sections 12-13 (permessage-deflate,
# which both ends negotiate) included: those must all be OK.
#
#   ./scripts/autobahn.sh          # every case of sections 1-10, 7 of each 18-case group of 12-13
#   ./scripts/autobahn.sh --full   # all 517 cases (about 25 minutes on 2 cores)
#
# The permessage-deflate sections (12-13: twelve groups of 18 cases, one group per set of
# deflate parameters, 1,000 messages a case) take wstest (Python 2) about 14 minutes; by
# default each group runs its cases 1-5 (payloads of 16 bytes to 4 KiB) and 11-12 (8 and 16
# KiB in 256-byte fragments): every parameter set, every code path, a minute or so. The full
# run's result is in BENCHMARKS.md.
#
# Autobahn is Python 2.7 only. The first run installs it in a virtualenv under
# target/autobahn-venv (Python 2.7.18 from pyenv, packages from PyPI); later runs reuse it.
# Reports (HTML and JSON) land in target/autobahn/{server,client}/index.html, logs in
# target/autobahn/*.log. Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
full=false
case "${1:-}" in
  --full) full=true ;;
  "") ;;
  *) echo "usage: ./scripts/autobahn.sh [--full]" >&2; exit 2 ;;
esac
if $full; then
  cases='"*"'
else
  cases='"1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*"'
  for group in 12.1 12.2 12.3 12.4 12.5 13.1 13.2 13.3 13.4 13.5 13.6 13.7; do
    for n in 1 2 3 4 5 11 12; do
      cases="$cases, \"$group.$n\""
    done
  done
fi
root=$PWD
out=$root/target/autobahn
venv=$root/target/autobahn-venv
wstest=$venv/py2/bin/wstest
started=$SECONDS

# --- clean-up: stop the background processes this script started, and only those ----------
pids=()
forget() { # forget PID: it has been reaped, never signal it again
  local kept=() pid
  for pid in "${pids[@]}"; do
    [ "$pid" = "$1" ] || kept+=("$pid")
  done
  pids=("${kept[@]}")
}
stop() { # stop PID: ends one of them
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget "$1"
}
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    stop "$pid"
  done
}
# await PID: waits for one of them (in the background, so that a signal to this script
# is handled at once) and forgets it; returns its exit status.
await() {
  local status=0
  wait "$1" || status=$?
  forget "$1"
  return "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "autobahn.sh: $*"; }
die() {
  echo "autobahn.sh: $*" >&2
  exit 1
}

# --- set-up: Autobahn in a Python 2.7 virtualenv (once) -----------------------------------
setup() {
  local py2
  py2="$(pyenv root 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}")/versions/2.7.18/bin/python2.7"
  [ -x "$py2" ] || die "Python 2.7.18 not found at $py2 (pyenv install 2.7.18)"
  command -v python3 >/dev/null 2>&1 || die "python3 is needed to create the Python 2.7 virtualenv"
  say "installing Autobahn|Testsuite in $venv (once)"
  rm -rf "$venv"
  # virtualenv 20.21.1 is the last release that can make Python 2 environments; it lives in
  # a Python 3 venv of its own.
  python3 -m venv "$venv/virtualenv"
  "$venv/virtualenv/bin/pip" install --quiet virtualenv==20.21.1
  "$venv/virtualenv/bin/virtualenv" --quiet -p "$py2" "$venv/py2"
  # The last versions of Autobahn's dependencies that still support Python 2.7.
  "$venv/py2/bin/pip" install --quiet --no-python-version-warning \
    txaio==2.1.0 incremental==16.10.1 pyOpenSSL==19.1.0 cryptography==3.3.2 \
    Twisted==19.10.0 zope.interface==4.6.0 jinja2==2.11.3 markupsafe==1.1.1 \
    Werkzeug==1.0.1 klein==17.10.0 service_identity==18.1.0 unittest2==1.1.0 six==1.16.0 \
    'autobahn[twisted,accelerate]==0.10.9'
  "$venv/py2/bin/pip" install --quiet --no-python-version-warning autobahntestsuite==25.10.1
  "$wstest" --help >/dev/null || die "wstest does not start: see above"
  touch "$venv/.ready"
}
setup_time=0
if [ ! -f "$venv/.ready" ] || [ ! -x "$wstest" ]; then
  t0=$SECONDS
  setup
  setup_time=$((SECONDS - t0))
fi

# --- build ---------------------------------------------------------------------------------
say "building autobahn-echo and autobahn-client (release)"
t0=$SECONDS
cargo build --release --quiet -p crimson-bench --bin autobahn-echo --bin autobahn-client
build_time=$((SECONDS - t0))
echo_bin=$root/target/release/autobahn-echo
client_bin=$root/target/release/autobahn-client

rm -rf "$out"
mkdir -p "$out"

# wstest, with every socket it listens on bound to 127.0.0.1: by itself it binds all
# interfaces (Twisted's default), both its WebSocket port and its report web port.
cat >"$out/wstest-loopback.py" <<'EOF'
import sys
from twisted.internet import reactor
listen_tcp = reactor.listenTCP
def loopback_only(port, factory, backlog=50, interface=''):
    return listen_tcp(port, factory, backlog, '127.0.0.1')
reactor.listenTCP = loopback_only
from autobahntestsuite import wstest
sys.argv[0] = 'wstest'
wstest.run()
EOF
wstest_loopback=("$venv/py2/bin/python" "$out/wstest-loopback.py")

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- server: wstest's fuzzing client against the Crimson echo route ------------------------
say "server: starting autobahn-echo"
"$echo_bin" 127.0.0.1:0 >"$out/echo-server.out" 2>"$out/echo-server.log" &
echo_pid=$!
pids+=("$echo_pid")
for _ in $(seq 100); do
  grep -q '^ws://' "$out/echo-server.out" 2>/dev/null && break
  kill -0 "$echo_pid" 2>/dev/null || die "autobahn-echo exited: $(cat "$out/echo-server.log")"
  sleep 0.1
done
server_url=$(grep -m1 '^ws://' "$out/echo-server.out") || die "autobahn-echo printed no URL"
server_url=${server_url%/}
cat >"$out/fuzzingclient.json" <<EOF
{
  "outdir": "$out/server",
  "servers": [{ "agent": "crimson-axum", "url": "$server_url" }],
  "cases": [$cases],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
EOF
# The server's and the client's cases run at the same time: wstest (Python 2, one core each)
# is what takes the time, above all in the permessage-deflate sections.
say "server: wstest -m fuzzingclient against $server_url ($($full && echo "all cases" || echo "sections 1-10, 12-13 sampled"))"
t0_server=$SECONDS
(cd "$out" && exec timeout 1200 "${wstest_loopback[@]}" -m fuzzingclient -s "$out/fuzzingclient.json") \
  >"$out/server-wstest.log" 2>&1 &
server_fuzzer_pid=$!
pids+=("$server_fuzzer_pid")

# --- client: the Crimson client against wstest's fuzzing server ----------------------------
port=$(free_port)
cat >"$out/fuzzingserver.json" <<EOF
{
  "url": "ws://127.0.0.1:$port",
  "outdir": "$out/client",
  "cases": [$cases],
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
EOF
say "client: starting wstest -m fuzzingserver on ws://127.0.0.1:$port"
# `--webport 0`: no report web server (it would take port 8080).
(cd "$out" && exec "${wstest_loopback[@]}" -m fuzzingserver --webport 0 -s "$out/fuzzingserver.json") \
  >"$out/client-wstest.log" 2>&1 &
fuzzer_pid=$!
pids+=("$fuzzer_pid")
for _ in $(seq 300); do
  [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ] && break
  kill -0 "$fuzzer_pid" 2>/dev/null || die "wstest -m fuzzingserver exited: see $out/client-wstest.log"
  sleep 0.1
done
# Check that it listens on loopback only.
listening=$(ss -Hltn "sport = :$port" | awk '{print $4}' | sort -u | tr '\n' ' ')
case "$listening" in
  "127.0.0.1:$port ") ;;
  *) die "wstest -m fuzzingserver listens on ${listening:-nothing}, not 127.0.0.1:$port only" ;;
esac
say "client: autobahn-client against ws://127.0.0.1:$port ($($full && echo "all cases" || echo "sections 1-10, 12-13 sampled"))"
t0=$SECONDS
timeout 1200 "$client_bin" "ws://127.0.0.1:$port" crimson-client 2>"$out/client.log" &
client_pid=$!
pids+=("$client_pid")
await "$client_pid" || die "autobahn-client failed: $(tail -n 5 "$out/client.log")"
client_time=$((SECONDS - t0))
stop "$fuzzer_pid"
await "$server_fuzzer_pid" || die "wstest -m fuzzingclient failed: see $out/server-wstest.log"
server_time=$((SECONDS - t0_server))
stop "$echo_pid"

# --- summary -------------------------------------------------------------------------------
say "times: set-up ${setup_time}s, build ${build_time}s, server cases ${server_time}s and" \
  "client cases ${client_time}s (at the same time); whole run $((SECONDS - started))s"
python3 scripts/autobahn-summary.py \
  "server (crimson-axum)" "$out/server/index.json" \
  "client (crimson-client)" "$out/client/index.json"
