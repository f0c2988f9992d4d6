#!/usr/bin/env bash
# THE test command: installs what the integration tests need (Debian packages, only if missing),
# then runs every test of the workspace. Extra arguments go to `cargo test`, e.g.
#   scripts/test.sh                       # everything
#   scripts/test.sh --test it rig::       # one module of the integration tests (tests/it/)
#   scripts/test.sh -- --nocapture        # show output
# The exit code is the tests' exit code.
#
# Integration tests start their own Prosody, ejabberd (and Mosquitto, …) on free loopback ports with private
# configs; system services installed with the packages are neither used nor stopped.
# Set RIG_KEEP=1 to keep a failing test's temporary Prosody/gateway directories for inspection.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

"$root/scripts/install-deps.sh"

if ! command -v cargo >/dev/null 2>&1; then
    echo "test.sh: cargo not found; install Rust (https://rustup.rs) first" >&2
    exit 1
fi

set +e
cargo test --workspace --all-targets --no-fail-fast "$@"
status=$?
set -e
exit "$status"
