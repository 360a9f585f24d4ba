"""Scenario tests driven only through the board's serial port: on a fresh virtual board per
test by default, unchanged on a real board or a labgrid place (--fwslots-port labgrid://PLACE).

Each test starts from whatever the board holds: provision() installs a confirmed image into
the slot the device itself picks, so the same steps hold on a fresh virtual board (slot 1,
then 2, 3) and on a farm board that earlier tests left in some state.
"""
import hashlib
import subprocess
import sys

import pytest

from hil.apps import app_image
from hil.serialdev import DeviceError, DeviceReset, DeviceTimeout

V1 = app_image("demo", "1.0")


def provision(d, version="1.0"):
    """A confirmed last-known-good image running from the slot the device picks; its slot."""
    t = d.status()["target"]
    assert t >= 0
    info = d.install(t, V1 if version == "1.0" else app_image("demo", version))
    assert info["Status"] == "Available" and info["Name"] == "demo" and info["Version"] == version
    d.set_boot(t)
    r = d.reboot()
    assert r.slot == t and "APP confirmed" in r.text, r.text
    st = d.status()
    assert st["lkg"] == t and st["running"] == t
    return t


def row(st, i):
    return st["slots"][i]


def test_first_power_up_has_a_console(fwslots_make_dut):
    d = fwslots_make_dut()
    assert "no bootable image" in d.first_boot.text
    assert d.exec("print(6*7)").strip() == "42"


def test_good_upgrade(fwslots_dut):
    d = fwslots_dut
    base = provision(d)
    t = d.status()["target"]
    v2 = app_image("demo", "2.0", pad=9000)
    info = d.install(t, v2)
    assert info["Version"] == "2.0" and info["SHA256"] == hashlib.sha256(v2).hexdigest()
    d.set_boot(t)
    r = d.reboot()
    assert r.slot == t and "APP demo 2.0" in r.text and "APP confirmed" in r.text, r.text
    st = d.status()
    assert st["boot"] == t and st["lkg"] == t and st["running"] == t
    assert row(st, t)["Status"] == "Active" and row(st, t)["LastKnownGood"]
    assert row(st, base)["Status"] == "Available"
    # a confirmed image boots again without a trial
    r = d.reboot()
    assert r.slot == t and "trial" not in " ".join(r.stub)


@pytest.mark.fwslots_board(confirm_ms=1000)
@pytest.mark.parametrize("behaviour,why", [
    ("crash", "crashed: RuntimeError: self-test failed in 2.0"),
    ("hang", "watchdog reset: not confirmed within 1000 ms"),
])
def test_bad_upgrade_falls_back(fwslots_dut, behaviour, why):
    d = fwslots_dut
    if behaviour == "hang" and d.board is None:
        pytest.skip("the watchdog message names the virtual board's confirm_ms")
    base = provision(d)
    t = d.status()["target"]
    d.install(t, app_image("demo", "2.0", behaviour))
    d.set_boot(t)
    r = d.reboot(timeout=30)
    runs = [int(x.split()[2]) - 1 for x in r.runs]
    assert runs == [t, t, t, base], r.text  # three attempts, then last-known-good
    assert "APP demo 1.0" in r.text
    st = d.status()
    assert st["running"] == base and st["lkg"] == base
    assert st["boot"] == t  # a fallback never rewrites BootFirmwareImage
    assert row(st, t)["Status"] == "ActivationFailed"
    log = row(st, t)["BootFailureLog"]
    assert "not confirmed after 3 boot attempts" in log and why in log, log
    if behaviour == "hang":
        assert [e["cause"] for e in d.board.events[-3:]] == ["wdt", "wdt", "wdt"]


@pytest.mark.fwslots_board(nslots=3)
def test_three_slots_fallback_skips_unverifiable(fwslots_dut):
    d = fwslots_dut
    if len(d.info()) < 3:
        pytest.skip("needs a board with three slots")
    a = provision(d)
    b = d.status()["target"]
    d.install(b, app_image("demo", "2.0"))
    c = ({0, 1, 2} - {a, b}).pop()  # on a used board the device might prefer b again
    d.install(c, app_image("demo", "3.0"))
    d.set_boot(b)
    assert d.reboot().slot == b  # v2 confirmed: last-known-good is now b
    # rot one bit of v2 and of v1 (NOR programming can clear bits in place): a test-only backdoor
    d.exec("import bootstub\nr=bootstub.mgr.regions\n"
           "for i,off in ((%d,100),(%d,5)):\n b=bytearray(1)\n r[i].read(off,b)\n"
           " b[0]&=b[0]-1 if b[0] else 0\n r[i].program(off,b)" % (b, a))
    r = d.reboot()
    assert r.slot == c and "APP demo 3.0" in r.text, r.text
    st = d.status()
    for i in (a, b):
        assert row(st, i)["Status"] == "ActivationFailed"
        assert "SHA-256" in row(st, i)["BootFailureLog"]
    assert st["boot"] == b


def test_power_cut_during_install_keeps_lkg(fwslots_dut):
    """Power goes while an image streams in (timed by the host: virtual board or power driver)."""
    d = fwslots_dut
    if not d.can_power_cut:
        pytest.skip("no power control for this board")
    base = provision(d)
    t = d.status()["target"]
    img = app_image("demo", "2.0", pad=20000)

    def cut(done, total):
        if done >= total // 2 and not cut.done:
            cut.done = True
            d.power_cut()
    cut.done = False
    with pytest.raises((DeviceReset, DeviceTimeout, DeviceError)):
        d.install(t, img, progress_cb=cut)
    r = d.wait_boot()
    assert r.slot == base, r.text
    st = d.status()
    assert row(st, t)["Status"] == "Downloading" and st["lkg"] == base and d.verify(base)


def test_power_cut_at_a_flash_write_keeps_lkg(fwslots_make_dut):
    """The exact variant: the virtual flash cuts power just before its 5th program/erase."""
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
    # the board's filesystem is its own folder, not the host's working directory
    p = subprocess.run([sys.executable, "-m", "mpremote", "connect", b.link, "resume", "fs", "cp",
                        __file__, ":copied.py"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert open(b.fs_path + "/copied.py").read() == open(__file__).read()


def test_console_output_before_the_port_opens_is_kept(fwslots_make_virtual_board):
    """Like a USB CDC board's buffer: a host that opens the port after the boot still reads it."""
    import time
    from hil.device import Dut
    b = fwslots_make_virtual_board()
    end = time.monotonic() + 20
    while b"no bootable image" not in b.transcript and time.monotonic() < end:
        time.sleep(0.05)
    time.sleep(0.2)  # the boot is over and nobody has the port open
    d = Dut(b.link, b)
    try:
        r = d.wait_boot(5)
        assert "no bootable image" in r.text and r.text.rstrip().endswith(">>>"), r.text
    finally:
        d.close()
