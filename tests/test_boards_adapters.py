"""Board profiles and the hardware adapters (esp32 native/app, rp2, stm32) under the real
MicroPython interpreter, against fakes of the documented MicroPython APIs.
None of these paths ran on real hardware here."""
import glob
import json
import os

import pytest

from firmware_slots.host.appimage import build
from mpy import ROOT, requires_micropython, run_mp

PROFILES = sorted(glob.glob(os.path.join(ROOT, "boards", "profiles", "*.json")))
KEYS = ("name", "port", "mode", "adapter", "flash", "journal", "slots", "boot", "serial", "reset", "flashing")


@pytest.mark.parametrize("path", PROFILES, ids=os.path.basename)
def test_profile_is_complete_data(path):
    with open(path) as f:
        p = json.load(f)
    for k in KEYS:
        assert k in p, k
    assert p["mode"] in ("app", "native")
    assert p["name"] + ".json" == os.path.basename(path)
    assert "baud" in p["serial"] and "vid" in p["serial"] and "pid" in p["serial"]
    if p["mode"] == "app" and "first" in p["journal"]:
        used = [(p["journal"]["first"], p["journal"]["blocks"])]
        used += [(s["first"], s["blocks"]) for s in p["slots"]]
        used.sort()
        for (a, n), (b, _) in zip(used, used[1:]):
            assert a + n <= b, "overlapping windows in %s" % p["name"]


@requires_micropython
@pytest.mark.parametrize("profile,bs", [("esp32-app", 4096), ("rp2-pico-app", 4096), ("stm32-pybv11-app", 512)])
def test_app_mode_adapter_with_fakes(tmp_path, profile, bs):
    img = build(files={"main.py": "import bootstub\nbootstub.confirm()\n"}, name="fake", version="1.0",
                block_size=bs)
    p = tmp_path / "app.img"
    p.write_bytes(img)
    out = run_mp("import sys\nsys.path.insert(0, %r)\nfrom device.boot_adapters import run_app\nprint(run_app(%r, %r))"
                 % (os.path.join(ROOT, "tests"), profile, str(p)), heapsize="16M")
    assert "%s ok" % profile in out, out


@requires_micropython
def test_esp32_native_adapter_with_fakes():
    out = run_mp("import sys\nsys.path.insert(0, %r)\nfrom device.boot_adapters import run_native\nprint(run_native())"
                 % os.path.join(ROOT, "tests"), heapsize="16M")
    assert "esp32-native ok" in out, out
