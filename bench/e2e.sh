#!/usr/bin/env bash
# End-to-end load bench: MQTT -> gateway -> Prosody -> an XMPP receiver, and the same traffic sent
# straight through Prosody (the ceiling), on loopback.
#
#   bench/e2e.sh [--mode component|client] [--devices N] [--rates 200,1000,5000] [--seconds 10]
#                [--flood 50000] [--out FILE]
#
# Starts a private Prosody (mod_limits off, Nagle off) and Mosquitto on free loopback ports, a
# release build of the gateway with N MQTT devices and `[publish] notify = [receiver]`,
# `min_interval = "0s"`, then runs bench/e2e.py, which publishes at each fixed rate for --seconds
# and then --flood messages flat out, each payload carrying its send time, and prints delivered
# msg/s, loss, latency p50/p99/max, gateway RSS and CPU seconds per 1,000 messages, next to the
# direct path through Prosody. In component mode (the default) the gateway is one XEP-0114 stream;
# in client mode every device is a c2s session of the account gw@localhost (plaintext, which the
# gateway allows only on loopback) plus the account's own session. Everything it started is
# stopped (by pid) on exit. Needs prosody, mosquitto and python3 (standard library only); c2s is
# plaintext, on loopback only.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODE=component
DEVICES=10
RATES="200,1000,5000"
SECONDS_PER_RATE=10
FLOOD=50000
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --mode) MODE="$2"; shift 2 ;;
        --devices) DEVICES="$2"; shift 2 ;;
        --rates) RATES="$2"; shift 2 ;;
        --seconds) SECONDS_PER_RATE="$2"; shift 2 ;;
        --flood) FLOOD="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$MODE" in
    component|client) ;;
    *) echo "--mode is component or client, not $MODE" >&2; exit 2 ;;
esac

# shellcheck source=bench/common.sh
. "$ROOT/bench/common.sh"
need prosody prosodyctl mosquitto python3
bench_init e2e
start_prosody receiver sender gw
MQTT=$(free_port)

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

# ---- the gateway: release build, N devices on one MQTT fleet
build_gateway
FLEET=$(python3 -c "print(', '.join(f'\"d{i}\"' for i in range($DEVICES)))")
if [ "$MODE" = component ]; then
    XMPP_CONFIG="mode = \"component\"
domain = \"$DOMAIN\"
server = \"127.0.0.1:$COMP\"
secret_file = \"$RUN/component.secret\""
    PING_JID="d0@$DOMAIN"
else
    printf gw >"$RUN/gw.pass"
    XMPP_CONFIG="mode = \"client\"
jid = \"gw@localhost\"
password_file = \"$RUN/gw.pass\"
server = \"127.0.0.1:$C2S\"
tls = \"none\""
    PING_JID="gw@localhost/d0"
fi
cat >"$RUN/gateway.toml" <<EOF
[gateway]
name = "bench"
state_dir = "$RUN/state"

[xmpp]
$XMPP_CONFIG

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
    machine_lines
    echo "servers: $(dpkg-query -W -f 'prosody ${Version}, mosquitto ' prosody 2>/dev/null)$(dpkg-query -W -f '${Version}' mosquitto 2>/dev/null)"
    if [ "$MODE" = component ]; then
        echo "gateway: release build, component mode, $DEVICES MQTT devices, notify with min_interval 0s"
    else
        echo "gateway: release build, client mode ($DEVICES device sessions + 1 account session, c2s without TLS on loopback), $DEVICES MQTT devices, notify with min_interval 0s"
    fi
    echo "publisher: MQTT 3.1.1 QoS 1; receiver: one c2s session; all on loopback, on the same CPUs"
    echo
    python3 "$ROOT/bench/e2e.py" --xmpp-port "$C2S" --mqtt-port "$MQTT" --ping-jid "$PING_JID" \
        --gateway-pid "$GATEWAY_PID" --devices "$DEVICES" --rates "$RATES" \
        --seconds "$SECONDS_PER_RATE" --flood "$FLOOD"
    echo
    echo "gateway binary: $(stat -c %s "$GATEWAY" | awk '{printf "%.1f MB", $1/1e6}') (release profile, stripped)"
    echo "gateway CPU total $(cpu_s "$GATEWAY_PID"); prosody $(cpu_s "$PROSODY_PID"); mosquitto $(cpu_s "$MOSQUITTO_PID")"
    if grep -q -E 'WARN|ERROR' "$RUN/gateway.log"; then
        echo "gateway warnings:"; grep -E 'WARN|ERROR' "$RUN/gateway.log" | head -5
    fi
} > >(if [ -n "$OUT" ]; then tee "$OUT"; else cat; fi) &
# In the background so that Ctrl-C / SIGTERM reach the trap at once (bash runs traps only
# between commands, and `wait` is one it interrupts).
wait $! || true
