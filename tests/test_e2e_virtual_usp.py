"""End to end on the virtual board, over real CoAP: the product's flagship test.

The virtual board (MicroPython unix port + boot stub + flash file behind a pty) gets v1
of the agent app (hil.apps.agent_app: the USP agent over the TR-369 CoAP binding, run
by the stub with its own SlotManager) through its serial console. From then on only an
aiocoap controller talks to it:
  a. TP-469 good path: Download() of v2 with AutoActivate from libcoap's
     coap-server-notls; the agent pulls block-wise, validates, activates and resets
     through the stub; v2 trial-boots and confirms; OperationComplete, TransferComplete!,
     Boot! (FirmwareUpdated=true) arrive in that order.
  b. v2 fails its self-test before confirming (or serves but never confirms: the
     watchdog): after max_attempts the stub runs v1 again and v1's agent reports it.
  c. power cut (SIGKILL) in the middle of the pull: after the restart the download
     resumes from its checkpoint and completes.
Loopback only; every process is killed in teardown.
"""
import asyncio
import hashlib
import shutil
import socket
import subprocess
import threading
import time

import pytest

from mpy import micropython_exe

aiocoap = pytest.importorskip("aiocoap")

from firmware_slots.host import demo_virtual as dv  # noqa: E402
from hil import peers  # noqa: E402
from firmware_slots.host.controller import UspCoapController  # noqa: E402
from hil.apps import agent_app  # noqa: E402

COAP_SERVER = shutil.which("coap-server-notls")
COAP_CLIENT = shutil.which("coap-client-notls")
AGENT_ID = dv.AGENT_ID
FW = dv.FW

pytestmark = pytest.mark.skipif(micropython_exe() is None, reason="MicroPython unix port not installed")


def run(coro, timeout=45):
    return asyncio.run(asyncio.wait_for(coro, timeout))


class GetCounter(threading.Thread):
    """Loopback relay in front of a CoAP server that counts the client's GET datagrams
    (one per Block2 block on a clean link). One client: the first sender."""

    def __init__(self, server_port):
        threading.Thread.__init__(self, daemon=True)
        self.server = ("127.0.0.1", server_port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.client = None
        self.gets = 0
        self._halt = False
        self.start()

    def run(self):
        while not self._halt:
            try:
                data, addr = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                return
            if addr == self.server:
                if self.client:
                    self.sock.sendto(data, self.client)
                continue
            if self.client != addr:
                self.client = addr  # a new socket of the agent (another transfer)
            if len(data) > 1 and data[1] == 0x01:
                self.gets += 1
            self.sock.sendto(data, self.server)

    def close(self):
        self._halt = True
        self.join(2)
        self.sock.close()


@pytest.fixture
def libcoap(tmp_path):
    """coap-server-notls on loopback; put(name, bytes) -> coap:// URL of that image."""
    if COAP_SERVER is None or COAP_CLIENT is None:
        pytest.skip("libcoap3-bin (coap-server-notls, coap-client-notls) not installed")
    port = peers.free_udp_port()
    p = subprocess.Popen([COAP_SERVER, "-A", "127.0.0.1", "-p", str(port), "-d", "10", "-v", "0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counters = []

    class Srv:
        def put(self, name, data):
            src = tmp_path / name
            src.write_bytes(data)
            subprocess.run([COAP_CLIENT, "-B", "10", "-m", "put", "-b", "1024", "-t", "42", "-f", str(src),
                            "coap://127.0.0.1:%d/fw/%s" % (port, name)], check=True, capture_output=True,
                           timeout=15)
            c = GetCounter(port)
            counters.append(c)
            return "coap://127.0.0.1:%d/fw/%s" % (c.port, name), c
    time.sleep(0.2)
    try:
        yield Srv()
    finally:
        for c in counters:
            c.close()
        p.kill()
        p.wait(5)


@pytest.fixture
def rig(fwslots_make_virtual_board):
    """make(v1 image options) -> (board, agent port): a virtual board with the v1 agent app
    installed over the serial console into FirmwareImage.1, booted and confirmed."""
    def make(max_attempts=None, confirm_ms=8000):
        port = peers.free_udp_port()
        b = fwslots_make_virtual_board(nslots=2, confirm_ms=confirm_ms, max_attempts=max_attempts)
        peers.provision(b, agent_app("agent", "1.0", port, AGENT_ID), 0)
        return b, port
    return make


async def _subscribed(ctl, uri):
    p = await dv.wait_agent(ctl, uri)
    assert p["Device.DeviceInfo.SoftwareVersion"] == "1.0"
    subs = await dv.subscribe_all(ctl, uri)
    assert len(subs) == 4


def _kinds(notes):
    return [n[0] for n in notes]


def test_tp469_download_autoactivate_on_virtual_board(rig, libcoap, record_property):
    board, port = rig()
    uri = dv.agent_uri(port)
    v2 = agent_app("agent", "2.0", port, AGENT_ID, pad=20000)
    url, counter = libcoap.put("v2.img", v2)

    async def go():
        async with UspCoapController("self::ctl-e2e") as ctl:
            await _subscribed(ctl, uri)
            t0 = time.monotonic()
            r = await dv.download(ctl, uri, 2, url, v2, "tp469-good")
            assert r["req_obj_path"].startswith("Device.LocalAgent.Request."), r
            notes = await dv.notes_until(ctl, "Boot!", 30)
            dt = time.monotonic() - t0
            # SoftwareVersion changes with the boot: its ValueChange follows Boot!
            notes += await dv.notes_until(ctl, "ValueChange", 10)
            p = await dv.get(ctl, uri, dv.STATE)
            return notes, dt, p

    notes, dt, p = run(go())
    assert _kinds(notes) == ["OperationComplete", "TransferComplete!", "Boot!", "ValueChange"], notes
    oc, tc, boot, vc = [n[1] for n in notes]
    assert oc["path"] == FW + "2.Download()" and oc["key"] == "tp469-good" and "failure" not in oc
    assert tc["FaultCode"] == "0" and tc["CommandKey"] == "tp469-good", tc
    assert tc["Affected"] == FW + "2" and tc["TransferURL"] == url
    assert tc["CheckSumAlgorithm"] == "SHA-256" and tc["CheckSum"] == hashlib.sha256(v2).hexdigest()
    assert boot["FirmwareUpdated"] == "true" and boot["CommandKey"] == "tp469-good", boot
    assert boot["Cause"] == "RemoteReboot"
    assert vc == {"Device.DeviceInfo.SoftwareVersion": "2.0"}
    assert p["Device.DeviceInfo.ActiveFirmwareImage"] == FW + "2"
    assert p["Device.DeviceInfo.BootFirmwareImage"] == FW + "2"
    assert p["Device.DeviceInfo.SoftwareVersion"] == "2.0"
    assert p[FW + "2.Status"] == "Active" and p[FW + "1.Status"] == "Available"
    # the reset went through the stub: v2 ran as a trial first, then confirmed
    at = peers.wait_console(board, "REBOOT RemoteReboot: Download() with AutoActivate")
    at = peers.wait_console(board, "fwslots: boot image 2 (trial 1/3)", at)
    peers.wait_console(board, "APP confirmed", peers.wait_console(board, "fwslots: run image 2 agent 2.0", at))
    assert [e["cause"] for e in board.events][-1] == "reset"
    blocks = counter.gets
    assert blocks == (len(v2) + 1023) // 1024, blocks
    record_property("download_to_boot_s", round(dt, 3))
    record_property("coap_blocks", blocks)
    print("\nE2E good path: %.3f s from Download() to Boot!, %d CoAP blocks for %d bytes" % (dt, blocks, len(v2)))


@pytest.mark.parametrize("behaviour,why,confirm_ms", [
    ("crash", "crashed: RuntimeError: self-test failed in 2.0", 8000),
    ("noconfirm", "watchdog reset: not confirmed within 1500 ms", 1500),
])
def test_bad_v2_falls_back_and_v1_reports_it(rig, libcoap, behaviour, why, confirm_ms):
    board, port = rig(max_attempts=2, confirm_ms=confirm_ms)
    uri = dv.agent_uri(port)
    v2 = agent_app("agent", "2.0", port, AGENT_ID, behaviour=behaviour)
    url, _ = libcoap.put("bad.img", v2)

    async def go():
        async with UspCoapController("self::ctl-e2e-bad") as ctl:
            await _subscribed(ctl, uri)
            await dv.download(ctl, uri, 2, url, v2, "tp469-bad")
            notes = await dv.notes_until(ctl, "Boot!", 30)
            p = await dv.get(ctl, uri, dv.STATE)
            return notes, p

    notes, p = run(go())
    assert _kinds(notes) == ["OperationComplete", "TransferComplete!", "Boot!"], notes
    oc, tc, boot = [n[1] for n in notes]
    assert oc["key"] == "tp469-bad" and oc["failure"]["err_code"] == 7022, oc
    assert "FirmwareImage.2 did not become active (ActivationFailed)" in oc["failure"]["err_msg"]
    assert tc["FaultCode"] == "0"  # the transfer itself was fine; the activation was not
    assert boot["FirmwareUpdated"] == "false" and boot["CommandKey"] == "tp469-bad", boot
    assert p["Device.DeviceInfo.SoftwareVersion"] == "1.0"
    assert p["Device.DeviceInfo.ActiveFirmwareImage"] == FW + "1"
    assert p["Device.DeviceInfo.BootFirmwareImage"] == FW + "2"  # a fallback never rewrites it
    assert p[FW + "2.Status"] == "ActivationFailed"
    log = p[FW + "2.BootFailureLog"]
    assert "not confirmed after 2 boot attempts" in log and why in log, log
    con = bytes(board.transcript).decode(errors="replace")
    assert con.count("fwslots: run image 2 agent 2.0") == 2  # max_attempts trial boots, then v1
    if behaviour == "crash":
        assert con.count("fwslots: trial app crashed; reset") == 2
    else:  # v2's agent served but never confirmed: the watchdog reset it, twice
        assert [e["cause"] for e in board.events][-2:] == ["wdt", "wdt"]


def test_power_cut_mid_download_resumes(rig):
    board, port = rig()
    uri = dv.agent_uri(port)
    v2 = agent_app("agent", "2.0", port, AGENT_ID, pad=20000)
    n = (len(v2) + 1023) // 1024
    cut = {"at": None}

    def on_block(name, num):
        if num == 14 and cut["at"] is None:
            cut["at"] = board.generation
            board.power_cut()  # SIGKILL now, before block 14 is answered

    srv = peers.ImageServer({"v2.img": v2}, on_block=on_block)
    try:
        async def go():
            async with UspCoapController("self::ctl-e2e-cut") as ctl:
                await _subscribed(ctl, uri)
                await dv.download(ctl, uri, 2, srv.uri("v2.img"), v2, "tp469-cut")
                # the power-up after the cut is a Boot! of its own (v1, no command key)
                notes = await dv.notes_until(ctl, lambda k, d: k == "Boot!" and d.get("CommandKey"), 30)
                p = await dv.get(ctl, uri, dv.STATE)
                return notes, p
        notes, p = run(go())
    finally:
        srv.close()
    assert cut["at"] is not None
    assert "power" in [e["cause"] for e in board.events]
    blocks = srv.blocks["v2.img"]
    first = blocks.index(14)
    after = blocks[first + 1:]
    # the restarted agent resumed from its last sector checkpoint, not from block 0
    assert after and 0 < after[0] <= 14 and after == list(range(after[0], n)), blocks
    assert len(after) < n
    assert _kinds(notes) == ["Boot!", "OperationComplete", "TransferComplete!", "Boot!"], notes
    power_up, oc, tc, boot = [x[1] for x in notes]
    assert power_up["FirmwareUpdated"] == "false" and power_up["CommandKey"] == ""
    assert oc["key"] == "tp469-cut" and "failure" not in oc
    assert tc["FaultCode"] == "0" and boot["FirmwareUpdated"] == "true" and boot["CommandKey"] == "tp469-cut"
    assert p["Device.DeviceInfo.SoftwareVersion"] == "2.0" and p[FW + "2.Status"] == "Active"
    print("\nE2E power cut at block 14/%d: resumed at block %d, %d blocks after the restart"
          % (n, after[0], len(after)))
