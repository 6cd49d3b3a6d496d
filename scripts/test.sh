#!/usr/bin/env bash
# The whole test suite: builds the `lifeboat` binary the end-to-end tests run
# (with the engine's crash hooks, the `failpoints` feature), then every unit,
# property, conformance and end-to-end test of the workspace.
# Idempotent and self-contained: it installs what the tests need when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need cargo; then
  echo "error: cargo not found; install Rust from https://rustup.rs" >&2
  exit 1
fi
# Tools the tests call (setpriv runs a backup as an unprivileged user; curl
# fills the DAV test server; openssl makes the TLS tests' certificate
# authority; fusermount3 mounts).
missing=()
need setpriv || missing+=(util-linux)
need curl || missing+=(curl)
need openssl || missing+=(openssl)
# `mount` (tests/cli_mount.rs) needs FUSE's fusermount3. Debian's fuse3
# replaces the old fuse (v2) package, whose `fusermount` it still provides.
need fusermount3 || missing+=(fuse3)
if [ "${#missing[@]}" -gt 0 ] && need apt-get; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null
fi

# Test servers on 127.0.0.1: each script in scripts/servers/ installs its server if
# missing, starts it, waits until it answers, exports how to reach it
# (LIFEBOAT_TEST_* variables) and registers its cleanup in stop_servers.
STOP_SERVERS=()
stop_servers() { for cmd in "${STOP_SERVERS[@]}"; do eval "$cmd" || true; done; }
trap stop_servers EXIT
for server in scripts/servers/*.sh; do
  [ -e "$server" ] || continue
  # shellcheck source=/dev/null
  source "$server"
done

# The `lifeboat` binary the end-to-end tests run, built in one go with every
# test: one feature resolution for both, so the engine is compiled once, and
# the tests crate's dev-dependency on the engine's `failpoints` feature puts
# the crash hooks (LIFEBOAT_FAILPOINT) into this binary; tests/failpoints.rs
# fails if they are missing. A plain `cargo build -p lifeboat-cli` has none.
cargo build --workspace --bins --tests
cargo test --workspace --no-fail-fast "$@"
