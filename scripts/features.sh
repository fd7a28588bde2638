#!/usr/bin/env bash
# Lints and documents each library crate alone with its features off and one at a time, as a
# dependent crate that picks a single codec would build it: no warnings (dead code behind a
# feature, unresolved doc links to a type of a feature that is off) in any combination.
#
#   ./scripts/features.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export RUSTDOCFLAGS="-D warnings"

# crate: the feature sets to check (each a --features list; "" = none at all).
combos=(
  "crimson-core:|json|protobuf|cbor|msgpack|derive|transport|server|redis|cbor,server|metrics|server,metrics|redis,metrics"
  "crimson-axum:|cbor|protobuf|msgpack|json,derive|redis|metrics"
  "crimson-client:|cbor|rustls|json,derive|metrics"
  "crimson-macros:"
)
for entry in "${combos[@]}"; do
  crate=${entry%%:*}
  IFS='|' read -r -a sets <<<"${entry#*:}"
  [ ${#sets[@]} -eq 0 ] && sets=("")
  for features in "${sets[@]}"; do
    echo "features.sh: $crate --no-default-features --features '$features'"
    cargo clippy --quiet -p "$crate" --no-default-features --features "$features" -- -D warnings
    cargo doc --quiet -p "$crate" --no-deps --no-default-features --features "$features"
  done
done
echo "features.sh: every feature combination lints and documents cleanly"
