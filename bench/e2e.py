#!/usr/bin/env python3
"""Load driver for bench/e2e.sh: publishes timestamped MQTT readings, receives the gateway's
headline messages over XMPP, and measures the same readings sent straight through the XMPP server
as plain chat messages (the "raw" ceiling).

Python standard library only (asyncio, raw sockets): a minimal MQTT 3.1.1 publisher and a minimal
plaintext c2s client (SASL PLAIN, bind) that counts messages with a regular expression instead of
parsing XML, so that the measuring side stays cheap next to what it measures.

Every reading is `{"temp": 21.5, "tag": "seq=N;ts=T"}`: T is its send time in microseconds, which
the receiver subtracts from its own clock (same machine). The raw path sends the same reading as a
chat message `<body>temp 21.5;seq=N;ts=T</body>` (about 150 bytes as delivered). For each phase
it reports, besides throughput and latency, the CPU the XMPP server (and the gateway) spent per
1,000 messages delivered, from /proc/PID/stat. Numbers are printed as a table; nothing is
asserted.
"""

import argparse
import asyncio
import base64
import json
import os
import re
import socket
import statistics
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
# The readings' sequence numbers and send times, taken from the body only: the gateway's headline
# carries each tag a second time in its XEP-0323 fields. A body has one reading per line (a
# push that waited for a busy server carries the device's next readings too).
BODY_RE = re.compile(rb"<body[^>]*>([^<]*)</body>")
TAG_RE = re.compile(rb"seq=(-?\d+);ts=(\d+)")
STANZA_END = b"</message>"


_last_us = 0


def now_us():
    """Microseconds since the epoch, strictly increasing (each message's send time is its key)."""
    global _last_us
    _last_us = max(_last_us + 1, time.time_ns() // 1000)
    return _last_us


# ---------------------------------------------------------------- process accounting


class Proc:
    """CPU time and RSS of one process, from /proc."""

    def __init__(self, pid):
        self.pid = pid

    def cpu_s(self):
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # utime and stime are fields 14 and 15 of stat(5); fields[0] here is field 3.
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def rss_mib(self):
        with open(f"/proc/{self.pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE / (1 << 20)


class RssSampler:
    """Peak RSS while a phase runs, sampled every 50 ms."""

    def __init__(self, proc):
        self.proc = proc
        self.peak = 0.0
        self.task = None

    async def _run(self):
        while True:
            self.peak = max(self.peak, self.proc.rss_mib())
            await asyncio.sleep(0.05)

    def start(self):
        self.peak = self.proc.rss_mib() if self.proc else 0.0
        if self.proc:
            self.task = asyncio.ensure_future(self._run())

    def stop(self):
        if self.task:
            self.task.cancel()
            self.peak = max(self.peak, self.proc.rss_mib())


# ---------------------------------------------------------------- XMPP (c2s, plaintext)


class Xmpp:
    def __init__(self, host, port, user, password, resource):
        self.host, self.port = host, port
        self.user, self.password, self.resource = user, password, resource
        self.buf = b""
        self.reader = self.writer = None

    async def _until(self, marker, timeout=10):
        async def go():
            while marker not in self.buf:
                data = await self.reader.read(65536)
                if not data:
                    raise ConnectionError(f"stream closed waiting for {marker!r}: {self.buf[-500:]!r}")
                self.buf += data
            i = self.buf.index(marker) + len(marker)
            head, self.buf = self.buf[:i], self.buf[i:]
            return head

        return await asyncio.wait_for(go(), timeout)

    def _open(self):
        self.writer.write(
            b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
        )

    async def connect(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)
        self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._open()
        await self._until(b"</stream:features>")
        token = base64.b64encode(f"\0{self.user}\0{self.password}".encode()).decode()
        self.writer.write(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode()
        )
        head = await self._until(b"/>")
        if b"<success" not in head:
            head += await self._until(b">")
            if b"success" not in head:
                raise ConnectionError(f"SASL failed: {head!r}")
        self.buf = b""
        self._open()
        await self._until(b"</stream:features>")
        self.writer.write(
            f"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{self.resource}</resource></bind></iq>".encode()
        )
        await self._until(b"</iq>")
        self.writer.write(b"<presence/>")
        await self.writer.drain()

    async def ping(self, jid, timeout=10):
        """An XEP-0199 ping; True when `jid` answered with a result."""
        iq_id = f"p{time.monotonic_ns()}"
        self.writer.write(
            f"<iq type='get' id='{iq_id}' to='{jid}'><ping xmlns='urn:xmpp:ping'/></iq>".encode()
        )
        await self.writer.drain()
        async def answer():
            key = f"id='{iq_id}'".encode()
            while key not in self.buf and key.replace(b"'", b'"') not in self.buf:
                data = await self.reader.read(65536)
                if not data:
                    return b""
                self.buf += data
            at = max(self.buf.find(key), self.buf.find(key.replace(b"'", b'"')))
            tag = self.buf[self.buf.rfind(b"<iq", 0, at) : self.buf.find(b">", at)]
            self.buf = b""
            return tag

        try:
            tag = await asyncio.wait_for(answer(), timeout)
        except asyncio.TimeoutError:
            return False
        return b"result" in tag


class Receiver(Xmpp):
    """Counts headline messages and records their latency."""

    def __init__(self, *a):
        super().__init__(*a)
        self.reset()
        self.task = None
        self.warm = False

    def reset(self):
        self.count = 0
        # A message with several fields may reach the core as several readings and then yield
        # more than one headline (the first with some values still old): a message counts once,
        # when the first headline with its send time arrives; the rest are counted as extra.
        self.seen = set()
        self.extra = 0
        # Stanzas that carried counted readings.
        self.stanzas = 0
        self.latencies = []
        self.first = self.last = None
        # The first stanza counted, as the receiver got it.
        self.sample = None

    async def _run(self):
        while True:
            data = await self.reader.read(1 << 20)
            if not data:
                return
            t = now_us()
            self.buf += data
            cut = self.buf.rfind(STANZA_END)
            if cut < 0:
                continue
            done, self.buf = self.buf[: cut + len(STANZA_END)], self.buf[cut + len(STANZA_END):]
            for body in BODY_RE.finditer(done):
                counted = False
                for m in TAG_RE.finditer(body.group(1)):
                    seq, sent = int(m.group(1)), int(m.group(2))
                    if seq < 0:
                        self.warm = True  # warm-up traffic, not counted
                        continue
                    if sent in self.seen:
                        self.extra += 1
                        continue
                    self.seen.add(sent)
                    counted = True
                    self.count += 1
                    self.latencies.append(t - sent)
                    self.first = self.first or t
                    self.last = t
                if counted:
                    self.stanzas += 1
                    if self.sample is None:
                        start = done.rfind(b"<message", 0, body.start())
                        self.sample = done[start : done.find(STANZA_END, body.end()) + len(STANZA_END)]

    def start(self):
        self.task = asyncio.ensure_future(self._run())


def temperature(seq):
    """A plausible temperature that changes with every reading: 20.0 .. 29.9."""
    return 20 + (seq % 100) / 10


def raw_bytes(to, sent, seq):
    """What the raw path sends: the reading as the text of a plain chat message."""
    return (
        f"<message type='chat' to='{to}'><body>temp {temperature(seq)};seq={seq};ts={sent}</body></message>"
    ).encode()


def fields_bytes(sent, seq, flags):
    """An XEP-0323 `<fields>` with the reading's two fields, each carrying `flags`."""
    return (
        f"<fields xmlns='urn:xmpp:iot:sensordata' seqnr='0' done='true'><node nodeId='d0'>"
        f"<timestamp value='2026-12-03T08:00:00.000Z'><numeric name='temp' value='{temperature(seq)}' unit=''{flags}/>"
        f"<string name='tag' value='seq={seq};ts={sent}'{flags}/></timestamp></node></fields>"
    )


MOMENTARY = " momentary='true'"
AUTOMATIC_READOUT = " automaticReadout='true'"

# Stanza shapes for --shapes: what each part of a push costs the server, sent by the raw client
# so that only the stanza differs. Each carries the reading in its body as the receiver expects.
SHAPES = {
    "chat body": lambda to, sent, seq: raw_bytes(to, sent, seq),
    "headline body": lambda to, sent, seq: (
        f"<message type='headline' to='{to}'><body>temp {temperature(seq)}, tag seq={seq};ts={sent}</body></message>"
    ).encode(),
    "+ fields, no flags": lambda to, sent, seq: (
        f"<message type='headline' to='{to}'><body>temp {temperature(seq)}, tag seq={seq};ts={sent}</body>"
        f"{fields_bytes(sent, seq, '')}</message>"
    ).encode(),
    "+ fields, compact": lambda to, sent, seq: (
        f"<message type='headline' to='{to}'><body>temp {temperature(seq)}, tag seq={seq};ts={sent}</body>"
        f"{fields_bytes(sent, seq, MOMENTARY)}</message>"
    ).encode(),
    "+ fields, full": lambda to, sent, seq: (
        f"<message type='headline' to='{to}'><body>temp {temperature(seq)}, tag seq={seq};ts={sent}</body>"
        f"{fields_bytes(sent, seq, MOMENTARY + AUTOMATIC_READOUT)}</message>"
    ).encode(),
}


def reading_json(sent, seq):
    """The MQTT payload of one reading: a number and a string field."""
    return json.dumps({"temp": temperature(seq), "tag": f"seq={seq};ts={sent}"}).encode()


# ---------------------------------------------------------------- MQTT 3.1.1 publisher


def varint(n):
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(s):
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


class Mqtt:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.pid = 0

    async def connect(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        body = mqtt_str("MQTT") + bytes([4, 0x02]) + (60).to_bytes(2, "big") + mqtt_str(f"bench-{os.getpid()}")
        self.writer.write(bytes([0x10]) + varint(len(body)) + body)
        connack = await asyncio.wait_for(self.reader.readexactly(4), 10)
        if connack[0] != 0x20 or connack[3] != 0:
            raise ConnectionError(f"CONNACK {connack!r}")
        # PUBACKs are read and dropped; the broker never waits for us.
        self.drain_task = asyncio.ensure_future(self._drain())

    async def _drain(self):
        while await self.reader.read(65536):
            pass

    def publish(self, topic, payload, qos=1):
        """QoS 1 (a device that wants its readings delivered) or 0 (most sensors)."""
        if qos == 0:
            body = mqtt_str(topic) + payload
            self.writer.write(bytes([0x30]) + varint(len(body)) + body)
            return
        self.pid = self.pid % 65535 + 1
        body = mqtt_str(topic) + self.pid.to_bytes(2, "big") + payload
        self.writer.write(bytes([0x32]) + varint(len(body)) + body)


# ---------------------------------------------------------------- phases


def pct(sorted_values, p):
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(p / 100 * (len(sorted_values) - 1))))
    return sorted_values[k]


async def paced(total, rate, send_one, writer):
    """Calls send_one(seq) `total` times at `rate` per second (0: flat out); returns (start, end)."""
    start = time.monotonic()
    sent = 0
    while sent < total:
        if rate:
            due = min(total, int((time.monotonic() - start) * rate) + 1)
        else:
            due = min(total, sent + 200)
        while sent < due:
            send_one(sent)
            sent += 1
        await writer.drain()
        if rate:
            await asyncio.sleep(0.002)
        else:
            await asyncio.sleep(0)
    return start, time.monotonic()


async def drain(receiver, total, quiet_s, max_s):
    """Waits until everything arrived or nothing arrived for quiet_s."""
    deadline = time.monotonic() + max_s
    last_count, last_change = -1, time.monotonic()
    while receiver.count < total and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        if receiver.count != last_count:
            last_count, last_change = receiver.count, time.monotonic()
        elif time.monotonic() - last_change > quiet_s:
            break


async def run_phase(name, path, rate, total, send_one, writer, receiver, gw, server):
    """One phase on one path. `gw` is the gateway (None on the raw path), `server` the XMPP
    server; both are measured over the same span: from the first send until the last message
    arrived (or nothing arrived for 5 s)."""
    receiver.reset()
    sampler = RssSampler(gw)
    cpu0 = gw.cpu_s() if gw else 0.0
    srv0 = server.cpu_s()
    sampler.start()
    t_first_send = now_us()
    await paced(total, rate, send_one, writer)
    await drain(receiver, total, quiet_s=5, max_s=120)
    sampler.stop()
    cpu1 = gw.cpu_s() if gw else 0.0
    srv1 = server.cpu_s()
    lat = sorted(receiver.latencies)
    got = receiver.count
    span_s = ((receiver.last or t_first_send) - t_first_send) / 1e6
    row = {
        "phase": name,
        "path": path,
        "rate": rate or "max",
        "sent": total,
        "received": got,
        "loss": total - got,
        "extra": receiver.extra,
        "stanzas": receiver.stanzas,
        "msg_s": got / span_s if span_s > 0 else 0.0,
        "p50_ms": pct(lat, 50) / 1000,
        "p99_ms": pct(lat, 99) / 1000,
        "max_ms": (lat[-1] / 1000) if lat else float("nan"),
        "server_ms_per_1k": ((srv1 - srv0) / got * 1e6) if got else None,
        "cpu_ms_per_1k": ((cpu1 - cpu0) / got * 1e6) if (gw and got) else None,
        "rss_peak_mib": sampler.peak if gw else None,
        "load": os.getloadavg()[0],
        "sample": receiver.sample.decode(errors="replace") if receiver.sample else "",
    }
    print_row(row)
    return row


def print_header():
    print(
        f"{'phase':<12}{'path':<9}{'rate/s':>7}{'sent':>7}{'recv':>7}{'loss':>6}{'extra':>6}{'stanzas':>8}"
        f"{'msg/s':>7}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'srv ms/1k':>10}{'gw ms/1k':>9}"
        f"{'RSS MiB':>8}{'load':>6}",
        flush=True,
    )


def print_row(r):
    def ms(v):
        return f"{v:.0f}" if v is not None else "-"

    rss = f"{r['rss_peak_mib']:.1f}" if r["rss_peak_mib"] is not None else "-"
    print(
        f"{r['phase']:<12}{r['path']:<9}{str(r['rate']):>7}{r['sent']:>7}{r['received']:>7}{r['loss']:>6}"
        f"{r['extra']:>6}{r['stanzas']:>8}{r['msg_s']:>7.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['max_ms']:>9.2f}"
        f"{ms(r['server_ms_per_1k']):>10}{ms(r['cpu_ms_per_1k']):>9}{rss:>8}{r['load']:>6.1f}",
        flush=True,
    )


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xmpp-port", type=int, required=True)
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--ping-jid", required=True, help="a device of the gateway (d0), pinged until it answers")
    ap.add_argument("--gateway-pid", type=int, required=True)
    ap.add_argument("--server-pid", type=int, required=True, help="the XMPP server (Prosody)")
    ap.add_argument("--receiver", default="sink", help="the receiving account (localhost)")
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--rates", default="1000")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--flood", type=int, default=20000, help="messages of each flat-out phase")
    ap.add_argument("--floods", type=int, default=2, help="flat-out phases per path")
    ap.add_argument("--qos", type=int, choices=(0, 1), default=0, help="of the MQTT publishes")
    ap.add_argument("--shapes", type=int, default=0,
                    help="then this many readings flat out per stanza shape, sent by the raw client")
    ap.add_argument("--json", help="write the rows here too")
    a = ap.parse_args()

    gw = Proc(a.gateway_pid)
    server = Proc(a.server_pid)
    to = f"{a.receiver}@localhost"
    receiver = Receiver("127.0.0.1", a.xmpp_port, a.receiver, a.receiver, "bench")
    await receiver.connect()
    # The gateway is up when one of its devices answers a ping.
    for _ in range(100):
        if await receiver.ping(a.ping_jid, timeout=2):
            break
        await asyncio.sleep(0.2)
    else:
        sys.exit("the gateway's devices do not answer pings")
    receiver.buf = b""
    receiver.start()
    sender = Xmpp("127.0.0.1", a.xmpp_port, "sender", "sender", "bench")
    await sender.connect()
    # Presence and other chatter the sender gets is read and dropped.
    asyncio.ensure_future(sender.reader.read(-1))
    mqtt = Mqtt("127.0.0.1", a.mqtt_port)
    await mqtt.connect()

    devices = [f"d{i}" for i in range(a.devices)]

    def mqtt_send(seq):
        mqtt.publish(f"bench/{devices[seq % len(devices)]}", reading_json(now_us(), seq), a.qos)

    def raw_send(seq):
        sender.writer.write(raw_bytes(to, now_us(), seq))

    # Warm-up: until the gateway's MQTT subscription delivers (seq < 0 is not counted).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        mqtt.publish("bench/d0", reading_json(now_us(), -1), a.qos)
        await mqtt.writer.drain()
        await asyncio.sleep(0.2)
        if receiver.warm:
            break
    else:
        sys.exit("no message from the gateway within 30 s of publishing")
    await asyncio.sleep(1)

    rss_idle = gw.rss_mib()
    cpu_idle0 = gw.cpu_s()
    await asyncio.sleep(5)
    cpu_idle = (gw.cpu_s() - cpu_idle0) / 5
    print(f"gateway idle: RSS {rss_idle:.1f} MiB, CPU {cpu_idle * 100:.2f} % of one core", flush=True)
    print_header()
    rows = []
    for rate in [int(r) for r in a.rates.split(",") if r]:
        total = int(rate * a.seconds)
        rows.append(await run_phase(f"rate {rate}", "raw", rate, total, raw_send, sender.writer, receiver, None, server))
        rows.append(await run_phase(f"rate {rate}", "gateway", rate, total, mqtt_send, mqtt.writer, receiver, gw, server))
    for i in range(1, a.floods + 1):
        rows.append(await run_phase(f"flood {i}", "raw", 0, a.flood, raw_send, sender.writer, receiver, None, server))
        rows.append(await run_phase(f"flood {i}", "gateway", 0, a.flood, mqtt_send, mqtt.writer, receiver, gw, server))
    shape_rows = []
    if a.shapes:
        # Flat out: the server then parses stanzas in large reads, whatever the load on the
        # machine, so that the stanza's own cost is what differs.
        rate = 0
        for i, (name, shape) in enumerate(SHAPES.items(), 1):
            def shape_send(seq, shape=shape):
                sender.writer.write(shape(to, now_us(), seq))

            shape_rows.append(await run_phase(f"shape {i}", "raw", rate, a.shapes, shape_send, sender.writer, receiver, None, server))
            shape_rows[-1]["shape"] = name
            shape_rows[-1]["bytes"] = len(shape_rows[-1]["sample"].encode())
    # The gateway hands free heap back every 5 s: 10 s covers one such turn whatever the phase.
    await asyncio.sleep(10)
    rss_after = gw.rss_mib()
    print(f"gateway after the run (10 s idle): RSS {rss_after:.1f} MiB", flush=True)

    print()
    print("summary (gateway against the raw ceiling; server = the XMPP server's CPU)")
    for rate in [int(r) for r in a.rates.split(",") if r]:
        d = next(r for r in rows if r["rate"] == rate and r["path"] == "raw")
        g = next(r for r in rows if r["rate"] == rate and r["path"] == "gateway")
        print(
            f"  {rate:>5} msg/s: p99 {g['p99_ms']:.2f} ms (raw {d['p99_ms']:.2f}, {g['p99_ms'] - d['p99_ms']:+.2f}); "
            f"loss {g['loss']}; extra {g['extra']}; gateway {g['cpu_ms_per_1k']:.0f} ms CPU per 1k; "
            f"server {g['server_ms_per_1k']:.0f} ms per 1k (raw {d['server_ms_per_1k']:.0f}, "
            f"{g['server_ms_per_1k'] / d['server_ms_per_1k']:.2f}x)"
        )
    for i in range(1, a.floods + 1):
        d = next(r for r in rows if r["phase"] == f"flood {i}" and r["path"] == "raw")
        g = next(r for r in rows if r["phase"] == f"flood {i}" and r["path"] == "gateway")
        print(
            f"  flood {i}: gateway {g['msg_s']:.0f} msg/s, raw {d['msg_s']:.0f} msg/s = "
            f"{100 * g['msg_s'] / d['msg_s']:.0f} % of the ceiling; loss {g['loss']} of {g['sent']} (raw {d['loss']}); "
            f"{g['received'] / max(g['stanzas'], 1):.1f} readings per stanza; "
            f"server {g['server_ms_per_1k']:.0f} ms per 1k (raw {d['server_ms_per_1k']:.0f}, "
            f"{g['server_ms_per_1k'] / d['server_ms_per_1k']:.2f}x); gateway {g['cpu_ms_per_1k']:.0f} ms CPU per 1k"
        )
    peak = max(r["rss_peak_mib"] for r in rows if r["rss_peak_mib"] is not None)
    for i, r in enumerate(shape_rows, 1):
        print(
            f"  shape {i} ({r['shape']}): {r['bytes']} bytes as received, server {r['server_ms_per_1k']:.0f} ms per 1k "
            f"({r['server_ms_per_1k'] / shape_rows[0]['server_ms_per_1k']:.2f}x shape 1)"
        )
    for path in ("raw", "gateway"):
        sample = next((r["sample"] for r in rows if r["path"] == path and r["sample"]), "")
        print(f"  a {path} stanza as received ({len(sample.encode())} bytes): {sample}")
    print(f"  gateway RSS: idle {rss_idle:.1f} MiB, peak under load {peak:.1f} MiB, after {rss_after:.1f} MiB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rss_idle": rss_idle, "rss_after": rss_after, "cpu_idle": cpu_idle, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    asyncio.run(main())
