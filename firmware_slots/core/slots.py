"""Slots: N firmware image slots, their TR-181 status, image writing and booting.

A slot is a block device (usually a flash.BlockWindow). SlotManager keeps every fact
about the slots in the MetaStore (see state.py for the keys) and enforces the
rules that keep a device bootable:
- the running, last-known-good and BootFirmwareImage slots are never written;
- an image is Available only after its length, requested checksum, read-back hash
  and format check all pass; a failure leaves a TR-181 failure status and a reason;
- BootFirmwareImage only ever changes through set_boot();
- with trust keys provisioned an image is Available only when its MCUboot signature
  verifies (core/image.py, checked once) and its security counter is not below the
  device's minimum, which only confirm() raises (anti-rollback).

Writing streams: erase each sector just before programming into it, hash while
writing, never hold the image in RAM. Progress can be checkpointed in the journal so
an interrupted download resumes (SlotManager.resume) instead of starting again. The writer
(core/writer.py's ImageWriter) is loaded by the first install() or resume().
"""

import hashlib

from firmware_slots.core.flash import FlashRegion
from firmware_slots.core import state as K  # its vocabulary by attribute: no global per name here
from firmware_slots.core.state import ACTIVE, AVAILABLE, DOWNLOADING, DOWNLOAD_FAILED  # noqa: F401 (re-exported: slots.AVAILABLE)

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# private consts are folded into the code: no module global on the device
_CHUNK = const(512)  # read-back and re-hash buffer: the largest allocation while writing


# Every refusal is a SlotError; `why` says which check refused (FaultString's first words,
# usp/commands.fault) and fixes the TR-181 status it leaves in the slot. One class, not one
# per check: each class costs ~130 bytes of heap on a board (bench/device_fit.py --modules).
#   why                          status left                raised by
NO_SUCH_SLOT = "no such slot"    # unchanged                a row number out of range
SLOT_BUSY = "slot busy"          # unchanged                running / last-known-good / boot slot
NOT_AVAILABLE = "not available"  # unchanged                set_boot/Available on a slot without an image
NOT_RUNNING = "not running"      # unchanged                confirm() of a slot that is not running
NO_RESUME = "nothing to resume"  # unchanged                resume() without a checkpoint
WRITER_DONE = "writer finished"  # unchanged                a write after finish()/abort()
TOO_LARGE = "image too large"    # DownloadFailed           past the slot's end
TRUNCATED = "image truncated"    # DownloadFailed           fewer bytes than announced, or none
TRANSFER = "download failed"     # DownloadFailed           the fetcher's error (writer.ImageWriter.abort)
CHECKSUM = "checksum mismatch"   # ValidationFailed         requested CheckSum differs
INVALID = "invalid image"        # ValidationFailed         format, signature or rollback check
READBACK = "flash read-back mismatch"  # InstallationFailed  what flash holds differs from what was written


class SlotError(Exception):
    """A refusal. Messages name slots as TR-181 rows (slot 0 is FirmwareImage.1): operators read them."""

    def __init__(self, msg, why=None):
        super().__init__(msg)
        self.why = why

    @property
    def status(self):
        """The TR-181 status this refusal leaves (None: the slot's status is unchanged)."""
        w = self.why
        if w in (TOO_LARGE, TRUNCATED, TRANSFER):
            return DOWNLOAD_FAILED
        if w in (CHECKSUM, INVALID):
            return K.VALIDATION_FAILED
        return K.INSTALLATION_FAILED if w == READBACK else None


def _hex(b):
    return "".join("%02x" % x for x in b)


def _cleared(status, download=None):
    """A slot's changes when it starts over (install, erase): every other key goes, since a
    slot holds one status's keys at a time (state.py, SLOT_MAX)."""
    return {K.S_STATUS: status, K.S_AVAILABLE: False, K.S_ATTEMPTS: 0, K.S_LOG: None, K.S_ERROR: None,
            K.S_NAME: None, K.S_VERSION: None, K.S_SHA256: None, K.S_LENGTH: None, K.S_OFFSET: None,
            K.S_PAYLOAD: None, K.S_COUNTER: None, K.S_TRIAL_FAIL: None, K.S_DOWNLOAD: download,
            K.S_DL_OFFSET: None}


class SlotManager:
    """N slots plus the journal. `inspect(dev, length) -> (name, version)` checks format.

    keys: provisioned trust keys (core.image.load_key tuples); min_sc: the profile's
    anti-rollback floor, below the journal's own minimum or above it.
    erased: the part's erased byte when the devices do not say (core/flash.py)."""

    def __init__(self, slot_devs, journal_dev, write_size=1, max_attempts=3, inspect=None, keys=(), min_sc=0,
                 erased=None):
        self.keys = tuple(keys)  # fixed at construction; no list for the common keyless board
        self.min_floor = min_sc
        self.regions = [FlashRegion(d, write_size, erased) for d in slot_devs]
        self.n = len(slot_devs)
        self.write_size = write_size
        self.max_attempts = max_attempts
        self.inspect = inspect
        self.meta = K.MetaStore(FlashRegion(journal_dev, write_size, erased), self.n)
        self.meta.load()
        self.running = self.meta.get(K.DEVICE, K.D_RAN, -1)
        self._verified = {}

    # -- reading state ------------------------------------------------------------
    def _slot(self, i):
        if not isinstance(i, int) or not 0 <= i < self.n:
            raise SlotError("no FirmwareImage.%s (have 1..%d)" % (i + 1 if isinstance(i, int) else i, self.n), NO_SUCH_SLOT)
        return self.meta.section(i)

    @property
    def boot_slot(self):
        return self.meta.get(K.DEVICE, K.D_BOOT, 0)

    @property
    def lkg(self):
        return self.meta.get(K.DEVICE, K.D_LKG, -1)

    def status_code(self, i):
        st = self._slot(i).get(K.S_STATUS, K.NO_IMAGE)
        return ACTIVE if st == AVAILABLE and i == self.running else st

    def status(self, i):
        return K.STATUSES[self.status_code(i)]

    def info(self, i):
        s = self._slot(i)
        h = s.get(K.S_SHA256)
        return {
            "slot": i,
            "Name": s.get(K.S_NAME, ""),
            "Version": s.get(K.S_VERSION, ""),
            "Status": self.status(i),
            "Available": bool(s.get(K.S_AVAILABLE)),
            "BootFailureLog": s.get(K.S_LOG, ""),
            "Error": s.get(K.S_ERROR, ""),
            "Alias": s.get(K.S_ALIAS) or K.default_alias(i),
            "Length": s.get(K.S_LENGTH, 0),
            "SHA256": _hex(h) if h else "",
            "Attempts": s.get(K.S_ATTEMPTS, 0),
            "Boot": i == self.boot_slot,
            "Running": i == self.running,
            "LastKnownGood": i == self.lkg,
            "Capacity": self.regions[i].size,
        }

    def param(self, i, name):
        """TR-181 parameter `name` of row i+1 (Alias, Name, Version, Available, BootFailureLog)."""
        # TR-181 name -> slot key as a chain, not a dict in state.py: no table on the heap
        k = (K.S_ALIAS if name == "Alias" else K.S_NAME if name == "Name" else K.S_VERSION if name == "Version"
             else K.S_AVAILABLE if name == "Available" else K.S_LOG if name == "BootFailureLog" else None)
        if k is None:
            raise KeyError(name)
        v = self._slot(i).get(k)
        if name == "Alias":
            return v or K.default_alias(i)
        if name == "Available":
            return bool(v)
        return v or ""

    def alias_owner(self, alias):
        """The slot whose Alias is `alias`, or -1."""
        for j in range(self.n):
            if self.param(j, "Alias") == alias:
                return j
        return -1

    def min_counter(self):
        """The lowest security counter an image may carry to be installed or booted."""
        return max(self.min_floor, self.meta.get(K.DEVICE, K.D_MIN_SC, 0))

    def payload(self, i):
        """(device, length) of slot i's payload: past the MCUboot header for signed images."""
        s = self._slot(i)
        po = s.get(K.S_OFFSET, 0)
        return _window(self.regions[i], po, s.get(K.S_PAYLOAD) if po else s.get(K.S_LENGTH, 0))

    # -- the boot stub's notes on a trial boot ---------------------------------------
    def note_trial_failure(self, i, why):
        """Why this trial boot of slot i is failing (the next boot decision logs it)."""
        self._slot(i)
        self.meta.update({i: {K.S_TRIAL_FAIL: K.clip(why, K.CRASH_MAX)}})

    def trial_failure(self, i):
        return self._slot(i).get(K.S_TRIAL_FAIL)

    def log_last_attempt(self, i, why):
        """Append why the last attempt failed to slot i's BootFailureLog; forget the note."""
        lg = self._slot(i).get(K.S_LOG, "")
        self.meta.update({i: {K.S_LOG: K.clip(lg + "; last attempt: " + why, K.LOG_MAX), K.S_TRIAL_FAIL: None}})

    def slot_size(self, i):
        self._slot(i)
        return self.regions[i].size

    def download_progress(self, i):
        """Slot i's download record ('dl': URL, checksum, fetcher keys) with 'o' the offset of
        its last checkpoint, or None."""
        s = self._slot(i)
        dl = s.get(K.S_DOWNLOAD)
        if dl and K.S_DL_OFFSET in s:
            dl = dict(dl)
            dl["o"] = s[K.S_DL_OFFSET]
        return dl

    # -- verification -------------------------------------------------------------
    def hash_slot(self, i, length, algorithm="SHA-256"):
        """Digest of the first `length` bytes of slot i, read in _CHUNK pieces."""
        if algorithm == "SHA-256":
            h = hashlib.sha256()
        else:  # core.hashes is loaded only for algorithms hashlib does not always have
            from firmware_slots.core import hashes
            h = hashes.new(algorithm)
        _feed(self.regions[i], 0, length, (h.update,))
        return h.digest()

    def verify(self, i):
        """True when slot i holds an image whose bytes still match its SHA-256."""
        s = self._slot(i)
        h = s.get(K.S_SHA256)
        if not h or s.get(K.S_LENGTH) is None:
            return False
        return self.hash_slot(i, s[K.S_LENGTH]) == h

    # -- explicit changes ---------------------------------------------------------
    def set_boot(self, i):
        s = self._slot(i)
        if s.get(K.S_STATUS) != AVAILABLE or not s.get(K.S_AVAILABLE):
            raise SlotError("FirmwareImage.%d is %s%s: it cannot be the boot image" % (
                i + 1, self.status(i), "" if s.get(K.S_AVAILABLE) else " and not Available"), NOT_AVAILABLE)
        sc = s.get(K.S_COUNTER, 0)
        if sc < self.min_counter():
            raise SlotError("FirmwareImage.%d has security counter %d, below the minimum %d" % (
                i + 1, sc, self.min_counter()), NOT_AVAILABLE)
        ch = {K.DEVICE: {K.D_BOOT: i}}
        if i != self.lkg:
            ch[i] = {K.S_ATTEMPTS: 0}
        self.meta.update(ch)

    def set_available(self, i, flag):
        s = self._slot(i)
        flag = bool(flag)
        if not flag and (i == self.running or i == self.boot_slot):
            raise SlotError("FirmwareImage.%d is the %s image: Available must stay true" % (
                i + 1, "active" if i == self.running else "boot"), SLOT_BUSY)
        if flag and s.get(K.S_STATUS) not in (AVAILABLE,):
            raise SlotError("FirmwareImage.%d is %s: nothing to make available" % (i + 1, self.status(i)), NOT_AVAILABLE)
        if bool(s.get(K.S_AVAILABLE)) != flag:
            self.meta.update({i: {K.S_AVAILABLE: flag}})

    def set_alias(self, i, alias):
        self._slot(i)
        if not isinstance(alias, str) or K.too_long(alias, K.TEXT_MAX):
            raise ValueError("Alias is a string of at most %d bytes" % K.TEXT_MAX)
        self.meta.update({i: {K.S_ALIAS: alias}})

    def protected(self):
        """Slots that must not be written: running, last-known-good, boot target."""
        p = []
        for i in (self.running, self.lkg):
            if 0 <= i < self.n and i not in p:
                p.append(i)
        b = self.boot_slot
        # an empty or failed boot target holds nothing worth keeping
        if b not in p and self._slot(b).get(K.S_STATUS) == AVAILABLE:
            p.append(b)
        return p

    def pick_target(self):
        """The slot a new image should go to: unprotected, emptiest first."""
        free = [i for i in range(self.n) if i not in self.protected()]
        if not free:
            raise SlotError("every slot is running, last-known-good or the boot target", SLOT_BUSY)
        for i in free:  # an empty or failed slot before one holding a spare image
            if self._slot(i).get(K.S_STATUS, K.NO_IMAGE) != AVAILABLE:
                return i
        return free[0]

    # -- writing ------------------------------------------------------------------
    def install(self, i, size=0, algorithm="", checksum=b"", name="", version="", extra=None):
        """Start writing a new image into slot i; returns an ImageWriter.

        size: expected length (0 = unknown); algorithm/checksum: TR-181 name and digest
        bytes (empty = do not validate). Nothing is erased before these checks pass.
        """
        self._slot(i)
        if i in self.protected():
            raise SlotError("FirmwareImage.%d holds the %s image and cannot be overwritten" % (
                i + 1, "running" if i == self.running else
                "last-known-good" if i == self.lkg else "boot"), SLOT_BUSY)
        if size and size > self.regions[i].size:
            raise SlotError("image of %d bytes does not fit FirmwareImage.%d (%d bytes)" % (
                size, i + 1, self.regions[i].size), TOO_LARGE)
        if checksum and not algorithm:
            raise ValueError("a checksum needs its CheckSumAlgorithm")
        if algorithm:
            # SHA-256 is hashlib's own (ImageWriter.sha): core.hashes stays unloaded for it
            n = 32 if algorithm == "SHA-256" else None
            if n is None:
                from firmware_slots.core import hashes
                hashes.new(algorithm)  # unsupported names fail before anything is erased
                n = hashes.digest_size(algorithm)
            if checksum and len(checksum) != n:
                raise ValueError("%s checksum must be %d bytes, got %d" % (algorithm, n, len(checksum)))
        if extra and K.too_long(extra.get("u") or "", K.URL_MAX):
            raise ValueError("a download URL is at most %d bytes" % K.URL_MAX)
        dl = {"z": size, "a": algorithm, "c": checksum,
              "m": [K.clip(name or "", K.TEXT_MAX), K.clip(version or "", K.TEXT_MAX)]}
        if extra:
            for k in extra:
                dl[k] = extra[k]
        self.meta.update({i: _cleared(DOWNLOADING, dl)})
        from firmware_slots.core.writer import ImageWriter  # only a device that installs holds the class
        return ImageWriter(self, i, dl, 0)

    def resume(self, i):
        """Continue an interrupted install of slot i from its last checkpoint."""
        s = self._slot(i)
        dl = s.get(K.S_DOWNLOAD)
        if s.get(K.S_STATUS) != DOWNLOADING or not dl:
            raise SlotError("FirmwareImage.%d has no interrupted download to resume" % (i + 1), NO_RESUME)
        r = self.regions[i]
        off = s.get(K.S_DL_OFFSET, dl.get("o", 0))  # 'dl' 'o': a checkpoint of the older format
        sec_start = off - off % r.sector
        # bytes programmed after the checkpoint make the rest of that sector unusable
        if off % r.sector and not r.is_erased(off, r.sector - off, bytearray(_CHUNK)):
            off = sec_start
        from firmware_slots.core.writer import ImageWriter
        return ImageWriter(self, i, dl, off)

    def fail(self, i, status, why):
        # download/validation failures are not boot failures: BootFailureLog stays as is
        self.meta.update({i: {K.S_STATUS: status, K.S_ERROR: K.clip(why, K.LOG_MAX), K.S_AVAILABLE: False,
                              K.S_DOWNLOAD: None, K.S_DL_OFFSET: None}})

    def erase_slot(self, i):
        """Forget slot i's image (status NoImage); refused for protected slots."""
        self._slot(i)
        if i in self.protected():
            raise SlotError("FirmwareImage.%d is protected (running, last-known-good or boot)" % (i + 1), SLOT_BUSY)
        r = self.regions[i]
        self.meta.update({i: _cleared(K.NO_IMAGE)})
        for s in range(r.sectors):
            r.erase(s)

    # -- booting ------------------------------------------------------------------
    def decide(self):
        """The boot decision for the current state (nothing written)."""
        from firmware_slots.core import bootdecision  # only the boot path pays for it
        seen = self._verified  # boot() empties it: each slot is hashed once per decision

        def verify(i):
            v = seen.get(i)
            if v is None:
                v = seen[i] = self.verify(i)
            return v
        return bootdecision.decide(self.meta.state, self.n, verify, self.max_attempts)

    def boot(self):
        """Decide, commit the decision (attempt count, failures) and note the running slot."""
        self._verified = {}
        d = self.decide()
        if d.changes:
            self.meta.update(d.changes)
        self.running = d.slot if d.slot is not None else -1
        return d

    def confirm(self, i=None):
        """Mark the running slot healthy: it becomes last-known-good, attempts reset."""
        r = self.running
        if i is None:
            i = r
        if i != r or r < 0:
            raise SlotError("FirmwareImage.%d is not the running image (FirmwareImage.%d is)" % (i + 1, r + 1), NOT_RUNNING)
        s = self._slot(r)
        if self.lkg == r and not s.get(K.S_ATTEMPTS):
            return False
        ch = {K.DEVICE: {K.D_LKG: r}, r: {K.S_ATTEMPTS: 0}}
        sc = s.get(K.S_COUNTER, 0)
        if sc > self.meta.get(K.DEVICE, K.D_MIN_SC, 0):  # same record: the floor rises with the confirm
            ch[K.DEVICE][K.D_MIN_SC] = sc
        self.meta.update(ch)
        return True


def _window(region, po, length):
    # the payload of an MCUboot image starts po bytes (whole blocks) into its slot
    if not po:
        return region.dev, length
    from firmware_slots.core.flash import BlockWindow
    bs = region.sector
    return BlockWindow(region.dev, po // bs, max(1, (length + bs - 1) // bs)), length


def _feed(region, start, length, sinks, buf=None):
    buf = buf or bytearray(_CHUNK)
    mv = memoryview(buf)
    off = start
    end = start + length
    while off < end:
        n = min(len(buf), end - off)
        region.read(off, mv[:n])
        for f in sinks:
            f(mv[:n])
        off += n
