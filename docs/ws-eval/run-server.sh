#!/usr/bin/env bash
# run-server.sh AGENT BINARY PORT : runs wstest -m fuzzingclient (all cases) against BINARY on 127.0.0.1:PORT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); cd "$here"
agent=$1 bin=$2 port=$3
out=$here/reports/server-$agent
rm -rf "$out"; mkdir -p "$out"
"$bin" 127.0.0.1:$port >"$out/echo.out" 2>"$out/echo.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q '^ws://' "$out/echo.out" 2>/dev/null && break; sleep 0.1; done
cat >"$out/spec.json" <<J
{ "outdir": "$out", "servers": [{ "agent": "$agent", "url": "ws://127.0.0.1:$port" }],
  "cases": [${CASES:-"*"}], "exclude-cases": [], "exclude-agent-cases": {} }
J
t0=$SECONDS
(cd "$out" && timeout ${TMO:-1500} "$here/../../target/autobahn-venv/py2/bin/python" "$here/wstest-loopback.py" -m fuzzingclient -s "$out/spec.json") >"$out/wstest.log" 2>&1 || echo "wstest exit $?"
echo "$agent: $((SECONDS-t0))s; rss: $(ps -o rss= -p $pid || echo dead)"
