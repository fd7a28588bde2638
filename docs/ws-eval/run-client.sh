#!/usr/bin/env bash
# run-client.sh AGENT PORT CMD... : wstest -m fuzzingserver on 127.0.0.1:PORT (all cases), then CMD (the client)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); cd "$here"
agent=$1 port=$2; shift 2
out=$here/reports/client-$agent
rm -rf "$out"; mkdir -p "$out"
cat >"$out/spec.json" <<J
{ "url": "ws://127.0.0.1:$port", "outdir": "$out", "cases": ["*"], "exclude-cases": [], "exclude-agent-cases": {} }
J
(cd "$out" && exec timeout 1800 "$here/../../target/autobahn-venv/py2/bin/python" "$here/wstest-loopback.py" -m fuzzingserver --webport 0 -s "$out/spec.json") >"$out/wstest.log" 2>&1 &
fz=$!
trap 'kill $fz 2>/dev/null || true; wait $fz 2>/dev/null || true' EXIT
for _ in $(seq 300); do [ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ] && break; sleep 0.1; done
ss -Hltn "sport = :$port"
t0=$SECONDS
timeout 1800 "$@" >"$out/client.log" 2>&1 || echo "client exit $?"
echo "$agent client: $((SECONDS-t0))s"
