"""The persisted state: its vocabulary (the one place that names journal keys) and MetaStore.

Everything the device remembers is one CBOR map of sections kept in the journal
(journal.py has the bytes). Only this module names the keys; the slot manager (slots.py
and its writer.py) and the boot decision use the constants below, every other module goes
through the SlotManager's methods or MetaStore.agent()/agent_update() with the A_* names.
Text bounds (<= TEXT_MAX ...) are UTF-8 bytes: the bounds table below the constants
says who enforces each, and what the whole state can grow to (the agent's 7005 budget).

| section      | key  | constant      | value                                               |
| ------------ | ---- | ------------- | --------------------------------------------------- |
| -1 device    | 'v'  | D_FORMAT      | state format (FORMAT = 1)                           |
|              | 'b'  | D_BOOT        | BootFirmwareImage slot (only set_boot() writes it)  |
|              | 'k'  | D_LKG         | last-known-good slot, -1 none                       |
|              | 'r'  | D_RAN         | slot the boot decision chose last                   |
|              | 'sc' | D_MIN_SC      | anti-rollback floor: highest security counter of a  |
|              |      |               | confirmed image (absent = 0; only confirm() raises) |
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
|              | 'po' | S_OFFSET      | MCUboot image: payload offset (hdr_size); absent 0  |
|              | 'pl' | S_PAYLOAD     | MCUboot image: payload length (img_size)            |
|              | 'sc' | S_COUNTER     | MCUboot image: its security counter (SEC_CNT or 0)  |
|              | 'dl' | S_DOWNLOAD    | download: {'z' size,'a' algo,'c' checksum,          |
|              |      |               | 'm' [name, version], 'u' URL, + fetcher keys};      |
|              |      |               | journals before 'do' kept the offset here as 'o'    |
|              | 'do' | S_DL_OFFSET   | download: bytes programmed at the last checkpoint   |
|              |      |               | (absent: 'dl' 'o', else 0). Its own key so that a   |
|              |      |               | checkpoint is a ~10-byte delta, not the whole 'dl'  |
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

DEVICE = -1
AGENT = -2
FORMAT = 1

D_FORMAT, D_BOOT, D_LKG, D_RAN, D_MIN_SC = "v", "b", "k", "r", "sc"
S_STATUS, S_NAME, S_VERSION, S_LENGTH, S_SHA256, S_AVAILABLE = "st", "nm", "vr", "ln", "h", "av"
S_LOG, S_ERROR, S_TRIAL_FAIL, S_ATTEMPTS, S_ALIAS, S_DOWNLOAD = "lg", "er", "bf", "n", "al", "dl"
S_OFFSET, S_PAYLOAD, S_COUNTER, S_DL_OFFSET = "po", "pl", "sc", "do"
A_CONTROLLERS, A_SUBS, A_REQUESTS, A_NEXT, A_BOOT_CAUSE, A_PREV_VERSION = "c", "s", "q", "n", "b", "v"

# TR-181 FirmwareImage.{i}.Status, spelled as the standard does; S_STATUS holds the index
STATUSES = (
    "NoImage", "Active", "Downloading", "Validating", "Available",
    "DownloadFailed", "ValidationFailed", "InstallationFailed", "ActivationFailed",
)
NO_IMAGE, ACTIVE, DOWNLOADING, VALIDATING, AVAILABLE = 0, 1, 2, 3, 4
DOWNLOAD_FAILED, VALIDATION_FAILED, INSTALLATION_FAILED, ACTIVATION_FAILED = 5, 6, 7, 8

# -- bounds -----------------------------------------------------------------------------
# Every string the journal keeps has a bound in UTF-8 bytes (= characters for ASCII), enforced
# by the module that writes it: device-made texts are clipped (clip()), a controller's
# values are refused (USP 7005, nothing changed):
#
# | bound      | bytes | strings (section key)                          | owner: at the bound               |
# | ---------- | ----- | ---------------------------------------------- | --------------------------------- |
# | TEXT_MAX   | 64    | Name 'nm', Version 'vr', 'dl' hints 'm'        | slots.finish / install: clipped   |
# |            |       | Alias 'al' (slot)                              | slots.set_alias: ValueError (7012)|
# |            |       | SoftwareVersion A_PREV_VERSION                 | usp/agent: clipped                |
# |            |       | Reboot() Reason (A_BOOT_CAUSE 'r')             | usp/commands: 7005 (own: fixed)   |
# | LOG_MAX    | 200   | BootFailureLog 'lg' (bootdecision: fixed texts)| slots.log_last_attempt: clipped   |
# |            |       | install error 'er'                             | slots.fail: clipped               |
# | CRASH_MAX  | 120   | trial failure 'bf'                             | slots.note_trial_failure: clipped |
# | URL_MAX    | 256   | Download URL ('dl' 'u', request 'x' 'u')       | usp/commands: 7005; slots.install:|
# |            |       |                                                | ValueError                        |
# |            |       | reply-to (Controller 'u')                      | localagent.seen: 7005             |
# | ID_MAX     | 64    | EndpointID (Controller 'e', request 'o')       | localagent.seen / set: 7005       |
# | KEY_MAX    | 64    | CommandKey (request 'k', A_BOOT_CAUSE 'k')     | usp/commands.run: 7005            |
# | TAG_MAX    | 64    | resume validator: HTTP ETag/Last-Modified 'hv',| transfer: a longer one is not kept|
# |            |       | CoAP ETag 'et' (<= 8 by RFC 7252)              | (resume checks the length only)   |
# | MESSAGE_MAX| 128   | Activate() TimeWindow UserMessage ('x' 'w')    | usp/commands: 7005                |
# | (256)      | 256   | other LocalAgent strings a controller Sets     | localagent.set: 7012; each row is |
# |            |       | (MTP Host/Path, ReferenceList, ParameterName)  | charged to the agent budget       |
TEXT_MAX = 64    # Alias, Name, Version (TR-181 string(64))
LOG_MAX = 200    # BootFailureLog and install errors
CRASH_MAX = 120  # a trial's crash line, before "; last attempt: " joins it to the log
URL_MAX = 256    # a Download() URL, a controller's reply-to
ID_MAX = 64      # an EndpointID (TR-181 string(64))
KEY_MAX = 64     # a CommandKey
TAG_MAX = 64     # a fetcher's resume validator
MESSAGE_MAX = 128  # an Activate() UserMessage

# Worst-case CBOR bytes of each section with every bound reached (the slot: its largest
# status, see the slot states below); tests/test_state_budget_512.py rebuilds each from the
# bounds. A slot's keys by status (slots.py keeps them apart: install clears the others):
#   Downloading      st av n al + 'dl' (u, c, m, fetcher keys) + 'do'
#   Available        st av n al + nm vr ln h po pl sc + bf (a trial's note)
#   ActivationFailed the same + lg
#   *Failed          st av n al + er
DEVICE_MAX = 32    # 'v' 'b' 'k' 'r' 'sc'
SLOT_MAX = 656     # Downloading: a URL_MAX URL, SHA-512 checksum, TEXT_MAX hints, TAG_MAX tag, 'do' (655)
FIXED_MAX = 224    # agent A_BOOT_CAUSE + A_PREV_VERSION: one of each, written without a budget check
FRAME_MAX = 24     # the outer map and its section keys
AGENT_MAX = 1800   # the agent section's own cap (its tables live in RAM too)
AGENT_MIN = 640    # floor for layouts too small for the bound (see agent_budget)

# The agent's budget = journal.max_body - FRAME_MAX - DEVICE_MAX - nslots * SLOT_MAX (<= AGENT_MAX):
#
# | ring sector (max_body) | slots | agent budget | bounded |
# | ---------------------- | ----- | ------------ | ------- |
# | 4 KiB (4000): one 4 KiB block, or 8 x 512 B (stm32, layout.journal_blocks) - the same rows: |
# | 4 KiB (4000)           | 2     | 1800 (cap)   | yes     |
# | 4 KiB (4000)           | 3     | 1800 (cap)   | yes     |
# | 4 KiB (4000)           | 4     | 1320         | yes     |
# | 4 KiB (4000)           | 5     | 664          | yes     |
# | 4 KiB (4000)           | 6     | 640 (floor)  | no: 8 computed |
# | 512 B (500 - ws: old 2-block journals) | 2 | 640 (floor) | no |
#
# "bounded": the whole state at its worst fits one snapshot record, so no write of the device's
# own (boot attempt, BootFailureLog, install error) can fail for room. Below AGENT_MIN the
# agent still gets the floor and the proof no longer holds (MetaStore.bounded() says so).


def clip(s, n):
    """`s` cut to at most `n` UTF-8 bytes, at a character boundary."""
    if len(s) * 4 <= n:  # no encoding needed: even 4-byte characters fit
        return s
    b = s.encode()
    if len(b) <= n:
        return s
    while n and (b[n] & 0xC0) == 0x80:  # do not split a character
        n -= 1
    return b[:n].decode()


def too_long(s, n):
    """True when `s` takes more than `n` UTF-8 bytes."""
    return len(s) > n or (len(s) * 4 > n and len(s.encode()) > n)


def encoded_size(value):
    """Bytes `value` takes in a record: what budget checks add before they change state
    (counted, not encoded: no record-sized allocation per check)."""
    return cbor.size(value)


def new_slot():
    return {S_STATUS: NO_IMAGE, S_AVAILABLE: False, S_ATTEMPTS: 0}


def default_alias(i):
    return "cpe-%d" % (i + 1)  # named like its row, FirmwareImage.<i+1>


class MetaStore:
    def __init__(self, region, nslots):
        from firmware_slots.core.journal import Journal  # once per device: no module global for it
        self.journal = Journal(region)
        self.nslots = nslots
        self.state = None

    def load(self):
        """Rebuild the state from flash; format an empty journal. Returns the state."""
        snap, deltas = self.journal.recover()
        if snap is None:  # the default state: boot slot 0, no last-known-good, empty slots
            st = self.state = {DEVICE: {D_FORMAT: FORMAT, D_BOOT: 0, D_LKG: -1, D_RAN: -1}, AGENT: {}}
            for i in range(self.nslots):
                st[i] = new_slot()
            self.journal.snapshot(cbor.dumps(st))
            return st
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
        return cbor.size(self.state[AGENT])

    def state_bytes(self):
        """CBOR size of the whole state: a snapshot record must hold it (journal.max_body)."""
        return cbor.size(self.state)

    def _budget(self):
        return self.journal.max_body - FRAME_MAX - DEVICE_MAX - self.nslots * SLOT_MAX

    def bounded(self):
        """True when the worst case of every section fits one snapshot record (the table above)."""
        return self._budget() >= AGENT_MIN

    def agent_budget(self):
        """CBOR bytes the agent section may take: the journal's real record capacity less the
        worst case of the device and slot sections, at most AGENT_MAX, at least AGENT_MIN."""
        return max(AGENT_MIN, min(AGENT_MAX, self._budget()))

    def update(self, changes):
        """Persist `changes` ({section: {key: value}}) as one record, then apply them."""
        if not changes:
            return
        if self.journal.append(cbor.dumps(changes)):
            _merge(self.state, changes)
            return
        # head sector full: the next sector starts with the whole new state. Only the sections
        # that change are copied: the state stays as it was if the snapshot fails
        new = dict(self.state)
        for s in changes:
            new[s] = dict(self.state.get(s) or ())
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
