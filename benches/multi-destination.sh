#!/usr/bin/env bash
# Backup to local + S3 + SFTP (servers on 127.0.0.1, started like the tests'
# servers) against the same backup to local alone, in one run:
#
#   benches/multi-destination.sh [SOURCE_DIR] [RUNS]     (default /usr/share, 3 runs)
#
# Each run is measured twice:
#   shared  - lifeboat and the servers share every core (on a small machine the
#             servers' own CPU, mostly moto's Python, then shows in lifeboat's wall time);
#   pinned  - the servers get the last core and lifeboat the others, in both the
#             single- and the three-destination run, as when the providers are other
#             machines (skipped on a one-core machine).
# Prints each run's wall time, peak RSS and lifeboat's CPU, then the median ratio.
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
cores=$(nproc)
moto_pid=$(pgrep -f "moto_server -H 127.0.0.1 -p ${LIFEBOAT_TEST_S3_ENDPOINT##*:}" | head -1)
# shellcheck disable=SC2207
server_pids=("$moto_pid" $(pgrep -f lifeboat-sshd))
tick=$(getconf CLK_TCK)
moto_cpu() { awk '{print $14+$15}' "/proc/$moto_pid/stat"; }

pin_servers() { # cpu list for the servers (and their future children)
  for p in "${server_pids[@]}"; do [ -n "$p" ] && taskset -a -p -c "$1" "$p" >/dev/null; done
}

run() { # mode, label, destinations...
  local mode=$1 label=$2; shift 2
  local prefix=()
  [ "$mode" = pinned ] && prefix=(taskset -c "0-$((cores - 2))")
  "$LB" -q "$@" init >/dev/null
  sync
  local before; before=$(moto_cpu)
  "${prefix[@]}" /usr/bin/time -f "%e %M %U %S" -o "$WORK/time" "$LB" -q "$@" backup "$SRC" >/dev/null
  read -r wall rss user sys <"$WORK/time"
  printf '%-7s %-18s wall %6.2f s  peak RSS %6.1f MB  lifeboat cpu %5.2f s  moto cpu %5.2f s\n' \
    "$mode" "$label" "$wall" "$(echo "$rss/1024" | bc -l)" "$(echo "$user+$sys" | bc -l)" \
    "$(echo "($(moto_cpu)-$before)/$tick" | bc -l)"
  echo "$wall" >>"$WORK/$mode-$label"
}

median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "source: $SRC ($(du -sh "$SRC" 2>/dev/null | cut -f1)); $cores cores"
modes=(shared)
[ "$cores" -ge 2 ] && modes+=(pinned)
for i in $(seq "$RUNS"); do
  for mode in "${modes[@]}"; do
    if [ "$mode" = pinned ]; then pin_servers "$((cores - 1))"; else pin_servers "0-$((cores - 1))"; fi
    tag="$mode-$i-$RANDOM"
    s3="s3://$LIFEBOAT_TEST_S3_BUCKET/bench-$tag?endpoint=$LIFEBOAT_TEST_S3_ENDPOINT&region=us-east-1"
    sftp="sftp://$LIFEBOAT_TEST_SFTP_USER@127.0.0.1:$LIFEBOAT_TEST_SFTP_PORT$LIFEBOAT_TEST_SFTP_ROOT/bench-$tag?known_hosts=$LIFEBOAT_TEST_SFTP_KNOWN_HOSTS&identity=$LIFEBOAT_TEST_SFTP_IDENTITY"
    run "$mode" alone -d "$WORK/alone-$tag"
    run "$mode" three -d "$WORK/three-$tag" -d "$s3" -d "$sftp"
  done
done
for mode in "${modes[@]}"; do
  a=$(median "$WORK/$mode-alone") t=$(median "$WORK/$mode-three")
  printf 'median %-7s local alone %6.2f s  local+S3+SFTP %6.2f s  ratio %.2f (bar 1.25)\n' \
    "$mode" "$a" "$t" "$(echo "$t/$a" | bc -l)"
done
