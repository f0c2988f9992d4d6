#!/usr/bin/env bash
# Fuzzes what reads untrusted input: each target in fuzz/fuzz_targets/ runs for a time budget
# under libFuzzer, starting from its seed corpus (fuzz/seeds/<target>/, committed) and the
# corpus earlier runs grew (fuzz/corpus/<target>/, git-ignored). A crash (panic, timeout, memory
# blow-up) fails the script and leaves the input in fuzz/artifacts/<target>/.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]    (default: 60 s each, every target)
#
# Targets (the bodies are library code, also run by `cargo test` on the seeds):
# - json kv xml regex csv: the serial adapter's line parsers (gateway_serial::fuzzing);
# - config: arbitrary bytes as gateway.toml through the loader and validator;
# - mqtt_payload: MQTT topic matching and payload -> readings (gateway_mqtt::fuzzing);
# - modbus_decode: registers -> values and back (gateway_modbus::fuzzing);
# - stanza: arbitrary XML read off a component stream into the core's stanza handlers, with
#   everything the core answers checked to serialise (xmpp_iot_gateway::fuzzing).
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
    targets=(json kv xml regex csv config mqtt_payload modbus_decode stanza)
fi
engine="${FUZZ_ENGINE:-stable}"
target_dir="${FUZZ_TARGET_DIR:-$root/fuzz/target}"

for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
done

# Inputs longer than this are not tried; configuration files are longer than lines.
max_len() {
    case "$1" in
        config) echo 16384 ;;
        *) echo 8192 ;;
    esac
}

case "$engine" in
    cargo-fuzz)
        for t in "${targets[@]}"; do
            echo "fuzz.sh: $t for ${seconds}s (cargo fuzz)" >&2
            cargo +nightly fuzz run "$t" "corpus/$t" "seeds/$t" -- \
                -max_total_time="$seconds" -timeout=10 -max_len="$(max_len "$t")" \
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
                -rss_limit_mb=2048 -max_len="$(max_len "$t")" -print_final_stats=1 \
                -artifact_prefix="artifacts/$t/" "corpus/$t" "seeds/$t"
        done
        ;;
    *)
        echo "fuzz.sh: unknown FUZZ_ENGINE=$engine (stable | cargo-fuzz)" >&2
        exit 2
        ;;
esac
echo "fuzz.sh: no crash in ${targets[*]} (${seconds}s each)" >&2
