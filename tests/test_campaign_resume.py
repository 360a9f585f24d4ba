"""kill -9 of `fwslots campaign run` mid-distribution, then run again: it finishes, and no
completed download is restarted (the image server counts every block per device).
Meanwhile `status` readers see one consistent snapshot each (counts == rows)."""
import json
import os
import signal
import subprocess
import sys
import time

from firmware_slots.host.campaign import cli as ccli
from firmware_slots.host.campaign.store import Store
from hil.fleet import Fleet, app_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N = 40
BLOCKS = 20


def _run(db):
    return subprocess.Popen([sys.executable, "-m", "firmware_slots.host.campaign.cli", "run", db, "-q"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _consistent(db):
    s = ccli.status(db)
    states = {}
    for d in s["devices"]:
        states[d["state"]] = states.get(d["state"], 0) + 1
    assert {k: v for k, v in s["counts"].items() if v} == states
    assert s["blocks_served"] >= sum(d["blocks"] for d in s["devices"]) - 0  # same snapshot, same flushes
    return s


def test_kill_mid_distribution_and_resume(tmp_path):
    v1, v2 = tmp_path / "v1.img", tmp_path / "v2.img"
    v1.write_bytes(app_image("1.0"))
    v2.write_bytes(app_image("2.0"))
    fleet = Fleet(N, v1.read_bytes()).start()
    proc = None
    try:
        ff = tmp_path / "fleet.json"
        ff.write_text(json.dumps(fleet.fleet()))
        db = str(tmp_path / "c.db")
        # 40 x 20 KiB at 80 kB/s: ~10 s of distribution, 6 devices at a time
        ccli.create(db, str(ff), str(v2), window=2.0, budget=80000, concurrency=6, waves="100%",
                    method="activate", verify_timeout=30.0)
        proc = _run(db)
        end = time.monotonic() + 40
        while True:
            assert time.monotonic() < end, "distribution did not progress"
            assert proc.poll() is None, proc.stdout.read()
            s = _consistent(db)
            if s["counts"]["downloaded"] >= 12:
                break
            time.sleep(0.2)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        before = {d["id"]: d for d in Store(db, readonly=True).devices()}
        done_before = [i for i, d in before.items() if d["state"] == "downloaded"]
        assert 12 <= len(done_before) < N
        served_before = ccli.status(db)["blocks_served"]

        proc = _run(db)
        end = time.monotonic() + 90
        while proc.poll() is None:
            assert time.monotonic() < end, "the resumed campaign did not finish"
            _consistent(db)
            time.sleep(0.3)
        out = proc.stdout.read().decode()
        assert proc.returncode == 0, out
        s = ccli.status(db)
        bad = [d for d in s["devices"] if d["state"] != "updated"]
        assert s["phase"] == "done" and not bad, json.dumps(bad)
        after = {d["id"]: d for d in s["devices"]}
        for i in done_before:
            # completed before the kill: never asked to download again, not one block more
            assert after[i]["dl_issued"] == 1 and after[i]["blocks"] == before[i]["blocks"], (before[i], after[i])
        served_after = s["blocks_served"] - served_before
        assert 0 < served_after <= (N - len(done_before)) * BLOCKS
        for dev in fleet.devices:
            truth = dev.state()
            assert truth["slots"][truth["running"]]["Version"] == "2.0"
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        fleet.stop()


def test_kill_mid_switch_and_resume(tmp_path):
    """kill -9 while a wave is switching (Set BootFirmwareImage + Reboot()): the rerun
    re-asks the wave's devices and classifies every one as the fleet really is."""
    from hil.fleet import fail_ratio
    v1, v2 = tmp_path / "v1.img", tmp_path / "v2.img"
    v1.write_bytes(app_image("1.0"))
    v2.write_bytes(app_image("2.0"))
    fail = fail_ratio(0.1, "2.0")      # devices 5 and 15 of 20
    fleet = Fleet(20, v1.read_bytes(), fail).start()
    proc = None
    try:
        ff = tmp_path / "fleet.json"
        ff.write_text(json.dumps(fleet.fleet()))
        db = str(tmp_path / "c.db")
        ccli.create(db, str(ff), str(v2), window=1.0, budget=400000, concurrency=20, waves="100%",
                    method="reboot", halt_ratio=0.5, verify_timeout=30.0)
        proc = _run(db)
        end = time.monotonic() + 40
        while True:
            assert time.monotonic() < end, "the switch did not start"
            assert proc.poll() is None, proc.stdout.read()
            s = _consistent(db)
            if any(d["state"] == "switching" for d in s["devices"]) and \
                    any(d["sent"] for d in Store(db, readonly=True).devices("switching")):
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        at_kill = ccli.status(db)["counts"]
        assert at_kill["switching"] > 0
        proc = _run(db)
        assert proc.wait(90) == 0, proc.stdout.read()
        s = ccli.status(db)
        by_eid = {d["eid"]: d for d in s["devices"]}
        for dev in fleet.devices:
            want = "fell_back" if fail(dev.n, "2.0") else "updated"
            assert by_eid[dev.endpoint_id]["state"] == want, by_eid[dev.endpoint_id]
            truth = dev.state()
            assert truth["slots"][truth["running"]]["Version"] == ("1.0" if want == "fell_back" else "2.0")
        assert [w["size"] for w in s["waves"]] == [20]
    finally:
        if proc and proc.poll() is None:
            proc.kill()
            proc.wait()
        fleet.stop()
