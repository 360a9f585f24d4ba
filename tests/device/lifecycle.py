"""Slot lifecycle scenarios: the same functions run under CPython (pytest) and MicroPython.

Each scenario builds a fresh simulated device, asserts as it goes and returns a short
summary string; tests compare summaries across interpreters.
"""

import hashlib

from firmware_slots.core import slots as S
from firmware_slots.sim.simdev import reopen, sim_device


def img(tag, n):
    return bytes([(tag * 31 + i * 7) & 0xFF for i in range(n)])


def install(m, i, data, chunk=700, **kw):
    w = m.install(i, size=kw.pop("size", len(data)), algorithm=kw.pop("algorithm", "SHA-256"),
                  checksum=kw.pop("checksum", hashlib.sha256(data).digest()), **kw)
    for p in range(0, len(data), chunk):
        w.write(data[p:p + chunk])
    return w.finish()


def expect(why, fn, *a, **kw):
    """fn(...) must be refused by the slot check `why` (slots.SlotError.why), or raise the
    exception class `why` (bad arguments: ValueError...); -> its message."""
    try:
        fn(*a, **kw)
    except S.SlotError as e:
        assert e.why == why, (e.why, why, str(e))
        return str(e)
    except Exception as e:
        if isinstance(why, str) or not isinstance(e, why):
            raise
        return str(e)
    raise AssertionError("expected a refusal: %s" % (why,))


def base(nslots=2, **kw):
    flash, m = sim_device(nslots=nslots, **kw)
    v1 = img(1, 9000)
    install(m, 0, v1, name="app", version="1.0")
    m.set_boot(0)
    d = m.boot()
    assert d.slot == 0 and d.trial
    assert m.confirm()
    return flash, m, v1


def scenario_good_upgrade():
    flash, m, v1 = base()
    v2 = img(2, 12000)
    info = install(m, 1, v2, name="app", version="2.0")
    assert info["Status"] == "Available" and info["Version"] == "2.0", info
    m.set_boot(1)
    m = reopen(flash)
    d = m.boot()
    assert d.slot == 1 and d.trial and not d.fallback, d
    assert m.status(1) == "Active" and m.status(0) == "Available"
    assert m.confirm()
    m = reopen(flash)
    erases = sum(flash.erases)
    programs = sum(flash.programs)
    d = m.boot()
    assert d.slot == 1 and not d.trial
    # a normal boot of a confirmed image writes nothing at all
    assert sum(flash.erases) == erases and sum(flash.programs) == programs
    assert m.lkg == 1 and m.boot_slot == 1
    return "good %d %s" % (d.slot, m.info(1)["Version"])


def scenario_checksum_mismatch():
    flash, m, v1 = base()
    v2 = img(2, 5000)
    bad = hashlib.sha256(b"other").digest()
    msg = expect(S.CHECKSUM, install, m, 1, v2, checksum=bad)
    assert "SHA-256 mismatch" in msg, msg
    assert m.status(1) == "ValidationFailed" and m.info(1)["BootFailureLog"] == ""
    assert "mismatch" in m.info(1)["Error"]
    assert not m.info(1)["Available"]
    msg = expect(S.NOT_AVAILABLE, m.set_boot, 1)
    assert m.boot_slot == 0 and m.status(0) == "Active" and m.verify(0)
    # SHA-512 (pure on MicroPython) validates too
    good = install(m, 1, v2, algorithm="SHA-512", checksum=hashlib.sha512(v2).digest() if hasattr(hashlib, "sha512") else _sha512(v2))
    assert good["Status"] == "Available"
    return "checksum ok"


def _sha512(b):
    from firmware_slots.core import hashes
    return hashes.new("SHA-512", b).digest()


def scenario_truncated():
    flash, m, v1 = base()
    v2 = img(2, 6000)
    w = m.install(1, size=len(v2) + 1000)
    w.write(v2)
    msg = expect(S.TRUNCATED, w.finish)
    assert "6000 of 7000" in msg, msg
    assert m.status(1) == "DownloadFailed"
    assert m.boot_slot == 0 and m.lkg == 0 and m.verify(0)
    return "truncated ok"


def scenario_too_large():
    flash, m, v1 = base()
    cap = m.slot_size(1)
    msg = expect(S.TOO_LARGE, m.install, 1, size=cap + 1)
    assert "does not fit" in msg
    assert m.status(1) == "NoImage"  # refused before anything was erased
    w = m.install(1)  # size unknown: caught while streaming
    w.write(img(3, cap))
    msg = expect(S.TOO_LARGE, w.write, b"x")
    assert m.status(1) == "DownloadFailed"
    assert m.verify(0) and m.boot().slot == 0
    return "too large ok"


def scenario_protected():
    flash, m, v1 = base()
    msg = expect(S.SLOT_BUSY, m.install, 0)
    assert "running" in msg, msg
    expect(S.SLOT_BUSY, m.set_available, 0, False)
    expect(S.NO_SUCH_SLOT, m.install, 5)
    from firmware_slots.core.hashes import UnsupportedAlgorithm
    expect(UnsupportedAlgorithm, m.install, 1, algorithm="MD5")
    expect(ValueError, m.install, 1, algorithm="SHA-256", checksum=b"\x00" * 5)
    assert m.status(1) == "NoImage"
    expect(S.NOT_RUNNING, m.confirm, 1)
    assert m.pick_target() == 1  # the only slot that is not running / last-known-good
    return "protected ok"


def scenario_failed_boots_fallback():
    flash, m, v1 = base()
    install(m, 1, img(2, 8000), name="app", version="2.0")
    m.set_boot(1)
    seen = []
    for k in range(4):
        m = reopen(flash)
        d = m.boot()
        seen.append(d.slot)
    assert seen == [1, 1, 1, 0], seen
    assert m.boot_slot == 1  # a fallback never rewrites BootFirmwareImage
    assert m.status(1) == "ActivationFailed"
    assert "not confirmed after 3" in m.info(1)["BootFailureLog"]
    assert m.status(0) == "Active"
    expect(S.NOT_RUNNING, m.confirm, 1)
    # later boots stay on slot 0 and write nothing
    p = sum(flash.programs)
    m = reopen(flash)
    assert m.boot().slot == 0 and sum(flash.programs) == p
    # a new image into the failed slot clears its BootFailureLog
    install(m, 1, img(4, 3000), version="3.0")
    assert m.info(1)["BootFailureLog"] == "" and m.status(1) == "Available"
    return "fallback %s" % seen


def scenario_bitrot():
    flash, m, v1 = base(nslots=3)
    install(m, 1, img(2, 8000), version="2.0")
    install(m, 2, img(3, 8000), version="3.0")
    m.set_boot(1)
    m = reopen(flash)
    assert m.boot().slot == 1
    m.confirm()
    # flip one bit inside slot 1's image (bits can be cleared in place on NOR)
    r = m.regions[1]
    one = bytearray(1)
    r.read(100, one)
    one[0] &= one[0] - 1 if one[0] else 0
    r.program(100, one)
    m = reopen(flash)
    d = m.boot()
    assert d.slot == 0 and d.fallback, d  # last-known-good order: boot, lkg(1), then 0
    assert "SHA-256" in m.info(1)["BootFailureLog"]
    assert m.status(1) == "ActivationFailed" and m.boot_slot == 1
    # three slots: a slot whose bytes no longer verify is skipped, the next one boots
    r0 = m.regions[0]
    r0.read(5, one)
    one[0] &= one[0] - 1 if one[0] else 0
    r0.program(5, one)
    m = reopen(flash)
    d = m.boot()
    assert d.slot == 2 and d.trial, d
    return "bitrot %d" % d.slot


def scenario_resume():
    flash, m, v1 = base()
    v2 = img(5, 15000)
    w = m.install(1, size=len(v2), algorithm="SHA-256", checksum=hashlib.sha256(v2).digest())
    w.write(v2[:9000])
    w.checkpoint(e=b"etag1")
    w.write(v2[9000:11000])  # programmed after the checkpoint, then power is lost
    m = reopen(flash)
    m.boot()
    assert m.status(1) == "Downloading"
    assert m.download_progress(1)["e"] == b"etag1"
    w = m.resume(1)
    assert w.offset in (8192, 9000), w.offset
    w.write(v2[w.offset:])
    info = w.finish()
    assert info["Status"] == "Available" and m.verify(1)
    return "resume ok"


SCENARIOS = (
    scenario_good_upgrade, scenario_checksum_mismatch, scenario_truncated, scenario_too_large,
    scenario_protected, scenario_failed_boots_fallback, scenario_bitrot, scenario_resume,
)


def run_all():
    out = []
    for s in SCENARIOS:
        out.append("%s: %s" % (s.__name__, s()))
    return out


if __name__ == "__main__":
    for line in run_all():
        print(line)
