"""The coaps listener never waits on a peer: strangers that send a ClientHello and go quiet
(before returning the cookie, or after) cost the agent's loop nothing, so plain-CoAP
controllers are answered as fast as ever meanwhile, and a real coaps controller still gets
its session afterwards."""
import os
import subprocess
import time

import pytest

from mpy import ROOT, micropython_exe, requires_micropython, run_mp
from test_dtls import _free_udp_pair, _write_pki

from firmware_slots.host import controller as C

pytestmark = requires_micropython
AGENT_ID = "os::0044FF-fwslots-1"  # tests/device/usp_loopback.AGENT_ID
VERSION = "Device.DeviceInfo.FirmwareImage.1.Version"

AGENT = r"""
import sys, time
sys.path.append("tests/device")
import coaps_agent
mgr, agent, mtp, lst = coaps_agent.start(%(port)d + 1, %(cert)r, %(key)r, %(ca)r, plain=%(port)d)
print("READY")
end = time.ticks_add(time.ticks_ms(), 20000)
while time.ticks_diff(end, time.ticks_ms()) > 0:
    lst.step(20)
    mtp.step(20)
print("REFUSED", lst.refused)
"""

# Strangers: each opens a DTLS client session that sends its ClientHello and is never stepped again.
KNOCKERS = r"""
import time
from firmware_slots.coap import dtls
def rd(p):
    with open(p, "rb") as f:
        return f.read()
held = []
for i in range(%(n)d):
    s = dtls.connect("127.0.0.1", %(port)d, rd(%(ca)r), cert=rd(%(cert)r), key=rd(%(key)r), wait=False)
    try:
        s.send(b"never")  # the first step: the ClientHello goes out, then silence
    except OSError:
        pass
    held.append(s)
    time.sleep_ms(250)
print("KNOCKED", len(held))
time.sleep_ms(2000)
"""

CONTROLLER = r"""
from firmware_slots.coap import dtls
s = dtls.connect("127.0.0.1", %(port)d, rd(%(ca)r), cert=rd(%(cert)r), key=rd(%(key)r), timeout=10)
print("SESSION", s.cipher()[1])
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return _write_pki(str(tmp_path_factory.mktemp("pki")), "ec", "", "Listener CA")


def test_quiet_strangers_on_coaps_delay_no_one(pki):
    port = _free_udp_pair()
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]))
    agent = subprocess.Popen([micropython_exe(), "-c", AGENT % dict(
        port=port, cert=pki["server.crt.der"], key=pki["server.key.der"], ca=pki["ca.der"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    knock = None
    try:
        assert agent.stdout.readline().strip() == "READY"
        knock = subprocess.Popen([micropython_exe(), "-c", KNOCKERS % dict(
            n=6, port=port + 1, ca=pki["ca.der"], cert=pki["client.crt.der"], key=pki["client.key.der"])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)

        async def gets():
            times = []
            async with C.UspCoapController("self::plain") as ctl:
                end = time.monotonic() + 2.5  # while the six strangers knock (250 ms apart) and wait
                while time.monotonic() < end:
                    t = time.monotonic()
                    m = await ctl.get("coap://127.0.0.1:%d/usp" % port, AGENT_ID, [VERSION], timeout=5)
                    times.append(time.monotonic() - t)
                    assert C.get_params(m) == {VERSION: "1.0"}
            return times
        import asyncio
        times = asyncio.run(gets())
        assert "KNOCKED 6" in knock.communicate(timeout=20)[0]
        # a real controller still gets its session once the strangers' cookies expired
        out = run_mp("def rd(p):\n    with open(p, 'rb') as f:\n        return f.read()\n" + CONTROLLER % dict(
            port=port + 1, ca=pki["ca.der"], cert=pki["client.crt.der"], key=pki["client.key.der"]), timeout=60)
    finally:
        if knock is not None and knock.poll() is None:
            knock.kill()
        agent.kill()
        agent.communicate()
    assert max(times) < 0.5 and len(times) >= 10, times  # before: each stranger held the loop ~1 s
    assert "SESSION DTLSv1.2" in out, out
