#!/usr/bin/env python3
"""Demo viewer for xmpp-iot-gateway: an ordinary XMPP user watching the gateway's devices.

Logs in over c2s with STARTTLS (trusting --ca), then
  1. disco#items on the gateway domain: prints the devices (retries while the gateway connects);
  2. subscribes to every device and prints each presence update with its status line;
  3. one XEP-0323 momentary readout per device, printed as a table;
  4. sends `get` in a chat message to the first device and prints the answer;
  5. keeps printing presence updates until Ctrl-C, or with --once exits:
     0 if every device answered the readout, 1 otherwise.

Started by scripts/demo.sh (slixmpp 1.x in demo-run/venv). Notes on slixmpp's xep_0323 (see
XEP-0323): it only parses numeric/string/boolean/dateTime/timeSpan/enum fields, expects
done='true' on the last <fields>, and never reports an RFC 6120 IQ error to its callback — so
this viewer sends the request itself and awaits the IQ answer, and uses the plugin only to
dispatch the <fields>/<failure> messages.
"""

import argparse
import asyncio
import logging
import sys
import time

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

DISCO_WAIT = 60.0  # seconds to wait for the gateway to answer disco#items
READOUT_TIMEOUT = 15.0  # seconds per device readout
CHAT_TIMEOUT = 10.0
LOGIN_TIMEOUT = 30.0


def now():
    return time.strftime("%H:%M:%S")


def out(text=""):
    print(text, flush=True)


def table(headers, rows):
    """Rows of strings as an aligned text table."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    line = "  ".join("{:<%d}" % w for w in widths)
    text = [line.format(*headers), line.format(*["-" * w for w in widths])]
    text += [line.format(*row) for row in rows]
    return "\n".join("  " + t.rstrip() for t in text)


class Viewer(slixmpp.ClientXMPP):
    def __init__(self, args):
        super().__init__(args.jid, args.password)
        self.args = args
        self.gateway = args.gateway.lower()
        self.devices = []  # (jid, name)
        self.exit_code = 1
        self.online = asyncio.Event()
        self.chat_replies = {}  # bare jid -> asyncio.Queue of bodies
        self.register_plugin("xep_0030")  # service discovery
        self.register_plugin("xep_0323")  # sensor data
        self.register_plugin("xep_0199")  # ping (keepalive)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("failed_auth", self.on_failed_auth)
        self.add_event_handler("connection_failed", self.on_connection_failed)
        self.add_event_handler("presence_available", self.on_presence)
        self.add_event_handler("presence_unavailable", self.on_presence)
        self.add_event_handler("presence_subscribed", self.on_subscription)
        self.add_event_handler("presence_unsubscribed", self.on_subscription)
        self.add_event_handler("message", self.on_message)

    def is_device(self, jid):
        return jid.domain == self.gateway and jid.bare != self.gateway

    # --- events ---------------------------------------------------------------------------
    def on_failed_auth(self, _event):
        out("login failed for %s (wrong password?)" % self.args.jid)
        self.exit_code = 1
        self.disconnect()

    def on_connection_failed(self, error):
        out("connection to %s failed: %s" % (self.args.server, error))

    def on_presence(self, pres):
        if not self.is_device(pres["from"]):
            return
        state = "unavailable" if pres["type"] == "unavailable" else (pres["show"] or "available")
        status = pres["status"] or ""
        out("[%s] presence  %-32s %-11s %s" % (now(), pres["from"].bare, state, status))

    def on_subscription(self, pres):
        if self.is_device(pres["from"]):
            out("[%s] %s: %s" % (now(), pres["from"].bare, pres["type"]))

    def on_message(self, msg):
        if msg["type"] in ("chat", "normal") and msg["body"] and self.is_device(msg["from"]):
            self.chat_replies.setdefault(msg["from"].bare, asyncio.Queue()).put_nowait(msg["body"])

    async def on_start(self, _event):
        self.online.set()
        try:
            self.send_presence()
            await self.get_roster()
            self.exit_code = await self.run_demo()
        except Exception as e:  # report, do not hang
            out("viewer error: %r" % e)
            self.exit_code = 1
        if self.args.once:
            self.disconnect()

    # --- the demo ---------------------------------------------------------------------------
    async def run_demo(self):
        if not await self.discover():
            return 1
        for jid, _name in self.devices:
            self.send_presence(pto=jid, ptype="subscribe")
        answered = 0
        for jid, _name in self.devices:
            if await self.readout(jid):
                answered += 1
        if self.devices:
            await self.chat_get(self.devices[0][0])
        out()
        out("%d of %d devices answered the readout" % (answered, len(self.devices)))
        if not self.args.once:
            out("watching presence updates; Ctrl-C to stop")
        return 0 if self.devices and answered == len(self.devices) else 1

    async def discover(self):
        deadline = time.monotonic() + DISCO_WAIT
        waited = False
        while True:
            try:
                items = await self.plugin["xep_0030"].get_items(jid=self.gateway, timeout=10)
                break
            except IqError as e:
                condition = e.iq["error"]["condition"]
                if time.monotonic() > deadline:
                    out("disco#items on %s failed: %s %s"
                        % (self.gateway, condition, e.iq["error"]["text"]))
                    return False
                if not waited:
                    out("waiting for the gateway to connect to %s (%s) ..." % (self.gateway, condition))
                    waited = True
                await asyncio.sleep(1)
            except IqTimeout:
                if time.monotonic() > deadline:
                    out("disco#items on %s: no answer" % self.gateway)
                    return False
        self.devices = [(str(jid), name or "") for jid, _node, name in items["disco_items"]["items"]]
        out()
        out("Devices of %s:" % self.gateway)
        out(table(["JID", "name"], [[j, n] for j, n in self.devices]) if self.devices else "  (none)")
        out()
        return bool(self.devices)

    async def readout(self, device):
        """One momentary readout; True if it completed with at least one field."""
        plugin = self.plugin["xep_0323"]
        done = asyncio.get_running_loop().create_future()
        rows, errors = [], []

        def callback(from_jid, result, nodeId=None, timestamp=None, fields=None, error_msg=None):
            if result == "fields":
                for f in fields or []:
                    rows.append([f.get("name", ""), str(f.get("value", "")), f.get("unit", ""),
                                 f.get("typename", ""), str(timestamp or "")])
            elif result in ("failure", "rejected"):
                errors.append("%s: %s" % (result, error_msg or ""))
                if not done.done():
                    done.set_result(False)
            elif result == "done" and not done.done():
                done.set_result(True)

        seqnr = plugin._get_new_seqnr()
        iq = self.Iq()
        iq["from"] = self.boundjid.full
        iq["to"] = device
        iq["type"] = "get"
        iq["id"] = "sd-" + seqnr
        iq["req"]["seqnr"] = seqnr
        iq["req"]._set_flags({"momentary": "true"})
        plugin.sessions[seqnr] = {"from": iq["from"], "to": iq["to"], "seqnr": seqnr,
                                  "callback": callback}
        ok = False
        try:
            await iq.send(timeout=READOUT_TIMEOUT)
            ok = await asyncio.wait_for(done, READOUT_TIMEOUT)
        except IqError as e:
            errors.append("error: %s %s" % (e.iq["error"]["condition"], e.iq["error"]["text"]))
        except (IqTimeout, asyncio.TimeoutError):
            errors.append("no complete answer within %ds" % READOUT_TIMEOUT)
        finally:
            plugin.sessions.pop(seqnr, None)
        out("Readout of %s:" % device)
        if rows:
            out(table(["field", "value", "unit", "type", "timestamp"], rows))
        for e in errors:
            out("  " + e)
        out()
        return ok and bool(rows)

    async def chat_get(self, device):
        queue = self.chat_replies.setdefault(device, asyncio.Queue())
        self.send_message(mto=device, mbody="get", mtype="chat")
        out("Chat to %s: get" % device)
        try:
            body = await asyncio.wait_for(queue.get(), CHAT_TIMEOUT)
            out("\n".join("  " + line for line in body.splitlines()))
        except asyncio.TimeoutError:
            out("  (no answer within %ds)" % CHAT_TIMEOUT)


async def main(args):
    viewer = Viewer(args)
    viewer.ca_certs = args.ca
    viewer.enable_direct_tls = False  # the c2s port speaks STARTTLS
    viewer.enable_starttls = True
    viewer.enable_plaintext = False
    host, _, port = args.server.rpartition(":")
    viewer.connect(host, int(port))
    try:
        await asyncio.wait_for(viewer.online.wait(), LOGIN_TIMEOUT)
    except asyncio.TimeoutError:
        out("could not log in to %s as %s within %ds" % (args.server, args.jid, LOGIN_TIMEOUT))
        viewer.disconnect()
        return 1
    await viewer.disconnected
    return viewer.exit_code


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jid", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--server", required=True, help="HOST:PORT of the c2s listener")
    p.add_argument("--ca", required=True, help="PEM file of the CA to trust")
    p.add_argument("--gateway", required=True, help="the gateway's component domain")
    p.add_argument("--once", action="store_true", help="exit after the first readout of every device")
    p.add_argument("--debug", action="store_true", help="slixmpp debug logging")
    return p.parse_args()


if __name__ == "__main__":
    arguments = parse_args()
    logging.basicConfig(level=logging.DEBUG if arguments.debug else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        code = asyncio.run(main(arguments))
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)
