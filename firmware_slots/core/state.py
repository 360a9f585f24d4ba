"""MetaStore: the device's whole mutable state, kept in the journal.

State is a CBOR map of sections, each a map of short keys:

    -1   device:  'v' format (1), 'b' BootFirmwareImage slot, 'k' last-known-good slot
                  (-1 none), 'r' slot the boot stub chose last
    -2   agent:   USP agent data (subscriptions, pending requests, boot cause...)
    0..N-1 slot:  'st' status code (slots.STATUSES index), 'nm' Name, 'vr' Version,
                  'ln' image length, 'h' SHA-256 of the image, 'av' Available,
                  'lg' BootFailureLog, 'er' why the last install failed,
                  'bf' why the current trial boot failed (boot stub, until logged),
                  'n' boot attempts, 'al' Alias,
                  'dl' download progress {'o' offset, ...fetcher keys}

A snapshot record carries every section; a delta record carries only the changed keys
of the changed sections ({section: {key: value}}), a None value deleting the key. A
boot attempt is therefore a delta of a few bytes: {0: {'n': 2}}.
"""

from firmware_slots.core import cbor
from firmware_slots.core.journal import Journal

DEVICE = -1
AGENT = -2
FORMAT = 1


class MetaStore:
    def __init__(self, region, nslots):
        self.journal = Journal(region)
        self.nslots = nslots
        self.state = None

    def default_state(self):
        st = {DEVICE: {"v": FORMAT, "b": 0, "k": -1, "r": -1}, AGENT: {}}
        for i in range(self.nslots):
            st[i] = {"st": 0, "av": False, "n": 0}
        return st

    def load(self):
        """Rebuild the state from flash; format an empty journal. Returns the state."""
        snap, deltas = self.journal.recover()
        if snap is None:
            self.state = self.default_state()
            self.journal.snapshot(cbor.dumps(self.state))
            return self.state
        st = cbor.loads(snap)
        for d in deltas:
            _merge(st, cbor.loads(d))
        for i in range(self.nslots):  # a board profile may grow the slot count
            if i not in st:
                st[i] = {"st": 0, "av": False, "n": 0}
        if AGENT not in st:
            st[AGENT] = {}
        self.state = st
        return st

    def section(self, s):
        return self.state[s]

    def get(self, s, key, default=None):
        return self.state[s].get(key, default)

    def update(self, changes):
        """Persist `changes` ({section: {key: value}}) as one record, then apply them."""
        if not changes:
            return
        if self.journal.append(cbor.dumps(changes)):
            _merge(self.state, changes)
            return
        # head sector full: the next sector starts with the whole new state
        new = {}
        for s in self.state:
            new[s] = dict(self.state[s])
        _merge(new, changes)
        self.journal.snapshot(cbor.dumps(new))
        self.state = new

    def compact(self):
        """Write a fresh snapshot (used by tests and before long idle periods)."""
        self.journal.snapshot(cbor.dumps(self.state))


def _merge(state, changes):
    for s in changes:
        sec = state.get(s)
        if sec is None:
            sec = state[s] = {}
        ch = changes[s]
        for k in ch:
            v = ch[k]
            if v is None:
                if k in sec:
                    del sec[k]
            else:
                sec[k] = v
