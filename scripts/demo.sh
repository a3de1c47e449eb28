#!/usr/bin/env bash
# The main job: the seed's story on loopback with the real things. Installs what is
# missing (apt), builds disco, then starts etcd, three instances of a demo app in v1
# and in v2 (each registered by `disco-agent register`), HAProxy and nginx each driven
# by an LB agent, and live traffic through both; then runs a canary promote, a dark
# canary for internal requests, a blue/green switch and a rollback with discoctl,
# printing the share of traffic per version and the failed requests after each step.
# Everything it started is stopped at the end (also on Ctrl-C).
#   --keep   leave it running to explore, and print commands to try; starts
#            `discoctl dashboard` at the beginning and prints its address
#   --ci     shorter traffic windows (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
for arg in "$@"; do
  case "$arg" in
    --keep|--ci) ;;
    *) echo "usage: $0 [--keep] [--ci]" >&2; exit 2 ;;
  esac
done
scripts/deps.sh            # installs what is missing
scripts/deps.sh --check    # a gap is one clear line here, not a build panic later
echo "building disco (release)..."
cargo build --release -q -p disco-agent -p discoctl -p disco-bench
exec "${CARGO_TARGET_DIR:-target}/release/disco-demo" "$@"
