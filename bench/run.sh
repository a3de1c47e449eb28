#!/usr/bin/env bash
# Runs disco's benchmarks against real etcd, HAProxy and nginx on loopback and prints
# markdown tables. Not part of the test suite: numbers depend on the machine.
#   bench/run.sh                 # agent latency: 200 changes per target
#   bench/run.sh --changes 50    # quicker
#   CONFD=/path/to/confd bench/run.sh   # also disco-agent vs confd, side by side
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release -q -p disco-agent -p discoctl -p disco-bench
echo "## put -> installed -> reloaded (disco-agent)"
"${CARGO_TARGET_DIR:-target}/release/agent-latency" "$@"
echo
echo "## discoctl promote --wait"
"${CARGO_TARGET_DIR:-target}/release/promote-latency"
echo
echo "## disco-agent vs confd, same job"
if [ -n "${CONFD:-}" ]; then
  "${CARGO_TARGET_DIR:-target}/release/confd-compare" --rounds 3
else
  echo "confd skipped: CONFD is not set (CONFD=/path/to/confd bench/run.sh compares)"
fi
