#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need on a fresh
# Debian machine (Apache ZooKeeper 3.8 and its C client from Debian's
# packages, a Python venv with kazoo), builds, then runs:
#   1. cargo tests (--workspace: every member of Cargo.toml, the checkers'
#      corral-check and the simulator's corral-sim among them): protocol,
#      core and server units; end-to-end tests against
#      real corral processes with the stock Rust client; the queue tests
#      against Corral, then again against Apache ZooKeeper;
#   2. a fuzz smoke: every cargo-fuzz target for ~8 s (fuzz/run.sh);
#   3. the stock-client suites (kazoo, zkCli, the C client, kazoo's own test
#      suite) against Corral, then ours against Apache ZooKeeper 3.8 as the
#      reference (they must pass on both). kazoo's own suite against
#      ZooKeeper checks ZooKeeper and kazoo, nothing of ours, and takes about
#      4 minutes: REFERENCE_KAZOO=1 runs it too (it passed: 484 tests).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CARGO_TERM_COLOR=never

echo "== installing test dependencies"
bash tests/clients/install-deps.sh
bash queue/tests/install-deps.sh

echo "== building"
cargo build --workspace --all-targets
export CORRAL_BIN="$ROOT/target/debug/corral"

echo "== cargo tests (queue tests against Corral)"
cargo test --workspace

echo "== fuzz smoke (fuzz/run.sh: every target ~8 s, nightly toolchain)"
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz smoke SKIPPED: no nightly toolchain (cargo-fuzz needs one; 'rustup toolchain install nightly')" >&2
else
    cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --version '^0.13' --locked
    # The fuzz build (nightly, instrumented) keeps its own target dir outside
    # the clone, so a later run on the same machine rebuilds only Corral.
    CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/corral/fuzz-target}" bash fuzz/run.sh 8
fi

echo "== queue tests against Apache ZooKeeper 3.8"
env -u CORRAL_BIN cargo test -p corral-queue

echo "== stock clients against Corral"
SKIP_INSTALL=1 TARGET=corral bash tests/clients/run.sh

echo "== stock clients against Apache ZooKeeper 3.8 (reference)"
SKIP_KAZOO=$([ "${REFERENCE_KAZOO:-0}" = 1 ] && echo 0 || echo 1) SKIP_INSTALL=1 TARGET=zookeeper bash tests/clients/run.sh
