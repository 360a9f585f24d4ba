"""BootDecision: which slot to boot, as a pure function of the persisted state and the slots.

decide(state, nslots, verify, max_attempts) reads the state (keys: state.py) and a
`verify(slot) -> bool` that re-hashes a slot's bytes; it returns the decision plus the
state changes that commit it. It never changes BootFirmwareImage (D_BOOT): a failed
image stays the boot target, reported ActivationFailed, until someone sets another.

Candidates, in order: BootFirmwareImage, then last-known-good (LKG), then every other
slot by index. Each candidate goes down this table; the first matching row decides:

| row | candidate i                                   | action                                   | reason (FirmwareImage numbers, 1-based) |
| --- | --------------------------------------------- | ---------------------------------------- | --------------------------------------- |
| 1   | Status is not Available, or Available false   | skip, nothing written                    | -                                       |
| 2   | i != LKG and attempts >= max_attempts         | ActivationFailed, log, attempts 0; next  | note "image i: not confirmed after N boot attempts" (failed: ATTEMPTS) |
| 3   | verify(i) is false                            | ActivationFailed, log, attempts 0; next  | note "image i: image bytes no longer match SHA-256 at boot" (failed: HASH) |
| 4   | i != LKG (a trial)                            | boot i, attempts + 1                     | "boot image i (trial n/max)", or "fallback to image i" when i is not BootFirmwareImage |
| 5   | i == LKG (confirmed)                          | boot i, nothing counted                  | "boot image i", or "fallback to image i" |
| -   | no candidate left                             | boot nothing                             | "no verified image"                     |

Rows 4 and 5 also record the chosen slot (D_RAN) when it changed; notes of rows 2-3
are appended to the reason. A normal boot of a confirmed image writes nothing.
tests/test_device_core.py::test_decision_table_row_* test one row each.
"""

from firmware_slots.core import state as K  # its keys by attribute: no global per key here

DEFAULT_MAX_ATTEMPTS = 3
ATTEMPTS, HASH = "attempts", "hash"  # why a candidate failed (BootDecision.failed)


class BootDecision:
    def __init__(self, slot, reason, changes, trial, fallback, failed=()):
        self.slot = slot          # slot to boot, or None when nothing verifies
        self.reason = reason      # one line, for the console and logs
        self.changes = changes    # metadata delta committing this decision ({} = none)
        self.trial = trial        # True while the slot is not yet confirmed
        self.fallback = fallback  # True when the slot is not BootFirmwareImage
        self.failed = failed      # [(slot, ATTEMPTS | HASH)] marked ActivationFailed now

    def __repr__(self):
        return "BootDecision(slot=%r, trial=%r, fallback=%r, %r)" % (
            self.slot, self.trial, self.fallback, self.reason)


def candidates(state, nslots):
    dev = state[K.DEVICE]
    b = dev.get(K.D_BOOT, 0)
    k = dev.get(K.D_LKG, -1)
    order = [b]
    if 0 <= k < nslots and k != b:
        order.append(k)
    for i in range(nslots):
        if i not in order:
            order.append(i)
    return order


def decide(state, nslots, verify, max_attempts=DEFAULT_MAX_ATTEMPTS):
    dev = state[K.DEVICE]
    b = dev.get(K.D_BOOT, 0)
    k = dev.get(K.D_LKG, -1)
    changes = {}
    notes = []
    failed = []
    for i in candidates(state, nslots):
        s = state[i]
        if s.get(K.S_STATUS) != K.AVAILABLE or not s.get(K.S_AVAILABLE):
            continue  # row 1
        n = s.get(K.S_ATTEMPTS, 0)
        trial = i != k
        if trial and n >= max_attempts:  # row 2
            _fail(changes, notes, failed, i, ATTEMPTS, "not confirmed after %d boot attempts" % n)
            continue
        if not verify(i):  # row 3
            _fail(changes, notes, failed, i, HASH, "image bytes no longer match SHA-256 at boot")
            continue
        if trial:  # row 4
            changes[i] = {K.S_ATTEMPTS: n + 1}
        if dev.get(K.D_RAN) != i:
            changes[K.DEVICE] = {K.D_RAN: i}
        if i == b:
            reason = "boot image %d%s" % (i + 1, " (trial %d/%d)" % (n + 1, max_attempts) if trial else "")
        else:
            reason = "fallback to image %d" % (i + 1)
        if notes:
            reason += "; " + "; ".join(notes)
        return BootDecision(i, reason, changes, trial, i != b, failed)
    why = "no verified image" + ("; " + "; ".join(notes) if notes else "")
    return BootDecision(None, why, changes, False, True, failed)


def _fail(changes, notes, failed, i, cause, why):
    changes[i] = {K.S_STATUS: K.ACTIVATION_FAILED, K.S_LOG: why, K.S_ATTEMPTS: 0}
    notes.append("image %d: %s" % (i + 1, why))
    failed.append((i, cause))
