"""Device-core benchmark: prints one JSON object.

    cut_points_tested, bricked      the power-cut sweep (tests/device/powercut.py) run under
                                    MicroPython over all geometries; bricked = failed checks
    metadata_erases_per_boot        journal erases per normal boot of a confirmed image
    boots_per_metadata_erase        trial boots (attempt counting) per journal erase
    ..._erased00                    the same two on flash that erases to 0x00 (the sweep
                                    covers such a geometry too: nor-4k-16b-erased00)
    write_overhead_ratio            install (erase-ahead, program, SHA-256, read-back,
                                    journal) of a 256 KiB image / raw erase+program of the
                                    same bytes into the same simulated flash, same run
    micropython_heap_peak_bytes     live GC heap (gc.mem_alloc after gc.collect, sampled per
                                    1 KiB chunk) at its highest while writing a 256 KiB image,
                                    device modules loaded as .mpy, flash behind a plain
                                    file block device; ..._before_write is after the imports
    micropython_min_heap_bytes      smallest -X heapsize that completes that write: the
                                    number that decides whether a board can do it

Run: python bench/device_core.py   (needs the test extra: the micropython command)
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from mpy import micropython_exe  # noqa: E402

COUNTERS = r"""
from firmware_slots.sim.simdev import sim_device, reopen
from firmware_slots.sim.norsim import NorFlash
import time
flash, m = sim_device(sector_size=4096, journal_blocks=2, slot_blocks=80, nslots=2, max_attempts=10**6,
                      erased=ERASED)
img = bytes(range(256)) * 1024  # 256 KiB
w = m.install(0, size=len(img))
for p in range(0, len(img), 1024):
    w.write(img[p:p + 1024])
w.finish()
m.set_boot(0)
m = reopen(flash); m.boot(); m.confirm()
jr = range(0, 2)
def jerases():
    return sum(flash.erases[i] for i in jr)
e0 = jerases()
for _ in range(1000):
    m = reopen(flash); d = m.boot()
normal = (jerases() - e0) / 1000
w = m.install(1, size=len(img))
for p in range(0, len(img), 1024):
    w.write(img[p:p + 1024])
w.finish(); m.set_boot(1)
e0 = jerases()
for _ in range(1000):
    m = reopen(flash); d = m.boot()
    assert d.trial
trial_erases = jerases() - e0
print("COUNT", normal, 1000 / max(trial_erases, 1e-9) if trial_erases else 1000)
if ERASED != 0xFF:
    raise SystemExit

# write overhead: the same bytes, same chunking, same flash geometry
def raw():
    f = NorFlash(4096, 80)
    t = time.ticks_us()
    for s in range(64):
        f.ioctl(6, s)
    for p in range(0, len(img), 1024):
        f.writeblocks(p // 4096, memoryview(img)[p:p + 1024], p % 4096)
    return time.ticks_diff(time.ticks_us(), t)
def full():
    flash, m = sim_device(sector_size=4096, journal_blocks=2, slot_blocks=80, nslots=2)
    t = time.ticks_us()
    w = m.install(1, size=len(img), algorithm="SHA-256")
    for p in range(0, len(img), 1024):
        w.write(memoryview(img)[p:p + 1024])
        if p % 4096 == 0:
            w.checkpoint()
    w.finish()
    return time.ticks_diff(time.ticks_us(), t)
r = sorted(raw() for _ in range(5))[2]
f = sorted(full() for _ in range(5))[2]
print("RATIO", f / r, r, f)
"""

HEAP = r"""
import gc
from firmware_slots.core.layout import carve
from firmware_slots.core.slots import SlotManager
class FileDev:
    # a plain file-backed block device, like a real port's driver: no simulator bookkeeping
    def __init__(self, path, blocks):
        self.f = open(path, "w+b")
        self.blocks = blocks
        ff = b"\xff" * 4096
        for _ in range(blocks):
            self.f.write(ff)
        self.ff = ff
    def readblocks(self, n, buf, off=0):
        self.f.seek(n * 4096 + off)
        self.f.readinto(buf)
    def writeblocks(self, n, buf, off=0):
        self.f.seek(n * 4096 + off)
        self.f.write(buf)
    def ioctl(self, op, arg):
        if op == 4:
            return self.blocks
        if op == 5:
            return 4096
        if op == 6:
            self.f.seek(arg * 4096)
            self.f.write(self.ff)
        return 0
dev = FileDev(%r, 142)
j, s = carve(dev, 2, 70, 2)
m = SlotManager(s, j)
chunk = bytearray(1024)
gc.collect()
base = gc.mem_alloc()
peak = base
w = m.install(1, size=256 * 1024, algorithm="SHA-256")
for p in range(256):
    for i in range(0, 1024, 64):
        chunk[i] = p & 0xFF
    w.write(chunk)
    if p %% 4 == 3:
        w.checkpoint()
    gc.collect()  # live bytes only: garbage waiting for a collection is not a cost
    a = gc.mem_alloc()
    if a > peak:
        peak = a
w.finish()
gc.collect()
peak = max(peak, gc.mem_alloc())
print("HEAP", base, peak)
"""


def compile_device_modules(dest):
    """Device modules as .mpy, the way a board carries them (bytecode not compiled in RAM)."""
    from mpy import mpy_cross_exe
    src = os.path.join(ROOT, "firmware_slots")
    for dirpath, dirs, files in os.walk(src):
        if os.path.relpath(dirpath, src).startswith("host"):
            continue
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(dirpath, f), ROOT)
                out = os.path.join(dest, rel[:-3] + ".mpy")
                os.makedirs(os.path.dirname(out), exist_ok=True)
                subprocess.run([mpy_cross_exe(), "-o", out, os.path.join(ROOT, rel)], check=True)


def run(code, heap=None, path=None, cwd=ROOT):
    exe = micropython_exe()
    args = [exe] + (["-X", "heapsize=%d" % heap] if heap else []) + ["-c", code]
    env = dict(os.environ, MICROPYPATH=os.pathsep.join(
        (path or []) + [ROOT, os.path.join(ROOT, "tests", "device"), ".frozen"]))
    # with -c, '' (the cwd) comes first on the path: run from the .mpy folder to load those
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=900)


def main():
    out = {}
    p = run("import powercut\nn, f = powercut.run_all()\nprint('SWEEP', n, len(f))\n", heap=64 << 20)
    line = [l for l in p.stdout.splitlines() if l.startswith("SWEEP")]
    n, bad = map(int, line[-1].split()[1:])
    out["cut_points_tested"] = n
    out["bricked"] = bad
    p = run("ERASED = 0x00\n" + COUNTERS, heap=16 << 20)
    if p.returncode:
        raise SystemExit("0x00 wear run failed:\n" + p.stderr[-2000:])
    for l in p.stdout.splitlines():
        if l.startswith("COUNT"):
            a, b = l.split()[1:]
            out["metadata_erases_per_boot_erased00"] = float(a)
            out["boots_per_metadata_erase_erased00"] = round(float(b), 1)
    p = run("ERASED = 0xFF\n" + COUNTERS, heap=16 << 20)
    if p.returncode:
        raise SystemExit(p.stderr)
    for l in p.stdout.splitlines():
        if l.startswith("COUNT"):
            a, b = l.split()[1:]
            out["metadata_erases_per_boot"] = float(a)
            out["boots_per_metadata_erase"] = round(float(b), 1)
        if l.startswith("RATIO"):
            r, raw_us, full_us = l.split()[1:]
            out["write_overhead_ratio"] = round(float(r), 3)
            out["raw_program_256k_us"] = int(float(raw_us))
            out["install_256k_us"] = int(float(full_us))
    with tempfile.TemporaryDirectory() as d:
        compile_device_modules(d)
        mp = [d]
        code = HEAP % os.path.join(d, "flash.bin")
        p = run(code, heap=256 << 10, path=mp, cwd=d)
        if p.returncode:
            raise SystemExit(p.stderr)
        base, peak = map(int, [l for l in p.stdout.splitlines() if l.startswith("HEAP")][0].split()[1:])
        out["micropython_heap_peak_bytes"] = peak
        out["micropython_heap_before_write_bytes"] = base
        lo, hi = 8 << 10, 256 << 10  # smallest heap that completes (1 KiB resolution)
        while hi - lo > 1024:
            mid = (lo + hi) // 2
            if run(code, heap=mid, path=mp, cwd=d).returncode == 0:
                hi = mid
            else:
                lo = mid
        out["micropython_min_heap_bytes"] = hi
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
