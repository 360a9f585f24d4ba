"""Shared helpers for the CoAP tests (no tests here).

* SERVER_APP: a CoAP server script run under real MicroPython in a subprocess.
* MpServer: starts it on a free port, waits for "PORT n", stops it.
* UdpProxy: a loopback UDP relay that can drop the first N datagrams or drop,
  duplicate and reorder a seeded fraction of them.
* pattern(): the deterministic test body (byte i = PAT[i % len(PAT)]).
"""
import hashlib
import os
import random
import select
import socket
import subprocess
import threading
import time

from mpy import ROOT, micropython_exe

PAT_LEN = 4093  # prime, so blocks never line up with the pattern


def _pat():
    r = random.Random(7)
    return bytes(r.getrandbits(8) for _ in range(PAT_LEN))


PAT = _pat()


def pattern(n, offset=0):
    out = bytearray()
    while len(out) < n:
        o = (offset + len(out)) % PAT_LEN
        out += PAT[o:o + n - len(out)]
    return bytes(out)


def sha256_hex(b):
    return hashlib.sha256(b).hexdigest()


# Runs under MicroPython. PAT is passed in a file so both sides agree byte for byte.
SERVER_APP = r'''
import sys, os
from firmware_slots.coap.protocol import CoapEndpoint
from firmware_slots.coap.server import Site, Response
from firmware_slots.coap.transport import UdpTransport
from firmware_slots.coap import numbers as N

ARGS = {}
for a in sys.argv[1:]:
    k, v = a.split("=", 1)
    ARGS[k] = v
PAT = open(ARGS["pat"], "rb").read()
L = len(PAT)


def pattern(offset, n):
    out = bytearray()
    while len(out) < n:
        o = (offset + len(out)) % L
        out += PAT[o:o + n - len(out)]
    return bytes(out)


BIG = pattern(0, 20480)
STREAM_SIZE = int(ARGS.get("stream", "1048576"))
site = Site()
site.route("hello", get=lambda r: Response(payload=b"hello from micropython", content_format=N.TEXT_PLAIN),
           rt="test.hello", title="Hello")
site.route("big", get=lambda r: Response(payload=BIG, content_format=N.OCTET_STREAM, etag=b"big-v1"))
site.route("stream", get=lambda r: Response(reader=pattern, size=STREAM_SIZE, etag=b"st-v1",
                                            content_format=N.OCTET_STREAM))


def echo(r):
    if r.content_format not in (None, N.TEXT_PLAIN, N.OCTET_STREAM):
        return Response(N.UNSUPPORTED_CONTENT_FORMAT)
    h = __import__("hashlib").sha256(r.payload).digest()
    body = b"len=%d;q=%s;sha=" % (len(r.payload), "&".join(r.query).encode())
    return Response(N.CHANGED, body + __import__("binascii").hexlify(h))


site.route("echo", post=echo, put=echo, max_body=16384)
site.route("usp/agent", post=lambda r: Response(N.CHANGED), rt="bbf.usp.endpoint", if_="bbf.usp.a")

pending = []


def slow(r):
    pending.append((r.defer(), __import__("time").ticks_ms()))


site.route("slow", get=slow)
ep = None


def shutdown(r):
    ep.stop()
    return Response(N.CHANGED)


site.route("shutdown", post=shutdown)

params = N.TransmissionParams(ack_timeout_ms=int(ARGS.get("ack", "2000")))
tr = None
b = os.urandom(2)
base = 20000 + ((b[0] << 8 | b[1]) % 30000)
for i in range(50):
    try:
        tr = UdpTransport("127.0.0.1", base + i)
        port = base + i
        break
    except OSError:
        pass
ep = CoapEndpoint(tr, site, params)
print("PORT", port)
import time
end = time.ticks_add(time.ticks_ms(), int(ARGS.get("seconds", "60")) * 1000)
if ARGS.get("mode") == "asyncio":
    import asyncio

    async def main():
        t = asyncio.create_task(ep.run())
        while time.ticks_diff(end, time.ticks_ms()) > 0 and not ep._stop:
            for p in pending[:]:
                if time.ticks_diff(time.ticks_ms(), p[1]) > 300:
                    pending.remove(p)
                    p[0].respond(Response(payload=b"separate"))
            await asyncio.sleep_ms(20)
        ep.stop()
        t.cancel()

    asyncio.run(main())
else:
    while not ep._stop and time.ticks_diff(end, time.ticks_ms()) > 0:
        ep.poll(50)
        for p in pending[:]:
            if time.ticks_diff(time.ticks_ms(), p[1]) > 300:
                pending.remove(p)
                p[0].respond(Response(payload=b"separate"))
print("STATS", ep.stats)
ep.close()
'''


class MpServer:
    """SERVER_APP under MicroPython; .port once started. Use as a context manager."""

    def __init__(self, tmp_path, seconds=60, mode="poll", ack_ms=2000, stream=1 << 20, heapsize=None):
        self.tmp = tmp_path
        app = tmp_path / "coap_server_app.py"
        app.write_text(SERVER_APP)
        pat = tmp_path / "pat.bin"
        pat.write_bytes(PAT)
        args = [micropython_exe()]
        if heapsize:
            args += ["-X", "heapsize=%s" % heapsize]
        args += [str(app), "pat=%s" % pat, "seconds=%d" % seconds, "mode=" + mode,
                 "ack=%d" % ack_ms, "stream=%d" % stream]
        # ".frozen" keeps the frozen modules (asyncio) importable when MICROPYPATH is set
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]))
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, cwd=ROOT, text=True)
        self.port = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                line = self.proc.stdout.readline()
                if line.startswith("PORT "):
                    self.port = int(line.split()[1])
                    break
                if not line and self.proc.poll() is not None:
                    break
        if self.port is None:
            self.stop()
            raise RuntimeError("MicroPython server did not start: %s" % self.proc.stderr.read())

    @property
    def uri(self):
        return "coap://127.0.0.1:%d/" % self.port

    def stop(self, timeout=5):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        return out, err

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


from hil.peers import free_udp_port  # noqa: E402,F401  (one owner: the harness)


class UdpProxy(threading.Thread):
    """Relay client <-> server on loopback with seeded misbehaviour.

    drop_first: drop this many client->server datagrams first.
    loss/dup/reorder: probabilities applied to datagrams in both directions.
    One client at a time (the first sender is "the client").
    """

    def __init__(self, server_port, drop_first=0, loss=0.0, dup=0.0, reorder=0.0, seed=1):
        threading.Thread.__init__(self, daemon=True)
        self.server = ("127.0.0.1", server_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.bind(("127.0.0.1", 0))
        self.client = None
        self.drop_first = drop_first
        self.loss, self.dup, self.reorder = loss, dup, reorder
        self.rand = random.Random(seed)
        self.stats = {"seen": 0, "dropped": 0, "duplicated": 0, "reordered": 0}
        self._held = None
        self._halt = False
        self.start()

    def _deliver(self, sock, data, addr):
        s = self.stats
        s["seen"] += 1
        r = self.rand.random()
        if r < self.loss:
            s["dropped"] += 1
            return
        r -= self.loss
        if r < self.dup:
            s["duplicated"] += 1
            sock.sendto(data, addr)
            sock.sendto(data, addr)
            return
        r -= self.dup
        if r < self.reorder and self._held is None:
            s["reordered"] += 1
            self._held = (sock, data, addr)  # sent after the next datagram
            return
        sock.sendto(data, addr)
        if self._held is not None:
            h, self._held = self._held, None
            h[0].sendto(h[1], h[2])

    def run(self):
        while not self._halt:
            r, _, _ = select.select([self.sock, self.up], [], [], 0.05)
            if not r and self._held is not None:
                h, self._held = self._held, None
                h[0].sendto(h[1], h[2])
            for s in r:
                data, addr = s.recvfrom(4096)
                if s is self.sock:
                    self.client = addr
                    if self.drop_first > 0:
                        self.drop_first -= 1
                        self.stats["dropped"] += 1
                        continue
                    self._deliver(self.up, data, self.server)
                elif self.client is not None:
                    self._deliver(self.sock, data, self.client)

    def close(self):
        self._halt = True
        self.join(2)
        self.sock.close()
        self.up.close()
