#!/usr/bin/env bash
# End-to-end load bench: MQTT -> gateway -> Prosody -> an XMPP receiver, against the plain-message
# ceiling: the same readings sent by a c2s client as plain chat messages straight through the same
# Prosody to the same receiver ("raw").
#
#   bench/e2e.sh [--mode component|client] [--devices N] [--rates 1000] [--seconds 10]
#                [--flood 20000] [--floods 2] [--qos 0|1] [--format compact|full|text]
#                [--shapes N] [--out FILE]
#
# Starts a private Prosody (mod_limits off, Nagle off) and Mosquitto on free loopback ports, a
# release build of the gateway with its defaults (history on) and N MQTT devices of two fields
# (`{"temp": 21.5, "tag": "seq=N;ts=T"}`), `[publish] notify = ["sink@localhost"]`,
# `min_interval = "0s"`, then runs bench/e2e.py. For each rate it sends rate x seconds readings
# paced, then --floods times --flood readings flat out, each on the raw path and then through the
# gateway, and prints delivered msg/s, loss, the stanzas that carried them (a push that waited
# for the gateway's turn carries its device's next readings too, a body line each), latency
# p50/p99/max, the CPU Prosody spent per 1,000 readings on each path, the gateway's CPU per 1,000
# and its RSS peak, and the load average.
# --format sets the gateway's `[publish] format` (default: the gateway's default). --shapes N
# then sends N readings flat out for each of a few stanza shapes (a chat body, a headline body,
# plus XEP-0323 fields without flags, compact, full) through the raw client: what each part of a
# push costs the server, with nothing else different. The defaults are the bench of
# docs/performance.md. In component mode (the default) the gateway is
# one XEP-0114 stream; in client mode every device is a c2s session of the account gw@localhost
# (plaintext, which the gateway allows only on loopback) plus the account's own session.
# Everything it started is stopped (by pid) on exit. Needs prosody, mosquitto and python3
# (standard library only); c2s is plaintext, on loopback only.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
MODE=component
DEVICES=10
RATES="1000"
SECONDS_PER_RATE=10
FLOOD=20000
FLOODS=2
QOS=0
SHAPES=0
FORMAT=""
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --mode) MODE="$2"; shift 2 ;;
        --devices) DEVICES="$2"; shift 2 ;;
        --rates) RATES="$2"; shift 2 ;;
        --seconds) SECONDS_PER_RATE="$2"; shift 2 ;;
        --flood) FLOOD="$2"; shift 2 ;;
        --floods) FLOODS="$2"; shift 2 ;;
        --qos) QOS="$2"; shift 2 ;;
        --shapes) SHAPES="$2"; shift 2 ;;
        --format) FORMAT="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$MODE" in
    component|client) ;;
    *) echo "--mode is component or client, not $MODE" >&2; exit 2 ;;
esac

bench_require prosody prosodyctl mosquitto python3
bench_init e2e

C2S=$(free_port); COMP=$(free_port); MQTT=$(free_port)
DOMAIN="bench.localhost"
prosody_setup sink sender gw
prosody_start
mosquitto_setup
mosquitto_start
wait_port "$C2S"; wait_port "$COMP"; wait_port "$MQTT"

# ---- the gateway: release build, N devices on one MQTT fleet
gateway_build
NOTIFY_JID="sink@localhost" PUSH_FORMAT="$FORMAT" gateway_config_head bench "$MODE"
if [ "$MODE" = component ]; then PING_JID="d0@$DOMAIN"; else PING_JID="gw@localhost/d0"; fi
cat >>"$RUN/gateway.toml" <<EOF

[[device]]
fleet = [$(fleet_names d "$DEVICES")]
adapter = "broker"
topic = "bench/{id}"
  [[device.field]]
  name = "temp"
  type = "numeric"
  json = "/temp"
  [[device.field]]
  name = "tag"
  type = "string"
  json = "/tag"
EOF
gateway_start

{
    echo "xmpp-iot-gateway end-to-end bench, $(date -u '+%Y-%m-%d %H:%M UTC')"
    machine_lines
    echo "servers: $(package_versions prosody mosquitto)"
    if [ "$MODE" = component ]; then
        echo "gateway: release build, component mode, $DEVICES MQTT devices, notify with min_interval 0s, push format ${FORMAT:-default}"
    else
        echo "gateway: release build, client mode ($DEVICES device sessions + 1 account session, c2s without TLS on loopback), $DEVICES MQTT devices, notify with min_interval 0s"
    fi
    echo "publisher: MQTT 3.1.1 QoS $QOS; raw: a c2s client sending chat messages; receiver: one c2s session (sink@localhost); all on loopback, on the same CPUs"
    echo "uptime: $(uptime)"
    echo
    python3 "$ROOT/bench/e2e.py" --xmpp-port "$C2S" --mqtt-port "$MQTT" --ping-jid "$PING_JID" \
        --gateway-pid "$GATEWAY_PID" --server-pid "$PROSODY_PID" --receiver sink \
        --devices "$DEVICES" --rates "$RATES" --seconds "$SECONDS_PER_RATE" --flood "$FLOOD" \
        --floods "$FLOODS" --qos "$QOS" --shapes "$SHAPES"
    echo "uptime after the run: $(uptime)"
    echo
    echo "gateway binary: $(stat -c %s "$GATEWAY" | awk '{printf "%.1f MB", $1/1e6}') (release profile, stripped)"
    echo "gateway CPU total $(cpu_seconds "$GATEWAY_PID"); prosody $(cpu_seconds "$PROSODY_PID"); mosquitto $(cpu_seconds "$MOSQUITTO_PID")"
    if grep -q -E 'WARN|ERROR' "$RUN/gateway.log"; then
        echo "gateway warnings:"; grep -E 'WARN|ERROR' "$RUN/gateway.log" | head -5
    fi
} > >(if [ -n "$OUT" ]; then tee "$OUT"; else cat; fi) &
# In the background so that Ctrl-C / SIGTERM reach the trap at once (bash runs traps only
# between commands, and `wait` is one it interrupts).
wait $! || true
