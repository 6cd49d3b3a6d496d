#!/usr/bin/env bash
# Lifeboat against restic through an imitated internet link (default 40 ms
# round trip, 100 Mbit/s each way), over S3 (moto) and SFTP (OpenSSH):
#   benches/wan.sh [--rtt-ms N] [--mbit N] [--sets doc,dirs,big] [--protocols s3,sftp] [--tools lifeboat,restic]
# Starts the same servers as the test suite (scripts/servers/*.sh), installs
# restic when missing (apt-get), builds the release binaries, prints one table
# per protocol on stdout. Data sets are generated once under $TMPDIR/lifeboat-wan.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v restic >/dev/null 2>&1; then
  echo "installing restic (apt-get)..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic) >/dev/null
fi
STOP_SERVERS=()
stop_servers() { for cmd in "${STOP_SERVERS[@]}"; do eval "$cmd" || true; done; }
trap stop_servers EXIT
for server in scripts/servers/*.sh; do
  # shellcheck source=/dev/null
  source "$server"
done
cargo build --release -q -p lifeboat-cli -p lifeboat-benches --bin lifeboat --bin wan
"${CARGO_TARGET_DIR:-$PWD/target}/release/wan" "$@"
