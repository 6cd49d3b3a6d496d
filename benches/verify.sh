#!/usr/bin/env bash
# Verification against restic on the same data, in the same run: check
# (structure), check --read-data and a restore drill, on one local destination;
# then the same lifeboat commands on two destinations. Also the metadata
# cache: `ls -l latest` with and without it.
#
#   benches/verify.sh [SOURCE_DIR] [RUNS]     (default /usr/share, 3 runs)
#
# Needs restic (apt-get install restic) and /usr/bin/time (apt-get install time).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-/usr/share}
RUNS=${2:-3}
WORK=$(mktemp -d /tmp/lifeboat-verify.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
command -v restic >/dev/null || { echo "restic not found: apt-get install restic" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found: apt-get install time" >&2; exit 1; }
cargo build --release -p lifeboat-cli >/dev/null 2>&1
LB=$PWD/target/release/lifeboat
export LIFEBOAT_PASSWORD=benchmark RESTIC_PASSWORD=benchmark RESTIC_PROGRESS_FPS=0.001
export LIFEBOAT_CACHE_DIR=$WORK/cache RESTIC_CACHE_DIR=$WORK/restic-cache

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  read -r wall rss <"$WORK/time"
  printf '%-40s wall %7.2f s   peak RSS %7.1f MB\n' "$label" "$wall" "$(echo "$rss/1024" | bc -l)"
}

echo "source: $SRC ($(du -sh "$SRC" 2>/dev/null | cut -f1)); $(nproc) cores"
"$LB" -q -d "$WORK/a" -d "$WORK/b" init >/dev/null
"$LB" -q -d "$WORK/a" -d "$WORK/b" backup "$SRC" >/dev/null
restic -q init --repo "$WORK/restic" >/dev/null
restic -q --repo "$WORK/restic" backup "$SRC" >/dev/null
echo "repository: lifeboat $(du -sh "$WORK/a" | cut -f1) per destination, restic $(du -sh "$WORK/restic" | cut -f1)"
for i in $(seq "$RUNS"); do
  measure "lifeboat check, 1 destination #$i" "$LB" -q -d "$WORK/a" check
  measure "restic   check #$i" restic -q --repo "$WORK/restic" check
  measure "lifeboat check --read-data, 1 dest #$i" "$LB" -q -d "$WORK/a" check --read-data
  measure "restic   check --read-data #$i" restic -q --repo "$WORK/restic" check --read-data
  measure "lifeboat drill, 1 destination #$i" "$LB" -q -d "$WORK/a" drill
  measure "lifeboat check --read-data, 2 dests #$i" "$LB" -q -d "$WORK/a" -d "$WORK/b" check --read-data
  measure "lifeboat drill, 2 destinations #$i" "$LB" -q -d "$WORK/a" -d "$WORK/b" drill
  measure "lifeboat ls -l latest, cached #$i" "$LB" -q -d "$WORK/a" ls -l latest
  measure "lifeboat ls -l latest, no cache #$i" env LIFEBOAT_NO_CACHE=1 "$LB" -q -d "$WORK/a" ls -l latest
  measure "restic   ls -l latest #$i" restic -q --repo "$WORK/restic" ls -l latest
done
