#!/usr/bin/env bash
# Runs every Crimson test: unit, integration, derive UI, doc tests, and the docs build with
# warnings denied. Installs what the tests need when it is missing.
#
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh -p crimson-core   # extra arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

# --- set-up: tools the tests need -------------------------------------------------------
need_apt=()
# The Redis cluster tests start their own redis-server on a free loopback port.
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
# The browser test drives Debian's chromium with playwright-core (npm), under node.
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    echo "test.sh: missing ${need_apt[*]}: install them (sudo apt-get install ${need_apt[*]})" >&2
    exit 1
  fi
fi

# The browser's npm packages, at the versions package-lock.json pins: playwright-core for the
# Chromium test, typescript (tsc) for the chat page and the TypeScript client.
npm_current() {
  (cd examples/browser && node -e '
    const lock = require("./package-lock.json").packages;
    for (const name of ["playwright-core", "typescript"]) {
      const installed = require(`./node_modules/${name}/package.json`).version;
      if (installed !== lock[`node_modules/${name}`].version) process.exit(1);
    }' 2>/dev/null)
}
if ! npm_current; then
  echo "test.sh: installing playwright-core and typescript (npm ci in examples/browser)"
  (cd examples/browser && npm ci --include=dev --no-audit --no-fund --loglevel=error)
fi
# The Python clients' one package, in a virtual environment of our own: a system Python
# (Debian, Ubuntu) refuses `pip install` outside one (PEP 668).
venv=target/python-venv
if ! "$venv/bin/python" -c "import websockets, cbor2" >/dev/null 2>&1; then
  echo "test.sh: making a Python virtual environment with websockets and cbor2 in $venv"
  if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    else
      echo "test.sh: python3 cannot make virtual environments: sudo apt-get install python3-venv" >&2
      exit 1
    fi
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet websockets cbor2
fi
export CRIMSON_PYTHON=$PWD/$venv/bin/python

# --- tests ------------------------------------------------------------------------------
# The TypeScript client's unit tests (node's test runner, on its committed build in
# clients/ts/dist; tests/typescript.rs checks that build is current). The TypeScript
# type-checks, the generated definitions and the Chromium test run under `cargo test`
# (examples/tests/typescript.rs, examples/tests/browser.rs).
if [ $# -eq 0 ]; then
  node --test clients/ts/test/
fi
cargo test --workspace --all-features "$@"

# --- docs: every public item documented, no broken links --------------------------------
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --all-features --quiet
echo "test.sh: all tests and the docs build passed"
