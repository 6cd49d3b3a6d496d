#!/usr/bin/env bash
# Backup time against file count, on generated trees of small distinct files:
#   benches/many-files.sh [--keep] [COUNT...]      (default 100000 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p lifeboat-cli -p lifeboat-benches --bin lifeboat --bin many-files
exec "${CARGO_TARGET_DIR:-$PWD/target}/release/many-files" "$@"
