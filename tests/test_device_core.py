"""Device core: lifecycle scenarios, power-cut sweep, journal model, host cross-decoding."""
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mpy import ROOT, micropython_exe, requires_micropython, run_mp

DEVICE_TESTS = os.path.join(ROOT, "tests", "device")
sys.path.insert(0, DEVICE_TESTS)

import lifecycle  # noqa: E402
import powercut  # noqa: E402

from firmware_slots.core.flash import BlockWindow, FlashError, FlashRegion  # noqa: E402
from firmware_slots.host import journal as host_journal  # noqa: E402
from firmware_slots.core.state import MetaStore  # noqa: E402
from firmware_slots.sim.norsim import FaultPlan, NorFlash, PowerCut  # noqa: E402


@pytest.mark.parametrize("scenario", lifecycle.SCENARIOS, ids=lambda f: f.__name__)
def test_lifecycle_cpython(scenario):
    scenario()


@requires_micropython
def test_lifecycle_micropython_matches_cpython():
    out = run_mp("import lifecycle\nfor l in lifecycle.run_all(): print(l)\n",
                 extra_path=[DEVICE_TESTS])
    assert out.strip().splitlines() == lifecycle.run_all()


# -- the simulator itself obeys NOR rules -----------------------------------------
def test_nor_rules():
    f = NorFlash(256, 4, write_size=1)
    f.writeblocks(0, b"\x0f", 0)
    f.writeblocks(0, b"\x05", 0)  # clearing more bits is fine
    with pytest.raises(FlashError, match="0->1"):
        f.writeblocks(0, b"\x0f", 0)
    f.ioctl(6, 0)
    assert f.read_raw(0, 4) == b"\xff" * 4
    assert f.erases[0] == 1 and f.programs[0] == 2
    e = NorFlash(256, 4, write_size=16)
    with pytest.raises(FlashError, match="aligned"):
        e.writeblocks(0, b"\x00" * 8, 0)
    e.writeblocks(0, b"\xaa" * 16, 0)
    with pytest.raises(FlashError, match="twice"):
        e.writeblocks(0, b"\x00" * 16, 0)  # ECC units are write-once per erase
    w = BlockWindow(f, 1, 2)
    with pytest.raises(FlashError):
        w.readblocks(2, bytearray(4), 0)


def test_fault_kinds():
    f = NorFlash(256, 2)
    f.arm(FaultPlan(1, "torn", seed=5))
    f.writeblocks(0, b"\x00" * 100, 0)
    with pytest.raises(PowerCut):
        f.writeblocks(0, b"\x11" * 100, 100)
    with pytest.raises(PowerCut):  # the board stays off until power_on
        f.readblocks(0, bytearray(1), 0)
    f.power_on()
    tail = f.read_raw(100, 100)
    landed = len(tail) - len(tail.lstrip(b"\x11"))
    assert 0 <= landed < 100 and tail[landed:] == b"\xff" * (100 - landed)
    f.writeblocks(1, b"\x00" * 256, 0)
    f.arm(FaultPlan(f.ops, "half", seed=3))
    with pytest.raises(PowerCut):
        f.ioctl(6, 1)
    f.power_on()
    half = f.read_raw(256, 256)
    assert half != b"\xff" * 256 and half != b"\x00" * 256


# -- exhaustive power-cut sweep --------------------------------------------------
def test_power_cut_sweep_cpython_and_micropython():
    """Every cut point over three geometries under MicroPython (the device's interpreter);
    CPython sweeps every second cut point alongside, on the other core."""
    mp = None
    exe = micropython_exe()
    if exe:
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, DEVICE_TESTS, ".frozen"]))
        code = ("import powercut\nn, f = powercut.run_all()\nn2, f2 = powercut.run_512()\nn += n2\nf += f2\n"
                "for x in f[:10]: print('FAIL', x)\nprint('RESULT', n, len(f))\n")
        mp = subprocess.Popen([exe, "-X", "heapsize=64M", "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    try:
        n, failures = powercut.run_all(stride=2)
        print("cpython cut_points_tested", n, "failures", len(failures))
        assert failures == []
        assert n >= 1000
        if mp:
            out, _ = mp.communicate(timeout=600)
            last = [l for l in out.splitlines() if l.startswith("RESULT")]
            assert last, out[-3000:]
            mp_n, mp_fail = map(int, last[-1].split()[1:])
            print("micropython cut_points_tested", mp_n, "failures", mp_fail)
            assert mp_fail == 0, out[-3000:]
            assert mp_n >= 2000
    finally:
        if mp and mp.poll() is None:
            mp.kill()


def test_power_cut_sweep_on_512_byte_blocks():
    """Journal ring sectors of 8 erase blocks (512 B): every cut point (before, after, torn,
    half) of the cycle, in three cases: no wrap, a wrap into a sector of old records (cuts
    between its 8 block erases) and the same with a snapshot spanning 3 blocks (cuts between
    its parts). MicroPython sweeps the same
    cases inside test_power_cut_sweep_cpython_and_micropython."""
    g = powercut.GEOMETRY_512
    rig = powercut.Rig(g, None)
    j = rig.manager().meta.journal
    assert (j.k, j.sectors, j.max_body) == (8, 2, 4000)
    for fill, big, worn in powercut.CASES_512:
        ops = powercut.ops_of(g, fill, big, worn)
        journal = [(i, kind, b) for i, (kind, b) in enumerate(ops) if b < g.journal_blocks]
        erases = [b for _, kind, b in journal if kind == "erase"]
        split = [a for a, b in zip(journal, journal[1:]) if a[1] == b[1] == "program" and b[0] == a[0] + 1
                 and b[2] == a[2] + 1]  # one record programmed across a block boundary
        assert split, (fill, big)
        if fill is not None:  # the cycle wraps the ring: one sector's 8 blocks, its first block first
            assert erases == list(range(erases[0], erases[0] + 8)) and erases[0] % 8 == 0, erases
    n, failures = powercut.run_512()
    assert failures == [], failures[:5]
    assert n >= 1000


def test_sweep_catches_a_journal_that_erases_one_block_of_a_ring_sector(monkeypatch):
    """A journal that erases only the block holding offset 0 of a multi-block sector leaves the
    old deltas in the others: the 512-byte sweep must notice."""
    from firmware_slots.core import journal

    def bad_snapshot(self, body):
        rec = self._encode(journal.SNAPSHOT, body)
        nxt = (self.head + 1) % self.sectors
        self.region.erase(nxt * self.k)  # wrong: the other k - 1 blocks keep their records
        self.region.program(nxt * self.sector, rec)
        self.seq += 1
        self.head = nxt
        self.free = len(rec)
        self.deltas = 0

    monkeypatch.setattr(journal.Journal, "snapshot", bad_snapshot)
    try:
        # the 3-block snapshot case: with ~10-byte checkpoints the small-state cycle's records
        # after the wrap stay inside the erased first block (core/slots.py checkpoint)
        n, failures = powercut.sweep(powercut.GEOMETRY_512, fill=120, limit=150, big=1200, worn=True)
    except FlashError as e:  # even the uncut cycle programs over old records: NOR refuses
        failures = [str(e)]
    assert failures, "sweep did not notice a journal that erases one block of eight"


def test_sweep_catches_a_broken_journal(monkeypatch):
    """The sweep must fail when the journal erases its own head sector."""
    from firmware_slots.core import journal

    def bad_snapshot(self, body):
        rec = self._encode(journal.SNAPSHOT, body)
        nxt = max(self.head, 0)  # wrong: destroys the newest state before replacing it
        self.region.erase(nxt)
        self.region.program(nxt * self.region.sector, rec)
        self.seq += 1
        self.head = nxt
        self.free = len(rec)

    monkeypatch.setattr(journal.Journal, "snapshot", bad_snapshot)
    n, failures = powercut.sweep(powercut.GEOMETRIES[0], fill=120)
    assert failures, "sweep did not notice a journal that erases its head"


# -- journal against a model (hypothesis) ------------------------------------------
values = st.one_of(st.integers(-2**31, 2**31), st.text(max_size=40), st.binary(max_size=120),
                   st.booleans(), st.none())
change = st.dictionaries(st.sampled_from([-2, -1, 0, 1]),
                         st.dictionaries(st.sampled_from(["a", "b", "c", "lg"]), values,
                                         min_size=1, max_size=3),
                         min_size=1, max_size=2)
step = st.one_of(
    st.tuples(st.just("update"), change),
    st.tuples(st.just("cut"), change, st.integers(0, 3), st.sampled_from(["before", "after", "torn", "half"]),
              st.integers(0, 1000)),
    st.tuples(st.just("reboot")),
)


def _apply(state, ch):
    new = {k: dict(v) for k, v in state.items()}
    for s, kv in ch.items():
        sec = new.setdefault(s, {})
        for k, v in kv.items():
            if v is None:
                sec.pop(k, None)
            else:
                sec[k] = v
    return new


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(write_size=st.sampled_from([1, 8, 16]), steps=st.lists(step, max_size=40))
@pytest.mark.parametrize("block,blocks", [(1024, 3), (256, 8)])  # 3 sectors of 1 block; 2 ring sectors of 4
def test_journal_matches_model(block, blocks, write_size, steps):
    flash = NorFlash(block, blocks, write_size)
    region = FlashRegion(flash, write_size)
    store = MetaStore(region, 2)
    model = store.load()
    model = {k: dict(v) for k, v in model.items()}
    for s in steps:
        if s[0] == "update":
            store.update(s[1])
            model = _apply(model, s[1])
        elif s[0] == "reboot":
            store = MetaStore(region, 2)
            assert store.load() == model
        else:
            _, ch, k, kind, seed = s
            flash.arm(FaultPlan(flash.ops + k, kind, seed))
            try:
                store.update(ch)
                cut = False
            except PowerCut:
                cut = True
            flash.power_on()
            store = MetaStore(region, 2)
            got = store.load()
            new = _apply(model, ch)
            if cut:
                assert got in (model, new)  # all or nothing
            else:
                assert got == new
            model = {k2: dict(v) for k2, v in got.items()}
        # the host decoder, written separately with cbor2, agrees with the device
        assert host_journal.recover(flash.snapshot(), block, write_size) == model


def test_metadata_erases_only_on_wrap():
    flash = NorFlash(4096, 2, 1)
    store = MetaStore(FlashRegion(flash, 1), 2)
    store.load()
    base = sum(flash.erases)
    for n in range(150):
        store.update({0: {"n": n % 4}})  # what a boot attempt writes
    assert sum(flash.erases) - base <= 1
    assert sum(flash.programs) >= 150


def test_large_state_snapshots_and_oversize_refusal():
    """A near-sector-sized state still rotates; a state that cannot fit is refused whole."""
    from firmware_slots.core.journal import JournalError
    from firmware_slots.sim.simdev import reopen, sim_device
    from firmware_slots.core.state import AGENT
    flash, m = sim_device(nslots=4, slot_blocks=2)
    for i in range(1, 4):
        w = m.install(i, extra={"u": "coap://[2001:db8::1]:5683/" + "x" * 200})
        w.write(b"a" * 5000)
        w.checkpoint(e=b"abcdefgh")
    m.meta.update({AGENT: {"s": {"blob": "y" * 1700}}})
    for k in range(60):  # several rotations with a ~2.6 KB snapshot
        m.set_alias(0, "a%d" % k)
    assert reopen(flash).info(0)["Alias"] == "a59"
    before = dict(m.meta.state[AGENT])
    with pytest.raises(JournalError):
        for k in range(40):
            m.meta.update({AGENT: {"big%d" % k: "z" * 100}})
    m2 = reopen(flash)
    assert m2.info(0)["Alias"] == "a59" and m2.meta.state[AGENT]["s"] == before["s"]


def test_pick_target_prefers_an_empty_or_failed_slot_over_a_spare_image():
    from firmware_slots.sim.simdev import sim_device
    flash, m = sim_device(nslots=3)
    lifecycle.install(m, 0, lifecycle.img(1, 3000))
    m.set_boot(0)
    m.boot()
    m.confirm()
    lifecycle.install(m, 1, lifecycle.img(2, 3000))  # a spare, Available image in slot 1
    assert m.pick_target() == 2  # slot 2 is empty: overwrite nothing worth keeping
    lifecycle.install(m, 2, lifecycle.img(3, 3000))
    assert m.pick_target() == 1  # both spares: the first one


def test_checkpoint_is_a_small_record_and_an_old_format_checkpoint_still_resumes():
    """A checkpoint writes only the offset (state.S_DL_OFFSET, ~10 bytes of body); a journal of
    the previous format, whose checkpoints rewrote 'dl' with the offset as 'o', resumes from it."""
    import hashlib
    from firmware_slots.core import cbor, state as K
    from firmware_slots.sim.simdev import reopen, sim_device
    data = bytes(range(256)) * 60  # 15360 bytes
    flash, m = sim_device()
    w = m.install(1, size=len(data), algorithm="SHA-256", checksum=hashlib.sha256(data).digest(),
                  extra={"u": "coap://h/" + "p" * 200})
    w.write(data[:8192])
    j = m.meta.journal
    free = j.free
    w.checkpoint()
    assert j.free - free <= 24  # header 8 + body + CRC 4: no URL, checksum or hints
    assert cbor.size({1: {K.S_DL_OFFSET: 8192}}) <= 12
    m = reopen(flash)
    assert m.download_progress(1)["o"] == 8192 and m.resume(1).offset == 8192
    # the previous format: 'dl' carries 'o', no S_DL_OFFSET
    dl = dict(m.meta.section(1)[K.S_DOWNLOAD])
    dl["o"] = 4096
    m.meta.update({1: {K.S_DOWNLOAD: dl, K.S_DL_OFFSET: None}})
    m = reopen(flash)
    assert m.download_progress(1)["o"] == 4096
    w = m.resume(1)
    assert w.offset == 4096
    w.write(data[4096:12288])
    w.checkpoint()  # the first one after an old-format resume drops 'o' from 'dl' for good
    s = reopen(flash).meta.section(1)
    assert "o" not in s[K.S_DOWNLOAD] and s[K.S_DL_OFFSET] == 12288
    m = reopen(flash)
    w = m.resume(1)
    w.write(data[w.offset:])
    assert w.finish()["Status"] == "Available" and m.verify(1)
    assert K.S_DL_OFFSET not in m.meta.section(1) and K.S_DOWNLOAD not in m.meta.section(1)
