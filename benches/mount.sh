#!/usr/bin/env bash
# Reading a mounted snapshot: `lifeboat mount` against `restic mount`, each
# over the same test server (S3 on moto by default, or SFTP on OpenSSH), with
# no local cache, on loopback and through an imitated internet link (default
# 40 ms round trip, 100 Mbit/s each way; the proxy of benches/wan.sh):
#   benches/mount.sh [--source /usr/share] [--rtt-ms 40] [--mbit 100] [--cap 1200]
#                    [--links loopback,wan] [--protocols s3,sftp] [--tools lifeboat,restic]
# The time is `tar cf - . | wc -c` over the mounted snapshot (every file read).
# Installs what it needs when missing (restic and fuse3 with apt-get, the test
# servers through scripts/servers/), builds release binaries, prints one
# markdown table per protocol on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v restic >/dev/null 2>&1 || missing+=(restic)
command -v fusermount3 >/dev/null 2>&1 || missing+=(fuse3)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing ${missing[*]} (apt-get)..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null
fi
STOP_SERVERS=()
stop_servers() { for cmd in "${STOP_SERVERS[@]}"; do eval "$cmd" || true; done; }
trap stop_servers EXIT
source scripts/servers/s3.sh
source scripts/servers/sftp.sh
cargo build --release -q -p lifeboat-cli -p lifeboat-benches --bin lifeboat --bin mount
"${CARGO_TARGET_DIR:-$PWD/target}/release/mount" "$@"
