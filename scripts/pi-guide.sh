#!/usr/bin/env bash
# Runs the Raspberry Pi guide's "First install, step by step" (deploy/raspberry-pi.md) on this
# machine, as written, and fails unless its step 9 (talking to the self-test device) and step 10
# (the CPU temperature over MQTT) answer.
#
# The commands are taken from the guide itself: every fenced block of that section, in order.
# Each block is recognised by its first line and either run, written to the file the guide names,
# or skipped for a stated reason (the copy to the Pi, Let's Encrypt); a block this script does
# not know fails the run, so the guide and the script cannot drift apart.
#
# Everything happens under a private root (pi-guide-run/, git-ignored): the guide's /etc, /usr,
# /var and /sys paths and $HOME are moved there, and the system tools the guide calls are
# stand-ins on PATH (pi-guide-run/shim/): `sudo` runs the command, `apt install` checks that the
# package is installed and installs the gateway the way its .deb would (binary, configuration,
# documentation), `systemctl` starts and stops private Prosody, Mosquitto and gateway processes
# (start returns once the gateway reports ready, as with Type=notify), `journalctl` shows the
# gateway's log, `prosodyctl` uses the private Prosody configuration and types the account's
# password. The .deb itself is not built: a release build for packaging would double CI time,
# and tests/it/deploy.rs checks the package's metadata, unit and file list.
#
# Usage: scripts/pi-guide.sh   (GATEWAY_BIN=path: the binary to install; default: a debug build)
# Needs prosody, mosquitto, mosquitto-clients, openssl, socat (scripts/install-deps.sh) and the
# ports 5222, 5347 and 1883 on 127.0.0.1, which the guide uses.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
guide="$repo/deploy/raspberry-pi.md"
root="$repo/pi-guide-run"

say() { printf '[pi-guide] %s\n' "$*" >&2; }
die() {
    printf '[pi-guide] error: %s\n' "$*" >&2
    exit 1
}

for port in 5222 5347 1883; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "127.0.0.1:$port is taken; the guide's servers listen there (ss -ltnp 'sport = :$port')"
    fi
done

# ---------------------------------------------------------------------------------------------
# The gateway binary the "package" installs.
bin="${GATEWAY_BIN:-}"
if [ -z "$bin" ]; then
    say "building the gateway"
    (cd "$repo" && cargo build --quiet --bin xmpp-iot-gateway)
    bin="$repo/target/debug/xmpp-iot-gateway"
fi
[ -x "$bin" ] || die "no gateway binary at $bin"

rm -rf "$root"
mkdir -p "$root"/{shim,home/pi,etc/prosody/conf.d,etc/prosody/certs,var/lib/prosody,run,usr/bin,usr/local/bin}
mkdir -p "$root/sys/class/thermal/thermal_zone0"
# The Pi's CPU temperature, in millidegrees as the kernel writes it.
echo 48312 >"$root/sys/class/thermal/thermal_zone0/temp"
: >"$root/pids"

# Processes the stand-ins start are listed in pids ("name pid"); stopped newest first on exit.
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [ -s "$root/pids" ]; then
        tac "$root/pids" | while read -r name pid; do
            kill -TERM "$pid" 2>/dev/null || continue
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -KILL "$pid" 2>/dev/null || true
            say "stopped $name (pid $pid)"
        done
    fi
    if [ "$status" -ne 0 ] && [ -f "$root/gateway.log" ]; then
        say "the gateway's log ends with:"
        tail -n 20 "$root/gateway.log" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The Debian package's prosody.cfg.lua, reduced to a private copy: same ports, its data and
# certificates under the private root, and the guide's conf.d included.
if [ "$(id -u)" -eq 0 ]; then as_root=true; else as_root=false; fi
cat >"$root/etc/prosody/prosody.cfg.lua" <<EOF
-- A private stand-in for /etc/prosody/prosody.cfg.lua, written by scripts/pi-guide.sh.
pidfile = "$root/run/prosody.pid"
data_path = "$root/var/lib/prosody"
certificates = "certs"
run_as_root = $as_root
log = { info = "$root/prosody.log"; error = "$root/prosody.err" }
interfaces = { "127.0.0.1" }
c2s_ports = { 5222 }
c2s_direct_tls_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }
component_ports = { 5347 }
component_interfaces = { "127.0.0.1" }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "posix" }
modules_disabled = { "s2s"; "limits"; "http"; "bosh"; "websocket"; "admin_telnet" }
c2s_require_encryption = true
authentication = "internal_hashed"
Include "conf.d/*.cfg.lua"
EOF

# ---------------------------------------------------------------------------------------------
# Stand-ins for the system tools. They share these settings through the environment.
export PI_GUIDE_ROOT="$root" PI_GUIDE_BIN="$bin" PI_GUIDE_REPO="$repo"
export PI_GUIDE_PASSWORD="your password" # what step 9 writes to ~/.xmpp-pass

shim() { # name, body: a stand-in script on PATH
    printf '#!/usr/bin/env bash\nset -euo pipefail\nroot="$PI_GUIDE_ROOT"\n%s\n' "$2" >"$root/shim/$1"
    chmod 755 "$root/shim/$1"
}

shim sudo 'exec "$@"'
shim sudoedit 'echo "sudoedit: the script edits the file itself" >&2; exit 1'

shim apt '
[ "${1:-}" = install ] || { echo "apt stand-in: only install" >&2; exit 1; }
shift
for p in "$@"; do
    case "$p" in
        -y) ;;
        ./xmpp-iot-gateway_*.deb)
            # What the package installs (Cargo.toml, [package.metadata.deb] assets).
            install -m 755 "$PI_GUIDE_BIN" "$root/usr/bin/xmpp-iot-gateway"
            install -D -m 644 "$PI_GUIDE_REPO/deploy/gateway.toml" "$root/etc/xmpp-iot-gateway/gateway.toml"
            install -D -m 644 "$PI_GUIDE_REPO/deploy/gateway.example.toml" \
                "$root/usr/share/doc/xmpp-iot-gateway/examples/gateway.example.toml"
            install -D -m 644 "$PI_GUIDE_REPO/docs/configuration.md" \
                "$root/usr/share/doc/xmpp-iot-gateway/docs/configuration.md"
            mkdir -p "$root/var/lib/xmpp-iot-gateway"
            echo "installed xmpp-iot-gateway under $root" ;;
        *)
            dpkg -s "$p" >/dev/null 2>&1 || { echo "apt stand-in: $p is not installed on this machine (scripts/install-deps.sh)" >&2; exit 1; }
            echo "$p is installed" ;;
    esac
done
# Debian starts Mosquitto when it is installed.
case " $* " in *" mosquitto "*) systemctl start mosquitto ;; esac'

shim prosodyctl '
cfg=(--config "$root/etc/prosody/prosody.cfg.lua")
for a in "$@"; do
    if [ "$a" = adduser ]; then
        # prosodyctl asks for the password twice.
        printf "%s\n%s\n" "$PI_GUIDE_PASSWORD" "$PI_GUIDE_PASSWORD" | /usr/bin/prosodyctl "${cfg[@]}" "$@"
        exit
    fi
done
exec /usr/bin/prosodyctl "${cfg[@]}" "$@"'

shim journalctl 'tail -n 20 "$root/gateway.log"'

shim systemd-run '
unit=""; args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --unit=*) unit="${1#--unit=}" ;;
        -p) shift ;;
        *) args+=("$1") ;;
    esac
    shift
done
"${args[@]}" >"$root/$unit.log" 2>&1 &
echo "$unit $!" >>"$root/pids"
echo "Running as unit: $unit.service"'

shim systemctl '
pid_of() { awk -v n="$1" '"'"'$1 == n { p = $2 } END { print p }'"'"' "$root/pids"; }
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1" >&2; return 1; }
stop() { local p; p=$(pid_of "$1"); [ -n "$p" ] || return 0; kill -TERM "$p" 2>/dev/null || true; for _ in $(seq 80); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done; }
start_gateway() {
    # As the unit does: ExecStartPre check, the secret through LoadCredential=, the state
    # directory, and a start that returns once the gateway says READY=1.
    "$root/usr/bin/xmpp-iot-gateway" --config "$root/etc/xmpp-iot-gateway/gateway.toml" check >/dev/null
    mkdir -p "$root/run/credentials"
    install -m 400 "$root/etc/xmpp-iot-gateway/component.secret" "$root/run/credentials/component.secret"
    rm -f "$root/run/notify" "$root/notify.log"
    socat -u UNIX-RECV:"$root/run/notify" - >>"$root/notify.log" 2>/dev/null &
    echo "notify-listener $!" >>"$root/pids"
    for _ in $(seq 50); do [ -S "$root/run/notify" ] && break; sleep 0.1; done
    CREDENTIALS_DIRECTORY="$root/run/credentials" STATE_DIRECTORY="$root/var/lib/xmpp-iot-gateway" \
        NOTIFY_SOCKET="$root/run/notify" \
        "$root/usr/bin/xmpp-iot-gateway" --config "$root/etc/xmpp-iot-gateway/gateway.toml" run \
        >>"$root/gateway.log" 2>&1 &
    echo "xmpp-iot-gateway $!" >>"$root/pids"
    for _ in $(seq 300); do grep -q "READY=1" "$root/notify.log" 2>/dev/null && break; sleep 0.1; done
    grep -q "READY=1" "$root/notify.log" || { echo "the gateway did not become ready" >&2; return 1; }
    # READY=1 comes after the first connection attempt; the guide next reads through the
    # server, so wait for the component session as a person would glance at `status`.
    for _ in $(seq 100); do grep -q "upstream connected" "$root/notify.log" && return 0; sleep 0.1; done
    echo "the gateway did not connect to the server" >&2; return 1
}
verb=$1; shift
units=(); for a in "$@"; do case "$a" in --*) ;; *) units+=("${a%.service}") ;; esac; done
for u in "${units[@]}"; do
    case "$verb:$u" in
        restart:prosody | start:prosody)
            stop prosody
            /usr/bin/prosody --config "$root/etc/prosody/prosody.cfg.lua" -F >"$root/prosody.console" 2>&1 &
            echo "prosody $!" >>"$root/pids"
            wait_port 5222 && wait_port 5347 ;;
        start:mosquitto)
            printf "listener 1883 127.0.0.1\nallow_anonymous true\npersistence false\n" >"$root/mosquitto.conf"
            /usr/sbin/mosquitto -c "$root/mosquitto.conf" >"$root/mosquitto.log" 2>&1 &
            echo "mosquitto $!" >>"$root/pids"
            wait_port 1883 ;;
        enable:xmpp-iot-gateway | start:xmpp-iot-gateway) start_gateway ;;
        reload:xmpp-iot-gateway)
            "$root/usr/bin/xmpp-iot-gateway" --config "$root/etc/xmpp-iot-gateway/gateway.toml" check >/dev/null
            kill -HUP "$(pid_of xmpp-iot-gateway)" ;;
        status:*)
            p=$(pid_of "$u"); if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then echo "$u: active (running), pid $p"; tail -n 1 "$root/notify.log" 2>/dev/null || true; else echo "$u: inactive"; exit 3; fi ;;
        stop:*) stop "$u" ;;
        *) echo "systemctl stand-in: $verb $u is not something the guide does" >&2; exit 1 ;;
    esac
done'

export HOME="$root/home/pi"
export PATH="$root/shim:$root/usr/bin:$PATH"

# ---------------------------------------------------------------------------------------------
# The guide's blocks, as (info, first line, body) records.
blocks="$root/blocks"
mkdir -p "$blocks"
python3 - "$guide" "$blocks" <<'PY'
import sys, pathlib
text = pathlib.Path(sys.argv[1]).read_text()
out = pathlib.Path(sys.argv[2])
heading = "## First install, step by step"
start = text.index(heading) + len(heading)
end = text.find("\n## ", start)
section = text[start:end if end >= 0 else len(text)]
n, block = 0, None
for line in section.splitlines():
    stripped = line.lstrip()
    indent = len(line) - len(stripped)
    if block is None:
        if stripped.startswith("```"):
            block = (stripped[3:].strip(), indent, [])
    elif stripped.startswith("```"):
        n += 1
        (out / f"{n:02}.{block[0] or 'text'}").write_text("".join(block[2]))
        block = None
    else:
        block[2].append((line[block[1]:] if line[:block[1]].strip() == "" else stripped) + "\n")
PY

# The guide's absolute paths, moved under the private root.
localise() {
    sed -e "s#/etc/xmpp-iot-gateway#$root/etc/xmpp-iot-gateway#g" \
        -e "s#/etc/prosody#$root/etc/prosody#g" \
        -e "s#/usr/local/bin#$root/usr/local/bin#g" \
        -e "s#/sys/class/thermal#$root/sys/class/thermal#g" "$1"
}

run_block() { # file: the block, localised, in a shell of its own; the guide's commands echoed
    local script="$root/current.sh"
    { echo 'set -euo pipefail'; localise "$1"; } >"$script"
    sed 's/^/    $ /' "$1" >&2
    (cd "$HOME" && bash "$script")
}

# Step 6 is an edit in prose; this is it.
edit_configuration() {
    local conf="$root/etc/xmpp-iot-gateway/gateway.toml"
    sed -i -e 's/^domain = "sensors.example.org"/domain = "sensors.home.example.org"/' \
        -e 's/^read = \["@example.org"\]/read = ["you@home.example.org"]/' \
        -e 's/^control = \[\]/control = ["you@home.example.org"]/' "$conf"
    grep -q '^domain = "sensors.home.example.org"' "$conf" && grep -q '^control = \["you@' "$conf" ||
        die "step 6: deploy/gateway.toml no longer has the lines the guide tells to edit"
}

ran=0
for file in "$blocks"/*; do
    first="$(grep -m1 -v '^[[:space:]]*$' "$file" || true)"
    case "$first" in
        "scp target/"*)
            say "step 1: the package (installed here by the apt stand-in: the copy to the Pi needs a Pi)"
            apt install ./xmpp-iot-gateway_0.1.0-1_arm64.deb ;;
        "sudo apt install prosody" | "sudo sed -i \"s/SECRET/"* | "mkdir -p ~/ca && cd ~/ca" | \
            "sudo prosodyctl adduser you@home.example.org" | "sudo systemctl enable --now xmpp-iot-gateway" | \
            "sudo apt install mosquitto mosquitto-clients")
            say "running: $first"
            run_block "$file" ;;
        'VirtualHost "home.example.org"')
            say "step 3: writing /etc/prosody/conf.d/home.cfg.lua"
            cp "$file" "$root/etc/prosody/conf.d/home.cfg.lua" ;;
        "sudo apt install certbot")
            say "step 4: skipping Let's Encrypt (needs a public name); the private CA follows" ;;
        "sudo xmpp-iot-gateway --config /etc/xmpp-iot-gateway/gateway.toml check")
            say "step 6: editing gateway.toml as the guide says"
            edit_configuration
            run_block "$file" ;;
        "echo 'your password' > ~/.xmpp-pass && chmod 600 ~/.xmpp-pass")
            say "step 9: talking to the self-test device"
            out="$(run_block "$file")" || die "step 9 failed: $out"
            printf '%s\n' "$out"
            grep -q '^temperature' <<<"$out" || die "step 9: no temperature from selftest"
            grep -q 'devices_online' <<<"$out" || die "step 9: no figures from the gateway"
            ;;
        "[[adapter]]")
            say "step 10: adding the CPU temperature device to gateway.toml, then check and reload"
            { echo; cat "$file"; } >>"$root/etc/xmpp-iot-gateway/gateway.toml"
            xmpp-iot-gateway --config "$root/etc/xmpp-iot-gateway/gateway.toml" check >/dev/null
            systemctl reload xmpp-iot-gateway
            # The value arrives with the next publication: up to the script's 10 s period.
            ok=""
            for _ in $(seq 30); do
                if out="$(xmpp-iot-gateway read pi@sensors.home.example.org --jid you@home.example.org \
                    --password-file "$HOME/.xmpp-pass" --server 127.0.0.1:5222 \
                    --ca-file "$root/etc/xmpp-iot-gateway/ca.pem" 2>&1)" &&
                    grep -q '^cpu_temperature *48.3' <<<"$out"; then
                    ok=1
                    break
                fi
                sleep 1
            done
            printf '%s\n' "$out"
            [ -n "$ok" ] || die "step 10: pi@ did not answer with the CPU temperature (48.3)" ;;
        *)
            die "a block of the guide this script does not know ($(basename "$file")): '$first'.
       Decide whether scripts/pi-guide.sh runs it, writes it or skips it." ;;
    esac
    ran=$((ran + 1))
done
[ "$ran" -ge 10 ] || die "only $ran blocks found in the guide's first-install section"
say "the guide's first install works: $ran blocks"
