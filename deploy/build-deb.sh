#!/usr/bin/env bash
# Builds the Debian package of xmpp-iot-gateway with cargo-deb (installed first if missing).
#
# Usage: deploy/build-deb.sh [--target TRIPLE] [--zig] [-- extra cargo-deb arguments]
#   deploy/build-deb.sh                                        # this machine's architecture
#   deploy/build-deb.sh --target aarch64-unknown-linux-gnu     # Pi 3/4/5, Zero 2 W: 64-bit OS (arm64)
#   deploy/build-deb.sh --target armv7-unknown-linux-gnueabihf # Pi 2/3/4, Zero 2 W: 32-bit OS (armhf)
#   deploy/build-deb.sh --target aarch64-unknown-linux-gnu --zig   # with cargo-zigbuild, glibc 2.31 (Bullseye too)
#
# Cross builds need the Rust target (`rustup target add TRIPLE`) and either a gcc cross
# toolchain (`apt-get install gcc-aarch64-linux-gnu` / `gcc-arm-linux-gnueabihf`, which this
# script finds and uses as linker and C compiler for the bundled SQLite and ring) or, with
# --zig, cargo-zigbuild and zig (`cargo install cargo-zigbuild`, `pip install ziglang`).
# deploy/raspberry-pi.md has the details. The package is written to
# $CARGO_TARGET_DIR/[TRIPLE/]debian/ (default target/); its path is printed at the end.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

target=""
zig=0
extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --target) target="${2:?--target needs a triple}"; shift 2 ;;
        --target=*) target="${1#--target=}"; shift ;;
        --zig) zig=1; shift ;;
        --) shift; extra=("$@"); break ;;
        -h|--help) sed -n '2,14p' "$0" | cut -c3-; exit 0 ;;
        *) echo "build-deb: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb: installing cargo-deb (about two minutes)" >&2
    cargo install cargo-deb --locked
fi

if [ -z "$target" ]; then
    exec cargo deb "${extra[@]+"${extra[@]}"}"
fi

case "$target" in
    aarch64-unknown-linux-gnu) gcc_prefix=aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) gcc_prefix=arm-linux-gnueabihf ;;
    *) gcc_prefix="" ;;
esac

if [ "$zig" = 1 ]; then
    if ! cargo zigbuild --help >/dev/null 2>&1; then
        echo "build-deb: --zig needs cargo-zigbuild (cargo install cargo-zigbuild) and zig (pip install ziglang)" >&2
        exit 1
    fi
    # glibc 2.31: runs on Raspberry Pi OS Bullseye and Bookworm.
    cargo zigbuild --release --target "$target.2.31"
    exec cargo deb --target "$target" --variant bullseye --no-build "${extra[@]+"${extra[@]}"}"
fi

if [ -n "$gcc_prefix" ]; then
    if ! command -v "$gcc_prefix-gcc" >/dev/null 2>&1; then
        echo "build-deb: $gcc_prefix-gcc not found: apt-get install gcc-$gcc_prefix (or use --zig)" >&2
        exit 1
    fi
    triple_env="$(echo "$target" | tr 'a-z-' 'A-Z_')"
    export "CARGO_TARGET_${triple_env}_LINKER=$gcc_prefix-gcc"
    export "CC_$(echo "$target" | tr '-' '_')=$gcc_prefix-gcc"
    export "AR_$(echo "$target" | tr '-' '_')=$gcc_prefix-ar"
fi
exec cargo deb --target "$target" --variant cross "${extra[@]+"${extra[@]}"}"
