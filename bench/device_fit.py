"""Does the agent fit a board? Heap figures on a 32-bit frozen build and the PyPI .mpy path; one JSON object.

frozen32_*  the 32-bit unix port built from ../shared/micropython (or --source) with every
            tier frozen (bench/mp32.py: manifest.py + the bench's flash driver; cached)
mpy64_*     the PyPI 64-bit unix port loading the tiers as .mpy files (a board without freezing)
  *_resident_bytes             gc.mem_alloc() after gc.collect() once the agent has started
                               (mgr.boot(), app.agent(), mtp.startup()), interpreter's own
                               allocations included (*_baseline_bytes: before the first import;
                               *_slots_resident_bytes: the slots tier alone, after mgr.boot())
  *_resident_after_50_gets_bytes  the same after 50 USP Gets (what the caches hold once full:
                               CoAP duplicate detection, agent state)
  *_get_min_heap_bytes         smallest -X heapsize with which the agent answers a USP Get over
                               CoAP on loopback (aiocoap controller: POST, 2.04, reply POST)
  *_download_1mib_min_heap_bytes  smallest -X heapsize with which a USP Download() of 1 MiB from
                               coap-server-notls completes: FirmwareImage.2.Status reads Available
                               (length, SHA-256 checksum and read-back verified by the slot manager)
  *_get_steady_heap_bytes / *_download_1mib_steady_heap_bytes  near its limit a heap fails by
                               fragmentation, not size, so success is not monotonic and the
                               bisected minimum can sit in a band where larger heaps still fail:
                               this is the smallest heap from the minimum up for which it and the
                               next STEADY_WINDOW-1 KiB steps all work (what a board can rely on)
  *_signed_get_min_heap_bytes / *_signed_download_1mib_min_heap_bytes  the same two with an
                               ECDSA-P256 trust key provisioned (SlotManager keys): the Download
                               is a 1 MiB payload signed by imgtool (MCUboot container, security
                               counter 1), its signature checked once before Available
  *_peak_live_bytes            max gc.mem_alloc() after gc.collect(), sampled every 64 flash
                               programs and every loop turn during that Download (heap: 256 KiB / 1 MiB)
  heap figures are bisected to *_heap_step_bytes (--quick: 4x coarser); None = did not fit the top
frozen32_import_bytes  (--modules) {module: heap its import adds, its own imports already loaded}
                 for every module the agent holds after the Download (the per-module diet table)
mpy_bytes        {tier: bytes of its own .mpy files}; mpy_total_bytes = every tier (tiers.json)
pull_ratio       MicroPython (frozen 32-bit, pull.pull into the board-like flash, time inside
                 the interpreter) / coap-client-notls -b 1024 (wall time), same server, same
                 run, median of --runs N (default 5); pull_ratio_min/max give the spread
Flash: firmware_slots.sim.ramflash.RamFlash on a tmpfs file (no per-operation allocation, no
fsync, contents outside the heap like real flash), 4 KiB sectors, 2 slots of 260 sectors.

    python bench/device_fit.py [--source DIR|TARBALL] [--quick] [--runs N] [--no-mpy64] [--modules] [--verbose]
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
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

import coap as bc  # noqa: E402  libcoap server and client, stop(), MIB, pattern, free_udp_port
import mp32  # noqa: E402
from memory import COST, DEPS, smallest, steady  # noqa: E402
from mpy import micropython_exe, mpy_cross_exe  # noqa: E402
from firmware_slots.host import tiers as T  # noqa: E402

AGENT_ID = "os::0044FF-fit"
SECTOR, JOURNAL, SLOT = 4096, 4, 260
VERBOSE = False
CREEP_GETS = 50
STEADY_WINDOW = 6  # KiB steps that must all work above a *_steady_heap_bytes figure
STATUS = "Device.DeviceInfo.FirmwareImage.2.Status"

# The only place naming device modules: a renamed module is a one-line fix here.
DEVICE = r'''
from firmware_slots.sim.ramflash import RamFlash
from firmware_slots.core.layout import carve
from firmware_slots.core.slots import SlotManager
from firmware_slots import app
'''

# argv: FLASH-FILE MODE PORT MS [KEY.pem] (MODE: get | download | peak), or FLASH-FILE pull URL SHA
DRIVER = r'''
import sys, gc, time
gc.collect()
B = gc.mem_alloc()
%s
a = sys.argv[1:]
P = [0]
def sample():
    gc.collect()
    m = gc.mem_alloc()
    if m > P[0]:
        P[0] = m
if a[1] == "peak":
    class F(RamFlash):
        n = 0
        def writeblocks(self, n, buf, off=0):
            RamFlash.writeblocks(self, n, buf, off)
            F.n += 1
            if not F.n & 63:
                sample()
else:
    F = RamFlash
flash = F(%d, %d, path=a[0])
j, s = carve(flash, %d, %d, 2)
if len(a) > 4 and a[1] != "pull":
    from firmware_slots.core.image import load_key
    with open(a[4]) as f:
        mgr = SlotManager(s, j, 1, keys=[load_key(f.read())])
else:
    mgr = SlotManager(s, j, 1)
if a[1] == "pull":
    import binascii
    from firmware_slots.transfer import pull
    t = time.ticks_ms()
    info = pull.pull(mgr, 1, a[2], %d, "SHA-256", binascii.unhexlify(a[3]))
    print("MS", time.ticks_diff(time.ticks_ms(), t), info["SHA256"])
    sys.exit(0)
mgr.boot()
gc.collect()
S = gc.mem_alloc()
mtp = app.agent(mgr, %r, "127.0.0.1", int(a[2]))
mtp.startup()
gc.collect()
print("READY", gc.mem_alloc(), B, S)
end = time.ticks_add(time.ticks_ms(), int(a[3]))
while time.ticks_diff(end, time.ticks_ms()) > 0:
    mtp.step(100)
    if a[1] == "creep":
        gc.collect()
        print("MEM", gc.mem_alloc())
    if a[1] == "peak":
        sample()
        if P[0] >= 0 and mgr.status(1) == "Available":
            print("PEAK", P[0])
            print("MODS", " ".join(sorted(k for k in sys.modules if k.startswith("firmware_slots"))))
            P[0] = -1 << 30  # once; keep serving the controller's Get
''' % (DEVICE, SECTOR, JOURNAL + 2 * SLOT, JOURNAL, SLOT, bc.MIB, AGENT_ID)


class Interp:
    """One interpreter + module path: `micropython -X heapsize=N -m fitdrv ...`."""

    def __init__(self, name, exe, path):
        self.name, self.exe, self.path = name, exe, path

    def popen(self, args, heap):
        env = dict(os.environ, MICROPYPATH=os.pathsep.join(self.path))
        return subprocess.Popen([self.exe, "-X", "heapsize=%d" % heap, "-m", "fitdrv"] + args,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                cwd=self.path[-1])


def shm_dir():
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()


class Run:
    def __init__(self, tmp):
        self.tmp = tmp
        self.flash = os.path.join(shm_dir(), "fit-%d.flash" % os.getpid())
        self.err = ""  # the last agent's stderr
        self.mods = []  # modules loaded once a Download has run (set by a peak run)

    def fresh(self):
        if os.path.exists(self.flash):
            os.unlink(self.flash)
        return self.flash

    def start(self, it, mode, heap, seconds, key=None):
        port = bc.free_udp_port()
        p = it.popen([self.fresh(), mode, str(port), str(seconds * 1000)] + ([key] if key else []), heap)
        line = p.stdout.readline()
        if not line.startswith("READY"):
            bc.stop(p)
            return None, None, None
        return p, "coap://127.0.0.1:%d/usp" % port, [int(x) for x in line.split()[1:]]


async def _watch(p, coro, timeout):
    """Run coro; False as soon as the agent process dies (a MemoryError), or at timeout."""
    task = asyncio.ensure_future(coro)
    end = time.monotonic() + timeout
    while not task.done():
        if p.poll() is not None or time.monotonic() > end:
            task.cancel()
            try:
                await task
            except BaseException:
                pass
            return False
        await asyncio.sleep(0.05)
    try:
        return task.result()
    except Exception as e:
        if VERBOSE:
            print("  %r" % e, file=sys.stderr)
        return False


async def _get(uri):
    from firmware_slots.host.controller import UspCoapController
    async with UspCoapController("self::fit") as ctl:
        m = await ctl.get(uri, AGENT_ID, ["Device.DeviceInfo.SoftwareVersion"], timeout=5)
        return "SoftwareVersion" in json.dumps(m, default=str)


async def _download(uri, url, sha, size):
    from firmware_slots.host.controller import UspCoapController
    async with UspCoapController("self::fit-dl") as ctl:
        await ctl.operate(uri, AGENT_ID, "Device.DeviceInfo.FirmwareImage.2.Download()",
                          {"URL": url, "AutoActivate": "false", "FileSize": str(size),
                           "CheckSumAlgorithm": "SHA-256", "CheckSum": sha}, key="fit", timeout=10)
        for _ in range(120):
            await asyncio.sleep(0.5)
            try:
                s = json.dumps(await ctl.get(uri, AGENT_ID, [STATUS], timeout=20), default=str)
            except asyncio.TimeoutError:
                continue
            if "Available" in s:
                return True
            if "Failed" in s:
                return False
    return False


async def _gets(uri, n):
    from firmware_slots.host.controller import UspCoapController
    async with UspCoapController("self::fit-creep") as ctl:
        for _ in range(n):
            await ctl.get(uri, AGENT_ID, ["Device.DeviceInfo.SoftwareVersion"], timeout=5)
    await asyncio.sleep(0.3)  # one more loop turn reports the heap after the last one
    return True


def resident_after_gets(run, it, heap, n=CREEP_GETS):
    """Heap held after n USP Gets: the caches (CoAP dedup, agent state) filled up."""
    p, uri, _ = run.start(it, "creep", heap, 30)
    if p is None:
        return None
    try:
        ok = asyncio.run(_watch(p, _gets(uri, n), 25))
    finally:
        out, run.err = bc.stop(p)
    mems = [int(x.split()[1]) for x in out.splitlines() if x.startswith("MEM")]
    return mems[-1] if ok and mems else None


def get_ok(run, it, heap, out=None, key=None):
    p, uri, ready = run.start(it, "get", heap, 20, key)
    if p is None:
        return False
    try:
        ok = asyncio.run(_watch(p, _get(uri), 15))
        if ok and out is not None:
            out[:] = ready
        return ok and p.poll() is None
    finally:
        bc.stop(p)


def download_ok(run, it, heap, url, sha, mode="download", signed=None):
    """signed: (key.pem, size) of a signed image at url, the key provisioned on the device."""
    key, size = signed or (None, bc.MIB)
    p, uri, _ = run.start(it, mode, heap, 90, key)
    if p is None:
        return None
    try:
        ok = asyncio.run(_watch(p, _download(uri, url, sha, size), 80))
    finally:
        out, run.err = bc.stop(p)
    if mode == "peak":
        if not (ok and "PEAK" in out):
            return None
        run.mods = out.split("MODS")[1].splitlines()[0].split()  # what a Download loads
        return int(out.split("PEAK")[1].split()[0])
    return ok


def pull_s(run, it, url, sha):
    p = it.popen([run.fresh(), "pull", url, sha], 1 << 20)
    out, err = p.communicate(timeout=120)
    ms, got = out.split("MS")[1].split()[:2]
    if got != sha:
        raise RuntimeError("pull: wrong SHA-256 %s\n%s" % (got, err))
    return int(ms) / 1000


def driver_dir(tmp):
    """tmp/drv/fitdrv.mpy: the driver as bytecode, so the heap never pays for compiling it."""
    drv = os.path.join(tmp, "drv")
    os.makedirs(drv, exist_ok=True)
    src = os.path.join(drv, "fitdrv.py")
    with open(src, "w") as f:
        f.write(DRIVER)
    subprocess.run([mpy_cross_exe(), "-o", src[:-3] + ".mpy", src], check=True)
    os.unlink(src)
    return drv


def frozen32(tmp, source=None):
    """The 32-bit frozen interpreter (built or cached) with the driver on its path."""
    return Interp("frozen32", mp32.build(source), [".frozen", driver_dir(tmp)])


def _mp(it, code):
    env = dict(os.environ, MICROPYPATH=os.pathsep.join(it.path))
    p = subprocess.run([it.exe, "-X", "heapsize=1048576", "-c", code], capture_output=True, text=True,
                       env=env, cwd=it.path[-1], timeout=60)
    if p.returncode:
        raise RuntimeError(p.stdout + p.stderr)
    return p.stdout


def module_costs(run, it):
    """{module: heap its import adds with its own imports already loaded}, for every module
    the agent holds after a Download (fresh interpreter per module, gc.collect() around)."""
    mods = run.mods
    cost = {}
    for m in mods:
        deps = [x for x in _mp(it, DEPS % (m, m)).splitlines() if x.startswith("DEPS")][0].split()[1:]
        cost[m.replace("firmware_slots.", "")] = int(_mp(it, COST % (deps, m)).split("COST")[1].split()[0])
    return cost


def compile_all(tmp, exe):
    """Every tier's .py -> tmp/mpy/**.mpy (+ the bench's flash driver); -> ({tier: bytes}, dir)."""
    dest = os.path.join(tmp, "mpy")
    tiers = T.load()
    sizes = {}
    for n in tiers:
        sizes[n] = 0
        for f in T.tier_files(tiers, n, missing=[]) + (list(mp32.BENCH_EXTRA) if n == "slots" else []):
            out = os.path.join(dest, f[:-3] + ".mpy")
            os.makedirs(os.path.dirname(out), exist_ok=True)
            subprocess.run([exe, "-o", out, os.path.join(ROOT, f)], check=True, capture_output=True)
            if f not in mp32.BENCH_EXTRA:
                sizes[n] += os.path.getsize(out)
    return sizes, dest


def logged(name, ok):
    def probe(heap):
        t = time.monotonic()
        r = ok(heap)
        if VERBOSE:
            print("%s heap=%d: %s (%.1f s)" % (name, heap, r, time.monotonic() - t), file=sys.stderr)
        return r
    return probe


def signed_image(tmp, server_url, name="signed"):
    """(public key.pem, url, sha256 hex, size): a 1 MiB payload signed like `imgtool sign`
    with a fresh ECDSA-P256 key, PUT as `name` next to the plain image on the same libcoap server."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from firmware_slots.host import signing
    k = ec.generate_private_key(ec.SECP256R1())
    priv, pub = os.path.join(tmp, name + "-key.pem"), os.path.join(tmp, name + "-pub.pem")
    with open(priv, "wb") as f:
        f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()))
    with open(pub, "wb") as f:
        f.write(k.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo))
    data = signing.sign(bc.pattern(bc.MIB), priv, "2.0.0", 1)
    src = os.path.join(tmp, name + ".bin")
    with open(src, "wb") as f:
        f.write(data)
    url = server_url.rsplit("/", 1)[0] + "/" + name
    subprocess.run(["coap-client-notls", "-B", "30", "-m", "put", "-b", "1024", "-t", "42", "-f", src, url],
                   check=True, capture_output=True, timeout=60)
    return pub, url, hashlib.sha256(data).hexdigest(), len(data)


def signed_figures(prefix, run, it, signed, get_range, dl_range, step):
    pub, url, sha, size = signed
    lo, hi = get_range
    return {prefix + "signed_get_min_heap_bytes": smallest(
                logged(prefix + "signed_get", lambda h: get_ok(run, it, h, key=pub)), lo, hi, step),
            prefix + "signed_download_1mib_min_heap_bytes": smallest(
                logged(prefix + "signed_download", lambda h: download_ok(
                    run, it, h, url, sha, signed=(pub, size))), dl_range[0], dl_range[1], step * 2)}


def _steady(ok, found, window=STEADY_WINDOW):
    """From the bisected minimum up: the first heap after which every KiB step of `window` works."""
    return None if found is None else steady(ok, found, 1024, window)


def figures(prefix, run, it, url, sha, get_range, dl_range, step, peak_heap):
    res = {}
    ready = []
    lo, hi = get_range
    get = logged(prefix + "get", lambda h: get_ok(run, it, h))
    res[prefix + "get_min_heap_bytes"] = smallest(get, lo, hi, step)
    res[prefix + "get_steady_heap_bytes"] = _steady(get, res[prefix + "get_min_heap_bytes"])
    get_ok(run, it, hi, ready)
    res[prefix + "resident_bytes"], res[prefix + "baseline_bytes"], res[prefix + "slots_resident_bytes"] = \
        ready or (None, None, None)
    res[prefix + "resident_after_%d_gets_bytes" % CREEP_GETS] = resident_after_gets(run, it, hi)
    lo, hi = dl_range
    dl = logged(prefix + "download", lambda h: download_ok(run, it, h, url, sha))
    res[prefix + "download_1mib_min_heap_bytes"] = smallest(dl, lo, hi, step * 2)
    res[prefix + "download_1mib_steady_heap_bytes"] = _steady(dl, res[prefix + "download_1mib_min_heap_bytes"])
    res[prefix + "peak_live_bytes"] = download_ok(run, it, peak_heap, url, sha, "peak")
    res[prefix + "heap_step_bytes"] = step
    return res


def main(argv):
    global VERBOSE
    VERBOSE = "--verbose" in argv
    quick = "--quick" in argv
    src = argv[argv.index("--source") + 1] if "--source" in argv else None
    runs = int(argv[argv.index("--runs") + 1]) if "--runs" in argv else (3 if quick else 5)
    why = mp32.unavailable(src)
    if why:
        print(json.dumps({"error": "cannot build the 32-bit interpreter: " + why}))
        return 1
    tmp = tempfile.mkdtemp(prefix="bench-fit-")
    run = Run(tmp)
    sha = hashlib.sha256(bc.pattern(bc.MIB)).hexdigest()
    res = {}
    srv = None
    try:
        sizes, mpy = compile_all(tmp, mpy_cross_exe())
        res["mpy_bytes"] = sizes
        res["mpy_total_bytes"] = sum(sizes.values())
        drv = driver_dir(tmp)
        i32 = Interp("frozen32", mp32.build(src), [".frozen", drv])
        i64 = Interp("mpy64", micropython_exe(), [mpy, ".frozen", drv])
        srv, url = bc.libcoap_server(tmp)
        k = 4 if quick else 1
        res.update(figures("frozen32_", run, i32, url, sha, (8 << 10, 128 << 10),
                           (8 << 10, 256 << 10), 512 * k, 256 << 10))
        res.update(signed_figures("frozen32_", run, i32, signed_image(tmp, url), (8 << 10, 128 << 10),
                                  (8 << 10, 256 << 10), 512 * k))
        if "--modules" in argv:
            res["frozen32_import_bytes"] = module_costs(run, i32)
        if "--no-mpy64" not in argv:
            res.update(figures("mpy64_", run, i64, url, sha, (32 << 10, 1 << 20),
                               (32 << 10, 2 << 20), 2048 * k, 1 << 20))
        mp, lc = [], []
        for _ in range(runs):
            mp.append(pull_s(run, i32, url, sha))
            lc.append(bc.pull_libcoap(tmp, url, sha))
        ratios = [a / b for a, b in zip(mp, lc)]
        res["pull_1mib_s_frozen32"] = round(statistics.median(mp), 3)
        res["pull_1mib_s_libcoap_client"] = round(statistics.median(lc), 3)
        res["pull_ratio"] = round(statistics.median(ratios), 2)
        res["pull_ratio_min"] = round(min(ratios), 2)
        res["pull_ratio_max"] = round(max(ratios), 2)
        res["pull_runs"] = runs
    finally:
        if srv is not None:
            srv.terminate()
            srv.wait(5)
        if os.path.exists(run.flash):
            os.unlink(run.flash)
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
