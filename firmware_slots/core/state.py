"""The persisted state: its vocabulary (the one place that names journal keys) and MetaStore.

Everything the device remembers is one CBOR map of sections kept in the journal
(journal.py has the bytes). Only this module names the keys; the slot manager and
the boot decision use the constants below, every other module goes through the
SlotManager's methods or MetaStore.agent()/agent_update() with the A_* names.

| section      | key  | constant      | value                                               |
| ------------ | ---- | ------------- | --------------------------------------------------- |
| -1 device    | 'v'  | D_FORMAT      | state format (FORMAT = 1)                           |
|              | 'b'  | D_BOOT        | BootFirmwareImage slot (only set_boot() writes it)  |
|              | 'k'  | D_LKG         | last-known-good slot, -1 none                       |
|              | 'r'  | D_RAN         | slot the boot decision chose last                   |
| 0..N-1 slot  | 'st' | S_STATUS      | status code: index into STATUSES                    |
|              | 'nm' | S_NAME        | Name (<= TEXT_MAX)                                  |
|              | 'vr' | S_VERSION     | Version (<= TEXT_MAX)                               |
|              | 'ln' | S_LENGTH      | image length in bytes                               |
|              | 'h'  | S_SHA256      | SHA-256 of the image (32 bytes)                     |
|              | 'av' | S_AVAILABLE   | TR-181 Available                                    |
|              | 'lg' | S_LOG         | BootFailureLog (<= LOG_MAX)                         |
|              | 'er' | S_ERROR       | why the last install failed (<= LOG_MAX)            |
|              | 'bf' | S_TRIAL_FAIL  | why the current trial boot failed (boot stub, until |
|              |      |               | the next boot decision logs it; <= CRASH_MAX)       |
|              | 'n'  | S_ATTEMPTS    | boot attempts of an unconfirmed image               |
|              | 'al' | S_ALIAS       | Alias (<= TEXT_MAX; default cpe-<row>)              |
|              | 'dl' | S_DOWNLOAD    | download progress: {'o' offset,'z' size,'a' algo,   |
|              |      |               | 'c' checksum,'m' [name, version], + fetcher keys}   |
| -2 agent     | 'c'  | A_CONTROLLERS | Controller rows   } row formats: datamodel/         |
|              | 's'  | A_SUBS        | Subscription rows } localagent.py (the table owner) |
|              | 'q'  | A_REQUESTS    | Request rows      } ('x' state: usp/commands.py)    |
|              | 'n'  | A_NEXT        | next instance numbers                               |
|              | 'b'  | A_BOOT_CAUSE  | {'c' Cause,'r' Reason,'k' CommandKey} of the reboot |
|              | 'v'  | A_PREV_VERSION| SoftwareVersion reported at the last boot           |

Inner dicts ('dl' fetcher keys, agent rows) are formats of the module that owns that
table, documented there; this module owns which sections and keys exist.

A snapshot record carries every section; a delta record carries only the changed keys
of the changed sections ({section: {key: value}}), a None value deleting the key. A
boot attempt is therefore a delta of a few bytes: {0: {'n': 2}}.
"""

from firmware_slots.core import cbor
from firmware_slots.core.journal import Journal

DEVICE = -1
AGENT = -2
FORMAT = 1

D_FORMAT, D_BOOT, D_LKG, D_RAN = "v", "b", "k", "r"
S_STATUS, S_NAME, S_VERSION, S_LENGTH, S_SHA256, S_AVAILABLE = "st", "nm", "vr", "ln", "h", "av"
S_LOG, S_ERROR, S_TRIAL_FAIL, S_ATTEMPTS, S_ALIAS, S_DOWNLOAD = "lg", "er", "bf", "n", "al", "dl"
A_CONTROLLERS, A_SUBS, A_REQUESTS, A_NEXT, A_BOOT_CAUSE, A_PREV_VERSION = "c", "s", "q", "n", "b", "v"

# TR-181 FirmwareImage.{i}.Status, spelled as the standard does; S_STATUS holds the index
STATUSES = (
    "NoImage", "Active", "Downloading", "Validating", "Available",
    "DownloadFailed", "ValidationFailed", "InstallationFailed", "ActivationFailed",
)
NO_IMAGE, ACTIVE, DOWNLOADING, VALIDATING, AVAILABLE = 0, 1, 2, 3, 4
DOWNLOAD_FAILED, VALIDATION_FAILED, INSTALLATION_FAILED, ACTIVATION_FAILED = 5, 6, 7, 8

# text bounds: the whole state must keep fitting one journal sector
TEXT_MAX = 64    # Alias, Name, Version (TR-181 string(64))
LOG_MAX = 200    # BootFailureLog and install errors
CRASH_MAX = 120  # a trial's crash line, before "; last attempt: " joins it to the log

# TR-181 parameter name -> slot key, for the data model's reads
PARAMS = {"Alias": S_ALIAS, "Name": S_NAME, "Version": S_VERSION, "Available": S_AVAILABLE,
          "BootFailureLog": S_LOG}


def new_slot():
    return {S_STATUS: NO_IMAGE, S_AVAILABLE: False, S_ATTEMPTS: 0}


def default_alias(i):
    return "cpe-%d" % (i + 1)  # named like its row, FirmwareImage.<i+1>


class MetaStore:
    def __init__(self, region, nslots):
        self.journal = Journal(region)
        self.nslots = nslots
        self.state = None

    def default_state(self):
        st = {DEVICE: {D_FORMAT: FORMAT, D_BOOT: 0, D_LKG: -1, D_RAN: -1}, AGENT: {}}
        for i in range(self.nslots):
            st[i] = new_slot()
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
                st[i] = new_slot()
        if AGENT not in st:
            st[AGENT] = {}
        self.state = st
        return st

    def section(self, s):
        return self.state[s]

    def get(self, s, key, default=None):
        return self.state[s].get(key, default)

    # the agent's handle: its section, by the A_* names
    def agent(self, key, default=None):
        return self.state[AGENT].get(key, default)

    def agent_update(self, changes):
        """Persist {A_*: value} changes of the agent section as one record."""
        self.update({AGENT: changes})

    def agent_bytes(self):
        """CBOR size of the agent section (its budget is checked by the data model)."""
        return len(cbor.dumps(self.state[AGENT]))

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
