#!/usr/bin/env bash
# What the `metrics` feature costs, in instructions rather than time: this machine's timing
# noise (±40 %) hides a 2 % cost, instruction counts do not. bench-server runs under
# valgrind's callgrind (user-space instructions; the kernel's share, the same for all three,
# is left out, so the ratios here are upper bounds of the CPU cost) in three builds:
#
#   off       the work tree without the `metrics` feature
#   on        with it, no recorder installed (what a user who never installs one pays)
#   recorded  with it and bench-server's Prometheus recorder (`--metrics`)
#
# Each scenario runs twice per build and round, with a small and a large load, and the
# difference is divided by the extra messages: start-up, connections and shutdown cancel
# out. Rounds alternate the builds; the report is the median of the rounds.
#
#   ./scripts/metrics-cost.sh [ROUNDS]     (default 3; about 1 minute per round)
#
# Needs valgrind and the Python venv that scripts/test.sh makes (websockets). Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
root=$(pwd)
out=$root/target/metrics-cost
python=$root/target/python-venv/bin/python
command -v valgrind >/dev/null || { echo "metrics-cost.sh: needs valgrind (apt-get install valgrind)" >&2; exit 1; }
"$python" -c "import websockets" 2>/dev/null || { echo "metrics-cost.sh: needs $python with websockets (run ./scripts/test.sh once)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
CARGO_TARGET_DIR="$root/target/ab/old-target" cargo build --release -q -p crimson-bench --bin bench-server --no-default-features
cp "$root/target/ab/old-target/release/bench-server" "$out/bench-server-off"
cargo build --release -q -p crimson-bench --bin bench-server
cp target/release/bench-server "$out/bench-server-on"

# instructions BUILD SCENARIO LOAD CONNS N: bench-server's instructions, start to exit.
instructions() {
  local build=$1 scenario=$2 load=$3 conns=$4 n=$5 run
  run=$out/run.$RANDOM
  local flags=()
  [ "$build" = recorded ] && flags=(--metrics)
  local binary=$out/bench-server-${build/recorded/on}
  mkfifo "$run.in"
  valgrind --tool=callgrind --callgrind-out-file="$run.cg" "$binary" --impl crimson \
    --addr 127.0.0.1:0 --scenario "$scenario" "${flags[@]}" <"$run.in" >"$run.addr" 2>"$run.err" &
  local server=$!
  exec 3>"$run.in"
  for _ in $(seq 100); do [ -s "$run.addr" ] && break; sleep 0.2; done
  timeout 120 "$python" "scripts/metrics-cost/$load" "ws://$(cat "$run.addr")" "$conns" "$n"
  exec 3>&- # bench-server exits when its stdin closes
  wait "$server"
  grep -o 'refs: *[0-9,]*' "$run.err" | tr -dc '0-9'
  rm -f "$run".*
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for round in $(seq "$rounds"); do
  for build in off on recorded; do
    # echo: 20 connections × (1200 - 200) messages = 20,000 echoes
    small=$(instructions "$build" echo echo.py 20 200)
    large=$(instructions "$build" echo echo.py 20 1200)
    echo "$build $(( (large - small) / 20000 ))" >>"$out/echo"
    # broadcast: 100 subscribers × (120 - 20) ticks = 10,000 deliveries
    small=$(instructions "$build" broadcast broadcast.py 100 20)
    large=$(instructions "$build" broadcast broadcast.py 100 120)
    echo "$build $(( (large - small) / 10000 ))" >>"$out/broadcast"
    echo "metrics-cost: round $round/$rounds $build: echo $(tail -1 "$out/echo" | cut -d' ' -f2), broadcast $(tail -1 "$out/broadcast" | cut -d' ' -f2) instructions"
  done
done
for scenario in echo broadcast; do
  off=$(awk '$1 == "off" {print $2}' "$out/$scenario" | median)
  on=$(awk '$1 == "on" {print $2}' "$out/$scenario" | median)
  recorded=$(awk '$1 == "recorded" {print $2}' "$out/$scenario" | median)
  awk -v s="$scenario" -v off="$off" -v on="$on" -v rec="$recorded" 'BEGIN {
    printf "%-9s instructions per %s (median of rounds): off %d, on %d (%+.1f%%), recorded %d (%+.1f%%)\n",
      s, (s == "echo" ? "message" : "delivery"), off, on, (on / off - 1) * 100, rec, (rec / off - 1) * 100 }'
done | tee "$out/summary"
