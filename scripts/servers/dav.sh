# CardDAV/CalDAV test server: Radicale, installed in a cached virtualenv.
#
# Sourced by scripts/test.sh (bash, `set -euo pipefail`). Installs Radicale
# when missing and checks that it starts and answers on 127.0.0.1; each test
# then starts its own instance on a free port with its own accounts and
# storage (tests/support/dav.rs), so a test may wipe an account or kill its
# server mid-backup without disturbing the others. Any failure ends the run:
# tests must never skip for want of a server.
#
# Exports: LIFEBOAT_TEST_RADICALE (the radicale executable).

lifeboat_dav_fail() {
  echo "error: DAV test server (Radicale): $*" >&2
  exit 1
}

lifeboat_dav_start() {
  local cache="${XDG_CACHE_HOME:-$HOME/.cache}/lifeboat-test"
  local venv="$cache/radicale-venv"
  local python="${LIFEBOAT_PYTHON:-python3}"
  command -v "$python" >/dev/null 2>&1 \
    || lifeboat_dav_fail "python3 not found; install python3 (with the venv module)"
  if [ ! -x "$venv/bin/radicale" ] || ! "$venv/bin/python" -c 'import radicale' >/dev/null 2>&1; then
    echo "installing radicale into $venv (once)..." >&2
    mkdir -p "$cache" || lifeboat_dav_fail "cannot create $cache"
    rm -rf "$venv"
    "$python" -m venv "$venv" \
      || lifeboat_dav_fail "cannot create a virtualenv at $venv (on Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'radicale>=3.1,<4' \
      || lifeboat_dav_fail "pip install radicale failed"
  fi

  # A smoke start: the tests start their own instances the same way.
  local dir port pid
  dir="$(mktemp -d)"
  port="$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
  printf 'smoke:smoke\n' >"$dir/users"
  "$venv/bin/radicale" --server-hosts "127.0.0.1:$port" --auth-type htpasswd \
    --auth-htpasswd-filename "$dir/users" --auth-htpasswd-encryption plain \
    --storage-filesystem-folder "$dir/collections" >"$dir/log" 2>&1 &
  pid=$!
  local deadline=$((SECONDS + 30))
  until curl -s -o /dev/null "http://127.0.0.1:$port/" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      lifeboat_dav_fail "radicale exited at start; its log: $(tail -n 20 "$dir/log")"
    fi
    [ "$SECONDS" -lt "$deadline" ] || lifeboat_dav_fail "radicale did not answer within 30 s"
    sleep 0.2
  done
  kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
  export LIFEBOAT_TEST_RADICALE="$venv/bin/radicale"
}

lifeboat_dav_start
