"""Our CoAP server, running under real MicroPython, queried by aiocoap and libcoap."""
import warnings
warnings.filterwarnings("ignore", category=DeprecationWarning, module="aiocoap")
import asyncio
import shutil
import socket
import subprocess

import pytest

from firmware_slots.coap import numbers as N
from firmware_slots.coap.message import CoapMessage, decode, block_encode, block_decode
from mpy import requires_micropython
from support.coap_peers import MpServer, pattern, sha256_hex

aiocoap = pytest.importorskip("aiocoap")
pytestmark = requires_micropython

COAP_CLIENT = shutil.which("coap-client-notls")
needs_libcoap = pytest.mark.skipif(COAP_CLIENT is None, reason="libcoap3-bin not installed")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MpServer(tmp_path_factory.mktemp("coapsrv"), seconds=80)
    yield srv
    srv.stop()


def aio_run(coro, timeout=30):
    async def main():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(main())


async def aio_requests(reqs):
    ctx = await aiocoap.Context.create_client_context()
    try:
        out = []
        for r in reqs:
            out.append(await ctx.request(r).response)
        return out
    finally:
        await ctx.shutdown()


def check_with_aiocoap(uri):
    big = pattern(20480)
    body = pattern(10000, 5)
    reqs = [
        aiocoap.Message(code=aiocoap.GET, uri=uri + "hello"),
        aiocoap.Message(code=aiocoap.GET, uri=uri + ".well-known/core"),
        aiocoap.Message(code=aiocoap.GET, uri=uri + "big"),
        aiocoap.Message(code=aiocoap.POST, uri=uri + "echo?a=1&reply-to=coap://x:1/y", payload=body,
                        content_format=42),
        aiocoap.Message(code=aiocoap.GET, uri=uri + "slow"),
        aiocoap.Message(code=aiocoap.GET, uri=uri + "nothing/here"),
        aiocoap.Message(code=aiocoap.DELETE, uri=uri + "hello"),
        aiocoap.Message(code=aiocoap.POST, uri=uri + "echo", payload=b"{}", content_format=50),
        aiocoap.Message(code=aiocoap.POST, uri=uri + "echo", payload=pattern(20000)),
    ]
    r = aio_run(aio_requests(reqs), 60)
    assert r[0].code == aiocoap.CONTENT and r[0].payload == b"hello from micropython"
    assert r[0].opt.content_format == 0
    wkc = r[1].payload.decode()
    assert r[1].opt.content_format == 40
    assert '</usp/agent>;if="bbf.usp.a";rt="bbf.usp.endpoint"' in wkc.split(",")
    assert '</hello>;rt="test.hello";title="Hello"' in wkc.split(",")
    from aiocoap.util.linkformat import parse
    links = {l.href: l for l in parse(wkc).links}
    assert links["/usp/agent"].get_target  # parses as RFC 6690
    assert r[2].code == aiocoap.CONTENT and r[2].payload == big and r[2].opt.etag == b"big-v1"
    assert r[3].code == aiocoap.CHANGED
    assert r[3].payload == b"len=10000;q=a=1&reply-to=coap://x:1/y;sha=" + sha256_hex(body).encode()
    assert r[4].code == aiocoap.CONTENT and r[4].payload == b"separate"
    assert r[5].code == aiocoap.NOT_FOUND
    assert r[6].code == aiocoap.METHOD_NOT_ALLOWED
    assert r[7].code == aiocoap.UNSUPPORTED_CONTENT_FORMAT
    assert r[8].code == aiocoap.REQUEST_ENTITY_TOO_LARGE and r[8].opt.size1 == 16384


def test_aiocoap_client_against_micropython_server(server):
    check_with_aiocoap(server.uri)


def test_asyncio_mode_server(tmp_path):
    with MpServer(tmp_path, seconds=40, mode="asyncio") as srv:
        check_with_aiocoap(srv.uri)


def libcoap(*args, timeout=30):
    """Run coap-client-notls; -> the response body (written with -o: stdout adds a newline)."""
    import tempfile, os
    fd, out = tempfile.mkstemp()
    os.close(fd)
    try:
        if "-o" not in args:
            args = ("-o", out) + args
        p = subprocess.run([COAP_CLIENT, "-B", "20"] + list(args), capture_output=True, timeout=timeout)
        assert p.returncode == 0, p.stderr
        with open(out, "rb") as f:
            return f.read()
    finally:
        os.unlink(out)


@needs_libcoap
def test_libcoap_client_against_micropython_server(server, tmp_path):
    out = tmp_path / "big.bin"
    libcoap("-m", "get", "-b", "1024", "-o", str(out), server.uri + "big")
    assert out.read_bytes() == pattern(20480)
    out2 = tmp_path / "big256.bin"  # the client proposes a smaller block size
    libcoap("-m", "get", "-b", "256", "-o", str(out2), server.uri + "big")
    assert out2.read_bytes() == pattern(20480)
    wkc = libcoap("-m", "get", server.uri + ".well-known/core")
    assert b'</usp/agent>;if="bbf.usp.a";rt="bbf.usp.endpoint"' in wkc
    src = tmp_path / "upload.bin"
    src.write_bytes(pattern(5000, 11))
    got = libcoap("-m", "post", "-b", "1024", "-t", "42", "-f", str(src),
                  server.uri + "echo?mode=test&n=2")
    assert got == b"len=5000;q=mode=test&n=2;sha=" + sha256_hex(pattern(5000, 11)).encode()
    got = libcoap("-m", "put", "-e", "small", server.uri + "echo?q")
    assert got == b"len=5;q=q;sha=" + sha256_hex(b"small").encode()


# --- raw datagrams ------------------------------------------------------------------
class Raw:
    def __init__(self, port):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.settimeout(1.0)
        self.addr = ("127.0.0.1", port)

    def ask(self, data, expect_reply=True):
        self.s.sendto(data, self.addr)
        if not expect_reply:
            self.s.settimeout(0.3)
        try:
            return decode(self.s.recvfrom(2048)[0])
        except socket.timeout:
            return None
        finally:
            self.s.settimeout(1.0)

    def get(self, path, mid, token=b"ok", opts=()):
        m = CoapMessage(N.CON, N.GET, mid, token, [(N.URI_PATH, p.encode()) for p in path.split("/")]
                        + list(opts))
        return self.ask(m.encode())


def test_malformed_datagrams(server):
    raw = Raw(server.port)
    silent = [b"", b"\x40", b"\x40\x01\x00", b"\x80\x01\x00\x07", b"\x5f\x01\x00\x08" + b"t" * 15,
              b"\x50\xe1\x00\x09", b"\x54\x01\x00\x0a" + b"t"]
    for d in silent:  # truncated, wrong version, malformed NON: dropped without reply
        assert raw.ask(d, expect_reply=False) is None, d
    resets = [
        (b"\x49\x01\x01\x01" + b"t" * 9, 0x101),                   # token length 9
        (b"\x4f\x01\x01\x02" + b"t" * 15, 0x102),                  # token length 15
        (b"\x40\x01\x01\x03\xf1a", 0x103),                         # option delta nibble 15
        (b"\x40\x01\x01\x04\xbfa", 0x104),                         # option length nibble 15
        (b"\x40\x01\x01\x05\xd1\x00" + b"x" * 4, 0x105),           # option runs past the end
        (b"\x40\x01\x01\x06\x1e\x10\x00" + b"x" * 100, 0x106),     # oversized option
        (b"\x40\x01\x01\x07\xff", 0x107),                          # marker, no payload
        (b"\x40\x00\x01\x08", 0x108),                              # CoAP ping
    ]
    for d, mid in resets:
        r = raw.ask(d)
        assert r is not None and r.mtype == N.RST and r.mid == mid and r.code == 0, d
    # unknown critical option in a CON request -> 4.02 piggy-backed
    r = raw.get("hello", 0x200, opts=[(9, b"x")])
    assert r.mtype == N.ACK and r.code == N.BAD_OPTION and r.mid == 0x200
    # bad Block2 (reserved SZX 7) -> 4.00
    r = raw.get("big", 0x201, opts=[(N.BLOCK2, b"\x07")])
    assert r.code == N.BAD_REQUEST
    # Block2 beyond the end -> 4.02
    r = raw.get("big", 0x202, opts=[(N.BLOCK2, block_encode(500, False, 6))])
    assert r.code == N.BAD_OPTION
    # Block1 out of order -> 4.08
    def post(mid, num, more, payload, extra=()):
        m = CoapMessage(N.CON, N.POST, mid, b"b1", [(N.URI_PATH, b"echo"),
                                                   (N.BLOCK1, block_encode(num, more, 4))] + list(extra),
                        payload)
        return raw.ask(m.encode())
    r = post(0x300, 0, True, b"a" * 256)
    assert r.code == N.CONTINUE and block_decode(decode(r.encode()).opt(N.BLOCK1)) == (0, True, 4)
    r = post(0x301, 2, True, b"c" * 256)
    assert r.code == N.REQUEST_ENTITY_INCOMPLETE
    r = post(0x302, 5, False, b"z")  # no upload in progress
    assert r.code == N.REQUEST_ENTITY_INCOMPLETE
    # announced size over the limit -> 4.13 with Size1
    r = post(0x303, 0, True, b"a" * 256, [(N.SIZE1, b"\x01\x00\x00")])
    assert r.code == N.REQUEST_ENTITY_TOO_LARGE and r.opt_uint(N.SIZE1) == 16384
    # more=1 with a payload not matching the block size -> 4.00
    r = post(0x304, 0, True, b"a" * 100)
    assert r.code == N.BAD_REQUEST
    # duplicate CON gets the same response bytes, handler runs once
    m = CoapMessage(N.CON, N.GET, 0x400, b"dd", [(N.URI_PATH, b"hello")]).encode()
    a, b = raw.ask(m), raw.ask(m)
    assert a.encode() == b.encode() and a.payload == b"hello from micropython"
    # a NON request gets a NON response
    r = raw.ask(CoapMessage(N.NON, N.GET, 0x401, b"nn", [(N.URI_PATH, b"hello")]).encode())
    assert r.mtype == N.NON and r.code == N.CONTENT and r.token == b"nn"
    # a CON response nobody asked for -> RST
    r = raw.ask(CoapMessage(N.CON, N.CONTENT, 0x402, b"zz", [], b"?").encode())
    assert r.mtype == N.RST and r.mid == 0x402
    # and the server still serves
    r = raw.get("hello", 0x500)
    assert r.code == N.CONTENT and r.payload == b"hello from micropython"
    check_with_aiocoap(server.uri)


def test_shutdown_via_post(tmp_path):
    srv = MpServer(tmp_path, seconds=30)
    try:
        r = aio_run(aio_requests([aiocoap.Message(code=aiocoap.POST, uri=srv.uri + "shutdown")]))
        assert r[0].code == aiocoap.CHANGED
        srv.proc.wait(10)
        out, err = srv.stop()
        assert "STATS" in out and err == ""
    finally:
        srv.stop()
