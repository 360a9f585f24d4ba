"""The agent as a DTLS client: a controller asks over plain CoAP with a coaps:// reply-to, and
the agent (agent_main with --dtls-ca/--dtls-cert/--dtls-key) delivers the USP reply over a
DTLS session it opens to that controller. The handshake runs in the agent's loop as short
steps, so a reply-to nobody answers (or a closed port) delays no other controller and never
stops the agent."""
import asyncio
import os
import socket
import subprocess
import time

import pytest

from mpy import ROOT, micropython_exe, requires_micropython
from support.agent_proc import AGENT_ID, AgentProc, make_flash, run
from support.coap_peers import free_udp_port
from test_dtls import _write_pki

from firmware_slots.host import controller as C
from firmware_slots.usp import codec, schema

pytestmark = requires_micropython
VERSION = "Device.DeviceInfo.FirmwareImage.1.Version"

# A controller whose USP endpoint is coaps: one DTLS session accepted, the first POST's payload printed.
CONTROLLER = r"""
import binascii, sys, time
sys.path.append("tests/device")
from coaps_peer import endpoint
from firmware_slots.coap import dtls
def rd(p):
    with open(p, "rb") as f:
        return f.read()
srv = dtls.server("127.0.0.1", %(port)d, rd(%(cert)r), rd(%(key)r), cadata=rd(%(ca)r))
print("READY")
s = srv.accept(timeout=30)
ep, got = endpoint(s, 0)
end = time.ticks_add(time.ticks_ms(), 20000)
while not got and time.ticks_diff(end, time.ticks_ms()) > 0:
    ep.poll(50)
print("GOT", binascii.hexlify(got[0]).decode() if got else "")
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return _write_pki(str(tmp_path_factory.mktemp("pki")), "ec", "", "Reply-to CA")


@pytest.fixture
def agent(pki, tmp_path):
    make_flash(tmp_path / "dev.flash")
    a = AgentProc(tmp_path / "dev.flash", seconds=60,
                  extra=["--dtls-ca", pki["ca.pem"], "--dtls-cert", pki["client.crt.pem"],
                         "--dtls-key", pki["client.key.der"]])
    yield a
    out, err = a.stop()
    assert "Traceback" not in err, err[-2000:]


def get_record(frm, mid):
    msg = codec.new_msg(mid, schema.GET, "request", "get", {"param_paths": [VERSION]})
    return bytes(codec.make_record(AGENT_ID, frm, codec.encode_msg(msg)))


def test_the_reply_goes_back_over_a_dtls_session_the_agent_opens(agent, pki):
    port = free_udp_port()
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]))
    ctl = subprocess.Popen([micropython_exe(), "-c", CONTROLLER % dict(
        port=port, cert=pki["server.crt.der"], key=pki["server.key.der"], ca=pki["ca.der"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert ctl.stdout.readline().strip() == "READY"

        async def go():
            async with C.UspCoapController("self::coaps-ctl") as c:
                r = await c.post_record(agent.uri, get_record("self::coaps-ctl", "m-dtls"),
                                        reply_to="coaps://127.0.0.1:%d/ctl" % port, timeout=10)
                assert r.code.dotted == "2.04"
        run(go())
        out, err = ctl.communicate(timeout=30)
    finally:
        if ctl.poll() is None:
            ctl.kill()
    got = out.split("GOT", 1)[1].strip()
    assert got, err[-2000:]
    rec = codec.decode_record(bytes.fromhex(got))
    assert rec["to_id"] == "self::coaps-ctl" and rec["from_id"] == AGENT_ID
    m = codec.decode_msg(codec.record_payload(rec))
    assert C.get_params(m) == {VERSION: "1.0"}


@pytest.mark.parametrize("peer", ["silent", "closed"])
def test_a_coaps_reply_to_nobody_answers_delays_no_one(agent, peer):
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    port = hole.getsockname()[1]
    if peer == "closed":
        hole.close()  # ICMP port unreachable for every flight

    async def go():
        async with C.UspCoapController("self::lost") as lost, C.UspCoapController("self::healthy") as ok:
            for i in range(3):  # three replies queued for the dead coaps peer
                await lost.post_record(agent.uri, get_record("self::lost", "m-lost-%d" % i),
                                       reply_to="coaps://127.0.0.1:%d/ctl" % port, timeout=5)
            times = []
            for _ in range(5):  # meanwhile the healthy controller is answered at once, every time
                t = time.monotonic()
                m = await ok.get(agent.uri, AGENT_ID, [VERSION], timeout=5)
                times.append(time.monotonic() - t)
                assert C.get_params(m) == {VERSION: "1.0"}
                await asyncio.sleep(0.3)
            return times
    try:
        times = run(go())
    finally:
        if peer == "silent":
            hole.close()
    assert max(times) < 1.5, times  # before: the handshake blocked the agent's loop for up to 10 s
    assert agent.alive()
