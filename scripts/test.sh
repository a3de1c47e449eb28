#!/usr/bin/env bash
# The test command: installs what is missing, then checks formatting, lints and runs
# every test of the workspace (unit, golden files, integration tests against real
# etcd, HAProxy and nginx), and validates docker-compose.yml.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh            # installs what is missing
scripts/deps.sh --check    # a gap is one clear line here, not a build panic later
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
docker-compose -f docker-compose.yml config -q
