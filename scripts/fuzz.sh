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
#   everything the core answers checked to serialise (xmpp_iot_gateway::fuzzing);
# - stream: arbitrary bytes, split at arbitrary points, through both upstream stream readers
#   (component mode's, and client mode's patched tokio-xmpp), with a stanza limit of 16 KiB.
#
# stanza and stream take inputs of up to 1.1 MiB (above the 1 MiB stanza and token limits),
# and start from generated seeds with long tokens as well (written to their corpus folders by
# long_token_seeds below: megabytes that are not worth committing).
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
    targets=(json kv xml regex csv config mqtt_payload modbus_decode stanza stream)
fi
engine="${FUZZ_ENGINE:-stable}"
target_dir="${FUZZ_TARGET_DIR:-$root/fuzz/target}"

for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
done

# Inputs longer than this are not tried; configuration files are longer than lines, and the
# XMPP readers must be driven past their 1 MiB limits.
max_len() {
    case "$1" in
        config) echo 16384 ;;
        stanza | stream) echo 1153434 ;;
        *) echo 8192 ;;
    esac
}

# `n` copies of character `c`.
repeat() { head -c "$2" /dev/zero | tr '\0' "$1"; }

# Seeds with tokens around the readers' limits: attribute values, text, names and namespaces of
# 9 KiB, 64 KiB, 200 KiB and just over 1 MiB, deep nesting, thousands of attributes. For
# `stanza`, byte 0 = 0x01 wraps the rest in an IQ get (0x09: the same in client mode), byte 1
# picks the addresses; for `stream`, byte 0 seeds the split points.
long_token_seeds() {
    local t="$1" dir="corpus/$1" n kib prefix
    case "$t" in
        stanza) prefix='\x01\x00' ;;
        stream) prefix='\x05' ;;
        *) return 0 ;;
    esac
    for kib in 9 64 200 1025; do
        n=$((kib * 1024))
        { printf "$prefix"; [ "$t" = stream ] && printf "<iq type='get' id='a' to='d@gw.localhost'>"
          printf "<q xmlns='urn:x' a='"; repeat A "$n"; printf "'/>"
          [ "$t" = stream ] && printf "</iq><message to='d@gw.localhost'><body>after</body></message>"
        } > "$dir/long-attr-${kib}k"
        { printf "$prefix"; printf "<q xmlns='urn:x'>"; repeat B "$n"; printf "</q>"; } > "$dir/long-text-${kib}k"
        { printf "$prefix"; printf "<q xmlns='urn:"; repeat n "$n"; printf "'/>"; } > "$dir/long-ns-${kib}k"
    done
    { printf "$prefix"; printf "<a xmlns='urn:x'>"; repeat x 1000 | sed 's/x/<a>/g'; repeat x 1000 | sed 's/x/<\/a>/g'; printf "</a>"; } > "$dir/deep-1000"
    { printf "$prefix"; printf "<q xmlns='urn:x'"; for n in $(seq 1 3000); do printf " a%d='%d'" "$n" "$n"; done; printf "/>"; } > "$dir/attrs-3000"
}

for t in "${targets[@]}"; do
    long_token_seeds "$t"
done

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
