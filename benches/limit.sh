#!/usr/bin/env bash
# The composed CPU limit of a first backup of SOURCE (each stage measured alone on
# SOURCE's own bytes) and the share of it that `lifeboat backup` reaches:
#   benches/limit.sh [--runs N] [--json] [SOURCE]      (default /usr/share)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p lifeboat-cli -p lifeboat-benches --bin lifeboat --bin limit
exec "${CARGO_TARGET_DIR:-$PWD/target}/release/limit" "$@"
