# Shared by the bench scripts (sourced, not run): a run directory, cleanup by pid on every exit
# path, free loopback ports, a private Prosody, the release build and the machine description.
# The sourcing script sets `set -euo pipefail` and ROOT first.

# bench_init NAME: a fresh run directory in $RUN and the traps that stop what the script started.
# Pids go into the PIDS array; a driver that starts processes of its own lists their pids, one a
# line, in $RUN/*.pids, and those are stopped too.
bench_init() {
    RUN="$(mktemp -d "/tmp/xig-$1.XXXXXX")"
    PIDS=()
    trap 'exit 130' INT TERM
    # The load driver and its subshell end with the script (they are children of this shell).
    trap 'for j in $(jobs -p); do pkill -TERM -P "$j" 2>/dev/null || true; kill -TERM "$j" 2>/dev/null || true; done; bench_cleanup' EXIT
}

bench_cleanup() {
    set +e
    local pid all=("${PIDS[@]}")
    for f in "$RUN"/*.pids; do
        [ -f "$f" ] && mapfile -t -O "${#all[@]}" all <"$f"
    done
    for pid in "${all[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${all[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ -n "${KEEP_RUN:-}" ]; then echo "run directory kept: $RUN" >&2; else rm -rf "$RUN"; fi
}

need() {
    for bin in "$@"; do
        command -v "$bin" >/dev/null || { echo "$bin not found (scripts/install-deps.sh installs it)" >&2; exit 2; }
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listens on port $1" >&2
    return 1
}

# start_prosody USER...: a private Prosody on free loopback ports (C2S, COMP), host "localhost"
# with the given users (password = name), and the component DOMAIN with SECRET. mod_limits off
# (it throttles c2s to ~80 msg/s), Nagle off (a ~45 ms p99 floor). Sets PROSODY_PID.
start_prosody() {
    C2S=$(free_port); COMP=$(free_port)
    DOMAIN="bench.localhost"
    SECRET="$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
    printf %s "$SECRET" >"$RUN/component.secret"
    local root_user=false
    [ "$(id -u)" = 0 ] && root_user=true
    mkdir -p "$RUN/prosody/data" "$RUN/prosody/certs"
    cat >"$RUN/prosody/prosody.cfg.lua" <<EOF
pidfile = "$RUN/prosody/prosody.pid"
data_path = "$RUN/prosody/data"
certificates = "$RUN/prosody/certs"
run_as_root = $root_user
log = { { levels = { min = "warn" }, to = "file", filename = "$RUN/prosody/prosody.log" } }
interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { $C2S }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }
component_ports = { $COMP }
component_interfaces = { "127.0.0.1" }
network_settings = { nagle = false }
modules_enabled = { "roster"; "saslauth"; "disco"; "ping"; "posix" }
modules_disabled = { "s2s"; "limits"; "http"; "bosh"; "websocket"; "admin_telnet"; "proxy65"; "tls" }
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
storage = "internal"
VirtualHost "localhost"
    authentication = "internal_plain"
Component "$DOMAIN"
    component_secret = "$SECRET"
    component_conflict_resolve = "kick_old"
EOF
    for u in "$@"; do
        prosodyctl --config "$RUN/prosody/prosody.cfg.lua" register "$u" localhost "$u" >/dev/null
    done
    (cd "$RUN/prosody" && exec prosody --config "$RUN/prosody/prosody.cfg.lua" -F \
        >"$RUN/prosody/console.log" 2>&1) &
    PIDS+=($!)
    PROSODY_PID=$!
}

# The release binary, built if needed; sets GATEWAY.
build_gateway() {
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
    (cd "$ROOT" && cargo build --release --quiet --bin xmpp-iot-gateway)
    GATEWAY="$CARGO_TARGET_DIR/release/xmpp-iot-gateway"
}

machine_lines() {
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
    echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# cpu_s PID: the process's user + system CPU seconds so far.
cpu_s() {
    awk '{printf "%.2f s", ($14+$15)/'"$(getconf CLK_TCK)"'}' "/proc/$1/stat"
}
