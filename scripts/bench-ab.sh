#!/usr/bin/env bash
# A/B two builds of Crimson in one `bench` run: the build at OLD (a commit) runs as `crimson`,
# the current work tree's runs as `crimson-metrics` (without installing a recorder), beside
# raw-tuned, alternating rounds as usual. It measures what a change on the hot path costs,
# in the same run, on this noisy machine (how the metrics feature's cost was found).
#
#   ./scripts/bench-ab.sh OLD [bench flags...]
#   ./scripts/bench-ab.sh cbe01cd --only echo --rounds 5
#   ./scripts/bench-ab.sh --metrics-off --only echo,broadcast --rounds 7
#
# OLD `--metrics-off`: the work tree itself, built without the `metrics` feature, against the
# work tree with it (and no recorder): what the feature costs, nothing else differing.
#
# Builds OLD in target/ab/old (a git worktree, removed afterwards) and the work tree as usual;
# everything listens on loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
old=${1:?usage: ./scripts/bench-ab.sh OLD-COMMIT [bench flags...]}
shift
root=$(pwd)
ab=$root/target/ab
rm -rf "$ab"
mkdir -p "$ab"
if [ "$old" = "--metrics-off" ]; then
  CARGO_TARGET_DIR="$ab/old-target" cargo build --release -q -p crimson-bench --bin bench-server --no-default-features
  old="the work tree without the metrics feature"
else
  git worktree add --detach -q "$ab/old" "$old"
  trap 'git worktree remove --force "$ab/old" 2>/dev/null || true' EXIT
  (cd "$ab/old" && CARGO_TARGET_DIR="$ab/old-target" cargo build --release -q -p crimson-bench --bin bench-server)
fi
cargo build --release -q -p crimson-bench --bin bench --bin bench-server
cp "$ab/old-target/release/bench-server" "$ab/bench-server-old"
cp target/release/bench-server "$ab/bench-server-new"
cp target/release/bench "$ab/bench"
cat > "$ab/bench-server" <<'SH'
#!/bin/sh
# `--impl crimson --metrics` (bench's crimson-metrics): the new build, without --metrics (no
# recorder); plain `--impl crimson`: the old build; anything else: the new build.
dir=$(dirname "$0")
case " $* " in
  *" --metrics "*)
    args=""
    for a in "$@"; do [ "$a" = "--metrics" ] || args="$args $a"; done
    exec "$dir/bench-server-new" $args ;;
  *" --impl crimson "*) exec "$dir/bench-server-old" "$@" ;;
  *) exec "$dir/bench-server-new" "$@" ;;
esac
SH
chmod +x "$ab/bench-server"
echo "bench-ab: crimson = $old, crimson-metrics = the work tree (no recorder)"
"$ab/bench" --impls crimson,crimson-metrics,raw-tuned --out "$ab/out" "$@"
