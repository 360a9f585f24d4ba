"""Scenario tests on the virtual board, driven only through its serial port.

Each test starts a fresh board (MicroPython unix port + boot stub + flash file behind a
pty), installs app images over the console and resets it like a real board.
"""
import hashlib
import subprocess
import sys

import pytest

from hil.apps import app_image

V1 = app_image("demo", "1.0")


def provision(d):
    """v1 installed in slot 0, booted, confirmed: the last-known-good image."""
    info = d.install(0, V1)
    assert info["Status"] == "Available" and info["Name"] == "demo" and info["Version"] == "1.0"
    d.set_boot(0)
    r = d.reboot()
    assert r.slot == 0 and "APP confirmed" in r.text, r.text
    st = d.status()
    assert st["lkg"] == 0 and st["running"] == 0
    return st


def row(st, i):
    return st["slots"][i]


def test_first_power_up_has_a_console(fwslots_make_dut):
    d = fwslots_make_dut()
    assert "no bootable image" in d.first_boot.text
    assert d.exec("print(6*7)").strip() == "42"


def test_good_upgrade(fwslots_make_dut):
    d = fwslots_make_dut()
    provision(d)
    v2 = app_image("demo", "2.0", pad=9000)
    info = d.install(1, v2)
    assert info["Version"] == "2.0" and info["SHA256"] == hashlib.sha256(v2).hexdigest()
    d.set_boot(1)
    r = d.reboot()
    assert r.slot == 1 and "APP demo 2.0" in r.text and "APP confirmed" in r.text, r.text
    st = d.status()
    assert st["boot"] == 1 and st["lkg"] == 1 and st["running"] == 1
    assert row(st, 1)["Status"] == "Active" and row(st, 1)["LastKnownGood"]
    assert row(st, 0)["Status"] == "Available"
    # a confirmed image boots again without a trial
    r = d.reboot()
    assert r.slot == 1 and "trial" not in " ".join(r.stub)


@pytest.mark.parametrize("behaviour,why", [
    ("crash", "crashed: RuntimeError: self-test failed in 2.0"),
    ("hang", "watchdog reset: not confirmed within 1000 ms"),
])
def test_bad_upgrade_falls_back(fwslots_make_dut, behaviour, why):
    d = fwslots_make_dut(confirm_ms=1000)
    provision(d)
    d.install(1, app_image("demo", "2.0", behaviour))
    d.set_boot(1)
    r = d.reboot(timeout=30)
    runs = [int(x.split()[2]) - 1 for x in r.runs]
    assert runs == [1, 1, 1, 0], r.text  # three attempts, then last-known-good
    assert "APP demo 1.0" in r.text
    st = d.status()
    assert st["running"] == 0 and st["lkg"] == 0
    assert st["boot"] == 1  # a fallback never rewrites BootFirmwareImage
    assert row(st, 1)["Status"] == "ActivationFailed"
    log = row(st, 1)["BootFailureLog"]
    assert "not confirmed after 3 boot attempts" in log and why in log, log
    if behaviour == "hang":
        assert [e["cause"] for e in d.board.events[-3:]] == ["wdt", "wdt", "wdt"]


def test_three_slots_fallback_skips_unverifiable(fwslots_make_dut):
    d = fwslots_make_dut(nslots=3)
    provision(d)
    d.install(1, app_image("demo", "2.0"))
    d.install(2, app_image("demo", "3.0"))
    d.set_boot(1)
    assert d.reboot().slot == 1  # v2 confirmed: last-known-good is now slot 1
    # rot one bit of v2 and of v1 (NOR programming can clear bits in place)
    d.exec("import bootstub\nr=bootstub.mgr.regions\n"
           "for i,off in ((1,100),(0,5)):\n b=bytearray(1)\n r[i].read(off,b)\n"
           " b[0]&=b[0]-1 if b[0] else 0\n r[i].program(off,b)")
    r = d.reboot()
    assert r.slot == 2 and "APP demo 3.0" in r.text, r.text
    st = d.status()
    for i in (0, 1):
        assert row(st, i)["Status"] == "ActivationFailed"
        assert "SHA-256" in row(st, i)["BootFailureLog"]
    assert st["boot"] == 1


def test_power_cut_during_install_keeps_lkg(fwslots_make_dut):
    d = fwslots_make_dut()
    provision(d)
    gen = d.board.generation
    d.exec("import bootstub\nbootstub.board.flash.arm_cut(5)")
    with pytest.raises(Exception):
        d.install(1, app_image("demo", "2.0", pad=20000))
    assert d.board.wait_generation(gen)
    r = d.wait_boot()
    assert r.slot == 0 and d.board.events[-1]["cause"] == "power"
    st = d.status()
    assert row(st, 1)["Status"] == "Downloading" and d.verify(0)


def test_mpremote_reaches_the_console(fwslots_make_virtual_board):
    b = fwslots_make_virtual_board()
    import time
    time.sleep(0.3)
    p = subprocess.run([sys.executable, "-m", "mpremote", "connect", b.link, "resume", "exec",
                        "import bootstub; print('slots', bootstub.mgr.n)"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "slots 2" in p.stdout
