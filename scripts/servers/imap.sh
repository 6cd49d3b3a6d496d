# IMAP test server: Dovecot (Debian's dovecot-imapd).
#
# Sourced by scripts/test.sh (bash, `set -euo pipefail`). Installs the
# package when missing (its service is not started: each test starts its own
# `dovecot -F` on a free loopback port, with a passwd-file user database and
# no system users; tests/support/imap.rs). Any failure ends the run: tests
# must never skip for want of a server.
#
# Exports: LIFEBOAT_TEST_DOVECOT (the dovecot executable).

lifeboat_imap_fail() {
  echo "error: IMAP test server (Dovecot): $*" >&2
  exit 1
}

lifeboat_imap_start() {
  if ! command -v dovecot >/dev/null 2>&1 && [ ! -x /usr/sbin/dovecot ]; then
    command -v apt-get >/dev/null 2>&1 \
      || lifeboat_imap_fail "dovecot not found and no apt-get to install it; install dovecot-imapd"
    echo "installing dovecot-imapd (once)..." >&2
    # policy-rc.d keeps the package's own service from starting.
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd) >/dev/null \
      || lifeboat_imap_fail "apt-get install dovecot-imapd failed"
  fi
  local bin
  bin="$(command -v dovecot || echo /usr/sbin/dovecot)"
  "$bin" --version >/dev/null 2>&1 || lifeboat_imap_fail "$bin does not run"
  id dovenull >/dev/null 2>&1 || lifeboat_imap_fail "the dovenull user (created by the package) is missing"
  export LIFEBOAT_TEST_DOVECOT="$bin"
}

lifeboat_imap_start
