#!/usr/bin/env bash
# Pulling a cloud account: Lifeboat against vdirsyncer (CardDAV, 1,000
# contacts on Radicale) and mbsync (IMAP, 1,000 messages on Dovecot), first
# run and no-change run, on loopback and through an imitated link:
#   benches/sources.sh [--rtt-ms 40] [--mbit 100]
# Installs what it needs (the test servers through scripts/servers/, vdirsyncer
# in a cached virtualenv, isync with apt-get), builds release binaries, prints
# markdown tables on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
STOP_SERVERS=()
stop_servers() { for cmd in "${STOP_SERVERS[@]}"; do eval "$cmd" || true; done; }
trap stop_servers EXIT
source scripts/servers/dav.sh
source scripts/servers/imap.sh
if ! command -v mbsync >/dev/null 2>&1; then
  echo "installing isync (mbsync) with apt-get..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq isync) >/dev/null
fi
venv="${XDG_CACHE_HOME:-$HOME/.cache}/lifeboat-test/vdirsyncer-venv"
if [ ! -x "$venv/bin/vdirsyncer" ]; then
  echo "installing vdirsyncer into $venv (once)..." >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check vdirsyncer
fi
export LIFEBOAT_BENCH_VDIRSYNCER="$venv/bin/vdirsyncer"
cargo build --release -q -p lifeboat-cli -p lifeboat-benches --bin lifeboat --bin sources
export LIFEBOAT_BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/lifeboat"
"${CARGO_TARGET_DIR:-$PWD/target}/release/sources" "$@"
