#!/usr/bin/env bash
# Runs disco's benchmarks against real etcd, HAProxy and nginx on loopback and prints
# markdown tables. Not part of the test suite: numbers depend on the machine.
#   bench/run.sh                 # agent latency: 200 changes per target
#   bench/run.sh --changes 50    # quicker
#   (agent-latency: --targets template,template-check,haproxy,haproxy-runtime,nginx;
#    --apps 1000 for 1,000 apps x 10 endpoints)
#   CONFD=/path/to/confd bench/run.sh   # also disco-agent vs confd, side by side
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
cargo build --release -q -p disco-agent -p discoctl -p disco-bench
echo "## put -> installed -> applied (disco-agent)"
"${CARGO_TARGET_DIR:-target}/release/agent-latency" "$@"
echo
echo "## discoctl promote --wait"
"${CARGO_TARGET_DIR:-target}/release/promote-latency"
"${CARGO_TARGET_DIR:-target}/release/promote-latency" --agents 10 --kind haproxy,haproxy-runtime
echo
echo "## one flip with 1,000 apps x 10 endpoints: HAProxy reload path vs Runtime API"
"${CARGO_TARGET_DIR:-target}/release/agent-latency" --apps 1000 --changes 20
echo
echo "## the Runtime API story: no reload, no failed request"
"${CARGO_TARGET_DIR:-target}/release/runtime-story"
echo
echo "## discoctl dashboard: first render with 100 and 1,000 apps (headless Chromium)"
"${CARGO_TARGET_DIR:-target}/release/dashboard-render"
echo
echo "## canary speed: a v2 answering 20% 500s, rolled back (new path vs stats every second)"
"${CARGO_TARGET_DIR:-target}/release/canary-speed" --modes canary-stats,stats-interval,show-stat
echo
echo "## disco-agent vs confd, same job"
if [ -n "${CONFD:-}" ]; then
  "${CARGO_TARGET_DIR:-target}/release/confd-compare" --rounds 3
else
  echo "confd skipped: CONFD is not set (CONFD=/path/to/confd bench/run.sh compares)"
fi
