#!/usr/bin/env bash
# The hostile suite: ping floods (server and client), slowloris, silent connections, a flood in
# a shared room, unfinished messages past the budget, and a shutdown with a half-sent
# handshake open, each against the release chat-server / chat-client on loopback. Prints what
# each scenario measured; exits 1 if one failed. See examples/bench/src/bin/hostile/main.rs.
#
#   ./scripts/hostile.sh [--only ping-flood,slowloris,...]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p crimson-examples --bin chat-server --bin chat-client \
  -p crimson-bench --bin hostile
exec ./target/release/hostile "$@"
