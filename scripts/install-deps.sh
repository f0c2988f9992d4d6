#!/usr/bin/env bash
# Installs the Debian packages that the integration tests and the demo run as private services
# (Prosody, ejabberd, Mosquitto, socat, openssl) or call (systemd-analyze, from the `systemd` package, which
# checks the unit file without systemd running), but only those whose program is missing: on a
# machine that has them this does nothing and needs no network. Then the PyPI packages the tests
# use (pymodbus, the independent Modbus simulator of tests/it/modbus.rs; slixmpp, the XEP-0323 client
# that reads the push headlines in tests/it/publish.rs) into the git-ignored venv .venv-test/, again
# only if missing. Used by scripts/test.sh, scripts/demo.sh and .ci/run.
#
# Usage: scripts/install-deps.sh [--demo]
#   --demo   accepted for the demo script; `python3 -m venv` is now always made to work, since
#            the tests need it too
#
# A system Prosody/Mosquitto that the package install starts is left alone: the tests and the
# demo run their own instances on their own ports and never talk to the system ones. The
# packaged ejabberd service is stopped and disabled right after its install, though: it would
# hold ports 5222/5269/5280 and an Erlang node named ejabberd@localhost for nothing, and the
# tests run their own nodes (tests/it/support/ejabberd.rs).
set -euo pipefail

for arg in "$@"; do
    case "$arg" in
        --demo) ;;
        *) echo "usage: $0 [--demo]" >&2; exit 2 ;;
    esac
done

# Is PROGRAM installed? (mosquitto lives in /usr/sbin, which a normal user's PATH may lack)
have() {
    command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
}

need=()
add() {
    local p
    for p in "${need[@]+"${need[@]}"}"; do [ "$p" = "$1" ] && return 0; done
    need+=("$1")
}

# The test rig runs /usr/bin/prosody and /usr/bin/prosodyctl (Debian's paths).
{ [ -x /usr/bin/prosody ] && [ -x /usr/bin/prosodyctl ]; } || add prosody
have mosquitto || add mosquitto
have mosquitto_pub || add mosquitto-clients
have mosquitto_sub || add mosquitto-clients
# tests/it/support/ejabberd.rs copies /usr/sbin/ejabberdctl (Debian's) to run private nodes.
new_ejabberd=false
[ -x /usr/sbin/ejabberdctl ] || { add ejabberd; new_ejabberd=true; }
have socat || add socat
have openssl || add openssl
# tests/it/deploy.rs: `systemd-analyze verify` and `security --offline` on deploy/*.service.
have systemd-analyze || add systemd
# The demo viewer and the Modbus tests' simulator run in venvs (python3 -m venv needs ensurepip).
if ! command -v python3 >/dev/null 2>&1; then
    add python3
    add python3-venv
elif ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    add python3-venv
fi

install_python_test_packages() {
    local root venv want
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    venv="$root/.venv-test"
    want="3.16.1"
    slix="1.17.0"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c \
        "import pymodbus, serial, slixmpp, sys; sys.exit(pymodbus.__version__ != '$want' or slixmpp.__version__ != '$slix')" \
        >/dev/null 2>&1; then
        return 0
    fi
    echo "install-deps: installing pymodbus $want and slixmpp $slix into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "pymodbus[serial]==$want" "slixmpp==$slix"
}

if [ "${#need[@]}" -eq 0 ]; then
    install_python_test_packages
    exit 0
fi

echo "install-deps: installing ${need[*]}" >&2
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-deps: no apt-get here; install these packages by hand: ${need[*]}" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-deps: not root and no sudo; install by hand: ${need[*]}" >&2
        exit 1
    fi
    sudo=(sudo)
fi
"${sudo[@]+"${sudo[@]}"}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq </dev/null
"${sudo[@]+"${sudo[@]}"}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq "${need[@]}" </dev/null
if $new_ejabberd && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    "${sudo[@]+"${sudo[@]}"}" systemctl disable --now ejabberd.service >/dev/null 2>&1 || true
fi
install_python_test_packages
