"""Malformed input at the CoAP layer of the agent (MicroPython unix port, real UDP on
loopback): the precise CoAP answer for each, never a traceback, nothing changed; then a
seeded fuzz run (a few thousand datagrams here, 200,000 in bench/usp_stress.py) after
which the agent still answers, its RSS has not grown, and slot and device state are
the same."""
import asyncio
import os
import socket
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "device"))

from mpy import requires_micropython  # noqa: E402
from support.coap_peers import free_udp_port  # noqa: E402

aiocoap = pytest.importorskip("aiocoap")

from support.agent_proc import AGENT_ID, AgentProc, make_flash, run  # noqa: E402
from firmware_slots.host.controller import get_params  # noqa: E402

import coapfuzz  # noqa: E402
from firmware_slots.coap import numbers as N  # noqa: E402
from firmware_slots.coap.message import CoapMessage, decode  # noqa: E402
from firmware_slots.host.controller import UspCoapController  # noqa: E402
from firmware_slots.usp import codec, schema  # noqa: E402

FW = "Device.DeviceInfo.FirmwareImage."
STATE = ["Device.DeviceInfo."]


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    d = tmp_path_factory.mktemp("malformed")
    data = make_flash(d / "dev.flash")
    a = AgentProc(d / "dev.flash", seconds=120)
    a.image = data
    a.flash = d / "dev.flash"
    yield a
    a.stop()


class Raw:
    def __init__(self, port):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.s.settimeout(2.0)
        self.addr = ("127.0.0.1", port)
        self.mid = 0x1000

    def ask(self, code, path, opts=(), payload=b""):
        self.mid += 1
        o = [(N.URI_PATH, p if isinstance(p, bytes) else p.encode()) for p in path] + list(opts)
        self.s.sendto(CoapMessage(N.CON, code, self.mid, b"rw", o, payload).encode(), self.addr)
        while True:
            r = decode(self.s.recvfrom(2048)[0])
            if r.mid == self.mid:
                return r

    def post_usp(self, record, reply_to, cf=N.OCTET_STREAM):
        q = reply_to if isinstance(reply_to, bytes) else ("reply-to=" + reply_to).encode()
        return self.ask(N.POST, ["usp"], [(N.CONTENT_FORMAT, bytes([cf])), (N.URI_QUERY, q)], record)


def state(agent_):
    async def go():
        async with UspCoapController("self::ctl-state") as ctl:
            return get_params(await ctl.get(agent_.uri, AGENT_ID, STATE), strict=False)
    return run(go())


def _rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


@requires_micropython
def test_coap_layer_refusals(agent):
    before = state(agent)
    raw = Raw(agent.port)
    me = "coap://127.0.0.1:%d/usp" % raw.s.getsockname()[1]
    rec = codec.make_record(AGENT_ID, "self::raw", codec.encode_msg(codec.new_msg(
        "r1", schema.GET, "request", "get", {"param_paths": ["Device.DeviceInfo.SoftwareVersion"]})))
    # invalid UTF-8 in Uri-Path or Uri-Query: 4.00, not a traceback and silence
    assert raw.ask(N.GET, [b"\xff\xfe"]).code == N.BAD_REQUEST
    assert raw.ask(N.GET, ["fw", b"\xc3\x28"]).code == N.BAD_REQUEST
    assert raw.post_usp(rec, b"reply-to=\xe2\x82").code == N.BAD_REQUEST
    # no such image resource: 4.04
    for p in (["fw", "99"], ["fw", "0"], ["fw", "-1"], ["fw", "1", "x"], ["fw"], ["fw", "2"]):
        assert raw.ask(N.GET, p).code == N.NOT_FOUND, p
    # Records the agent cannot process: 4.00 (R-COAP.13)
    assert raw.post_usp(b"", me).code == N.BAD_REQUEST
    assert raw.post_usp(b"\xff\x00garbage", me).code == N.BAD_REQUEST
    assert raw.post_usp(bytes(codec.make_record(AGENT_ID, "self::raw", b"")), me).code == N.BAD_REQUEST
    assert raw.post_usp(bytes(codec.make_record(AGENT_ID, "self::raw", b"\x0a\xff")), me).code == N.BAD_REQUEST
    # a good one still is 2.04
    assert raw.post_usp(bytes(rec), me).code == N.CHANGED
    assert agent.alive() and state(agent) == before


@requires_micropython
def test_session_context_and_type_mismatch_over_coap(agent):
    before = state(agent)

    async def go():
        async with UspCoapController("self::ctl-sc") as ctl:
            sc = codec.encode_record({"version": "1.3", "to_id": AGENT_ID, "from_id": "self::ctl-sc",
                                      "session_context": {"session_id": 7, "sequence_id": 1,
                                                          "expected_id": 1, "payload": [b"x"]}})
            r = await ctl.post_record(agent.uri, sc)
            assert r.code == aiocoap.BAD_REQUEST
            for _ in range(100):
                if any("disconnect" in rc for rc, _ in ctl.received):
                    break
                await asyncio.sleep(0.05)
            (d,) = [rc["disconnect"] for rc, _ in ctl.received if "disconnect" in rc]
            assert d["reason_code"] == 7106
            body = {"update_objs": [{"obj_path": FW + "1.", "param_settings": [
                {"param": "Alias", "value": "hijacked", "required": True}]}]}
            msg = codec.new_msg("mm1", schema.GET, "request", "set", body)
            r = await ctl.post_record(agent.uri, codec.make_record(AGENT_ID, "self::ctl-sc",
                                                                   codec.encode_msg(msg)))
            assert r.code == aiocoap.CHANGED
            m = await ctl.expect(lambda m: m["header"]["msg_id"] == "mm1")
            assert m["body"]["error"]["err_code"] == 7001
            m = await ctl.get(agent.uri, AGENT_ID, [FW + '[Status=="Active"].Version'])
            assert get_params(m, strict=False) == {FW + "1.Version": "1.0"}
    run(go())
    assert state(agent) == before


def fuzz(port, seed, n, hole_port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    k = 0
    for d in coapfuzz.datagrams(seed, n, AGENT_ID, hole_port):
        s.sendto(d, ("127.0.0.1", port))
        k += 1
        if k % 25 == 0:
            time.sleep(0.002)  # loopback buffers are small: most datagrams should arrive
            try:
                while True:
                    s.recv(2048)
            except BlockingIOError:
                pass
    s.close()


@requires_micropython
def test_seeded_fuzz_leaves_agent_answering_and_state_unchanged(agent):
    before = state(agent)
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # reply-to nobody answers at
    hole.bind(("127.0.0.1", free_udp_port()))
    rss = []
    for rnd in range(4):  # the first rounds touch the (fixed-size) MicroPython heap
        fuzz(agent.port, 9 + rnd, 1500, hole.getsockname()[1])
        rss.append(_rss_kb(agent.proc.pid))
    hole.close()
    assert agent.alive()
    t = time.time()
    after = state(agent)  # answered while the black-hole replies are still pending
    assert time.time() - t < 5
    assert after == before
    print("RSS kB per round", rss)
    assert rss[-1] - rss[-2] < 256, rss  # flat: bounded queues, no per-datagram growth


@requires_micropython
def test_no_traceback_after_everything(agent):
    """Whatever ran before (or only this: a round of its own), the agent logged no traceback
    and the flash still holds the installed image, slot 2 untouched."""
    fuzz(agent.port, 99, 300, free_udp_port())
    assert agent.alive()
    out, err = agent.stop()
    assert "Traceback" not in err, err[-2000:]
    from firmware_slots import app
    import hashlib
    flash, mgr = app.open_flash_file(str(agent.flash))
    i = mgr.info(0)
    assert i["SHA256"] == hashlib.sha256(agent.image).hexdigest() and i["Available"]
    assert mgr.status(1) == "NoImage"
