#!/usr/bin/env bash
# Soak: mixed load for a long time with the upstream restarting, to show that memory, file
# descriptors, threads and tasks stay flat.
#
#   bench/soak.sh [--duration 1h] [--restart-every 5m] [--rate 200] [--out-dir bench/results]
#
# Starts a private Prosody and Mosquitto on free loopback ports (as bench/e2e.sh) and a release
# build of the gateway (component mode, metrics endpoint on) with 15 steady and 5 flapping MQTT
# devices and 5 simulated ones (two of them with outages). bench/soak.py publishes --rate msg/s
# at QoS 1 over the MQTT devices, takes a flapping device offline for 10 s every 20 s, keeps two
# XMPP users subscribed (one gets a headline per change, the other asks for an XEP-0323 readout
# every 2 s and a chat `get` every 5 s), and samples the gateway's RSS, open fds, threads and
# runtime tasks every 10 s. Every --restart-every this script restarts Prosody, then next time
# Mosquitto (by pid, same ports, same data). Results: soak-samples.csv, soak-summary.txt and,
# with gnuplot (apt-get install gnuplot-nox), soak-rss.png in --out-dir. Durations: 90s, 4m, 1h.
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
DURATION=1h
RESTART_EVERY=5m
RATE=200
OUT_DIR="$ROOT/bench/results"
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) DURATION="$2"; shift 2 ;;
        --restart-every) RESTART_EVERY="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --out-dir) OUT_DIR="$2"; shift 2 ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done

# 90s, 4m, 1h, or plain seconds.
seconds() {
    case "$1" in
        *h) echo $(( ${1%h} * 3600 )) ;;
        *m) echo $(( ${1%m} * 60 )) ;;
        *s) echo "${1%s}" ;;
        *[!0-9]*|'') echo "not a duration: $1" >&2; exit 2 ;;
        *) echo "$1" ;;
    esac
}
DURATION_S=$(seconds "$DURATION")
RESTART_S=$(seconds "$RESTART_EVERY")

bench_require prosody prosodyctl mosquitto python3
command -v gnuplot >/dev/null || echo "gnuplot not found: no plot, only the CSV and summary (apt-get install gnuplot-nox)" >&2
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
bench_init soak

C2S=$(free_port); COMP=$(free_port); MQTT=$(free_port); METRICS=$(free_port)
DOMAIN="soak.localhost"
prosody_setup receiver watcher
prosody_start
# Persistence on: retained availability survives a broker restart, as on a real broker.
mosquitto_setup "persistence true" "persistence_location $RUN/mosquitto/" "autosave_interval 60"
mosquitto_start
wait_port "$C2S"; wait_port "$COMP"; wait_port "$MQTT"

gateway_build
gateway_config_head soak
cat >>"$RUN/gateway.toml" <<EOF

[metrics]
listen = "127.0.0.1:$METRICS"

[[adapter]]
id = "sim"
type = "simulated"
EOF
# PREFIX COUNT [a line more]: a fleet of MQTT devices on soak/<id> with one integer field, seq.
mqtt_fleet() {
    cat >>"$RUN/gateway.toml" <<EOF

[[device]]
fleet = [$(fleet_names "$1" "$2")]
adapter = "broker"
topic = "soak/{id}"
${3:-}
  [[device.field]]
  name = "seq"
  type = "integer"
  json = "/seq"
EOF
}
mqtt_fleet d 15
mqtt_fleet f 5 'availability_topic = "soak/{id}/status"'
for i in 0 1 2 3 4; do
    outage=""
    [ "$i" -lt 2 ] && outage=$'offline_every = "40s"\noffline_for = "8s"'
    cat >>"$RUN/gateway.toml" <<EOF

[[device]]
id = "s$i"
adapter = "sim"
poll = "1s"
$outage
  [[device.field]]
  name = "temperature"
  generator = "sine"
  min = 18.0
  max = 26.0
  period = "5m"
  [[device.field]]
  name = "humidity"
  generator = "random"
  min = 40.0
  max = 70.0
EOF
done
gateway_start
wait_port "$METRICS"

EVENTS="$RUN/events"
: >"$EVENTS"
HEADER="xmpp-iot-gateway soak, $(date -u '+%Y-%m-%d %H:%M UTC')
$(machine_lines)
servers: $(package_versions prosody mosquitto)
gateway: release build, component mode, 15 steady + 5 flapping MQTT devices ($RATE msg/s QoS 1 in total), 5 simulated (2 with outages), notify with min_interval 0s
upstream: Prosody and Mosquitto restarted alternately every $RESTART_EVERY"

python3 "$ROOT/bench/soak.py" --xmpp-port "$C2S" --mqtt-port "$MQTT" --metrics-port "$METRICS" \
    --domain "$DOMAIN" --gateway-pid "$GATEWAY_PID" --rate "$RATE" --duration "$DURATION_S" \
    --out-dir "$OUT_DIR" --events "$EVENTS" --header "$HEADER" &
DRIVER=$!

# Restarts, alternating, while the driver runs; none in the last half interval (at most 30 s),
# so that the last samples show the recovery. Sleeping a second at a time keeps Ctrl-C prompt.
next=$(( $(date +%s) + RESTART_S ))
last=$(( $(date +%s) + DURATION_S - (RESTART_S / 2 < 30 ? RESTART_S / 2 : 30) ))
which=prosody
while kill -0 "$DRIVER" 2>/dev/null; do
    sleep 1
    [ "$(date +%s)" -ge "$next" ] && [ "$next" -le "$last" ] || continue
    kill -0 "$DRIVER" 2>/dev/null || break
    echo "$(date +%s.%N) $which" >>"$EVENTS"
    if [ "$which" = prosody ]; then
        stop_pid "$PROSODY_PID"; prosody_start; wait_port "$C2S"; which=mosquitto
    else
        stop_pid "$MOSQUITTO_PID"; mosquitto_start; wait_port "$MQTT"; which=prosody
    fi
    echo "$(date -u +%H:%M:%S) restarted $(tail -n1 "$EVENTS" | cut -d' ' -f2)" >&2
    next=$(( next + RESTART_S ))
done
wait "$DRIVER"

{
    echo "gateway still running: $(kill -0 "$GATEWAY_PID" 2>/dev/null && echo yes || echo NO)"
    echo "gateway CPU total $(cpu_seconds "$GATEWAY_PID"); prosody $(cpu_seconds "$PROSODY_PID") since its last start; mosquitto $(cpu_seconds "$MOSQUITTO_PID") since its last start"
    echo "gateway log: $(grep -c ' WARN ' "$RUN/gateway.log" || true) warnings, $(grep -c ' ERROR ' "$RUN/gateway.log" || true) errors"
    grep -E ' (WARN|ERROR) ' "$RUN/gateway.log" | sed -E 's/^[^ ]+ +//' | cut -c1-160 | sort | uniq -c | sort -rn | head -8
} | tee -a "$OUT_DIR/soak-summary.txt"
