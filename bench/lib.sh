# shellcheck shell=bash
# Shell functions shared by bench/e2e.sh, bench/scale.sh, bench/soak.sh and bench/config-memory.sh
# (sourced, not run): a run directory, free loopback ports, a private Prosody and Mosquitto that
# can be stopped and started again on the same ports and data, the release gateway and the head of
# its configuration, the machine description, and a trap that stops everything started, by pid.
#
# After `bench_init NAME`: RUN (the run directory), ROOT (the repository), PIDS (what cleanup
# stops). A driver that starts processes of its own lists their pids, one a line, in
# $RUN/*.pids, and cleanup stops those too. KEEP_RUN=1 in the environment keeps the run directory.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIDS=()

bench_require() {
    local bin
    for bin in "$@"; do
        command -v "$bin" >/dev/null || { echo "$bin not found (scripts/install-deps.sh installs it)" >&2; exit 2; }
    done
}

bench_cleanup() {
    set +e
    local pid f all=("${PIDS[@]}")
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
    PIDS=()
    if [ -n "${KEEP_RUN:-}" ]; then echo "run directory kept: $RUN" >&2; else rm -rf "$RUN"; fi
}

# Makes the run directory and installs the traps.
bench_init() {
    RUN="$(mktemp -d "/tmp/xig-$1.XXXXXX")"
    trap 'exit 130' INT TERM
    # Background jobs (load drivers and their subshells) end with the script.
    # shellcheck disable=SC2154  # j is the loop variable inside the trap string
    trap 'for j in $(jobs -p); do pkill -TERM -P "$j" 2>/dev/null || true; kill -TERM "$j" 2>/dev/null || true; done; bench_cleanup' EXIT
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

# Stops one process we started (TERM, then KILL after 5 s) and forgets its pid, so that cleanup
# never signals a pid the system has since given to someone else.
stop_pid() {
    local pid="$1" keep=() p
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# CPU seconds (user + system) of a process.
cpu_seconds() {
    awk '{printf "%.2f s", ($14+$15)/'"$(getconf CLK_TCK)"'}' "/proc/$1/stat"
}

# ---- Prosody: mod_limits off (it throttles c2s to ~80 msg/s), Nagle off (a ~45 ms p99 floor).
# Needs C2S, COMP, DOMAIN; writes the secret to $RUN/component.secret; registers user:user for
# each argument.
prosody_setup() {
    local root_user=false u
    [ "$(id -u)" = 0 ] && root_user=true
    SECRET="$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
    printf %s "$SECRET" >"$RUN/component.secret"
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
}

# Starts (or starts again) Prosody on its ports and data; sets PROSODY_PID.
prosody_start() {
    (cd "$RUN/prosody" && exec prosody --config "$RUN/prosody/prosody.cfg.lua" -F \
        >>"$RUN/prosody/console.log" 2>&1) &
    PROSODY_PID=$!
    PIDS+=("$PROSODY_PID")
}

# ---- Mosquitto on MQTT, a deep queue so that what is lost is lost by the gateway, not by the
# broker. Extra configuration lines as arguments.
mosquitto_setup() {
    mkdir -p "$RUN/mosquitto"
    {
        echo "listener $MQTT 127.0.0.1"
        echo "allow_anonymous true"
        echo "max_queued_messages 1000000"
        echo "log_dest file $RUN/mosquitto/mosquitto.log"
        printf '%s\n' "$@"
    } >"$RUN/mosquitto/mosquitto.conf"
    grep -q '^persistence ' "$RUN/mosquitto/mosquitto.conf" || echo "persistence false" >>"$RUN/mosquitto/mosquitto.conf"
}

# Starts (or starts again) Mosquitto; sets MOSQUITTO_PID.
mosquitto_start() {
    mosquitto -c "$RUN/mosquitto/mosquitto.conf" >/dev/null 2>&1 &
    MOSQUITTO_PID=$!
    PIDS+=("$MOSQUITTO_PID")
}

# Builds the release gateway; sets GATEWAY. GATEWAY_BIN in the environment names a binary to run
# instead (e.g. a copy of an earlier build, to compare two builds on the same machine).
gateway_build() {
    if [ -n "${GATEWAY_BIN:-}" ]; then
        GATEWAY="$GATEWAY_BIN"
        return
    fi
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
    (cd "$ROOT" && cargo build --release --quiet --bin xmpp-iot-gateway)
    GATEWAY="$CARGO_TARGET_DIR/release/xmpp-iot-gateway"
}

# gateway_config_head NAME [component|client]: writes $RUN/gateway.toml up to its devices: read
# access for @localhost, a headline for every change to NOTIFY_JID (receiver@localhost unless set),
# in PUSH_FORMAT (`[publish] format`) if set, the MQTT adapter `broker` on MQTT. Component mode
# (the default) is on COMP for DOMAIN; client mode logs in as gw@localhost on C2S without TLS
# (loopback only; prosody_setup must have registered gw).
gateway_config_head() {
    local xmpp format=""
    if [ -n "${PUSH_FORMAT:-}" ]; then format="format = \"$PUSH_FORMAT\""; fi
    if [ "${2:-component}" = client ]; then
        printf gw >"$RUN/gw.pass"
        xmpp="mode = \"client\"
jid = \"gw@localhost\"
password_file = \"$RUN/gw.pass\"
server = \"127.0.0.1:$C2S\"
tls = \"none\""
    else
        xmpp="mode = \"component\"
domain = \"$DOMAIN\"
server = \"127.0.0.1:$COMP\"
secret_file = \"$RUN/component.secret\""
    fi
    cat >"$RUN/gateway.toml" <<EOF
[gateway]
name = "$1"
state_dir = "$RUN/state"

[xmpp]
$xmpp

[access]
read = ["@localhost"]

[publish]
min_interval = "0s"
notify = ["${NOTIFY_JID:-receiver@localhost}"]
$format

[log]
level = "warn"

[[adapter]]
id = "broker"
type = "mqtt"
url = "mqtt://127.0.0.1:$MQTT"
EOF
}

# Quoted device names PREFIX0 .. PREFIX(N-1), for a `fleet = [...]`.
fleet_names() {
    python3 -c "print(', '.join(f'\"$1{i}\"' for i in range($2)))"
}

# Starts the gateway on $RUN/gateway.toml; sets GATEWAY_PID.
gateway_start() {
    "$GATEWAY" --config "$RUN/gateway.toml" run 2>>"$RUN/gateway.log" &
    GATEWAY_PID=$!
    PIDS+=("$GATEWAY_PID")
}

# The machine and its load, for the head of a report.
machine_lines() {
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
    echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# package_versions PACKAGE...: "prosody 0.12.3, mosquitto 2.0.11", from dpkg ("-" if unknown).
package_versions() {
    local p v line=""
    for p in "$@"; do
        v="$(dpkg-query -W -f '${Version}' "$p" 2>/dev/null)" || v=-
        line+="${line:+, }$p ${v:--}"
    done
    echo "$line"
}
