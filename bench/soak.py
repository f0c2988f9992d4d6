#!/usr/bin/env python3
"""Load driver and sampler for bench/soak.sh: mixed load for a long time, with the gateway's
memory, file descriptors, threads and runtime tasks sampled every few seconds.

Load, all reconnecting when the server they talk to restarts:
- an MQTT publisher: steady devices at a fixed total rate, and flapping devices that also publish
  an availability topic (retained) and go offline for a while every so often (silent meanwhile);
- `receiver`: subscribed to every device's presence, and the `[publish] notify` target;
- `watcher`: subscribed too, sends XEP-0323 readout requests and chat `get` to random devices.

Reuses bench/e2e.py's raw MQTT and c2s clients (standard library only). Writes samples.csv, then a
summary (soak-summary.txt) and, with gnuplot, the plot (soak-rss.png). Nothing is asserted.
"""

import argparse
import asyncio
import csv
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import e2e  # noqa: E402  (bench/e2e.py: Xmpp, Mqtt)

TAG_RE = re.compile(rb"<(message|presence|iq)\b([^>]*)>")
TYPE_RE = re.compile(rb"""\stype=['"]([a-z]+)['"]""")
DONE_RE = re.compile(rb"""<fields\b[^>]*\sdone=['"]true['"]""")
FAILURE_RE = re.compile(rb"<failure\b")
METRIC_RE = re.compile(rb"^xmpp_iot_gateway_([a-z_]+) ([0-9.e+-]+)$", re.M)


class Client(e2e.Xmpp):
    """A c2s session that logs in again after the server went away and counts what it gets,
    by stanza kind and type (`message/headline`, `presence/unavailable`, `iq/error`...)."""

    def __init__(self, port, user, contacts):
        super().__init__("127.0.0.1", port, user, user, "soak")
        self.contacts = contacts
        self.counts = {}
        self.connected = False
        self.subscribed = False
        self.connects = 0

    def count(self, key, n=1):
        self.counts[key] = self.counts.get(key, 0) + n

    def send(self, data, what):
        if not self.connected or self.writer.transport.is_closing():
            self.count(f"{what}_not_sent")
            return False
        self.writer.write(data)
        self.count(f"{what}_sent")
        return True

    async def run(self):
        while True:
            try:
                self.buf = b""
                await self.connect()
                self.connects += 1
                if not self.subscribed:
                    # The roster lives in the server's data: once is enough, restarts keep it.
                    for jid in self.contacts:
                        self.writer.write(f"<presence type='subscribe' to='{jid}'/>".encode())
                    self.subscribed = True
                self.connected = True
                await self._read()
            except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                pass
            if self.connected:
                self.count("disconnects")
            self.connected = False
            if self.writer:
                self.writer.close()
            await asyncio.sleep(1)

    async def _read(self):
        while True:
            data = await self.reader.read(1 << 20)
            if not data:
                return
            self.buf += data
            cut = self.buf.rfind(b">")
            if cut < 0:
                continue
            done, self.buf = self.buf[: cut + 1], self.buf[cut + 1 :]
            for m in TAG_RE.finditer(done):
                t = TYPE_RE.search(m.group(2))
                kind = m.group(1).decode()
                self.count(f"{kind}/{t.group(1).decode() if t else 'normal'}")
            self.count("readouts_done", len(DONE_RE.findall(done)))
            self.count("readout_failures", len(FAILURE_RE.findall(done)))
            if b"</stream:stream>" in done:
                return


class Publisher:
    """MQTT devices: `steady` publish all the time; `flapping` also have an availability topic
    and go offline (and quiet) now and then, as a device that loses power does."""

    def __init__(self, port, steady, flapping, rate):
        self.port, self.rate = port, rate
        self.devices = steady + flapping
        self.flapping = flapping
        self.online = {d: True for d in flapping}
        self.mqtt = None
        self.published = self.not_published = self.flaps = self.connects = 0
        self.seq = 0

    def up(self):
        m = self.mqtt
        return m is not None and not m.drain_task.done() and not m.writer.transport.is_closing()

    def _publish(self, topic, payload, retain=False):
        m = self.mqtt
        m.pid = m.pid % 65535 + 1
        body = e2e.mqtt_str(topic) + m.pid.to_bytes(2, "big") + payload
        m.writer.write(bytes([0x33 if retain else 0x32]) + e2e.varint(len(body)) + body)

    def _announce(self, device):
        self._publish(f"soak/{device}/status", b"online" if self.online[device] else b"offline", retain=True)

    async def keep_connected(self):
        while True:
            if not self.up():
                try:
                    m = e2e.Mqtt("127.0.0.1", self.port)
                    await m.connect()
                    # A reset broker connection ends the reader with an error: expected here.
                    m.drain_task.add_done_callback(lambda t: t.cancelled() or t.exception())
                    self.mqtt = m
                    self.connects += 1
                    # A device says where it stands whenever it (re)connects.
                    for d in self.flapping:
                        self._announce(d)
                except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError):
                    self.mqtt = None
            await asyncio.sleep(0.5)

    async def publish_steadily(self):
        start = time.monotonic()
        done = 0
        while True:
            await asyncio.sleep(0.05)
            due = int((time.monotonic() - start) * self.rate)
            while done < due:
                device = self.devices[done % len(self.devices)]
                done += 1
                if not self.online.get(device, True):
                    continue
                if not self.up():
                    self.not_published += 1
                    continue
                self.seq += 1
                self._publish(f"soak/{device}", json.dumps({"seq": self.seq}).encode())
                self.published += 1
            if self.up():
                try:
                    await self.mqtt.writer.drain()
                except (OSError, ConnectionError):
                    pass

    async def flap(self, every, down_for):
        i = 0
        while True:
            await asyncio.sleep(every)
            device = self.flapping[i % len(self.flapping)]
            i += 1
            self.online[device] = False
            self.flaps += 1
            if self.up():
                self._announce(device)
            await asyncio.sleep(down_for)
            self.online[device] = True
            if self.up():
                self._announce(device)


async def watch(client, devices, readout_every, chat_every):
    """XEP-0323 readouts and chat `get` to random devices, at a fixed pace."""
    n = 0
    next_chat = time.monotonic() + chat_every
    while True:
        await asyncio.sleep(readout_every)
        n += 1
        jid = random.choice(devices)
        client.send(
            f"<iq type='get' id='r{n}' to='{jid}'><req xmlns='urn:xmpp:iot:sensordata' "
            f"seqnr='{n}' momentary='true'/></iq>".encode(),
            "readouts",
        )
        if time.monotonic() >= next_chat:
            next_chat += chat_every
            client.send(
                f"<message type='chat' to='{random.choice(devices)}' id='c{n}'><body>get</body></message>".encode(),
                "chats",
            )


async def scrape(port):
    """The gateway's unlabelled metrics, as a dict (empty when the endpoint does not answer)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        text = await asyncio.wait_for(reader.read(-1), 5)
        writer.close()
    except (OSError, asyncio.TimeoutError):
        return {}
    return {k.decode(): float(v) for k, v in METRIC_RE.findall(text)}


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "Threads"):
                out[key] = int(value.split()[0])
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


COLUMNS = [
    "epoch", "elapsed_s", "rss_kib", "fds", "threads", "tasks", "upstream_connected",
    "devices_online", "readings_total", "stanzas_sent_total", "replies_dropped_total",
    "mqtt_published", "headlines_received", "presence_received", "readouts_sent", "readouts_done",
]


async def sample_loop(a, gw_pid, publisher, receiver, watcher, rows):
    start = time.time()
    path = os.path.join(a.out_dir, "soak-samples.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        while True:
            now = time.time()
            st = proc_status(gw_pid)
            m = await scrape(a.metrics_port)
            rc, wc = receiver.counts, watcher.counts
            row = {
                "epoch": round(now, 1),
                "elapsed_s": round(now - start, 1),
                "rss_kib": st["VmRSS"],
                "fds": st["fds"],
                "threads": st["Threads"],
                "tasks": int(m["runtime_alive_tasks"]) if "runtime_alive_tasks" in m else "",
                "upstream_connected": int(m.get("upstream_connected", 0)),
                "devices_online": int(m.get("devices_online", 0)),
                "readings_total": int(m.get("readings_total", 0)),
                "stanzas_sent_total": int(m.get("stanzas_sent_total", 0)),
                "replies_dropped_total": int(m.get("replies_dropped_total", 0)),
                "mqtt_published": publisher.published,
                "headlines_received": rc.get("message/headline", 0),
                "presence_received": sum(v for k, v in rc.items() if k.startswith("presence/"))
                + sum(v for k, v in wc.items() if k.startswith("presence/")),
                "readouts_sent": wc.get("readouts_sent", 0),
                "readouts_done": wc.get("readouts_done", 0),
            }
            rows.append(row)
            w.writerow([row[c] for c in COLUMNS])
            f.flush()
            if now - start >= a.duration:
                return
            await asyncio.sleep(min(a.sample_every, max(0.0, start + a.duration - time.time())))


def stats(values):
    return min(values), statistics.median(values), max(values)


def slope_per_hour(rows, key):
    """Least-squares slope of `key` against time, per hour."""
    xs = [r["elapsed_s"] for r in rows]
    ys = [r[key] for r in rows]
    if len(xs) < 2:
        return float("nan")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / den * 3600 if den else float("nan")


def read_events(path, start):
    """Restarts done by soak.sh: `epoch kind` per line."""
    events = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                epoch, kind = line.split()[:2]
                events.append((float(epoch) - start, kind))
    return events


def summarise(a, rows, events, publisher, receiver, watcher, header):
    mib = lambda k: k / 1024  # noqa: E731
    total = rows[-1]["elapsed_s"]
    window = min(600.0, total / 3)
    first = [r for r in rows if r["elapsed_s"] <= window]
    last = [r for r in rows if r["elapsed_s"] >= total - window]
    warm = [r for r in rows if r["elapsed_s"] >= window]
    out = list(header)
    out.append(f"duration {total / 60:.1f} min, {len(rows)} samples every {a.sample_every:g} s")
    out.append("")
    out.append(f"gateway RSS (MiB), min / median / max over the first and the last {window / 60:.1f} min:")
    for name, part in (("first", first), ("last", last)):
        lo, med, hi = stats([mib(r["rss_kib"]) for r in part])
        out.append(f"  {name:<6} {lo:7.1f} {med:7.1f} {hi:7.1f}")
    out.append(
        f"  slope after the first {window / 60:.1f} min: {slope_per_hour(warm, 'rss_kib') / 1024:+.2f} MiB/h"
        f" (whole run {slope_per_hour(rows, 'rss_kib') / 1024:+.2f} MiB/h)"
    )
    for key, label in (("fds", "open fds"), ("threads", "threads"), ("tasks", "runtime tasks")):
        vals = [r[key] for r in rows if r[key] != ""]
        if vals:
            lo, med, hi = stats(vals)
            tail = [r[key] for r in last if r[key] != ""]
            out.append(
                f"{label:<14} min {lo:>5} median {med:>7g} max {hi:>5}; last {window / 60:.1f} min {min(tail)}..{max(tail)}"
            )
        else:
            out.append(f"{label:<14} not available")
    kinds = {}
    for _, kind in events:
        kinds[kind] = kinds.get(kind, 0) + 1
    out.append("")
    out.append(
        f"upstream restarts: {len(events)} ("
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
        + ")"
    )
    rc, wc = receiver.counts, watcher.counts
    out.append(
        f"MQTT: {publisher.published} published, {publisher.not_published} not published (broker down), "
        f"{publisher.connects} connections, {publisher.flaps} availability flaps"
    )
    out.append(
        f"receiver: {rc.get('message/headline', 0)} headlines, "
        f"{sum(v for k, v in rc.items() if k.startswith('presence/'))} presence "
        f"({rc.get('presence/unavailable', 0)} unavailable), {receiver.connects} logins"
    )
    out.append(
        f"watcher: readouts {wc.get('readouts_sent', 0)} sent, {wc.get('readouts_done', 0)} answered, "
        f"{wc.get('readout_failures', 0)} failures, {wc.get('readouts_not_sent', 0)} not sent (server down); "
        f"chat get {wc.get('chats_sent', 0)} sent, {wc.get('message/chat', 0)} answers; "
        f"{wc.get('iq/error', 0) + wc.get('message/error', 0)} error stanzas; {watcher.connects} logins"
    )
    last_row = rows[-1]
    out.append(
        f"gateway: {last_row['readings_total']} readings, {last_row['stanzas_sent_total']} stanzas sent, "
        f"{last_row['replies_dropped_total']} replies dropped"
    )
    return out


def plot(a, rows, events):
    png = os.path.join(a.out_dir, "soak-rss.png")
    if not shutil.which("gnuplot"):
        print("gnuplot not found: no plot (apt-get install gnuplot-nox), the samples are in the CSV", file=sys.stderr)
        return None
    csv_path = os.path.join(a.out_dir, "soak-samples.csv")
    marks = "\n".join(
        f"set arrow from {t / 60:.3f}, graph 0 to {t / 60:.3f}, graph 1 nohead lw 1.5 lc rgb '{'#e07000' if k == 'prosody' else '#2050d0'}' dt 2"
        for t, k in events
    )
    has_tasks = any(r["tasks"] != "" for r in rows)
    script = f"""
set terminal pngcairo size 1200,800 font ',10'
set output '{png}'
set datafile separator ','
set key bottom right opaque box
set grid
set multiplot layout 2,1 title 'xmpp-iot-gateway soak: {rows[-1]["elapsed_s"] / 60:.0f} min, restarts dashed (orange Prosody, blue Mosquitto)'
set ylabel 'RSS (MiB)'
set yrange [0:*]
{marks}
plot '{csv_path}' using ($2/60):($3/1024) skip 1 with lines lw 2 title 'gateway RSS'
set xlabel 'minutes'
set ylabel 'count'
plot '{csv_path}' using ($2/60):4 skip 1 with lines lw 2 title 'open fds', \\
     '' using ($2/60):5 skip 1 with lines lw 2 title 'threads'{", '' using ($2/60):6 skip 1 with lines lw 2 title 'runtime tasks'" if has_tasks else ""}
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script.encode(), check=True)
    return png


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xmpp-port", type=int, required=True)
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--metrics-port", type=int, required=True)
    ap.add_argument("--domain", required=True, help="the gateway's component domain")
    ap.add_argument("--gateway-pid", type=int, required=True)
    ap.add_argument("--steady", type=int, default=15)
    ap.add_argument("--flapping", type=int, default=5)
    ap.add_argument("--simulated", type=int, default=5)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--duration", type=float, required=True, help="seconds")
    ap.add_argument("--sample-every", type=float, default=10)
    ap.add_argument("--flap-every", type=float, default=20)
    ap.add_argument("--flap-for", type=float, default=10)
    ap.add_argument("--out-dir", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--header", default="")
    a = ap.parse_args()

    steady = [f"d{i}" for i in range(a.steady)]
    flapping = [f"f{i}" for i in range(a.flapping)]
    simulated = [f"s{i}" for i in range(a.simulated)]
    jids = [f"{d}@{a.domain}" for d in steady + flapping + simulated]
    publisher = Publisher(a.mqtt_port, steady, flapping, a.rate)
    receiver = Client(a.xmpp_port, "receiver", jids)
    watcher = Client(a.xmpp_port, "watcher", jids)
    tasks = [
        asyncio.ensure_future(c)
        for c in (
            publisher.keep_connected(),
            publisher.publish_steadily(),
            publisher.flap(a.flap_every, a.flap_for),
            receiver.run(),
            watcher.run(),
            watch(watcher, jids, 2.0, 5.0),
        )
    ]
    start = time.time()
    rows = []
    await sample_loop(a, a.gateway_pid, publisher, receiver, watcher, rows)
    for t in tasks:
        t.cancel()
    m = await scrape(a.metrics_port)
    events = read_events(a.events, start)
    lines = summarise(a, rows, events, publisher, receiver, watcher, [l for l in a.header.split("\n") if l])
    lines[-1] += f"; {int(m.get('upstream_reconnects_total', 0))} upstream reconnects"
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out_dir, "soak-summary.txt"), "w") as f:
        f.write(text)
    print(text, end="")
    png = plot(a, rows, events)
    if png:
        print(f"plot: {png}")


if __name__ == "__main__":
    asyncio.run(main())
