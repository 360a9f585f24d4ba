"""Journal: the device's only mutable metadata, append-only in a ring of flash sectors.

On-flash record (little-endian, every record starts at a write_size-aligned offset):

    off  size  field
    0    1     magic 0xA5 (neither erased value 0xFF nor 0x00: erased flash ends a sector's records)
    1    1     kind: 0x53 'S' snapshot (whole state) or 0x44 'D' delta (changes)
    2    2     body length L (bytes)
    4    4     sequence number, +1 per record, never reused
    8    L     body (CBOR, see state.py)
    8+L  4     CRC32 (binascii.crc32) over bytes 0 .. 8+L
    12+L pad   erased bytes (region.erased) up to the next multiple of write_size (programmed
               as part of the record)

Sectors: the ring is made of *logical sectors* of k consecutive erase blocks, so a whole
state fits one sector on parts with small erase blocks too (a 4 KiB snapshot on 512-byte
blocks). k is a function of the journal's geometry alone (nothing on flash says it):

    k = ceil(SPAN / block) blocks, at most blocks // 2 (the ring keeps >= 2 sectors)

| erase block | journal blocks              | k | logical sector | ring sectors | max_body  |
| ----------- | --------------------------- | - | -------------- | ------------ | --------- |
| 4 KiB       | n >= 2                      | 1 | 4 KiB          | n            | 4000      |
| 128 KiB     | n >= 2                      | 1 | 128 KiB        | n            | 4000      |
| 512 B       | 16 (layout.journal_blocks)  | 8 | 4 KiB          | 2            | 4000      |
| 512 B       | 8 (stm32 profile until now) | 4 | 2 KiB          | 2            | 2036 - ws |
| 512 B       | 2 (too small for the state) | 1 | 512 B          | 2            | 500 - ws  |
| 1 KiB       | 3                           | 1 | 1 KiB          | 3            | 1012 - ws |

k = 1 is the format of every journal before logical sectors, byte for byte; blocks past
sectors * k stay unused. Records may cross erase-block boundaries inside a logical sector
(FlashRegion.program splits the write: a cut between the parts is a torn record).

Ring rules:
- a snapshot always sits at offset 0 of a sector; deltas follow it in the same sector;
- recovery reads offset 0 of every sector, takes the valid snapshot with the highest
  sequence number, then the deltas after it in that sector up to the first record whose
  magic, length or CRC fails (a torn write);
- a record that does not fit (or follows a torn record) goes to the next sector of the
  ring: erase it, write a fresh snapshot there. The head sector is never erased, so the
  newest valid state survives a cut at any point, and a sector is erased only on wrap.
- erasing a logical sector erases its first block (the one holding offset 0) first, then
  the others in order, and only then programs the snapshot. A cut anywhere in between
  leaves offset 0 erased (or torn: CRC), so a half-erased sector never holds a valid
  snapshot and recovery ignores it; the next snapshot erases all k blocks again, so a
  valid snapshot always has a fully erased sector behind it and deltas land only on
  erased flash (recovery checks that too). Recovery does not rest on the order alone:
  the sector being erased is the oldest of the ring, so even an intact old snapshot there
  loses to the head's sequence number (tests/device/powercut.py run_512 sweeps every cut
  of a wrap, between and inside the k erases and across block boundaries of records);
- one record = one program operation, so a boot attempt costs one small write;
- at most MAX_DELTAS deltas follow a snapshot, so boot-time replay stays bounded even
  in 128 KiB sectors (with 4 KiB sectors the sector fills first).
"""

import binascii

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# private consts are folded into the code (no module global on the device); the public
# names are read by layout.py and tests
_MAGIC = const(0xA5)
_SNAPSHOT = const(0x53)
SNAPSHOT = _SNAPSHOT
_DELTA = const(0x44)
_HEADER = const(8)
_TRAILER = const(4)
_MAX_BODY = const(4000)  # a whole-state snapshot must fit one 4 KiB sector
_SPAN = const(4096)      # bytes a logical sector spans at least (when the journal has room)
SPAN = _SPAN
_SMALL = const(128)      # initial record buffer: deltas are this small; snapshots grow it
_MAX_DELTAS = const(128)
MAX_DELTAS = _MAX_DELTAS


class JournalError(Exception):
    pass


def _u16(b, o):
    return b[o] | (b[o + 1] << 8)


def _u32(b, o):
    return b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)


def _put32(b, o, v):
    b[o] = v & 0xFF
    b[o + 1] = (v >> 8) & 0xFF
    b[o + 2] = (v >> 16) & 0xFF
    b[o + 3] = (v >> 24) & 0xFF


def span_blocks(block, blocks):
    """k: erase blocks per logical sector for a journal of `blocks` blocks of `block` bytes."""
    k = (_SPAN + block - 1) // block
    return max(1, min(k, blocks // 2))


class Journal:
    """Records in `region` (a flash.FlashRegion of >= 2 erase blocks), in logical sectors."""

    def __init__(self, region):
        if region.sectors < 2:
            raise JournalError("journal needs at least two sectors")
        self.region = region
        self.k = span_blocks(region.sector, region.sectors)
        self.sector = self.k * region.sector   # bytes of a logical sector
        self.sectors = region.sectors // self.k
        self.ws = region.write_size
        self.max_body = min(_MAX_BODY, self.sector - _HEADER - _TRAILER - self.ws)
        self.buf = bytearray(_HEADER + _SMALL + _TRAILER + self.ws)
        self.seq = 0
        self.head = -1     # sector holding the newest snapshot, -1 before format
        self.free = None   # next append offset in head, None when head is closed
        self.deltas = 0    # deltas after the head snapshot
        self.records = 0   # records written since open (for benchmarks)

    def _room(self, n):
        """Grow the record buffer to n bytes (only as big as the largest record seen)."""
        if len(self.buf) < n:
            self.buf = bytearray(n + self.ws)
        return self.buf

    # -- reading -----------------------------------------------------------------
    def _read_record(self, sector, off):
        """(kind, seq, body memoryview, total length) of a valid record, else None."""
        r = self.region
        if off + _HEADER + _TRAILER > self.sector:
            return None
        b = self.buf
        base = sector * self.sector + off
        r.read(base, memoryview(b)[:_HEADER])
        if b[0] != _MAGIC or b[1] not in (_SNAPSHOT, _DELTA):
            return None
        ln = _u16(b, 2)
        if ln > self.max_body or off + _HEADER + ln + _TRAILER > self.sector:
            return None
        if len(b) < _HEADER + ln + _TRAILER:
            hdr = bytes(b[:_HEADER])
            b = self._room(_HEADER + ln + _TRAILER)
            b[:_HEADER] = hdr
        r.read(base + _HEADER, memoryview(b)[_HEADER:_HEADER + ln + _TRAILER])
        if binascii.crc32(memoryview(b)[:_HEADER + ln]) & 0xFFFFFFFF != _u32(b, _HEADER + ln):
            return None
        total = _HEADER + ln + _TRAILER
        total += (-total) % self.ws
        return b[1], _u32(b, 4), memoryview(b)[_HEADER:_HEADER + ln], total

    def recover(self):
        """Find the newest state: returns (snapshot body, [delta bodies]) or (None, [])."""
        best = -1
        best_seq = -1
        for s in range(self.sectors):
            rec = self._read_record(s, 0)
            if rec and rec[0] == _SNAPSHOT and rec[1] > best_seq:
                best, best_seq = s, rec[1]
        if best < 0:
            self.head, self.free, self.seq = -1, None, 0
            return None, []
        rec = self._read_record(best, 0)
        snap = bytes(rec[2])
        off = rec[3]
        seq = rec[1]
        deltas = []
        while True:
            rec = self._read_record(best, off)
            if rec is None or rec[0] != _DELTA or rec[1] != seq + 1:
                break
            deltas.append(bytes(rec[2]))
            seq = rec[1]
            off += rec[3]
        self.head, self.seq = best, seq
        self.deltas = len(deltas)
        # append only onto erased flash: anything else here is a torn record
        self.free = off if self._erased_from(best, off) else None
        return snap, deltas

    def _erased_from(self, sector, off):
        r = self.region  # reads cross erase blocks: FlashRegion splits them
        n = min(self.sector - off, _HEADER + self.max_body + _TRAILER)
        if n <= 0:
            return off == self.sector
        return r.is_erased(sector * self.sector + off, n, memoryview(self.buf)[:min(n, len(self.buf))])

    # -- writing -----------------------------------------------------------------
    def _encode(self, kind, body):
        ln = len(body)
        if ln > self.max_body:
            raise JournalError("record body of %d bytes exceeds %d" % (ln, self.max_body))
        total = _HEADER + ln + _TRAILER
        total += (-total) % self.ws
        b = memoryview(self._room(total))[:total]
        b[0] = _MAGIC
        b[1] = kind
        b[2] = ln & 0xFF
        b[3] = ln >> 8
        _put32(b, 4, self.seq + 1)
        b[_HEADER:_HEADER + ln] = body
        _put32(b, _HEADER + ln, binascii.crc32(b[:_HEADER + ln]) & 0xFFFFFFFF)
        e = getattr(self.region, "erased", 0xFF)
        for i in range(_HEADER + ln + _TRAILER, total):
            b[i] = e
        return b

    def append(self, body):
        """Write a delta into the head sector; False when it has no room (snapshot instead)."""
        if self.head < 0 or self.free is None or self.deltas >= _MAX_DELTAS:
            return False
        rec = self._encode(_DELTA, body)
        if self.free + len(rec) > self.sector:
            return False
        self.region.program(self.head * self.sector + self.free, rec)
        self.seq += 1
        self.free += len(rec)
        self.deltas += 1
        self.records += 1
        return True

    def snapshot(self, body):
        """Start the next sector of the ring with a whole-state record."""
        rec = self._encode(_SNAPSHOT, body)
        nxt = (self.head + 1) % self.sectors
        b = nxt * self.k
        for e in range(b, b + self.k):  # the block holding offset 0 first (see Ring rules)
            self.region.erase(e)
        self.region.program(nxt * self.sector, rec)
        self.seq += 1
        self.head = nxt
        self.free = len(rec)
        self.deltas = 0
        self.records += 1

    def room(self):
        """Bytes left in the head sector (0 when closed or out of delta budget)."""
        if self.free is None or self.head < 0 or self.deltas >= _MAX_DELTAS:
            return 0
        return self.sector - self.free
