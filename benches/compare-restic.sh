#!/usr/bin/env bash
# End-to-end comparison with restic on the same data, in the same run:
# first backup (wall time, peak RSS), then a full restore checked with diff -r.
#
#   benches/compare-restic.sh [SOURCE_DIR] [RUNS]     (default /usr/share, 3 runs)
#
# Needs restic (apt-get install restic) and /usr/bin/time (apt-get install time).
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-/usr/share}
RUNS=${2:-3}
WORK=$(mktemp -d /tmp/lifeboat-compare.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
command -v restic >/dev/null || { echo "restic not found: apt-get install restic" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found: apt-get install time" >&2; exit 1; }
cargo build --release -p lifeboat-cli >/dev/null
LB=$PWD/target/release/lifeboat
export LIFEBOAT_PASSWORD=benchmark RESTIC_PASSWORD=benchmark RESTIC_PROGRESS_FPS=0.001

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  read -r wall rss <"$WORK/time"
  printf '%-28s wall %7.2f s   peak RSS %7.1f MB\n' "$label" "$wall" "$(echo "$rss/1024" | bc -l)"
}

echo "source: $SRC ($(du -sh "$SRC" 2>/dev/null | cut -f1), $(find "$SRC" -type f 2>/dev/null | wc -l) files); $(nproc) cores"
for i in $(seq "$RUNS"); do
  rm -rf "$WORK/lb" "$WORK/restic"
  "$LB" -q -d "$WORK/lb" init >/dev/null
  restic -q init --repo "$WORK/restic" >/dev/null
  sync
  measure "lifeboat first backup #$i" "$LB" -q -d "$WORK/lb" backup "$SRC"
  measure "restic   first backup #$i" restic -q --repo "$WORK/restic" backup "$SRC"
done
echo "repository size: lifeboat $(du -sh "$WORK/lb" | cut -f1), restic $(du -sh "$WORK/restic" | cut -f1)"
measure "lifeboat second backup" "$LB" -q -d "$WORK/lb" backup "$SRC"
measure "restic   second backup" restic -q --repo "$WORK/restic" backup "$SRC"
measure "lifeboat restore" "$LB" -q -d "$WORK/lb" restore latest --target "$WORK/lb-restore"
measure "restic   restore" restic -q --repo "$WORK/restic" restore latest --target "$WORK/restic-restore"
if diff -r --no-dereference "$SRC" "$WORK/lb-restore$SRC" >/dev/null; then
  echo "lifeboat round trip: diff -r identical"
else
  echo "lifeboat round trip: DIFFERENT" >&2
  exit 1
fi
