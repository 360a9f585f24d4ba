"""Erased value as a flash property: parts that erase to 0x00 as well as 0xFF.

The simulator obeys a 0x00 part's rules, the journal and the image writer ask the flash
for its erased value, so wear on 0x00 flash equals wear on 0xFF flash (a normal boot
writes nothing, a trial boot one small program) and the power-cut sweep holds."""
import hashlib
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "device"))

import powercut  # noqa: E402

from firmware_slots.core.flash import BlockWindow, FlashError, FlashRegion  # noqa: E402
from firmware_slots.sim.norsim import NorFlash  # noqa: E402
from firmware_slots.sim.simdev import reopen, sim_device  # noqa: E402


def test_nor_rules_on_a_zero_erased_part():
    f = NorFlash(256, 4, write_size=1, erased=0x00)
    assert f.read_raw(0, 8) == bytes(8)
    f.writeblocks(0, b"\x0f", 0)
    f.writeblocks(0, b"\x3f", 0)  # setting more bits is what programming does here
    with pytest.raises(FlashError, match="1->0"):
        f.writeblocks(0, b"\x01", 0)
    f.ioctl(6, 0)
    assert f.read_raw(0, 4) == bytes(4)
    e = NorFlash(256, 4, write_size=16, erased=0x00)
    e.writeblocks(0, b"\x55" * 16, 0)
    with pytest.raises(FlashError, match="twice"):
        e.writeblocks(0, b"\xff" * 16, 0)  # ECC units are write-once per erase, whatever the value
    with pytest.raises(ValueError):
        NorFlash(256, 4, erased=0x5A)
    # the erased value travels with the device
    w = BlockWindow(e, 1, 2)
    assert w.erased == 0 and FlashRegion(w, 16).erased == 0 and FlashRegion(w, 16, 0xFF).erased == 0xFF
    r = FlashRegion(w, 16)
    assert r.is_erased(0, 512, bytearray(64))
    r.program(32, b"\x01" + bytes(15))
    assert not r.is_erased(0, 512, bytearray(64)) and r.is_erased(48, 464, bytearray(64))


def _wear(erased, override=None, boots=200):
    """(journal programs per normal boot, journal erases per trial boot)."""
    flash, m = sim_device(sector_size=4096, journal_blocks=2, slot_blocks=8, nslots=2,
                          erased=erased, max_attempts=10 ** 6)
    img = bytes(range(256)) * 40
    for slot in (0, 1):
        w = m.install(slot, size=len(img), algorithm="SHA-256", checksum=hashlib.sha256(img).digest())
        w.write(img)
        w.finish()
        if slot == 0:
            m.set_boot(0)
            m = reopen(flash, erased=override)
            m.boot()
            m.confirm()

    def journal(counter):
        return sum(counter[:2])
    p0 = journal(flash.programs)
    for _ in range(boots):
        m = reopen(flash, erased=override)
        m.boot()
    normal = (journal(flash.programs) - p0) / boots
    m.set_boot(1)
    e0 = journal(flash.erases)
    for _ in range(boots):
        m = reopen(flash, erased=override)
        assert m.boot().trial
    return normal, (journal(flash.erases) - e0) / boots


def test_wear_on_zero_erased_flash_equals_wear_on_ff_flash():
    ff = _wear(0xFF)
    zero = _wear(0x00)
    assert ff == zero, (ff, zero)
    assert zero[0] == 0  # a normal boot of a confirmed image writes nothing
    assert zero[1] < 0.02  # a trial boot costs one small program, an erase only on wrap
    # what the issue saw: code that takes 0xFF for erased closes the head sector at each
    # boot, so about every second trial boot erases a journal sector
    wrong = _wear(0x00, override=0xFF)
    assert wrong[1] > 0.3, wrong


def test_image_on_zero_erased_flash_pads_with_zeros_and_verifies():
    flash, m = sim_device(sector_size=4096, write_size=16, journal_blocks=2, slot_blocks=4,
                          nslots=2, erased=0x00)
    img = os.urandom(5000 + 7)  # the last 16-byte unit is padded
    w = m.install(1, size=len(img), algorithm="SHA-256", checksum=hashlib.sha256(img).digest())
    for p in range(0, len(img), 333):
        w.write(img[p:p + 333])
    info = w.finish()
    assert info["Available"] and m.verify(1)
    base = (2 + 4) * 4096
    tail = flash.read_raw(base + len(img), 16 - len(img) % 16)
    assert tail == bytes(len(tail))  # padding is erased bytes, not 0xFF


def test_power_cut_sweep_on_a_zero_erased_geometry():
    g = [x for x in powercut.GEOMETRIES if x.erased == 0x00][0]
    for fill in (None, 120):
        n, failures = powercut.sweep(g, fill, stride=3)
        assert n > 100 and failures == [], failures[:5]


def test_profile_erased_value_reaches_the_slot_manager(tmp_path):
    from firmware_slots import app
    p = app.profile_from_numbers(4096, None, 1, 2, 4, 2, mode="raw", erased=0)
    flash, m = app.open_flash_file(str(tmp_path / "z.flash"), p)
    try:
        assert flash.erased == 0 and all(r.erased == 0 for r in m.regions)
        assert m.meta.journal.region.erased == 0
        img = b"\x01" * 3000
        w = m.install(0, size=len(img))
        w.write(img)
        w.finish()
        m.boot()
    finally:
        flash.close()
    raw = (tmp_path / "z.flash").read_bytes()
    assert raw[-4096:] == bytes(4096)  # never-written flash reads 0x00
