"""Trust in the slot manager: signed images verified once before Available, refused precisely
otherwise with nothing else changing; anti-rollback floor raised only by confirm; app images
mounted past the MCUboot header (MicroPython)."""
import contextlib
import os
import subprocess
import sys

import pytest

from firmware_slots.core import image, slots as S
from firmware_slots.host import appimage, signing
from firmware_slots.sim.simdev import reopen, sim_device
from mpy import requires_micropython, run_mp

BIN = os.path.dirname(sys.executable)


@contextlib.contextmanager
def refused(why, match):
    """The block must be refused by slots check `why`, with a message matching `match`."""
    with pytest.raises(S.SlotError, match=match) as ei:
        yield ei
    assert ei.value.why == why, ei.value.why


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    out = {"dir": d}
    for name, typ in (("ec", "ecdsa-p256"), ("ed", "ed25519"), ("other", "ecdsa-p256")):
        subprocess.run([os.path.join(BIN, "imgtool"), "keygen", "-k", str(d / (name + ".pem")), "-t", typ], check=True)
        out[name] = str(d / (name + ".pem"))
        out[name + "_key"] = signing.load_public(out[name])
    return out


def app(version):
    return appimage.build(files={"main.py": b"print('hello')\n"}, name="app", version=version)


def signed(keys, name, version, sc):
    return signing.sign(app(version), keys[name], version, sc)


def install(m, data, slot=None):
    i = m.pick_target() if slot is None else slot
    w = m.install(i, len(data))
    for k in range(0, len(data), 700):
        w.write(data[k:k + 700])
    return w.finish()


def state(m):
    return [(m.status(i), m.param(i, "Version"), m.info(i)["SHA256"]) for i in range(m.n)]


def booted(m, data):
    """A device running `data` confirmed in slot 0."""
    info = install(m, data, 0)
    m.set_boot(0)
    m.boot()
    m.confirm()
    return info


def test_signed_images_install_and_record_counter(keys):
    for name in ("ec", "ed"):
        _, m = sim_device(slot_blocks=8, keys=[keys[name + "_key"]])
        data = signed(keys, name, "1.2.0", 4)
        info = install(m, data)
        assert info["Status"] == "Available" and info["Length"] == len(data)
        i = info["slot"]
        dev, n = m.payload(i)
        assert n == len(app("1.2.0"))
        buf = bytearray(4096)
        dev.readblocks(0, buf)
        assert bytes(buf) == app("1.2.0")[:4096]  # the window starts at the littlefs image
        assert m.meta.get(i, S.K.S_COUNTER) == 4


@pytest.mark.parametrize("case", ["unsigned-plain", "unsigned-mcuboot", "other-key", "flip-header", "flip-payload",
                                  "flip-prot-tlv", "flip-signature", "truncated-tlv", "wrong-keyhash"])
def test_refused_with_precise_error_and_nothing_else_changes(keys, tmp_path, case):
    flash, m = sim_device(slot_blocks=8, nslots=3, keys=[keys["ec_key"]])
    good = signed(keys, "ec", "1.0.0", 1)
    booted(m, good)
    before = state(m)
    data = bytearray(signed(keys, "ec", "2.0.0", 2))
    tlv = len(data) - (len(data) - 0x1000 - len(app("2.0.0")))  # start of the protected TLVs
    if case == "unsigned-plain":
        data, why = bytearray(app("2.0.0")), "not an MCUboot image"
    elif case == "unsigned-mcuboot":
        p = tmp_path / "p.bin"
        p.write_bytes(app("2.0.0"))
        subprocess.run([os.path.join(BIN, "imgtool"), "sign", "-H", "0x1000", "--pad-header", "-v", "2.0.0", "-S",
                        "0x8000", str(p), str(tmp_path / "u.img")], check=True, capture_output=True)
        data, why = bytearray((tmp_path / "u.img").read_bytes()), "unsigned"
    elif case == "other-key":
        data, why = bytearray(signed(keys, "other", "2.0.0", 2)), "unknown key"
    elif case == "flip-header":
        data[20] ^= 1
        why = "hash mismatch"
    elif case == "flip-payload":
        data[0x1000 + 5000] ^= 0x40
        why = "hash mismatch"
    elif case == "flip-prot-tlv":
        data[tlv + 8] ^= 1  # the security counter's value
        why = "hash mismatch"
    elif case == "flip-signature":
        data[-3] ^= 1
        why = "does not verify"
    elif case == "truncated-tlv":
        data, why = data[:-10], "TLV area truncated"
    else:
        k = bytes(data).index(keys["ec_key"][1])
        data[k] ^= 1
        why = "unknown key"
    with refused(S.INVALID, why):
        install(m, bytes(data), 1)
    assert m.status(1) == "ValidationFailed" and why in m.info(1)["Error"]
    assert state(m)[0] == before[0] and state(m)[2] == before[2]  # active and spare slots untouched
    assert (m.boot_slot, m.lkg) == (0, 0)
    m2 = reopen(flash, keys=[keys["ec_key"]])  # and after a reboot
    assert m2.boot().slot == 0


def test_anti_rollback_floor_rises_only_on_confirm(keys):
    flash, m = sim_device(slot_blocks=8, nslots=3, keys=[keys["ec_key"]], max_attempts=2)
    booted(m, signed(keys, "ec", "1.0.0", 5))
    assert m.min_counter() == 5
    with refused(S.INVALID, "security counter 3 is below the device's minimum 5"):
        install(m, signed(keys, "ec", "0.9.0", 3), 1)
    install(m, signed(keys, "ec", "1.0.1", 5), 1)  # equal is fine
    install(m, signed(keys, "ec", "2.0.0", 9), 2)
    m.set_boot(2)
    for _ in range(3):  # the trial never confirms: fallback to the older image
        m = reopen(flash, keys=[keys["ec_key"]], max_attempts=2)
        d = m.boot()
    assert d.slot == 0 and m.min_counter() == 5 and m.param(0, "Version") == "1.0.0"
    assert m.status(2) == "ActivationFailed"
    install(m, signed(keys, "ec", "2.0.1", 9), 2)  # a fixed trial, confirmed this time: the floor follows
    m.set_boot(2)
    m = reopen(flash, keys=[keys["ec_key"]], max_attempts=2)
    assert m.boot().slot == 2
    m.confirm()
    m = reopen(flash, keys=[keys["ec_key"]])
    assert m.min_counter() == 9
    with refused(S.NOT_AVAILABLE, "security counter 5, below the minimum 9"):
        m.set_boot(1)
    # the profile's floor applies from the start
    _, m = sim_device(slot_blocks=8, keys=[keys["ec_key"]], min_sc=10)
    with refused(S.INVALID, "below the device's minimum 10"):
        install(m, signed(keys, "ec", "3.0.0", 9))


def test_without_keys_plain_and_signed_images_both_install(keys):
    _, m = sim_device(slot_blocks=8)
    assert install(m, app("1.0"))["Status"] == "Available"
    assert m.payload(0)[1] == len(app("1.0"))
    info = install(m, signed(keys, "ed", "1.1.0", 2), 1)
    assert info["Status"] == "Available" and m.payload(1)[1] == len(app("1.1.0"))
    bad = bytearray(signed(keys, "ed", "1.1.0", 2))
    bad[0x1000 + 10] ^= 1  # an MCUboot image still has to match its own hash
    m.erase_slot(1)
    with refused(S.INVALID, "bad MCUboot image: image hash mismatch"):
        install(m, bytes(bad), 1)


@requires_micropython
def test_micropython_installs_mounts_and_refuses(keys, tmp_path):
    good = signed(keys, "ec", "1.5.0", 3)
    (tmp_path / "good.img").write_bytes(good)
    bad = bytearray(good)
    bad[-1] ^= 1
    (tmp_path / "bad.img").write_bytes(bytes(bad))
    (tmp_path / "pub.pem").write_text(signing.public_pem(open(keys["ec"], "rb").read()))
    out = run_mp("""
from firmware_slots.core import image, slots as S
from firmware_slots.core.appimage import inspect, mount
from firmware_slots.sim.simdev import sim_device
D = %r
key = image.load_key(open(D + "/pub.pem").read())
flash, m = sim_device(slot_blocks=8, inspect=inspect, keys=[key])
def put(name, i):
    data = open(D + "/" + name, "rb").read()
    w = m.install(i, len(data))
    for k in range(0, len(data), 512):
        w.write(data[k:k + 512])
    return w.finish()
info = put("good.img", 0)
print(info["Status"], info["Name"], info["Version"])
print(mount(*m.payload(0), point="/app")["version"])
try:
    put("bad.img", 1)
except S.SlotError as e:
    print("refused", e.why, e)
""" % str(tmp_path))
    lines = out.splitlines()
    assert lines[0] == "Available app 1.5.0"
    assert lines[1] == "1.5.0"
    assert lines[2].startswith("refused invalid image untrusted image: ecdsa-p256 signature does not verify")


def test_trust_power_cut_sweep_catches_a_confirm_that_forgets_the_counter(monkeypatch):
    """The trust sweep (tests/device/powercut.py) must notice a minimum that does not follow the confirm."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "device"))
    import powercut
    n, failures = powercut.sweep(powercut.GEOMETRIES[0], None, 7, trust=True)
    assert n > 50 and failures == []
    real = S.SlotManager.confirm

    def forgetful(self, i=None):
        ok = real(self, i)
        self.meta.update({S.K.DEVICE: {"sc": None}})  # wrong: the floor falls back to 0
        return ok

    monkeypatch.setattr(S.SlotManager, "confirm", forgetful)
    n, failures = powercut.sweep(powercut.GEOMETRIES[0], None, 7, trust=True)
    assert any("anti-rollback minimum" in f for f in failures), failures[:3]
