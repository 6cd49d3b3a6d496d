#!/usr/bin/env bash
# Lifeboat against restic, rustic and borg on the same tree, one table:
#   benches/compare.sh [--runs N] [--json] [--keep] [--restore-dir DIR] [--tools lifeboat,restic,rustic,borg] [SOURCE]
# SOURCE defaults to /usr/share. Peers: apt-get install restic borgbackup; cargo install rustic-rs.
# Peers not on PATH are left out and named. The table goes to stdout, progress to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p lifeboat-cli -p lifeboat-benches --bin lifeboat --bin compare
exec "${CARGO_TARGET_DIR:-$PWD/target}/release/compare" "$@"
