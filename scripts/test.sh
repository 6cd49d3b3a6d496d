#!/usr/bin/env bash
# The whole test suite: builds the `lifeboat` binary the end-to-end tests run,
# then every unit, property, conformance and end-to-end test of the workspace.
# Idempotent and self-contained: it installs what the tests need when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }
if ! need cargo; then
  echo "error: cargo not found; install Rust from https://rustup.rs" >&2
  exit 1
fi
# Tools the tests call (setpriv runs a backup as an unprivileged user).
if ! need setpriv && need apt-get; then
  (apt-get update -qq && apt-get install -y -qq util-linux) >/dev/null
fi

cargo build -p lifeboat-cli
cargo test --workspace --no-fail-fast "$@"
