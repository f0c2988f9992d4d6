#!/usr/bin/env bash
# Configuration memory bench: what loading a large gateway.toml costs.
#
#   bench/config-memory.sh [--devices 1000,10000] [--fields 10] [--heaptrack]
#
# Writes a configuration of N simulated devices of --fields fields each (the file bench/scale.sh
# runs, from bench/scale.py), then runs `xmpp-iot-gateway check` on it under /usr/bin/time and
# prints the file's size, the peak RSS and the time `check` took, and the peak RSS of `check`
# on a configuration without devices (the binary and its libraries), so that the difference is
# what loading the devices cost. It then loads the file with examples/config-memory.rs (a
# counting allocator around the loader) for the peak heap in bytes per byte of TOML, what
# stays allocated after loading, and the load's own time. --heaptrack also runs `check` under
# heaptrack (if installed) and prints its peak heap. Uses the release build (or GATEWAY_BIN
# and CONFIG_MEMORY_BIN). Nothing is started that outlives the script.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
DEVICES="1000,10000"
FIELDS=10
HEAPTRACK=""
while [ $# -gt 0 ]; do
    case "$1" in
        --devices) DEVICES="$2"; shift 2 ;;
        --fields) FIELDS="$2"; shift 2 ;;
        --heaptrack) HEAPTRACK=1; shift ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found (apt-get install time)" >&2; exit 2; }
bench_init config-memory
gateway_build
if [ -n "${CONFIG_MEMORY_BIN:-}" ]; then
    HEAP="$CONFIG_MEMORY_BIN"
else
    (cd "$ROOT" && cargo build --release --quiet --example config-memory)
    HEAP="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/config-memory"
fi

write_config() { # devices, file: the configuration bench/scale.sh runs (bench/scale.py)
    python3 - "$ROOT/bench" "$1" "$FIELDS" "$RUN/state" "$RUN/secret" >"$2" <<'EOF'
import sys
from types import SimpleNamespace
sys.path.insert(0, sys.argv[1])
from scale import sim_config
n, fields, state, secret = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
a = SimpleNamespace(domain="bench.localhost", comp_port=5347, secret_file=secret, fields=fields, poll="1s")
sys.stdout.write(sim_config(a, n, state))
EOF
}

peak_rss_kib() { # config file: peak RSS in KiB, then the seconds `check` took
    /usr/bin/time -f '%M %e' -o "$RUN/time.out" "$GATEWAY" --config "$1" check >/dev/null 2>&1
    cat "$RUN/time.out"
}

heap_peak() { # config file
    heaptrack -o "$RUN/heap" "$GATEWAY" --config "$1" check >/dev/null 2>&1
    heaptrack_print "$RUN"/heap.* 2>/dev/null | sed -n 's/^peak heap memory consumption: *//p'
    rm -f "$RUN"/heap.*
}

printf 'secret\n' >"$RUN/secret"
mkdir -p "$RUN/state"
machine_lines
write_config 0 "$RUN/empty.toml"
read -r base _ <<<"$(peak_rss_kib "$RUN/empty.toml")"
echo "check, no devices: peak RSS $((base / 1024)) MiB"
IFS=, read -ra counts <<<"$DEVICES"
for n in "${counts[@]}"; do
    write_config "$n" "$RUN/g.toml"
    bytes=$(stat -c %s "$RUN/g.toml")
    read -r rss secs <<<"$(peak_rss_kib "$RUN/g.toml")"
    line=$(printf '%s devices x %s fields: %s bytes of TOML, check peak RSS %s MiB (+%s MiB over no devices, %s bytes per byte of TOML) in %s s' \
        "$n" "$FIELDS" "$bytes" "$((rss / 1024))" "$(((rss - base) / 1024))" \
        "$(python3 -c "print(round(($rss - $base) * 1024 / $bytes, 1))")" "$secs")
    echo "$line"
    echo "  loader alone (examples/config-memory.rs): $("$HEAP" "$RUN/g.toml")"
    if [ -n "$HEAPTRACK" ] && command -v heaptrack >/dev/null; then
        peak=$(heap_peak "$RUN/g.toml")
        # heaptrack_print counts in powers of 1,000 (K, M, G).
        per=$(python3 -c "import sys; v = sys.argv[1]; m = {'B': 1, 'K': 1e3, 'M': 1e6, 'G': 1e9}; print(round(float(v[:-1]) * m[v[-1]] / $bytes, 1))" "$peak")
        echo "  heaptrack of check: peak heap $peak ($per bytes per byte of TOML)"
    fi
done
