#!/usr/bin/env bash
# Scale bench: many simulated devices and many Modbus points, component mode, on loopback.
#
#   bench/scale.sh [--devices 1000,10000] [--fields 10] [--poll 1s] [--subscribers 1] [--window 10]
#                  [--modbus 100x100 | --modbus 0] [--out FILE]
#
# Starts a private Prosody (mod_limits off) on free loopback ports and runs bench/scale.py with a
# release build of the gateway. For each device count: N simulated devices of --fields fields read
# every --poll, every subscriber subscribed to every device (written into the gateway's store
# between a setup start and the measured start), and prints the time from "component connected"
# until every subscriber has every device's available presence, then CPU % and RSS over --window
# seconds.
# Then DEVICESxPOINTS Modbus holding registers at 1 s against the pymodbus simulator
# (tests/fixtures/modbus_server.py, from .venv-test) over Modbus TCP: CPU %, RSS, requests per
# poll cycle planned and served. Everything it started is stopped (by pid) on exit. Needs prosody,
# python3 and, for the Modbus part, .venv-test with pymodbus (scripts/install-deps.sh).
set -euo pipefail

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
DEVICES="1000,10000"
FIELDS=10
POLL=1s
SUBSCRIBERS=1
WINDOW=10
MODBUS="100x100"
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --devices) DEVICES="$2"; shift 2 ;;
        --fields) FIELDS="$2"; shift 2 ;;
        --poll) POLL="$2"; shift 2 ;;
        --subscribers) SUBSCRIBERS="$2"; shift 2 ;;
        --window) WINDOW="$2"; shift 2 ;;
        --modbus) MODBUS="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$MODBUS" in
    0) MODBUS_DEVICES=0; MODBUS_POINTS=0 ;;
    *x*) MODBUS_DEVICES="${MODBUS%x*}"; MODBUS_POINTS="${MODBUS#*x}" ;;
    *) echo "--modbus is DEVICESxPOINTS (at most 247 devices, 200 points) or 0" >&2; exit 2 ;;
esac

bench_require prosody prosodyctl python3
VENV_PYTHON="$ROOT/.venv-test/bin/python"
if [ "$MODBUS_DEVICES" != 0 ] && [ ! -x "$VENV_PYTHON" ]; then
    echo "$VENV_PYTHON is missing (scripts/install-deps.sh makes it), or run with --modbus 0" >&2
    exit 2
fi
bench_init scale
USERS=()
for i in $(seq 0 $((SUBSCRIBERS - 1))); do USERS+=("sub$i"); done
C2S=$(free_port); COMP=$(free_port); MODBUS_PORT=$(free_port)
DOMAIN="bench.localhost"
prosody_setup "${USERS[@]}"
prosody_start
wait_port "$C2S"; wait_port "$COMP"
gateway_build

{
    echo "xmpp-iot-gateway scale bench, $(date -u '+%Y-%m-%d %H:%M UTC')"
    machine_lines
    echo "servers: $(package_versions prosody), pymodbus $("$VENV_PYTHON" -c 'import pymodbus; print(pymodbus.__version__)' 2>/dev/null || echo -)"
    echo "gateway: release build, $(stat -c %s "$GATEWAY" | awk '{printf "%.1f MB", $1/1e6}'); subscribers: c2s sessions; all on loopback, on the same CPUs"
    echo
    python3 "$ROOT/bench/scale.py" --gateway "$GATEWAY" --run "$RUN" --xmpp-port "$C2S" \
        --comp-port "$COMP" --domain "$DOMAIN" --secret-file "$RUN/component.secret" --prosody-pid "$PROSODY_PID" \
        --devices "$DEVICES" --fields "$FIELDS" --poll "$POLL" --subscribers "$SUBSCRIBERS" --window "$WINDOW" \
        --modbus-devices "$MODBUS_DEVICES" --modbus-points "$MODBUS_POINTS" --modbus-port "$MODBUS_PORT" \
        --python "$VENV_PYTHON" --modbus-server "$ROOT/tests/fixtures/modbus_server.py"
    echo
    echo "prosody CPU total $(cpu_seconds "$PROSODY_PID")"
} > >(if [ -n "$OUT" ]; then tee "$OUT"; else cat; fi) &
# In the background so that Ctrl-C / SIGTERM reach the trap at once (bash runs traps only
# between commands, and `wait` is one it interrupts).
rc=0
wait $! || rc=$?
exit $rc
