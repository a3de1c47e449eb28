#!/usr/bin/env bash
# Regenerates the shell completions and man pages under packaging/ from the clap
# definitions of disco-agent and discoctl. The tests fail while they are stale.
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_GOLDEN=1 cargo test -q -p disco-agent -p discoctl generated_completions_and_man_page_are_current
git status --short packaging/
