"""Agent RAM benchmark under the MicroPython unix port (modules loaded as .mpy); prints JSON.

import_bytes            {module: heap it adds when imported with its own imports already
                        loaded} (fresh process per module, gc.collect() before/after)
import_load_only_bytes  {module: the part of that which is only loading the .mpy (bytecode,
                        raw-code structs, qstrs, constants)}: the module body is compiled
                        under `if __name__ == "\\0":` so it loads but never runs
runtime_bytes           import_bytes - import_load_only_bytes: globals dicts, function and
                        class objects, tables built at import. Frozen into firmware, only this
                        (roughly) stays in RAM: bytecode, qstrs and constants live in flash
agent_heap_bytes        heap held (gc.collect()) after: core_imports (layout, slots, agent_main),
                        core_and_flash_sim (+ the file-backed 2-slot simulated flash, mgr.boot()),
                        after_build (+ app.agent(): every agent module, the model,
                        the socket), after_startup (+ mtp.startup())
agent_resident_bytes    = agent_heap_bytes.after_startup
frozen_estimate_bytes   agent_resident_bytes - sum(load-only parts of the modules loaded)
get_min_heapsize_bytes  smallest -X heapsize (1 KiB steps) with which the agent answers a
                        USP Get over CoAP (POST, 2.04, reply POST) from the aiocoap controller
download_min_heapsize_bytes  smallest -X heapsize (4 KiB steps) with which a 1 MiB USP
                        Download() over coap (libcoap server) completes (bench/coap.py's run)

    python bench/memory.py [--quick]       (--quick: no 1 MiB download search)
"""
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import coap as bc  # noqa: E402  bench/coap.py: agent script, compile_tree, heap_run
from mpy import micropython_exe, mpy_cross_exe  # noqa: E402

STARTUP = r'''
import sys, gc
def m():
    gc.collect()
    return gc.mem_alloc()
b = m()
from firmware_slots.core import slots
from firmware_slots.sim import simdev
from firmware_slots import app
a = m()
flash, mgr = simdev.sim_device(sector_size=4096, journal_blocks=4, slot_blocks=260, nslots=2, path=%r)
mgr.boot()
c = m()
mtp = app.agent(mgr, "os::0044FF-bench", "127.0.0.1", 0)
d = m()
mtp.startup()
e = m()
print("MODS", " ".join(sorted(k for k in sys.modules if k.startswith("firmware_slots"))))
print("HEAP", a - b, c - b, d - b, e - b)
'''

DEPS = r'''
import sys
pre = set(sys.modules)
import %s
print("DEPS", " ".join(sorted(k for k in sys.modules if k not in pre and k != %r)))
'''

COST = r'''
import sys, gc
for d in %r:
    __import__(d)
gc.collect()
a = gc.mem_alloc()
import %s
gc.collect()
b = gc.mem_alloc()
print("COST", b - a)
'''


def mp(code, mpy, heap=1 << 20):
    p = subprocess.run([micropython_exe(), "-X", "heapsize=%d" % heap, "-c", code], capture_output=True,
                       text=True, cwd=mpy, timeout=60,
                       env=dict(os.environ, MICROPYPATH=os.pathsep.join([mpy, ".frozen"])))
    if p.returncode:
        raise RuntimeError(p.stdout + p.stderr)
    return p.stdout


def line(out, tag):
    return [x for x in out.splitlines() if x.startswith(tag)][-1].split()[1:]


def guarded(mod, mpy):
    """Compile `mod` with its body under a never-true `if`: loads everything, runs nothing."""
    src = os.path.join(ROOT, *mod.split(".")) + ".py"
    if not os.path.exists(src):
        src = os.path.join(ROOT, *mod.split("."), "__init__.py")
    with open(src) as f:
        body = f.read()
    name = "_lo_" + mod.replace(".", "_")
    py = os.path.join(mpy, name + ".py")
    with open(py, "w") as f:
        f.write('if __name__ == "\\0":\n' + "".join("    " + x + "\n" if x.strip() else "\n"
                                                   for x in body.splitlines()) + "    pass\n")
    subprocess.run([mpy_cross_exe(), "-o", py[:-3] + ".mpy", py], check=True, capture_output=True)
    os.unlink(py)
    return name


def modules(mpy, tmp):
    out = mp(STARTUP % os.path.join(tmp, "startup.flash"), mpy)
    mods = line(out, "MODS")
    heap = dict(zip(("core_imports", "core_and_flash_sim", "after_build", "after_startup"),
                    (int(x) for x in line(out, "HEAP"))))
    full, load = {}, {}
    for mod in mods:
        deps = line(mp(DEPS % (mod, mod), mpy), "DEPS")
        full[mod] = int(line(mp(COST % (deps, mod), mpy), "COST")[0])
        load[mod] = int(line(mp(COST % (deps, guarded(mod, mpy)), mpy), "COST")[0])
    return mods, heap, full, load


def get_ok(tmp, heap, mpy):
    p, uri = bc.start_agent(tmp, heap, seconds=15, mpy=mpy)
    if p is None:
        return False
    try:
        asyncio.run(asyncio.wait_for(bc.usp_rtt(uri, 1), 5))
        return p.poll() is None
    except Exception:
        return False
    finally:
        bc.stop(p)


def smallest(ok, lo, hi, step):
    """Smallest heap in (lo, hi] for which ok(heap), to `step`; None if not even hi."""
    if not ok(hi):
        return None
    while hi - lo > step:
        mid = (lo + hi) // 2 // step * step
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi


def steady(ok, start, step, count):
    """Smallest heap h >= start from which ok holds for h, h+step, ... h+(count-1)*step.

    A heap near its limit fails by fragmentation, not by size: success is not monotonic
    there, so a bisection (smallest) lands anywhere in that band. This is the figure a
    board can rely on: every heap tried above it worked."""
    h = start
    while True:
        for i in range(count):
            if not ok(h + i * step):
                h += (i + 1) * step
                break
        else:
            return h


def main():
    quick = "--quick" in sys.argv
    tmp = tempfile.mkdtemp(prefix="bench-mem-")
    res = {}
    try:
        mpy = bc.compile_tree(tmp)
        mods, heap, full, load = modules(mpy, tmp)
        short = {m: m.replace("firmware_slots.", "") for m in mods}
        res["import_bytes"] = {short[m]: full[m] for m in mods}
        res["import_load_only_bytes"] = {short[m]: load[m] for m in mods}
        res["runtime_bytes"] = {short[m]: full[m] - load[m] for m in mods}
        res["agent_heap_bytes"] = heap
        res["agent_resident_bytes"] = heap["after_startup"]
        res["import_total_bytes"] = sum(full.values())
        res["import_load_only_total_bytes"] = sum(load.values())
        res["frozen_estimate_bytes"] = heap["after_startup"] - sum(load.values())
        res["get_min_heapsize_bytes"] = smallest(lambda h: get_ok(tmp, h, mpy), 8 << 10, 512 << 10, 1024)
        if not quick:
            import hashlib
            sha = hashlib.sha256(bc.pattern(bc.MIB)).hexdigest()
            srv, url = bc.libcoap_server(tmp)
            try:
                res["download_min_heapsize_bytes"] = smallest(
                    lambda h: bc.heap_run(tmp, h, url, sha, mpy) is not None, 8 << 10, 512 << 10, 4096)
            finally:
                srv.terminate()
                srv.wait(5)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
