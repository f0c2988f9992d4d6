#!/usr/bin/env bash
# The demo: a private Prosody and Mosquitto, the gateway running the repo's gateway.toml, and a
# viewer (scripts/demo_viewer.py, slixmpp) logged in as alice@localhost that lists the devices,
# subscribes to them, prints their presence as it changes, reads every device once (XEP-0323) and
# asks one device `get` over chat.
#
# Usage: scripts/demo.sh           run until Ctrl-C
#        scripts/demo.sh --once    stop after the first readout of every device; exit 0 if every
#                                  device answered, 1 otherwise (what CI can run)
#
# Everything lives in demo-run/ (git-ignored): certificates, configs, logs, the component secret,
# the gateway's state, the viewer's venv. Fixed loopback ports: c2s 15222, component 5347 (what
# gateway.toml names), MQTT 11883. Ctrl-C stops everything this script started, by pid.
#
# Environment: GATEWAY_BIN=path     run this binary instead of building the gateway
#              GATEWAY_CONFIG=path  another config than ./gateway.toml
#              RUST_LOG             gateway log filter (default: info)
set -euo pipefail

once=0
for arg in "$@"; do
    case "$arg" in
        --once) once=1 ;;
        -h | --help)
            sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "demo.sh: unknown argument '$arg' (try --help)" >&2
            exit 2
            ;;
    esac
done

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
run="$root/demo-run"
config="${GATEWAY_CONFIG:-$root/gateway.toml}"
domain="sensors.localhost"
c2s_port=15222
component_port=5347
mqtt_port=11883

if [ -t 2 ]; then bold=$'\033[1m' red=$'\033[1;31m' plain=$'\033[0m'; else bold='' red='' plain=''; fi
say() { printf '%s[demo]%s %s\n' "$bold" "$plain" "$*" >&2; }
die() {
    printf '%s[demo] error:%s %s\n' "$red" "$plain" "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Processes we start: "name pid" lines, also written to demo-run/pids so that a later run can
# clean up after a demo that was killed with SIGKILL.
started=()

# shellcheck disable=SC2317  # (called from the EXIT trap)
stop_pid() { # name pid: SIGTERM, up to 8 s, then SIGKILL; reaps our children
    local name=$1 pid=$2 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 80; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name (pid $pid) ignored SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # (the EXIT trap)
cleanup() {
    local status=$? i entry
    trap - EXIT INT TERM
    if [ "${#started[@]}" -gt 0 ]; then
        say "stopping: ${started[*]}"
        # newest first: feeder, gateway, mosquitto, prosody
        for ((i = ${#started[@]} - 1; i >= 0; i--)); do
            entry=${started[$i]}
            stop_pid "${entry%%:*}" "${entry##*:}"
        done
    fi
    rm -f "$run/pids"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

proc_start_time() { # pid -> its start time in clock ticks (field 22 of /proc/PID/stat)
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20
}

remember() { # name pid
    started+=("$1:$2")
    printf '%s %s %s\n' "$1" "$2" "$(proc_start_time "$2")" >>"$run/pids"
}

port_busy() { # is something listening on 127.0.0.1:PORT?
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_port() { # name port pid: until the port accepts, the process dies, or 30 s pass
    local name=$1 port=$2 pid=$3 i
    for ((i = 0; i < 300; i++)); do
        port_busy "$port" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# ---------------------------------------------------------------------------------------------
say "checking packages"
bash "$root/scripts/install-deps.sh" --demo
[ -f "$config" ] || die "no gateway config at $config"

mkdir -p "$run"
chmod 700 "$run"

# A previous demo that was killed without cleaning up: stop what it started (a pid counts only
# if its process start time is still the recorded one, so a reused pid is left alone).
if [ -f "$run/pids" ]; then
    while read -r name pid start; do
        if [ -n "${start:-}" ] && [ "$(proc_start_time "$pid")" = "$start" ]; then
            say "stopping $name (pid $pid) left over from an earlier demo"
            kill -TERM "$pid" 2>/dev/null || true
            for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done <"$run/pids"
    rm -f "$run/pids"
fi

for spec in "component:$component_port" "c2s:$c2s_port" "MQTT:$mqtt_port"; do
    port=${spec##*:}
    if port_busy "$port"; then
        if [ "$port" = "$component_port" ]; then
            die "127.0.0.1:$component_port (the XEP-0114 component port gateway.toml uses) is already taken.
       Another XMPP server (e.g. a system Prosody with a component) or an earlier demo holds it;
       see: ss -ltnp 'sport = :$component_port'. Free it and run again."
        fi
        die "127.0.0.1:$port (${spec%%:*}) is already taken (ss -ltnp 'sport = :$port'); free it and run again."
    fi
done

# ---------------------------------------------------------------------------------------------
say "generating a CA and a server certificate for localhost and $domain"
certs="$run/certs"
rm -rf "$certs" "$run/ca"
mkdir -p "$certs" "$run/ca"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$run/ca/ca.key" -out "$run/ca.pem" -days 30 -subj "/CN=xmpp-iot-gateway demo CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    >/dev/null 2>&1 || die "openssl could not make the CA"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$certs/localhost.key" -out "$run/ca/leaf.csr" -subj "/CN=localhost" \
    >/dev/null 2>&1 || die "openssl could not make the server key"
cat >"$run/ca/leaf.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,DNS:$domain,DNS:rooms.localhost,DNS:pubsub.localhost,IP:127.0.0.1
EOF
openssl x509 -req -in "$run/ca/leaf.csr" -CA "$run/ca.pem" -CAkey "$run/ca/ca.key" \
    -set_serial "0x$(openssl rand -hex 12)" -days 30 -extfile "$run/ca/leaf.ext" \
    -out "$certs/localhost.crt" >/dev/null 2>&1 || die "openssl could not sign the server certificate"

say "writing a fresh component secret to demo-run/component.secret"
(umask 077 && openssl rand -hex 24 >"$run/component.secret")
chmod 600 "$run/component.secret"
secret="$(cat "$run/component.secret")"

# ---------------------------------------------------------------------------------------------
say "starting Prosody (c2s 127.0.0.1:$c2s_port, component $domain on 127.0.0.1:$component_port)"
rm -rf "$run/prosody-data"
mkdir -p "$run/prosody-data"
if [ "$(id -u)" -eq 0 ]; then as_root=true; else as_root=false; fi
(
    umask 077
    cat >"$run/prosody.cfg.lua" <<EOF
-- Written by scripts/demo.sh; regenerated on every run.
pidfile = "$run/prosody.pid"
data_path = "$run/prosody-data"
certificates = "$certs"
run_as_root = $as_root
log = { info = "$run/prosody.log"; error = "$run/prosody.err" }

interfaces = { "127.0.0.1" }
local_interfaces = { "127.0.0.1" }
c2s_ports = { $c2s_port }
c2s_interfaces = { "127.0.0.1" }
c2s_direct_tls_ports = { }
legacy_ssl_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }
component_ports = { $component_port }
component_interfaces = { "127.0.0.1" }

modules_enabled = {
    "roster"; "saslauth"; "tls"; "disco"; "ping"; "time"; "version"; "uptime";
    "smacks"; "carbons"; "private"; "blocklist"; "pep"; "posix";
}
modules_disabled = { "s2s"; "limits"; "http"; "bosh"; "websocket"; "admin_telnet"; "proxy65" }

c2s_require_encryption = true
ssl = { certificate = "$certs/localhost.crt"; key = "$certs/localhost.key" }
authentication = "internal_hashed"

VirtualHost "localhost"

Component "$domain"
    name = "xmpp-iot-gateway demo"
    component_secret = "$secret"
    component_conflict_resolve = "kick_old"

Component "rooms.localhost" "muc"

Component "pubsub.localhost" "pubsub"
    admins = { "$domain" }
EOF
)
prosodyctl --config "$run/prosody.cfg.lua" register alice localhost alice >"$run/prosodyctl.log" 2>&1 ||
    die "prosodyctl register alice failed: $(cat "$run/prosodyctl.log")"
prosody --config "$run/prosody.cfg.lua" -F >"$run/prosody.console" 2>&1 &
remember prosody $!
prosody_pid=$!
if ! wait_port prosody "$c2s_port" "$prosody_pid" ||
    ! wait_port prosody "$component_port" "$prosody_pid"; then
    die "Prosody did not come up; see $run/prosody.console and $run/prosody.log:
$(tail -n 20 "$run/prosody.console" "$run/prosody.log" 2>/dev/null)"
fi

# ---------------------------------------------------------------------------------------------
say "starting Mosquitto on 127.0.0.1:$mqtt_port"
cat >"$run/mosquitto.conf" <<EOF
# Written by scripts/demo.sh.
listener $mqtt_port 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
EOF
mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
"$mosquitto_bin" -c "$run/mosquitto.conf" >"$run/mosquitto.log" 2>&1 &
remember mosquitto $!
wait_port mosquitto "$mqtt_port" "$!" ||
    die "Mosquitto did not come up; see $run/mosquitto.log:
$(tail -n 20 "$run/mosquitto.log")"

# ---------------------------------------------------------------------------------------------
say "preparing the viewer's Python venv (demo-run/venv, slixmpp)"
venv="$run/venv"
if ! "$venv/bin/python" -c 'import slixmpp' >/dev/null 2>&1; then
    rm -rf "$venv"
    python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'slixmpp>=1.8,<2' ||
        die "pip install slixmpp failed"
fi

# Sample data for the MQTT devices of the config (the feeder publishes only to our broker).
cat >"$run/mqtt_feeder.py" <<'PYEOF'
"""Plays the MQTT devices named in gateway.toml for the demo (written by scripts/demo.sh).

For every [[device]] on an mqtt adapter whose broker is this demo's (127.0.0.1:PORT), publishes
a retained sample state every 3 s on its `topic`: a JSON object built from each field's `json`
pointer (or the bare value when the field has no pointer), `online` on its `availability_topic`,
and applies `{"field": value}` writes received on its `command_topic` (then re-publishes)."""
import json, math, signal, subprocess, sys, threading, time, tomllib
from urllib.parse import urlparse

config_path, port = sys.argv[1], int(sys.argv[2])
with open(config_path, "rb") as f:
    cfg = tomllib.load(f)
brokers = {a["id"]: a for a in cfg.get("adapter", []) if a.get("type") == "mqtt"}

def ours(adapter):
    u = urlparse(adapter.get("url", ""))
    return u.hostname in ("127.0.0.1", "localhost") and (u.port or 1883) == port

devices = [d for d in cfg.get("device", [])
           if d.get("adapter") in brokers and ours(brokers[d["adapter"]]) and d.get("topic")]
if not devices:
    print("feeder: no MQTT devices on 127.0.0.1:%d in the config; nothing to do" % port, flush=True)
    sys.exit(0)

lock = threading.Lock()
state = {d["id"]: {} for d in devices}  # field name -> value set by a command

def sample(dev_index, field, t):
    kind = field.get("type", "numeric")
    if kind == "boolean":
        return int(t / 30 + dev_index) % 2 == 0
    if kind == "integer":
        return int(t / 3) % 100
    if kind == "string":
        return "ok"
    lo, hi = field.get("min", 15.0 + 5 * dev_index), field.get("max", 25.0 + 5 * dev_index)
    return round(lo + (hi - lo) * (0.5 + 0.5 * math.sin(t / 20 + dev_index)), 1)

def payload(i, dev, t):
    doc = None
    for field in dev.get("field", []):
        value = state[dev["id"]].get(field["name"], sample(i, field, t))
        pointer = field.get("json")
        if not pointer:
            doc = value
            continue
        if not isinstance(doc, dict):
            doc = {}
        node, parts = doc, [p.replace("~1", "/").replace("~0", "~") for p in pointer.strip("/").split("/")]
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return json.dumps(doc)

def pub(topic, message):
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-r",
                    "-t", topic, "-m", message], check=False)

def publish_all():
    t = time.time()
    with lock:
        for i, dev in enumerate(devices):
            pub(dev["topic"], payload(i, dev, t))

def listen_commands():
    cmds = {d["command_topic"]: d for d in devices if d.get("command_topic")}
    if not cmds:
        return
    args = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-v"]
    for topic in cmds:
        args += ["-t", topic]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    children.append(proc)
    for line in proc.stdout:
        topic, _, body = line.rstrip("\n").partition(" ")
        dev = cmds.get(topic)
        if dev is None:
            continue
        try:
            change = json.loads(body)
        except ValueError:
            writable = [f["name"] for f in dev.get("field", []) if f.get("writable")]
            change = {writable[0]: body} if len(writable) == 1 else {}
        if isinstance(change, dict):
            with lock:
                state[dev["id"]].update(change)
            print("feeder: %s <- %s" % (dev["id"], body), flush=True)
            publish_all()

children = []  # mosquitto_sub, stopped with us


def stop(*_):
    for child in children:
        child.terminate()
        try:
            child.wait(timeout=2)
        except subprocess.TimeoutExpired:
            child.kill()
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
for dev in devices:
    if dev.get("availability_topic"):
        pub(dev["availability_topic"], "online")
print("feeder: playing %s" % ", ".join(d["id"] for d in devices), flush=True)
threading.Thread(target=listen_commands, daemon=True).start()
while True:
    publish_all()
    time.sleep(3)
PYEOF
"$venv/bin/python" "$run/mqtt_feeder.py" "$config" "$mqtt_port" >"$run/feeder.log" 2>&1 &
remember feeder $!

# ---------------------------------------------------------------------------------------------
if [ -n "${GATEWAY_BIN:-}" ]; then
    gateway_bin="$GATEWAY_BIN"
else
    say "building the gateway (cargo build)"
    cargo build --bin xmpp-iot-gateway || die "cargo build failed"
    gateway_bin="${CARGO_TARGET_DIR:-$root/target}/debug/xmpp-iot-gateway"
    case "$gateway_bin" in /*) ;; *) gateway_bin="$root/$gateway_bin" ;; esac
fi
[ -x "$gateway_bin" ] || die "gateway binary $gateway_bin not found"

say "starting the gateway: $gateway_bin --config $config run (log: demo-run/gateway.log)"
mkdir -p "$run/state"
RUST_LOG="${RUST_LOG:-info}" "$gateway_bin" --config "$config" run \
    >"$run/gateway.stdout" 2>"$run/gateway.log" &
gateway_pid=$!
remember gateway "$gateway_pid"
sleep 0.5
kill -0 "$gateway_pid" 2>/dev/null || die "the gateway exited at once; demo-run/gateway.log says:
$(tail -n 30 "$run/gateway.log")"

# ---------------------------------------------------------------------------------------------
viewer_args=(--jid alice@localhost --password alice --server "127.0.0.1:$c2s_port"
    --ca "$run/ca.pem" --gateway "$domain")
if [ "$once" = 1 ]; then
    viewer_args+=(--once)
    say "running the viewer once (alice@localhost)"
else
    say "running the viewer as alice@localhost; Ctrl-C stops everything"
fi
set +e
"$venv/bin/python" "$root/scripts/demo_viewer.py" "${viewer_args[@]}"
status=$?
set -e
if [ "$status" -ne 0 ] && [ "$status" -ne 130 ]; then
    say "viewer exited with $status; last lines of demo-run/gateway.log:"
    tail -n 30 "$run/gateway.log" >&2 || true
    if ! kill -0 "$gateway_pid" 2>/dev/null; then say "(the gateway is no longer running)"; fi
fi
exit "$status"
