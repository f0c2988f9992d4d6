#!/usr/bin/env python3
"""Driver for bench/scale.sh: many simulated devices, and many Modbus points, in component mode.

Simulated part, for each device count N: the gateway runs N simulated devices of F fields each,
polled every second. A setup start creates the gateway's store; then every subscriber's
subscription to every device is written into the store's `subscriptions` table (the row an
approved subscription leaves there: device, bare JID, time), the subscribers log in, and the
gateway starts again. Prosody hands a component's presence addressed to a bare JID to every
available resource of that user whatever the roster says (mod_presence, "presence/bare"), so the
subscribers' rosters stay empty and no probes are involved. Measured: the time from the gateway's
"component connected" log line to the moment every subscriber has seen available presence from
every device, then CPU % and RSS over a steady window.

Modbus part: D devices (unit ids 1..D on one pymodbus simulator, one Modbus TCP connection) of P
holding registers each, polled every second. Measured: CPU % and RSS of the gateway and the
simulator, requests per poll cycle as planned (`check`) and as counted by the simulator, and
that every device came online (its presence reached the subscriber).

Python standard library only; the XMPP client is bench/e2e.py's. Every process it starts is
listed in RUN/driver.pids (bench/lib.sh stops them if this driver dies) and stopped by pid.
"""

import argparse
import asyncio
import datetime
import itertools
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from e2e import Proc, RssSampler, Xmpp  # noqa: E402

PRESENCE_RE = re.compile(rb"<presence\b([^>]*)>")
FROM_RE = re.compile(rb"""\bfrom=['"]([^@'"]+)@""")
TYPE_RE = re.compile(rb"""\btype=['"]([a-z]+)['"]""")
LOG_FILTER = "warn,xmpp_iot_gateway::xmpp::component=info"


class Children:
    """Processes this driver started, stopped by pid on every way out."""

    def __init__(self, pidfile):
        self.pidfile = pidfile
        self.procs = []

    def start(self, args, **kw):
        p = subprocess.Popen(args, **kw)
        self.procs.append(p)
        with open(self.pidfile, "a") as f:
            f.write(f"{p.pid}\n")
        return p

    def stop(self, p, timeout=60):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            self.stop(p, timeout=10)


class Watcher(Xmpp):
    """A subscriber that notes when each device's available presence first arrives."""

    def __init__(self, *a):
        super().__init__(*a)
        self.reset()
        self.task = None

    def reset(self):
        self.available = {}  # device localpart -> time.time() of its first available presence
        self.stanzas = 0

    async def _run(self):
        while True:
            data = await self.reader.read(1 << 20)
            if not data:
                return
            t = time.time()
            self.buf += data
            cut = self.buf.rfind(b">")
            done, self.buf = self.buf[: cut + 1], self.buf[cut + 1 :]
            for m in PRESENCE_RE.finditer(done):
                attrs = m.group(1)
                frm = FROM_RE.search(attrs)
                if not frm:
                    continue
                self.stanzas += 1
                typ = TYPE_RE.search(attrs)
                if typ is None:
                    self.available.setdefault(frm.group(1).decode(), t)

    def start(self):
        self.buf = b""
        self.task = asyncio.ensure_future(self._run())


def log_time(line):
    """The wall-clock time of a tracing log line (RFC 3339, UTC, first token)."""
    stamp = line.split()[0].replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(stamp).timestamp()


async def wait_log(path, needle, timeout, proc):
    """The first line of the log at `path` containing `needle`, or exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the gateway exited ({proc.returncode}) waiting for {needle!r}; see {path}")
        with open(path, errors="replace") as f:
            for line in f:
                if needle in line:
                    return line
        await asyncio.sleep(0.02)
    sys.exit(f"no {needle!r} in {path} within {timeout} s")


def xmpp_block(a):
    return (
        f'[xmpp]\nmode = "component"\ndomain = "{a.domain}"\nserver = "127.0.0.1:{a.comp_port}"\n'
        f'secret_file = "{a.secret_file}"\n\n[access]\nread = ["@localhost"]\n\n'
        f'[log]\nlevel = "{LOG_FILTER}"\n\n'
    )


def sim_config(a, n, state_dir):
    # History off: N x F readings a second would be the store's benchmark, not this one's.
    out = [f'[gateway]\nname = "scale"\nstate_dir = "{state_dir}"\nhistory = "0"\n\n', xmpp_block(a)]
    out.append('[[adapter]]\nid = "sim"\ntype = "simulated"\n\n')
    field = [
        f'  [[device.field]]\n  name = "f{j}"\n  unit = "°C"\n  min = {j}.0\n  max = {j + 10}.0\n'
        f'  period = "{60 + j}s"\n'
        for j in range(a.fields)
    ]
    fields = "".join(field)
    for i in range(n):
        out.append(f'[[device]]\nid = "d{i}"\nadapter = "sim"\npoll = "{a.poll}"\n{fields}\n')
    return "".join(out)


def modbus_config(a, state_dir, port):
    out = [f'[gateway]\nname = "scale"\nstate_dir = "{state_dir}"\nhistory = "0"\n\n', xmpp_block(a)]
    out.append(f'[[adapter]]\nid = "plc"\ntype = "modbus-tcp"\naddress = "127.0.0.1:{port}"\ntimeout = "1s"\n\n')
    fields = "".join(
        f'  [[device.field]]\n  name = "p{j}"\n  register = "holding"\n  address = {j}\n  data_type = "uint16"\n'
        for j in range(a.modbus_points)
    )
    for u in range(1, a.modbus_devices + 1):
        out.append(f'[[device]]\nid = "m{u}"\nadapter = "plc"\nunit_id = {u}\npoll = "1s"\n{fields}\n')
    return "".join(out)


def subscribe_in_store(db, devices, users):
    """What approving each subscription writes (src/store.rs, AddSubscriber)."""
    conn = sqlite3.connect(db)
    now = int(time.time())
    with conn:
        conn.executemany(
            "INSERT OR IGNORE INTO subscriptions (device, jid, since) VALUES (?, ?, ?)",
            [(d, f"{u}@localhost", now) for d in devices for u in users],
        )
    conn.close()


class Gateway:
    def __init__(self, a, children, name, config_text):
        self.a, self.children, self.name = a, children, name
        self.dir = os.path.join(a.run, name)
        os.makedirs(self.dir, exist_ok=True)
        self.state = os.path.join(self.dir, "state")
        self.config = os.path.join(self.dir, "gateway.toml")
        with open(self.config, "w") as f:
            f.write(config_text(self.state))
        self.proc = None
        self.log = None

    def check(self):
        return subprocess.run(
            [self.a.gateway, "--config", self.config, "check"], capture_output=True, text=True, check=True
        ).stdout

    async def start(self, tag):
        self.log = os.path.join(self.dir, f"gateway-{tag}.log")
        with open(self.log, "w") as err:
            self.t_start = time.time()
            self.proc = self.children.start([self.a.gateway, "--config", self.config, "run"], stderr=err)
        line = await wait_log(self.log, "component connected", self.a.timeout, self.proc)
        self.t_connected = log_time(line)

    def stop(self):
        t = time.monotonic()
        self.children.stop(self.proc)
        return time.monotonic() - t

    def warnings(self):
        with open(self.log, errors="replace") as f:
            return [line.rstrip() for line in f if " WARN " in line or " ERROR " in line]


async def subscribers(a):
    users = [f"sub{i}" for i in range(a.subscribers)]
    ws = []
    for u in users:
        w = Watcher("127.0.0.1", a.xmpp_port, u, u, "scale")
        await w.connect()
        w.start()
        ws.append(w)
    return users, ws


async def steady(proc, window, ws):
    """CPU % of one core and RSS over `window` seconds, and the presence stanzas received."""
    gw = Proc(proc.pid)
    sampler = RssSampler(gw)
    cpu0, st0 = gw.cpu_s(), sum(w.stanzas for w in ws)
    sampler.start()
    await asyncio.sleep(window)
    sampler.stop()
    cpu = (gw.cpu_s() - cpu0) / window * 100
    return cpu, gw.rss_mib(), sampler.peak, (sum(w.stanzas for w in ws) - st0) / window


async def sim_run(a, children, n, users, ws):
    g = Gateway(a, children, f"sim{n}", lambda state: sim_config(a, n, state))
    # Setup start: the gateway creates its store; nobody is subscribed yet.
    await g.start("setup")
    setup_connect = g.t_connected - g.t_start
    g.stop()
    subscribe_in_store(os.path.join(g.state, "gateway.db"), [f"d{i}" for i in range(n)], users)

    for w in ws:
        w.reset()
    await g.start("run")
    # Who works while the presence goes out: CPU seconds from the connect to the last presence.
    gw, prosody = Proc(g.proc.pid), Proc(a.prosody_pid)
    gw_cpu0, prosody_cpu0 = gw.cpu_s(), prosody.cpu_s()
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline and any(len(w.available) < n for w in ws):
        if g.proc.poll() is not None:
            sys.exit(f"the gateway exited ({g.proc.returncode}); see {g.log}")
        await asyncio.sleep(0.01)
    announce_cpu = (gw.cpu_s() - gw_cpu0, prosody.cpu_s() - prosody_cpu0)
    seen = min(len(w.available) for w in ws)
    last = max(max(w.available.values(), default=float("nan")) for w in ws)
    first = min(min(w.available.values(), default=float("nan")) for w in ws)
    await asyncio.sleep(a.settle)
    prosody_cpu0 = prosody.cpu_s()
    cpu, rss, peak, presence_s = await steady(g.proc, a.window, ws)
    prosody_cpu = (prosody.cpu_s() - prosody_cpu0) / a.window * 100
    stop_s = g.stop()
    return {
        "devices": n,
        "setup_connect_s": setup_connect,
        "start_connect_s": g.t_connected - g.t_start,
        "first_s": first - g.t_connected,
        "all_s": (last - g.t_connected) if seen == n else None,
        "seen": seen,
        "cpu": cpu,
        "rss": rss,
        "rss_peak": peak,
        "presence_s": presence_s,
        "announce_cpu": announce_cpu,
        "prosody_cpu": prosody_cpu,
        "stop_s": stop_s,
        "warnings": g.warnings(),
    }


def count_lines(path, prefix):
    with open(path, errors="replace") as f:
        return sum(1 for line in f if line.startswith(prefix))


async def modbus_run(a, children, users, ws):
    port = a.modbus_port
    server_log = os.path.join(a.run, "modbus-requests.log")
    units = ",".join(str(u) for u in range(1, a.modbus_devices + 1))
    server = children.start(
        [a.python, a.modbus_server, "--tcp", f"127.0.0.1:{port}", "--units", units, "--log", server_log],
        stdout=subprocess.DEVNULL,
        stderr=open(os.path.join(a.run, "modbus-server.err"), "w"),
    )
    deadline = time.monotonic() + 30
    while not (os.path.exists(server_log) and count_lines(server_log, "ready")):
        if server.poll() is not None or time.monotonic() > deadline:
            sys.exit("the Modbus simulator did not start; see modbus-server.err in the run directory")
        await asyncio.sleep(0.05)

    g = Gateway(a, children, "modbus", lambda state: modbus_config(a, state, port))
    plan = g.check()
    lines = plan[plan.index("MODBUS DEVICE") :].splitlines()
    plan_rows = [line for line in lines[1:] if line.strip()]
    # A device's further requests are the rows that follow with its columns left blank.
    first_plan = [lines[0], plan_rows[0]] + list(itertools.takewhile(lambda r: r.startswith(" "), plan_rows[1:]))
    await g.start("setup")
    g.stop()
    devices = [f"m{u}" for u in range(1, a.modbus_devices + 1)]
    subscribe_in_store(os.path.join(g.state, "gateway.db"), devices, users)
    for w in ws:
        w.reset()
    await g.start("run")
    deadline = time.monotonic() + a.timeout
    while time.monotonic() < deadline and any(len(w.available) < len(devices) for w in ws):
        await asyncio.sleep(0.05)
    online = min(len(w.available) for w in ws)
    await asyncio.sleep(a.settle)
    sim = Proc(server.pid)
    sim_cpu0 = sim.cpu_s()
    req0 = count_lines(server_log, "unit=")
    cpu, rss, peak, _ = await steady(g.proc, a.window, ws)
    requests = count_lines(server_log, "unit=") - req0
    sim_cpu = (sim.cpu_s() - sim_cpu0) / a.window * 100
    g.stop()
    children.stop(server)
    return {
        "devices": a.modbus_devices,
        "points": a.modbus_devices * a.modbus_points,
        "planned": len(plan_rows),
        "first_plan": first_plan,
        "requests_per_s": requests / a.window,
        "online": online,
        "cpu": cpu,
        "rss": rss,
        "rss_peak": peak,
        "sim_cpu": sim_cpu,
        "warnings": g.warnings(),
    }


def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gateway", required=True, help="the release binary")
    ap.add_argument("--run", required=True, help="the run directory")
    ap.add_argument("--xmpp-port", type=int, required=True)
    ap.add_argument("--comp-port", type=int, required=True)
    ap.add_argument("--domain", required=True)
    ap.add_argument("--prosody-pid", type=int, required=True)
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--devices", default="1000,10000", help="simulated device counts, comma-separated")
    ap.add_argument("--fields", type=int, default=10)
    ap.add_argument("--poll", default="1s", help="of the simulated devices")
    ap.add_argument("--subscribers", type=int, default=1)
    ap.add_argument("--modbus-devices", type=int, default=100, help="0: no Modbus part")
    ap.add_argument("--modbus-points", type=int, default=100)
    ap.add_argument("--modbus-port", type=int)
    ap.add_argument("--python", help="a Python with pymodbus, for the simulator")
    ap.add_argument("--modbus-server", help="tests/fixtures/modbus_server.py")
    ap.add_argument("--window", type=float, default=10, help="seconds of steady state measured")
    ap.add_argument("--settle", type=float, default=3, help="seconds waited before the window")
    ap.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()

    children = Children(os.path.join(a.run, "driver.pids"))
    # SIGTERM from the script's trap: stop the children, then go.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        users, ws = await subscribers(a)
        print(
            f"simulated devices: component mode, {a.fields} fields each (sine), poll {a.poll}, presence "
            f"min_interval 2 s (the default), history off; {len(users)} subscriber(s), each subscribed "
            f"to every device; CPU and RSS over a {a.window:.0f} s window after all are present"
        )
        print(textwrap.fill(
            "start->conn: process start to the \"component connected\" log line; conn->first, conn->all:"
            " from there to the first and to the last device's first available presence at the slowest"
            " subscriber; CPU %: of one core over the window; presence/s: stanzas the subscribers got in"
            " the window (min_interval 2 s: about devices / 2 a second, plus any backlog draining);"
            " stop s: SIGTERM to exit (every device says"
            " unavailable); CPU s to all: spent by the gateway and by Prosody from conn to all",
            width=100, initial_indent="  ", subsequent_indent="  ",
        ))
        print(
            f"{'devices':>8}{'start->conn s':>15}{'conn->first s':>15}{'conn->all s':>13}{'present':>9}"
            f"{'CPU %':>8}{'RSS MiB':>9}{'peak MiB':>10}{'presence/s':>12}{'stop s':>8}"
            f"{'CPU s to all gw/prosody':>25}{'prosody CPU %':>15}",
            flush=True,
        )
        sims = []
        for n in [int(x) for x in a.devices.split(",") if x]:
            r = await sim_run(a, children, n, users, ws)
            sims.append(r)
            print(
                f"{r['devices']:>8}{r['start_connect_s']:>15.2f}{r['first_s']:>15.3f}{fmt(r['all_s'], '.3f'):>13}"
                f"{r['seen']:>9}{r['cpu']:>8.1f}{r['rss']:>9.1f}{r['rss_peak']:>10.1f}{r['presence_s']:>12.0f}"
                f"{r['stop_s']:>8.2f}{r['announce_cpu'][0]:>14.2f} / {r['announce_cpu'][1]:<8.2f}"
                f"{r['prosody_cpu']:>15.1f}",
                flush=True,
            )
        for r in sims:
            for w in r["warnings"][:3]:
                print(f"  gateway warning ({r['devices']} devices): {w}")

        mb = None
        if a.modbus_devices:
            print()
            print(
                f"Modbus TCP: {a.modbus_devices} devices (unit ids 1..{a.modbus_devices} on one pymodbus "
                f"simulator, one connection) x {a.modbus_points} holding registers (uint16), poll 1 s"
            )
            mb = await modbus_run(a, children, users, ws)
            print(
                f"{'points':>8}{'online':>8}{'planned req/cycle':>19}{'served req/s':>14}{'CPU %':>8}"
                f"{'RSS MiB':>9}{'peak MiB':>10}{'simulator CPU %':>17}"
            )
            print(
                f"{mb['points']:>8}{mb['online']:>8}{mb['planned']:>19}{mb['requests_per_s']:>14.1f}{mb['cpu']:>8.1f}"
                f"{mb['rss']:>9.1f}{mb['rss_peak']:>10.1f}{mb['sim_cpu']:>17.1f}"
            )
            print("  request plan of one device (check):")
            for line in mb["first_plan"]:
                print(f"    {line}")
            for w in mb["warnings"][:3]:
                print(f"  gateway warning: {w}")

        print()
        print("targets")
        for r in sims:
            if r["devices"] == 1000:
                mb_rss = r["rss"] * (1 << 20) / 1e6
                print(
                    f"  RSS <= 30 MB with 1,000 devices: {mb_rss:.1f} MB ({r['rss']:.1f} MiB) after all are "
                    f"present, {r['rss_peak'] * (1 << 20) / 1e6:.1f} MB peak in the window: "
                    f"{'met' if mb_rss <= 30 else 'missed'}"
                )
            if r["devices"] == 10000:
                ok = r["all_s"] is not None and r["all_s"] <= 2
                print(
                    f"  10,000 devices all present <= 2 s after connect: "
                    f"{fmt(r['all_s'], '.2f', 'not all present')} s: {'met' if ok else 'missed'}"
                )
    finally:
        children.stop_all()


if __name__ == "__main__":
    asyncio.run(main())
