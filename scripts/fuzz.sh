#!/usr/bin/env bash
# Fuzzes the serial adapter's line parsers: each target in fuzz/fuzz_targets/ runs for a time
# budget under libFuzzer, starting from its seed corpus (fuzz/seeds/<target>/, committed) and the
# corpus earlier runs grew (fuzz/corpus/<target>/, git-ignored). A crash (panic, timeout, memory
# blow-up) fails the script and leaves the input in fuzz/artifacts/<target>/.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]    (default: 60 s each for json kv xml regex csv)
#
# Two ways to run the same targets:
# - default, stable toolchain: the targets are built with the coverage instrumentation that
#   cargo-fuzz uses (`-Cpasses=sancov-module` and the sanitizer-coverage LLVM options are stable
#   rustc flags) and linked with libFuzzer from the libfuzzer-sys crate, so the fuzzing is
#   coverage-guided as with cargo-fuzz. Only AddressSanitizer (`-Zsanitizer`, nightly) is left
#   out: the parsers are safe Rust, so a panic is the bug to find, and libFuzzer reports it.
# - FUZZ_ENGINE=cargo-fuzz: `cargo +nightly fuzz run` (needs a nightly toolchain and
#   `cargo install cargo-fuzz`), with AddressSanitizer.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"

seconds="${1:-60}"
if [ "$#" -gt 0 ]; then shift; fi
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(json kv xml regex csv)
fi
engine="${FUZZ_ENGINE:-stable}"
target_dir="${FUZZ_TARGET_DIR:-$root/fuzz/target}"

for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
done

case "$engine" in
    cargo-fuzz)
        for t in "${targets[@]}"; do
            echo "fuzz.sh: $t for ${seconds}s (cargo fuzz)" >&2
            cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
                -max_total_time="$seconds" -timeout=10 -max_len=8192 \
                -artifact_prefix="artifacts/$t/"
        done
        ;;
    stable)
        host="$(rustc -vV | sed -n 's/^host: //p')"
        # The flags cargo-fuzz passes, minus `-Zsanitizer`. `--target` keeps them off build
        # scripts, which must not be instrumented.
        export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-sanitizer-coverage-stack-depth \
-Cdebug-assertions -Coverflow-checks"
        echo "fuzz.sh: building ${targets[*]} (stable, libFuzzer with coverage instrumentation)" >&2
        bins=()
        for t in "${targets[@]}"; do bins+=(--bin "$t"); done
        cargo build --release --locked --target "$host" --target-dir "$target_dir" "${bins[@]}"
        for t in "${targets[@]}"; do
            echo "fuzz.sh: $t for ${seconds}s" >&2
            "$target_dir/$host/release/$t" -max_total_time="$seconds" -timeout=10 \
                -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
                -artifact_prefix="artifacts/$t/" "corpus/$t" "seeds/$t"
        done
        ;;
    *)
        echo "fuzz.sh: unknown FUZZ_ENGINE=$engine (stable | cargo-fuzz)" >&2
        exit 2
        ;;
esac
echo "fuzz.sh: no crash in ${targets[*]} (${seconds}s each)" >&2
