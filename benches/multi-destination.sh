#!/usr/bin/env bash
# Backup to local + S3 + SFTP (servers on 127.0.0.1, started like the tests'
# servers) against the same backup to local alone, in one run:
#
#   benches/multi-destination.sh [SOURCE_DIR] [RUNS]     (default /usr/share, 3 runs)
#
# Prints each run's wall time and peak RSS, and the CPU the S3 server (moto,
# Python) used: on a small machine the servers compete with lifeboat for cores.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=${1:-/usr/share}
RUNS=${2:-3}
cargo build --release -p lifeboat-cli >/dev/null 2>&1
LB=$PWD/target/release/lifeboat
WORK=$(mktemp -d /tmp/lifeboat-multi.XXXXXX)
STOP_SERVERS=("rm -rf '$WORK'")
trap 'for c in "${STOP_SERVERS[@]}"; do eval "$c" || true; done' EXIT
# shellcheck source=/dev/null
source scripts/servers/s3.sh >/dev/null
# shellcheck source=/dev/null
source scripts/servers/sftp.sh >/dev/null
export LIFEBOAT_PASSWORD=benchmark
moto_pid=$(pgrep -f "moto_server -H 127.0.0.1 -p ${LIFEBOAT_TEST_S3_ENDPOINT##*:}" | head -1)
tick=$(getconf CLK_TCK)
moto_cpu() { awk '{print $14+$15}' "/proc/$moto_pid/stat"; }

run() { # label, run number, destinations...
  local label=$1 n=$2; shift 2
  "$LB" -q "$@" init >/dev/null
  sync
  local before; before=$(moto_cpu)
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$LB" -q "$@" backup "$SRC" >/dev/null
  read -r wall rss <"$WORK/time"
  printf '%-24s #%s  wall %6.2f s  peak RSS %6.1f MB  moto cpu %5.2f s\n' "$label" "$n" "$wall" \
    "$(echo "$rss/1024" | bc -l)" "$(echo "($(moto_cpu)-$before)/$tick" | bc -l)"
}

echo "source: $SRC ($(du -sh "$SRC" 2>/dev/null | cut -f1)); $(nproc) cores"
for i in $(seq "$RUNS"); do
  s3="s3://$LIFEBOAT_TEST_S3_BUCKET/bench-$i-$RANDOM?endpoint=$LIFEBOAT_TEST_S3_ENDPOINT&region=us-east-1"
  sftp="sftp://$LIFEBOAT_TEST_SFTP_USER@127.0.0.1:$LIFEBOAT_TEST_SFTP_PORT$LIFEBOAT_TEST_SFTP_ROOT/bench-$i?known_hosts=$LIFEBOAT_TEST_SFTP_KNOWN_HOSTS&identity=$LIFEBOAT_TEST_SFTP_IDENTITY"
  run "local alone" "$i" -d "$WORK/alone-$i"
  run "local + S3 + SFTP" "$i" -d "$WORK/three-$i" -d "$s3" -d "$sftp"
done
