"""BootDecision: which slot to boot, as a pure function of the metadata and the slots.

decide(state, verify, max_attempts) looks at the MetaStore state (see state.py)
and a `verify(slot) -> bool` that re-hashes a slot's bytes, and returns the decision
plus the metadata changes that commit it. It never changes BootFirmwareImage ('b'):
a failed image stays the boot target, reported ActivationFailed, until someone sets
another one explicitly.

Reasons name images as TR-181 does (FirmwareImage.1 is slot 0), since operators read them.

Order of candidates: BootFirmwareImage, then last-known-good, then every other slot
in index order. A candidate is skipped when its status is not Available or its
Available flag is false. A candidate that is not last-known-good is on trial: each
boot costs it one attempt, and at `max_attempts` unconfirmed boots it is marked
ActivationFailed. Any candidate whose bytes no longer hash to the recorded SHA-256
is marked ActivationFailed with a log saying so.
"""

from firmware_slots.core.state import DEVICE

# status codes, indices into slots.STATUSES
AVAILABLE = 4
ACTIVATION_FAILED = 8

DEFAULT_MAX_ATTEMPTS = 3


class BootDecision:
    def __init__(self, slot, reason, changes, trial, fallback):
        self.slot = slot          # slot to boot, or None when nothing verifies
        self.reason = reason      # one line, for the console and logs
        self.changes = changes    # metadata delta committing this decision ({} = none)
        self.trial = trial        # True while the slot is not yet confirmed
        self.fallback = fallback  # True when the slot is not BootFirmwareImage

    def __repr__(self):
        return "BootDecision(slot=%r, trial=%r, fallback=%r, %r)" % (
            self.slot, self.trial, self.fallback, self.reason)


def candidates(state, nslots):
    dev = state[DEVICE]
    b = dev.get("b", 0)
    k = dev.get("k", -1)
    order = [b]
    if 0 <= k < nslots and k != b:
        order.append(k)
    for i in range(nslots):
        if i not in order:
            order.append(i)
    return order


def decide(state, nslots, verify, max_attempts=DEFAULT_MAX_ATTEMPTS):
    dev = state[DEVICE]
    b = dev.get("b", 0)
    k = dev.get("k", -1)
    changes = {}
    notes = []
    for i in candidates(state, nslots):
        s = state[i]
        if s.get("st") != AVAILABLE or not s.get("av"):
            continue
        n = s.get("n", 0)
        trial = i != k
        if trial and n >= max_attempts:
            why = "not confirmed after %d boot attempts" % n
            changes[i] = {"st": ACTIVATION_FAILED, "lg": why, "n": 0}
            notes.append("image %d: %s" % (i + 1, why))
            continue
        if not verify(i):
            why = "image bytes no longer match SHA-256 at boot"
            changes[i] = {"st": ACTIVATION_FAILED, "lg": why, "n": 0}
            notes.append("image %d: %s" % (i + 1, why))
            continue
        if trial:
            changes[i] = {"n": n + 1}
        if dev.get("r") != i:
            changes[DEVICE] = {"r": i}
        if i == b:
            reason = "boot image %d%s" % (i + 1, " (trial %d/%d)" % (n + 1, max_attempts) if trial else "")
        else:
            reason = "fallback to image %d" % (i + 1)
        if notes:
            reason += "; " + "; ".join(notes)
        return BootDecision(i, reason, changes, trial, i != b)
    why = "no verified image" + ("; " + "; ".join(notes) if notes else "")
    return BootDecision(None, why, changes, False, True)
