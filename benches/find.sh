#!/usr/bin/env bash
# `find` over many snapshots: Lifeboat against restic, 30 snapshots of a copy
# of /usr/share with one file changed before each, on loopback and through an
# imitated link (SFTP behind the latency proxy):
#   benches/find.sh [--snapshots 30] [--runs 3] [--rtt-ms 40] [--mbit 100] [--pattern GLOB]
# Starts the SFTP test server (scripts/servers/sftp.sh), installs restic when
# missing (apt-get), builds release binaries, prints a markdown table on
# stdout. The copy and the repositories are made once and kept in
# $TMPDIR/lifeboat-bench-find.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v restic >/dev/null 2>&1; then
  echo "installing restic (apt-get)..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic) >/dev/null
fi
STOP_SERVERS=()
stop_servers() { for cmd in "${STOP_SERVERS[@]}"; do eval "$cmd" || true; done; }
trap stop_servers EXIT
source scripts/servers/sftp.sh
cargo build --release -q -p lifeboat-cli -p lifeboat-benches --bin lifeboat --bin find
export LIFEBOAT_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/lifeboat"
"${CARGO_TARGET_DIR:-$PWD/target}/release/find" "$@"
