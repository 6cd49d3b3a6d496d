#!/usr/bin/env bash
# forget + prune against restic on the same data, in the same run: back up
# two different trees, forget the first, prune (lifeboat with --grace 0s so
# the space is freed in the same run, as restic does).
#
#   benches/compare-prune.sh [FIRST_DIR] [SECOND_DIR]   (default /usr/share/doc, /usr/share/man)
#
# Needs restic (apt-get install restic) and /usr/bin/time (apt-get install time).
set -euo pipefail
cd "$(dirname "$0")/.."
A=${1:-/usr/share/doc}
B=${2:-/usr/share/man}
WORK=$(mktemp -d /tmp/lifeboat-cprune.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
command -v restic >/dev/null || { echo "restic not found: apt-get install restic" >&2; exit 1; }
cargo build --release -p lifeboat-cli >/dev/null 2>&1
LB=$PWD/target/release/lifeboat
export LIFEBOAT_PASSWORD=benchmark RESTIC_PASSWORD=benchmark RESTIC_PROGRESS_FPS=0.001
export LIFEBOAT_CACHE_DIR=$WORK/cache RESTIC_CACHE_DIR=$WORK/restic-cache

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  read -r wall rss <"$WORK/time"
  printf '%-26s wall %6.2f s   peak RSS %6.1f MB\n' "$label" "$wall" "$(echo "$rss/1024" | bc -l)"
}

"$LB" -q -d "$WORK/lb" init >/dev/null
restic -q init --repo "$WORK/restic" >/dev/null
"$LB" -q -d "$WORK/lb" backup "$A" >/dev/null
"$LB" -q -d "$WORK/lb" backup "$B" >/dev/null
restic -q --repo "$WORK/restic" backup "$A" >/dev/null
restic -q --repo "$WORK/restic" backup "$B" >/dev/null
echo "before: lifeboat $(du -sh "$WORK/lb" | cut -f1), restic $(du -sh "$WORK/restic" | cut -f1)"
first_lb=$("$LB" --json -d "$WORK/lb" snapshots | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
first_restic=$(restic --json --repo "$WORK/restic" snapshots | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
measure "lifeboat forget" "$LB" -q -d "$WORK/lb" forget "$first_lb"
measure "restic   forget" restic -q --repo "$WORK/restic" forget "$first_restic"
measure "lifeboat prune" "$LB" -q -d "$WORK/lb" prune --grace 0s
measure "restic   prune" restic -q --repo "$WORK/restic" prune
echo "after:  lifeboat $(du -sh "$WORK/lb" | cut -f1), restic $(du -sh "$WORK/restic" | cut -f1)"
measure "lifeboat check --read-data" "$LB" -q -d "$WORK/lb" check --read-data
measure "restic   check --read-data" restic -q --repo "$WORK/restic" check --read-data
