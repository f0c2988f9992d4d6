#!/usr/bin/env bash
# End-to-end load bench: MQTT -> gateway (component mode) -> Prosody -> an XMPP receiver, and the
# same traffic sent straight through Prosody (the ceiling), on loopback.
#
#   bench/e2e.sh [--devices N] [--rates 200,1000,5000] [--seconds 10] [--flood 50000] [--out FILE]
#
# Starts a private Prosody (mod_limits off, Nagle off) and Mosquitto on free loopback ports, a
# release build of the gateway with N MQTT devices and `[publish] notify = [receiver]`,
# `min_interval = "0s"`, then runs bench/e2e.py, which publishes at each fixed rate for --seconds
# and then --flood messages flat out, each payload carrying its send time, and prints delivered
# msg/s, loss, latency p50/p99/max, gateway RSS and CPU seconds per 1,000 messages, next to the
# direct path through Prosody. Everything it started is stopped (by pid) on exit. Needs prosody,
# mosquitto and python3 (standard library only); c2s is plaintext, on loopback only.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEVICES=10
RATES="200,1000,5000"
SECONDS_PER_RATE=10
FLOOD=50000
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --devices) DEVICES="$2"; shift 2 ;;
        --rates) RATES="$2"; shift 2 ;;
        --seconds) SECONDS_PER_RATE="$2"; shift 2 ;;
        --flood) FLOOD="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

for bin in prosody prosodyctl mosquitto python3; do
    command -v "$bin" >/dev/null || { echo "$bin not found (scripts/install-deps.sh installs it)" >&2; exit 2; }
done

RUN="$(mktemp -d /tmp/xig-e2e.XXXXXX)"
PIDS=()
cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    if [ -n "${KEEP_RUN:-}" ]; then echo "run directory kept: $RUN" >&2; else rm -rf "$RUN"; fi
}
trap 'exit 130' INT TERM
# The load driver and its subshell end with the script (they are children of this shell).
trap 'for j in $(jobs -p); do pkill -TERM -P "$j" 2>/dev/null || true; kill -TERM "$j" 2>/dev/null || true; done; cleanup' EXIT

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

C2S=$(free_port); COMP=$(free_port); MQTT=$(free_port)
DOMAIN="bench.localhost"
SECRET="$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')"
printf %s "$SECRET" >"$RUN/component.secret"
ROOT_USER=false; [ "$(id -u)" = 0 ] && ROOT_USER=true

# ---- Prosody: mod_limits off (it throttles c2s to ~80 msg/s), Nagle off (a ~45 ms p99 floor)
mkdir -p "$RUN/prosody/data" "$RUN/prosody/certs"
cat >"$RUN/prosody/prosody.cfg.lua" <<EOF
pidfile = "$RUN/prosody/prosody.pid"
data_path = "$RUN/prosody/data"
certificates = "$RUN/prosody/certs"
run_as_root = $ROOT_USER
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
for u in receiver sender; do
    prosodyctl --config "$RUN/prosody/prosody.cfg.lua" register "$u" localhost "$u" >/dev/null
done
(cd "$RUN/prosody" && exec prosody --config "$RUN/prosody/prosody.cfg.lua" -F \
    >"$RUN/prosody/console.log" 2>&1) &
PIDS+=($!)
PROSODY_PID=$!

# ---- Mosquitto: a deep queue, so that what is lost is lost by the gateway, not by the broker
mkdir -p "$RUN/mosquitto"
cat >"$RUN/mosquitto/mosquitto.conf" <<EOF
listener $MQTT 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000000
log_dest file $RUN/mosquitto/mosquitto.log
EOF
mosquitto -c "$RUN/mosquitto/mosquitto.conf" >/dev/null 2>&1 &
PIDS+=($!)
MOSQUITTO_PID=$!
wait_port "$C2S"; wait_port "$COMP"; wait_port "$MQTT"

# ---- the gateway: release build, component mode, N devices on one MQTT fleet
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
(cd "$ROOT" && cargo build --release --quiet --bin xmpp-iot-gateway)
GATEWAY="$CARGO_TARGET_DIR/release/xmpp-iot-gateway"
FLEET=$(python3 -c "print(', '.join(f'\"d{i}\"' for i in range($DEVICES)))")
cat >"$RUN/gateway.toml" <<EOF
[gateway]
name = "bench"
state_dir = "$RUN/state"

[xmpp]
mode = "component"
domain = "$DOMAIN"
server = "127.0.0.1:$COMP"
secret_file = "$RUN/component.secret"

[access]
read = ["@localhost"]

[publish]
min_interval = "0s"
notify = ["receiver@localhost"]

[log]
level = "warn"

[[adapter]]
id = "broker"
type = "mqtt"
url = "mqtt://127.0.0.1:$MQTT"

[[device]]
fleet = [$FLEET]
adapter = "broker"
topic = "bench/{id}"
  [[device.field]]
  name = "sent"
  type = "integer"
  json = "/sent"
  [[device.field]]
  name = "seq"
  type = "integer"
  json = "/seq"
EOF
"$GATEWAY" --config "$RUN/gateway.toml" run 2>"$RUN/gateway.log" &
PIDS+=($!)
GATEWAY_PID=$!

{
    echo "xmpp-iot-gateway end-to-end bench, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(awk '/MemTotal/ {printf "%.1f GiB RAM", $2/1048576}' /proc/meminfo)"
    echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "servers: $(dpkg-query -W -f 'prosody ${Version}, mosquitto ' prosody 2>/dev/null)$(dpkg-query -W -f '${Version}' mosquitto 2>/dev/null)"
    echo "gateway: release build, component mode, $DEVICES MQTT devices, notify with min_interval 0s"
    echo "publisher: MQTT 3.1.1 QoS 1; receiver: one c2s session; all on loopback, on the same CPUs"
    echo
    python3 "$ROOT/bench/e2e.py" --xmpp-port "$C2S" --mqtt-port "$MQTT" --component "$DOMAIN" \
        --gateway-pid "$GATEWAY_PID" --devices "$DEVICES" --rates "$RATES" \
        --seconds "$SECONDS_PER_RATE" --flood "$FLOOD"
    echo
    echo "gateway binary: $(stat -c %s "$GATEWAY" | awk '{printf "%.1f MB", $1/1e6}') (release profile, stripped)"
    echo "gateway CPU total $(awk '{printf "%.2f s", ($14+$15)/'"$(getconf CLK_TCK)"'}' /proc/$GATEWAY_PID/stat); prosody $(awk '{printf "%.2f s", ($14+$15)/'"$(getconf CLK_TCK)"'}' /proc/$PROSODY_PID/stat); mosquitto $(awk '{printf "%.2f s", ($14+$15)/'"$(getconf CLK_TCK)"'}' /proc/$MOSQUITTO_PID/stat)"
    if grep -q -E 'WARN|ERROR' "$RUN/gateway.log"; then
        echo "gateway warnings:"; grep -E 'WARN|ERROR' "$RUN/gateway.log" | head -5
    fi
} > >(if [ -n "$OUT" ]; then tee "$OUT"; else cat; fi) &
# In the background so that Ctrl-C / SIGTERM reach the trap at once (bash runs traps only
# between commands, and `wait` is one it interrupts).
wait $! || true
