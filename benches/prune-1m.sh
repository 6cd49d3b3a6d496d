#!/usr/bin/env bash
# Prune on a repository of many blobs (default one million): wall time and
# peak RSS of `lifeboat prune` after forgetting a snapshot that held half of
# them. The repository is synthetic (64-byte files in directories of 1000,
# written by the synthetic-repo program), so it builds in seconds.
#
#   benches/prune-1m.sh [BLOBS]      (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
BLOBS=${1:-1000000}
WORK=$(mktemp -d /tmp/lifeboat-prune.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found: apt-get install time" >&2; exit 1; }
cargo build --release -p lifeboat-cli -p lifeboat-benches --bin lifeboat --bin synthetic-repo >/dev/null 2>&1
LB=$PWD/target/release/lifeboat
export LIFEBOAT_PASSWORD=benchmark LIFEBOAT_CACHE_DIR=$WORK/cache

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >"$WORK/out" 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  read -r wall rss <"$WORK/time"
  printf '%-34s wall %7.2f s   peak RSS %7.1f MB\n' "$label" "$wall" "$(echo "$rss/1024" | bc -l)"
}

start=$(date +%s.%N)
first=$("$PWD/target/release/synthetic-repo" "$WORK/repo" "$BLOBS")
printf 'built %s blobs in %.1f s: %s\n' "$BLOBS" "$(echo "$(date +%s.%N) - $start" | bc -l)" "$(du -sh "$WORK/repo" | cut -f1)"
measure "check (structure)" "$LB" -q -d "$WORK/repo" check
measure "forget the full snapshot" "$LB" -q -d "$WORK/repo" forget "$first"
measure "prune (half the blobs unused)" "$LB" -d "$WORK/repo" prune --grace 0s
cat "$WORK/err"
measure "check --read-data after" "$LB" -q -d "$WORK/repo" check --read-data
echo "after: $(du -sh "$WORK/repo" | cut -f1)"
