"""ImageWriter: streams one image into a slot for SlotManager.install() / resume().

Its own module so that an agent that only answers Gets never holds the class (~370 B of
heap on a board): slots.py imports it on the first install() or resume(). The rules it
enforces are slots.py's (see its docstring): erase each sector just before programming
into it, hash while writing, never hold the image in RAM; finish() makes the image
Available only after length, checksum, read-back and format checks pass.
"""

import hashlib

from firmware_slots.core import state as K  # its vocabulary by attribute: no global per name here
from firmware_slots.core.slots import (SlotError, AVAILABLE, DOWNLOAD_FAILED, WRITER_DONE, TOO_LARGE, TRUNCATED,
                                       TRANSFER, CHECKSUM, INVALID, READBACK, _feed, _hex, _window)

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_MAGIC = const(b"\x3d\xb8\xf3\x96")  # MCUboot header magic 0x96f3b83d, little-endian (core/image.py)


class ImageWriter:
    """Streams one image into a slot. write() any sizes, checkpoint(), finish()."""

    def __init__(self, mgr, i, dl, offset):
        self.mgr = mgr
        self.slot = i
        self.region = mgr.regions[i]
        self.dl = dl
        self.size = dl.get("z", 0)
        self.algorithm = dl.get("a", "")
        self.checksum = dl.get("c", b"")
        self.sha = hashlib.sha256()
        self.user = None
        if self.algorithm and self.algorithm != "SHA-256":
            from firmware_slots.core import hashes
            self.user = hashes.new(self.algorithm)
        ws = mgr.write_size
        self.pending = bytearray(ws)  # bytes waiting for a whole program unit
        self.npend = 0
        self.offset = offset          # bytes programmed so far
        sec = self.region.sector
        # the sector holding `offset` is usable only if the checkpoint left it erased
        # resume mid-sector only happens when the rest of that sector is still erased
        self.erased_to = offset if offset % sec == 0 else offset - offset % sec + sec
        # MCUboot container: parsed while streaming. Without keys only an image that starts
        # with its magic pays for the parser (False: not decided yet, None: a plain image)
        self.img = False
        if offset:
            hs = [self.sha.update, self._container] + ([self.user.update] if self.user else [])
            _feed(self.region, 0, offset, hs)
        self.done = False

    def _container(self, mv):
        if self.img is False:
            self.img = None
            if self.mgr.keys or bytes(mv[:4]) == _MAGIC:
                from firmware_slots.core.image import ImageStream
                self.img = ImageStream()
        if self.img is None:
            return
        try:
            self.img.feed(mv)
        except ValueError as e:  # image.ImageError: no import per block to name it
            self.img = None
            if self.mgr.keys:
                raise SlotError("untrusted image: %s" % e, INVALID)

    @property
    def received(self):
        return self.offset + self.npend

    def write(self, data):
        """Program `data` after what came before; ImageTooLarge past the slot's end."""
        if self.done:
            raise SlotError("writer already finished", WRITER_DONE)
        n = len(data)
        if self.received + n > self.region.size:
            self.abort(SlotError("image exceeds FirmwareImage.%d capacity of %d bytes" % (
                self.slot + 1, self.region.size), TOO_LARGE))
        mv = memoryview(data)
        try:
            self._container(mv)  # with keys, a non-MCUboot image stops at its first 32 bytes
        except SlotError as e:
            self.abort(e)
        self.sha.update(mv)
        if self.user:
            self.user.update(mv)
        ws = len(self.pending)
        pos = 0
        if self.npend:
            take = min(ws - self.npend, n)
            self.pending[self.npend:self.npend + take] = mv[:take]
            self.npend += take
            pos = take
            if self.npend == ws:
                self._program(self.pending)
                self.npend = 0
        whole = (n - pos) - (n - pos) % ws
        if whole:
            self._program(mv[pos:pos + whole])
            pos += whole
        rest = n - pos
        if rest:
            self.pending[:rest] = mv[pos:]
            self.npend = rest

    def _program(self, mv):
        r = self.region
        off = self.offset
        end = off + len(mv)
        while self.erased_to < end:  # erase ahead: just before the first byte lands
            r.erase(self.erased_to // r.sector)
            self.erased_to += r.sector
        r.program(off, mv)
        self.offset = end

    def checkpoint(self, **extra):
        """Persist progress (programmed offset plus fetcher keys such as ETag). A text or
        bytes key longer than TAG_MAX is not kept (the fetcher resumes without it).
        The offset alone is a ~10-byte record (S_DL_OFFSET); 'dl' is rewritten only for new
        fetcher keys, or once to drop an older format's 'o'."""
        ch = {K.S_DL_OFFSET: self.offset}
        if extra or "o" in self.dl:
            dl = dict(self.dl)
            dl.pop("o", None)
            for k in extra:
                v = extra[k]
                if isinstance(v, (str, bytes)) and (len(v) > K.TAG_MAX or isinstance(v, str) and K.too_long(v, K.TAG_MAX)):
                    dl.pop(k, None)
                    continue
                dl[k] = v
            self.dl = ch[K.S_DOWNLOAD] = dl
        self.mgr.meta.update({self.slot: ch})

    def abort(self, err):
        """Record the failure in the slot and raise it."""
        if not isinstance(err, SlotError):
            err = SlotError(str(err), TRANSFER)
        self.done = True
        self.mgr.fail(self.slot, err.status or DOWNLOAD_FAILED, str(err))
        raise err

    def finish(self, name="", version=""):
        """Validate and make the image Available. Returns the slot's info dict."""
        if self.done:
            raise SlotError("writer already finished", WRITER_DONE)
        ws = len(self.pending)
        total = self.received
        if self.npend:  # pad the last unit with erased bytes (image length stays exact)
            e = self.region.erased
            for j in range(self.npend, ws):
                self.pending[j] = e
            self._program(self.pending)
            self.npend = 0
        mgr, i = self.mgr, self.slot
        if self.size and total != self.size:
            self.abort(SlotError("received %d of %d bytes" % (total, self.size), TRUNCATED))
        if total == 0:
            self.abort(SlotError("empty image", TRUNCATED))
        mgr.meta.update({i: {K.S_STATUS: K.VALIDATING, K.S_DOWNLOAD: None, K.S_DL_OFFSET: None}})
        digest = self.sha.digest()
        if self.checksum:
            got = self.user.digest() if self.user else digest
            if got != self.checksum:
                self.abort(SlotError("%s mismatch: expected %s, image has %s" % (
                    self.algorithm, _hex(self.checksum), _hex(got)), CHECKSUM))
        if mgr.hash_slot(i, total) != digest:
            self.abort(SlotError("read-back of FirmwareImage.%d does not match what was written" % (i + 1), READBACK))
        m = self.dl.get("m") or ["", ""]
        name = name or m[0]
        version = version or m[1]
        signed = {}
        if self.img:
            from firmware_slots.core import image
            try:
                po, pl, sc, vr = image.accept(self.img, mgr.keys, mgr.min_counter())
            except image.ImageError as e:
                self.abort(SlotError("untrusted image: %s" % e if mgr.keys else "bad MCUboot image: %s" % e, INVALID))
            if mgr.inspect and po % self.region.sector:
                self.abort(SlotError("MCUboot header size 0x%x is not a multiple of the %d-byte flash block; "
                                        "sign with --header-size 0x1000" % (po, self.region.sector), INVALID))
            signed = {K.S_OFFSET: po, K.S_PAYLOAD: pl, K.S_COUNTER: sc}
            version = vr  # the signed header's version beats hints; a manifest beats both
        elif mgr.keys:
            self.abort(SlotError("untrusted image: image is unsigned but trust keys are provisioned", INVALID))
        if mgr.inspect:
            try:
                nm, vr = mgr.inspect(*_window(self.region, signed.get(K.S_OFFSET, 0), signed.get(K.S_PAYLOAD, total)))
            except Exception as e:
                self.abort(SlotError("not a valid image: %s" % e, INVALID))
            name = nm or name  # the image's own manifest wins over hints
            version = vr or version
        self.done = True
        ch = {K.S_STATUS: AVAILABLE, K.S_AVAILABLE: True, K.S_LENGTH: total, K.S_SHA256: digest,
              K.S_NAME: K.clip(name or "unnamed", K.TEXT_MAX), K.S_VERSION: K.clip(version or "unknown", K.TEXT_MAX),
              K.S_ATTEMPTS: 0}
        for k in signed:
            ch[k] = signed[k]
        mgr.meta.update({i: ch})
        return mgr.info(i)

