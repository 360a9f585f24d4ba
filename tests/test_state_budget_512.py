"""Bounded state on the smallest supported journal erase block, 512 bytes (issue 10 item 5).

The scenario (tests/device/budget512.py) fills every bounded field and the agent's tables
with the longest allowed values until the budget refuses, checks one more addition of each
kind is 7005 with nothing changed (state, tables, counters, every flash byte), then
reboots, installs, activates, fails the trial boots and falls back at full state; it runs
under CPython and the real MicroPython unix port with the same output. The worst case of
each section is rebuilt here from state.py's bounds.
"""
import os
import sys

import pytest

from mpy import ROOT, requires_micropython, run_mp

DEVICE_TESTS = os.path.join(ROOT, "tests", "device")
sys.path.insert(0, DEVICE_TESTS)

import budget512  # noqa: E402

from firmware_slots.core import cbor  # noqa: E402
from firmware_slots.core import state as K  # noqa: E402
from firmware_slots.host import journal as host_journal  # noqa: E402
from firmware_slots.sim import simdev  # noqa: E402

SCENARIO = "import budget512\nbudget512.run(%r)\nbudget512.capped()\n"


def figures(lines):
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in lines}


def test_full_state_installs_activates_and_falls_back_on_512_byte_blocks(tmp_path):
    lines = budget512.run(str(tmp_path))
    f = figures(lines)
    assert f["journal"] == "block 512 blocks_per_sector 8 sectors 2 max_body 4000 bounded True agent_budget 1800"
    assert f["fallback"].startswith("Active ActivationFailed")
    assert f["failed_install"] == "ValidationFailed error_bytes %d" % K.LOG_MAX
    peak = int(f["peak_state_bytes"].split()[0])
    assert 2000 < peak <= 3168  # well filled, and within the worst case the budget allows
    # the host's independent decoder reads the multi-block ring sectors to the same state
    flash = budget512.LAST[0]
    raw = bytes(flash.snapshot())[:16 * 512]
    assert host_journal.recover(raw, 512, 4) == simdev.reopen(flash).meta.state


def test_auto_created_controller_rows_are_capped():
    from firmware_slots.datamodel.localagent import MAX_CONTROLLERS
    assert budget512.capped() == MAX_CONTROLLERS


@requires_micropython
def test_same_results_under_micropython(tmp_path):
    want = budget512.run(str(tmp_path))
    budget512.capped()
    got = run_mp(SCENARIO % str(tmp_path), extra_path=[DEVICE_TESTS]).splitlines()
    assert got[:len(want)] == want
    assert got[-1].startswith("capped 4 ")


def test_worst_case_sections_match_the_bounds():
    """SLOT_MAX, DEVICE_MAX and FIXED_MAX hold each section with every bound reached, and
    are not loose; the agent budget is the journal's record less them."""
    t = lambda n: "x" * n  # noqa: E731
    u32 = 0xFFFFFFFF
    common = {K.S_STATUS: 8, K.S_AVAILABLE: False, K.S_ATTEMPTS: u32, K.S_ALIAS: t(K.TEXT_MAX)}
    dl = {"z": u32, "a": "SHA-512", "c": b"x" * 64, "m": [t(K.TEXT_MAX), t(K.TEXT_MAX)],
          "u": t(K.URL_MAX)}
    coap, http = {"bs": 1024, "s2": u32, "et": b"x" * 8}, {"hl": u32, "hv": t(K.TAG_MAX)}
    common_dl = dict(common, **{K.S_DL_OFFSET: u32})  # the offset of the last checkpoint
    image = {K.S_NAME: t(K.TEXT_MAX), K.S_VERSION: t(K.TEXT_MAX), K.S_LENGTH: u32, K.S_SHA256: b"x" * 32,
             K.S_OFFSET: u32, K.S_PAYLOAD: u32, K.S_COUNTER: u32}
    by_status = {
        "Downloading (coap)": dict(common_dl, **{K.S_DOWNLOAD: dict(dl, **coap)}),
        "Downloading (http)": dict(common_dl, **{K.S_DOWNLOAD: dict(dl, **http)}),
        "Available": dict(common, **dict(image, **{K.S_TRIAL_FAIL: t(K.CRASH_MAX)})),
        "ActivationFailed": dict(common, **dict(image, **{K.S_TRIAL_FAIL: t(K.CRASH_MAX), K.S_LOG: t(K.LOG_MAX)})),
        "DownloadFailed": dict(common, **{K.S_ERROR: t(K.LOG_MAX)}),
    }
    sizes = {k: len(cbor.dumps(v)) for k, v in by_status.items()}
    assert max(sizes.values()) <= K.SLOT_MAX < max(sizes.values()) + 8, sizes
    dev = {K.D_FORMAT: 1, K.D_BOOT: u32, K.D_LKG: -1, K.D_RAN: u32, K.D_MIN_SC: u32}
    assert len(cbor.dumps(dev)) <= K.DEVICE_MAX
    notes = {K.A_BOOT_CAUSE: {"c": "RemoteReboot", "r": t(K.TEXT_MAX), "k": t(K.KEY_MAX)},
             K.A_PREV_VERSION: t(K.TEXT_MAX)}
    assert len(cbor.dumps(notes)) - 1 <= K.FIXED_MAX  # its entries, without their map's header
    # the whole state at its worst fits a snapshot record of a 4 KiB ring sector
    flash, m = simdev.sim_device(sector_size=512, nslots=2)
    agent = {K.A_CONTROLLERS: {1: t(m.meta.agent_budget() - K.FIXED_MAX - 20)}}
    agent.update(notes)
    worst = {K.DEVICE: dev, K.AGENT: agent, 0: by_status["Downloading (http)"], 1: by_status["ActivationFailed"]}
    assert len(cbor.dumps(worst)) <= m.meta.journal.max_body
    m.meta.state = worst
    m.meta.compact()  # one record
    assert cbor.dumps(simdev.reopen(flash).meta.state) == cbor.dumps(worst)


@pytest.mark.parametrize("nslots,budget,bounded", [(2, 1800, True), (3, 1800, True), (4, 1320, True),
                                                   (5, 664, True), (6, K.AGENT_MIN, False)])
def test_agent_budget_table(nslots, budget, bounded):
    """state.py's table: the agent gets what a 4 KiB ring sector's record leaves."""
    _, m = simdev.sim_device(sector_size=512, slot_blocks=2, nslots=nslots)
    assert (m.meta.agent_budget(), m.meta.bounded()) == (budget, bounded)
    _, m = simdev.sim_device(sector_size=4096, slot_blocks=2, nslots=nslots)
    assert (m.meta.agent_budget(), m.meta.bounded()) == (budget, bounded)


def test_a_journal_too_small_for_the_bound_says_so():
    # two 512-byte blocks (the layout before ring sectors spanned blocks): one block per sector
    _, m = simdev.sim_device(sector_size=512, journal_blocks=2)
    j = m.meta.journal
    assert (j.k, j.sectors, j.max_body) == (1, 2, 512 - 12 - 1)
    assert not m.meta.bounded() and m.meta.agent_budget() == K.AGENT_MIN


@pytest.mark.parametrize("text,n,want", [
    ("abc", 2, "ab"), ("abc", 3, "abc"), ("\u00e9\u00e9", 3, "\u00e9"), ("\u00e9\u00e9", 4, "\u00e9\u00e9"),
    ("a\u20ac", 3, "a"), ("a\u20ac", 4, "a\u20ac"), ("\U0001f600x", 3, ""), ("", 0, ""), ("x" * 300, 200, "x" * 200)])
def test_clip_cuts_bytes_at_a_character_boundary(text, n, want):
    assert K.clip(text, n) == want
    assert len(K.clip(text, n).encode()) <= n
    assert K.too_long(text, n) == (len(text.encode()) > n)
