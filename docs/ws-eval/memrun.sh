#!/usr/bin/env bash
# memrun.sh BIN PORT N [NODEFLATE=1]
set -u
ulimit -n 8192
"$1" 127.0.0.1:$2 >/dev/null 2>&1 &
pid=$!
sleep 0.5
timeout 150 python3 "$(dirname "$0")/memprobe.py" $2 $pid $3
kill $pid; wait $pid 2>/dev/null
