#!/usr/bin/env python3
"""Load driver for bench/e2e.sh: publishes timestamped MQTT messages, receives the gateway's
headline messages over XMPP, and measures the same traffic sent straight through the XMPP server.

Python standard library only (asyncio, raw sockets): a minimal MQTT 3.1.1 publisher and a minimal
plaintext c2s client (SASL PLAIN, bind) that counts messages with a regular expression instead of
parsing XML, so that the measuring side stays cheap next to what it measures.

Every payload carries its send time in microseconds; the receiver subtracts it from its own clock
(same machine). Numbers are printed as a table; nothing is asserted.
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
BODY_RE = re.compile(rb"<body[^>]*>sent (-?\d+), seq (-?\d+)</body>")
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
        self.latencies = []
        self.first = self.last = None

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
            for m in BODY_RE.finditer(done):
                sent, seq = int(m.group(1)), int(m.group(2))
                if seq < 0:
                    self.warm = True  # warm-up traffic, not counted
                    continue
                if sent in self.seen:
                    self.extra += 1
                    continue
                self.seen.add(sent)
                self.count += 1
                self.latencies.append(t - sent)
                self.first = self.first or t
                self.last = t

    def start(self):
        self.task = asyncio.ensure_future(self._run())


def headline_bytes(to, sent, seq):
    """What the direct path sends: about the size and shape of the gateway's headline."""
    return (
        f"<message type='headline' to='{to}'><body>sent {sent}, seq {seq}</body>"
        f"<fields xmlns='urn:xmpp:iot:sensordata' seqnr='0' done='true'><node nodeId='d0'>"
        f"<timestamp value='2026-01-01T00:00:00Z'><numeric name='sent' value='{sent}' "
        f"momentary='true' automaticReadout='true'/><numeric name='seq' value='{seq}' "
        f"momentary='true' automaticReadout='true'/></timestamp></node></fields></message>"
    ).encode()


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

    def publish(self, topic, payload):
        """QoS 1, as a device that wants its readings delivered would publish."""
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


async def run_phase(name, path, rate, total, send_one, writer, receiver, gw):
    receiver.reset()
    sampler = RssSampler(gw)
    cpu0 = gw.cpu_s() if gw else 0.0
    sampler.start()
    t_first_send = now_us()
    await paced(total, rate, send_one, writer)
    await drain(receiver, total, quiet_s=5, max_s=120)
    sampler.stop()
    cpu1 = gw.cpu_s() if gw else 0.0
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
        "msg_s": got / span_s if span_s > 0 else 0.0,
        "p50_ms": pct(lat, 50) / 1000,
        "p99_ms": pct(lat, 99) / 1000,
        "max_ms": (lat[-1] / 1000) if lat else float("nan"),
        "cpu_s_per_1k": ((cpu1 - cpu0) / got * 1000) if (gw and got) else None,
        "rss_peak_mib": sampler.peak if gw else None,
    }
    print_row(row)
    return row


def print_header():
    print(
        f"{'phase':<14}{'path':<9}{'rate/s':>7}{'sent':>8}{'recv':>8}{'loss':>6}{'extra':>7}"
        f"{'msg/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'cpu s/1k':>10}{'RSS MiB':>9}",
        flush=True,
    )


def print_row(r):
    cpu = f"{r['cpu_s_per_1k']:.4f}" if r["cpu_s_per_1k"] is not None else "-"
    rss = f"{r['rss_peak_mib']:.1f}" if r["rss_peak_mib"] is not None else "-"
    print(
        f"{r['phase']:<14}{r['path']:<9}{str(r['rate']):>7}{r['sent']:>8}{r['received']:>8}{r['loss']:>6}{r['extra']:>7}"
        f"{r['msg_s']:>9.0f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}{r['max_ms']:>9.2f}{cpu:>10}{rss:>9}",
        flush=True,
    )


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--xmpp-port", type=int, required=True)
    ap.add_argument("--mqtt-port", type=int, required=True)
    ap.add_argument("--ping-jid", required=True, help="a device of the gateway (d0), pinged until it answers")
    ap.add_argument("--gateway-pid", type=int, required=True)
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--rates", default="200,1000,5000")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--flood", type=int, default=50000, help="messages of the flat-out phase")
    ap.add_argument("--json", help="write the rows here too")
    a = ap.parse_args()

    gw = Proc(a.gateway_pid)
    receiver = Receiver("127.0.0.1", a.xmpp_port, "receiver", "receiver", "bench")
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
        mqtt.publish(f"bench/{devices[seq % len(devices)]}", json.dumps({"sent": now_us(), "seq": seq}).encode())

    def direct_send(seq):
        sender.writer.write(headline_bytes("receiver@localhost", now_us(), seq))

    # Warm-up: until the gateway's MQTT subscription delivers (seq < 0 is not counted).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        mqtt.publish("bench/d0", json.dumps({"sent": now_us(), "seq": -1}).encode())
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
        rows.append(await run_phase(f"rate {rate}", "direct", rate, total, direct_send, sender.writer, receiver, None))
        rows.append(await run_phase(f"rate {rate}", "gateway", rate, total, mqtt_send, mqtt.writer, receiver, gw))
    rows.append(await run_phase("flood", "direct", 0, a.flood, direct_send, sender.writer, receiver, None))
    rows.append(await run_phase("flood", "gateway", 0, a.flood, mqtt_send, mqtt.writer, receiver, gw))
    # The gateway hands free heap back every 5 s: 10 s covers one such turn whatever the phase.
    await asyncio.sleep(10)
    rss_after = gw.rss_mib()
    print(f"gateway after the run (10 s idle): RSS {rss_after:.1f} MiB", flush=True)

    print()
    print("summary")
    for rate in [int(r) for r in a.rates.split(",") if r]:
        d = next(r for r in rows if r["rate"] == rate and r["path"] == "direct")
        g = next(r for r in rows if r["rate"] == rate and r["path"] == "gateway")
        print(
            f"  {rate:>5} msg/s: gateway adds p50 {g['p50_ms'] - d['p50_ms']:+.2f} ms, "
            f"p99 {g['p99_ms'] - d['p99_ms']:+.2f} ms; loss {g['loss']}; extra headlines {g['extra']}; "
            f"{g['cpu_s_per_1k']:.4f} CPU s per 1k messages"
        )
    d = next(r for r in rows if r["rate"] == "max" and r["path"] == "direct")
    g = next(r for r in rows if r["rate"] == "max" and r["path"] == "gateway")
    print(
        f"  flood: gateway {g['msg_s']:.0f} msg/s, ceiling (direct) {d['msg_s']:.0f} msg/s = "
        f"{100 * g['msg_s'] / d['msg_s']:.0f} % of the ceiling; loss {g['loss']} of {g['sent']}"
    )
    peak = max(r["rss_peak_mib"] for r in rows if r["rss_peak_mib"] is not None)
    print(f"  gateway RSS: idle {rss_idle:.1f} MiB, peak under load {peak:.1f} MiB, after {rss_after:.1f} MiB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"rss_idle": rss_idle, "rss_after": rss_after, "cpu_idle": cpu_idle, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    asyncio.run(main())
