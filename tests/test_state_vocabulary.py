"""One owner for the persisted state (issue 8): the boot decision's table row by row,
and no module outside core/ touching journal keys.

The decision table is in firmware_slots/core/bootdecision.py's docstring; each
test_decision_table_row_N builds the smallest state for that row and checks the
decision, the changes it commits and the reason text the console prints.
"""
import ast
import glob
import os

from mpy import ROOT

from firmware_slots.core import bootdecision as bd
from firmware_slots.core import state as K


def state(boot=0, lkg=-1, ran=-1, slots=()):
    st = {K.DEVICE: {K.D_FORMAT: K.FORMAT, K.D_BOOT: boot, K.D_LKG: lkg, K.D_RAN: ran}, K.AGENT: {}}
    for i, s in enumerate(slots):
        st[i] = dict(K.new_slot(), **s)
    return st


def ok(attempts=0, available=True):
    return {K.S_STATUS: K.AVAILABLE, K.S_AVAILABLE: available, K.S_ATTEMPTS: attempts}


def decide(st, bad=(), max_attempts=3):
    return bd.decide(st, len([k for k in st if k >= 0]), lambda i: i not in bad, max_attempts)


def test_decision_table_row_1_skips_what_is_not_available():
    st = state(boot=0, lkg=1, ran=1, slots=[ok(available=False), ok()])
    d = decide(st)
    assert (d.slot, d.changes, d.failed) == (1, {}, [])
    assert d.reason == "fallback to image 2" and d.fallback and not d.trial
    st = state(boot=0, lkg=-1, slots=[{K.S_STATUS: K.DOWNLOADING}, {}])
    assert decide(st).slot is None and decide(st).reason == "no verified image"


def test_decision_table_row_2_fails_a_trial_out_of_attempts():
    st = state(boot=1, lkg=0, ran=1, slots=[ok(), ok(attempts=3)])
    d = decide(st)
    assert d.slot == 0 and d.failed == [(1, bd.ATTEMPTS)]
    assert d.changes[1] == {K.S_STATUS: K.ACTIVATION_FAILED, K.S_ATTEMPTS: 0,
                            K.S_LOG: "not confirmed after 3 boot attempts"}
    assert d.changes[K.DEVICE] == {K.D_RAN: 0}
    assert d.reason == "fallback to image 1; image 2: not confirmed after 3 boot attempts"
    assert K.D_BOOT not in d.changes.get(K.DEVICE, {})  # BootFirmwareImage never moves


def test_decision_table_row_3_fails_bytes_that_no_longer_hash():
    st = state(boot=0, lkg=0, ran=0, slots=[ok(), ok()])
    d = decide(st, bad=(0,))
    assert d.slot == 1 and d.failed == [(0, bd.HASH)] and d.trial
    assert d.changes[0][K.S_STATUS] == K.ACTIVATION_FAILED
    assert d.changes[1] == {K.S_ATTEMPTS: 1}
    assert d.reason == "fallback to image 2; image 1: image bytes no longer match SHA-256 at boot"


def test_decision_table_row_4_counts_a_trial_attempt():
    st = state(boot=1, lkg=0, ran=0, slots=[ok(), ok(attempts=1)])
    d = decide(st)
    assert (d.slot, d.trial, d.fallback) == (1, True, False)
    assert d.changes == {1: {K.S_ATTEMPTS: 2}, K.DEVICE: {K.D_RAN: 1}}
    assert d.reason == "boot image 2 (trial 2/3)"


def test_decision_table_row_5_a_confirmed_boot_writes_nothing():
    st = state(boot=0, lkg=0, ran=0, slots=[ok(), ok()])
    d = decide(st)
    assert (d.slot, d.trial, d.changes, d.reason) == (0, False, {}, "boot image 1")


def test_decision_table_no_candidate_left():
    st = state(boot=0, lkg=0, ran=0, slots=[ok(), ok(attempts=5)])
    d = decide(st, bad=(0,))
    assert d.slot is None and sorted(d.failed) == [(0, bd.HASH), (1, bd.ATTEMPTS)]
    assert d.reason.startswith("no verified image; image 1:")


# -- nobody outside core/ reads or writes journal keys ------------------------------------

OWNERS = {"firmware_slots/core/state.py", "firmware_slots/core/slots.py", "firmware_slots/core/writer.py",
          "firmware_slots/core/bootdecision.py"}  # writer.py: the slot manager's ImageWriter
# what the rest may take from state.py: the agent handle's table names and read-only vocabulary
SHARED = {"A_CONTROLLERS", "A_SUBS", "A_REQUESTS", "A_NEXT", "A_BOOT_CAUSE", "A_PREV_VERSION",
          "default_alias", "STATUSES", "TEXT_MAX", "LOG_MAX", "MetaStore", "DEVICE", "AGENT",
          "encoded_size", "URL_MAX", "ID_MAX", "KEY_MAX", "MESSAGE_MAX", "AGENT_MAX", "FIXED_MAX", "clip",
          "too_long"}
META_API = {"agent", "agent_update", "agent_bytes", "agent_budget"}


def device_modules():
    out = []
    for d in ("firmware_slots", "bootstub", "boards"):
        out += glob.glob(os.path.join(ROOT, d, "**", "*.py"), recursive=True)
    return [f for f in out if "/host/" not in f and os.path.relpath(f, ROOT) not in OWNERS]


def test_no_raw_state_access_outside_the_owner():
    bad = []
    for f in device_modules():
        rel = os.path.relpath(f, ROOT)
        tree = ast.parse(open(f).read())
        for node in ast.walk(tree):
            # x.meta.<attr>: only the agent handle
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) \
                    and node.value.attr == "meta" and node.attr not in META_API:
                bad.append("%s:%d uses .meta.%s" % (rel, node.lineno, node.attr))
            if isinstance(node, ast.ImportFrom) and node.module == "firmware_slots.core.state":
                for a in node.names:
                    if a.name not in SHARED:
                        bad.append("%s:%d imports state.%s" % (rel, node.lineno, a.name))
    assert not bad, "\n".join(bad)


def test_the_vocabulary_table_names_every_key():
    doc = K.__doc__
    for section in ("D_", "S_", "A_"):
        names = [k for k in vars(K) if k.startswith(section)]
        assert len(names) >= 4
        values = [getattr(K, k) for k in names]
        assert len(set(values)) == len(values), "two names for one key in %s*: %s" % (section, names)
        for k in names:
            assert k in doc, "%s missing from state.py's table" % k
    assert len(K.STATUSES) == 9 and K.STATUSES[K.ACTIVATION_FAILED] == "ActivationFailed"
