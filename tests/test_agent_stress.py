"""The agent under stress: black-hole reply-to addresses cost their own queue, never another
controller's latency; Gets are answered while a Download() pulls an image; the outbox's
bounds and drop reasons. MicroPython agent on loopback where it matters; latency numbers
go to bench/usp_stress.py (these bounds are loose: the machine is shared)."""
import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "device"))

from mpy import requires_micropython  # noqa: E402
from support.coap_peers import free_udp_port, pattern  # noqa: E402

aiocoap = pytest.importorskip("aiocoap")

from support.agent_proc import AGENT_ID, AgentProc, make_flash, run  # noqa: E402

from firmware_slots.coap import numbers as N  # noqa: E402
from firmware_slots.coap.outbox import Outbox  # noqa: E402
from firmware_slots.coap.protocol import CoapEndpoint  # noqa: E402
from firmware_slots.coap.server import Response  # noqa: E402
from firmware_slots.coap.transport import UdpTransport  # noqa: E402
from firmware_slots.host.controller import UspCoapController  # noqa: E402
from firmware_slots.usp import codec, schema  # noqa: E402

FW = "Device.DeviceInfo.FirmwareImage."
COAP_SERVER = shutil.which("coap-server-notls")
COAP_CLIENT = shutil.which("coap-client-notls")


def _get_record(frm, mid):
    return codec.make_record(AGENT_ID, frm, codec.encode_msg(codec.new_msg(
        mid, schema.GET, "request", "get", {"param_paths": ["Device.DeviceInfo."]})))


async def _timed_get(ctl, uri):
    t = time.perf_counter()
    await ctl.get(uri, AGENT_ID, ["Device.DeviceInfo.SoftwareVersion"])
    return time.perf_counter() - t


@requires_micropython
def test_black_hole_reply_tos_do_not_delay_a_healthy_controller(tmp_path):
    make_flash(tmp_path / "dev.flash")
    a = AgentProc(tmp_path / "dev.flash", seconds=60)
    holes = []
    try:
        for _ in range(10):
            h = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            h.bind(("127.0.0.1", 0))  # bound and never read: the agent's CON POSTs are never ACKed
            h.settimeout(5)  # a hole never sent to fails the check below instead of hanging
            holes.append(h)

        async def go():
            async with UspCoapController("self::healthy") as ctl:
                await _timed_get(ctl, a.uri)
                for i, h in enumerate(holes):
                    r = await ctl.post_record(a.uri, _get_record("self::hole%d" % i, "h%d" % i),
                                              reply_to="coap://127.0.0.1:%d/usp" % h.getsockname()[1])
                    assert r.code == aiocoap.CHANGED
                return [await _timed_get(ctl, a.uri) for _ in range(30)]
        lat = run(go())
        # before: each black hole held the loop for up to MAX_TRANSMIT_WAIT (93 s)
        assert max(lat) < 3, lat
        assert sorted(lat)[len(lat) // 2] < 1, lat
        assert all(len(h.recv(2048)) > 0 for h in holes[-2:])  # the holes were really sent to
    finally:
        for h in holes:
            h.close()
        out, err = a.stop()
    assert "Traceback" not in err


@requires_micropython
@pytest.mark.skipif(COAP_SERVER is None or COAP_CLIENT is None, reason="libcoap tools not installed")
def test_gets_are_answered_while_a_download_pulls(tmp_path):
    size = 256 * 1024
    data = pattern(size)
    src = tmp_path / "img.bin"
    src.write_bytes(data)
    port = free_udp_port()
    srv = subprocess.Popen([COAP_SERVER, "-A", "127.0.0.1", "-p", str(port), "-d", "10", "-v", "0"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    make_flash(tmp_path / "dev.flash", slot_blocks=80)  # 320 KiB slots
    a = None
    try:
        time.sleep(0.3)
        url = "coap://127.0.0.1:%d/fw/img" % port
        subprocess.run([COAP_CLIENT, "-B", "30", "-m", "put", "-b", "1024", "-t", "42", "-f", str(src), url],
                       check=True, capture_output=True, timeout=60)
        a = AgentProc(tmp_path / "dev.flash", seconds=90)  # the layout file says 80-block slots

        async def go():
            async with UspCoapController("self::dl") as ctl:
                await ctl.request(a.uri, AGENT_ID, "add", {"create_objs": [{
                    "obj_path": "Device.LocalAgent.Subscription.", "param_settings": [
                        {"param": k, "value": v, "required": True} for k, v in (
                            ("Enable", "true"), ("NotifType", "OperationComplete"),
                            ("ReferenceList", FW + "*.Download()"))]}]})
                m = await ctl.operate(a.uri, AGENT_ID, FW + "2.Download()", {
                    "URL": url, "AutoActivate": "false", "CheckSumAlgorithm": "SHA-256",
                    "CheckSum": hashlib.sha256(data).hexdigest()}, key="coop")
                assert "req_obj_path" in m["body"]["response"]["operate_resp"]["operation_results"][0]
                lat = []
                statuses = set()
                end = time.monotonic() + 60
                while time.monotonic() < end:
                    done = [n for n in _notifies(ctl) if "oper_complete" in n]
                    if done:
                        return lat, statuses, done[0]["oper_complete"]
                    t = time.perf_counter()
                    r = await ctl.get(a.uri, AGENT_ID, [FW + "2.Status"])
                    lat.append(time.perf_counter() - t)
                    res = r["body"]["response"]["get_resp"]["req_path_results"][0]["resolved_path_results"]
                    statuses.add(res[0]["result_params"]["Status"])
                raise AssertionError("no OperationComplete")
        lat, statuses, oc = run(go())
        assert "req_output_args" in oc, oc
        assert "Downloading" in statuses, statuses  # answered while the pull was under way
        assert len(lat) >= 3 and max(lat) < 3, lat
    finally:
        srv.terminate()
        srv.wait()
        if a is not None:
            out, err = a.stop()
            assert "Traceback" not in err


def _notifies(ctl):
    out = []
    for rec, _ in ctl.received:
        p = codec.record_payload(rec)
        if p:
            n = codec.decode_msg(p).get("body", {}).get("request", {}).get("notify")
            if n:
                out.append(n)
    return out


# --- the outbox alone (CPython, two endpoints on loopback, short CoAP timers) ----------------

def _pair(params):
    a = CoapEndpoint(UdpTransport("127.0.0.1", 0), params=params)
    b = CoapEndpoint(UdpTransport("127.0.0.1", 0))
    got = []

    def post(req):
        got.append(bytes(req.payload))
        return Response(N.CHANGED)
    b.site.route("usp", post=post, max_body=65536)
    return a, b, got


def _spin(eps, ob, until, seconds=5):
    end = time.monotonic() + seconds
    while time.monotonic() < end and not until():
        for e in eps:
            e.poll(2)
        ob.step()


def test_outbox_bounds_and_drop_reasons():
    params = N.TransmissionParams(ack_timeout_ms=40, ack_random_factor=1.0, max_retransmit=1)
    a, b, got = _pair(params)
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    try:
        ob = Outbox(a, timeout_ms=300, max_dests=3, max_count=2, max_bytes=3000, total_bytes=5000)
        good = "coap://127.0.0.1:%d/usp" % b.transport.local_port
        bad = "coap://127.0.0.1:%d/usp" % hole.getsockname()[1]
        assert ob.put(good, b"a" * 2500)   # one Record always fits an empty queue
        assert ob.put(good, b"b" * 400)
        assert not ob.put(good, b"c")      # count
        assert ob.stats["full"] == 1
        assert ob.put(bad, b"x") and ob.put(bad, b"y")
        assert not ob.put(bad + "2", b"z" * 2500)  # total bytes
        _spin((a, b), ob, lambda: ob.stats["silent"])
        assert sorted(got) == [b"a" * 2500, b"b" * 400]  # Block1 for the big one
        assert ob.stats["sent"] == 2 and ob.stats["silent"] == 2  # in flight + queued behind it
        assert not ob.put(bad, b"again") and ob.stats["silent"] == 3  # silent: at once
        ob.heard(bad)  # it spoke to us: worth trying again
        assert ob.put(bad, b"again")
        # the table of destinations is bounded: a new one evicts the longest-waiting POST
        assert ob.put(bad + "?1", b"1") and ob.put(bad + "?2", b"2")
        assert ob.put(good, b"fresh")
        assert ob.stats["evicted"] >= 1 and len(ob.dests) <= 3
        _spin((a, b), ob, lambda: b"fresh" in got)
        assert b"fresh" in got
        assert ob.stats["dropped"] == sum(ob.stats[k] for k in ("full", "evicted", "silent", "failed"))
        assert len(a._exchanges) <= a.max_exchanges
    finally:
        hole.close()
        a.close()
        b.close()


def test_outbox_block1_follows_a_server_that_asks_for_smaller_blocks():
    a, b, got = _pair(None)
    b.site.max_szx = 4  # 256-byte blocks: the 2.31 to our first 1024-byte block says so
    try:
        ob = Outbox(a, timeout_ms=2000)
        uri = "coap://127.0.0.1:%d/usp" % b.transport.local_port
        body = bytes(range(256)) * 11 + b"tail"
        assert ob.put(uri, body) and ob.put(uri, b"small")
        _spin((a, b), ob, lambda: ob.stats["sent"] + ob.stats["dropped"] == 2)
        assert got == [body, b"small"] and ob.stats["sent"] == 2 and not ob.busy()
        assert b.stats["rx"] == 1 + 8 + 1  # 1024 bytes, 1796 in 256-byte blocks, then "small"
        assert not a._exchanges and not a.retransmitter.pending
    finally:
        a.close()
        b.close()


# --- an http:// Download() yields too (agent level, CPython, a trickling server) -------------

def test_http_download_is_stepped_while_usp_is_served(tmp_path):
    import http.server
    import threading
    from usp_loopback import AGENT_ID as LID, T0, Controller, device, image, notifications
    from firmware_slots.usp.agent import UspAgent
    from firmware_slots.usp.platform import Platform
    body = image("2.0", 12 * 1024)

    class Trickle(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for p in range(0, len(body), 1024):  # 1 KiB every 20 ms: a slow link
                self.wfile.write(body[p:p + 1024])
                self.wfile.flush()
                time.sleep(0.02)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Trickle)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        flash, mgr = device("1.0")
        agent = UspAgent(mgr, LID, Platform(wall_s=T0))
        agent.coop = True  # what the MTP sets: downloads are stepped, not run to the end
        agent.startup()
        c = Controller(agent)
        c.subscribe("OperationComplete", FW + "*.Download()")
        agent.take_outbox()
        c.operate(FW + "2.Download()", {"URL": "http://127.0.0.1:%d/img" % srv.server_address[1],
                                        "AutoActivate": "false", "CheckSumAlgorithm": "SHA-256",
                                        "CheckSum": hashlib.sha256(body).hexdigest()})
        agent.poll(0)
        assert agent.tasks, "Download() should be in flight, not finished inside poll()"
        during = 0
        end = time.monotonic() + 20
        while agent.tasks and time.monotonic() < end:
            agent.step_tasks()
            st = c.values(FW + "2.Status")[FW + "2.Status"]  # a Get between two chunks
            during += st == "Downloading"
            time.sleep(0.002)
        assert not agent.tasks and during >= 5, during
        (oc,) = [n["oper_complete"] for _, n in notifications(agent) if "oper_complete" in n]
        assert "req_output_args" in oc, oc
        assert c.values(FW + "2.Status") == {FW + "2.Status": "Available"}
    finally:
        srv.shutdown()
        srv.server_close()
