"""Flash access through MicroPython's extended block-device protocol, and nothing else.

A device here is any object with
    readblocks(n, buf, off)    read len(buf) bytes at block n + off
    writeblocks(n, buf, off)   program (never erases) len(buf) bytes at block n + off
    ioctl(4, 0) -> block count, ioctl(5, 0) -> block (= erase sector) size,
    ioctl(6, n) erase block n
`esp32.Partition`, `rp2.Flash`, `pyb.Flash(start=, len=)` and `norsim.NorFlash` all
speak it. `BlockWindow` carves a slot or the journal out of a larger device.

`FlashRegion` adds byte addressing on top, so callers think in offsets; it costs one
small object and no buffers.

Erased value: what an erased byte reads, a property of the part (MCUboot's
flash_area_erased_val()). The block protocol has no ioctl for it, so:
    device attribute `erased`    NorFlash / RamFlash / BlockWindow (forwarded) say it
    FlashRegion(..., erased=e)   overrides (a board profile's "flash" "erased")
    neither                      0xFF, NOR's usual
Everything that tests for or pads with erased bytes asks `region.erased`: the journal
(end of records, record padding), the image writer (last-unit padding, resume checks).
"""

IOCTL_BLOCK_COUNT = 4
IOCTL_BLOCK_SIZE = 5
IOCTL_BLOCK_ERASE = 6


class FlashError(Exception):
    """A programming rule was broken (alignment, 0->1 bit, out of range)."""


class BlockWindow:
    """Blocks [first, first + count) of `dev`, renumbered from 0."""

    def __init__(self, dev, first, count):
        total = dev.ioctl(IOCTL_BLOCK_COUNT, 0)
        if first < 0 or count <= 0 or first + count > total:
            raise FlashError("window %d+%d outside device of %d blocks" % (first, count, total))
        self.dev = dev
        self.first = first
        self.count = count
        self.erased = getattr(dev, "erased", 0xFF)

    def readblocks(self, n, buf, off=0):
        self._check(n, off, len(buf))
        self.dev.readblocks(self.first + n, buf, off)

    def writeblocks(self, n, buf, off=0):
        self._check(n, off, len(buf))
        self.dev.writeblocks(self.first + n, buf, off)

    def ioctl(self, op, arg):
        if op == IOCTL_BLOCK_COUNT:
            return self.count
        if op == IOCTL_BLOCK_ERASE:
            if not 0 <= arg < self.count:
                raise FlashError("erase of block %d outside window of %d" % (arg, self.count))
            return self.dev.ioctl(op, self.first + arg)
        return self.dev.ioctl(op, arg)

    def _check(self, n, off, ln):
        bs = self.dev.ioctl(IOCTL_BLOCK_SIZE, 0)
        end = n * bs + off + ln
        if n < 0 or off < 0 or end > self.count * bs:
            raise FlashError("access %d..%d outside window of %d bytes" % (n * bs + off, end, self.count * bs))


class FlashRegion:
    """Byte-addressed view of a block device: read/program at offsets, erase sectors."""

    def __init__(self, dev, write_size=1, erased=None):
        self.dev = dev
        self.erased = getattr(dev, "erased", 0xFF) if erased is None else erased
        self.sector = dev.ioctl(IOCTL_BLOCK_SIZE, 0)
        self.sectors = dev.ioctl(IOCTL_BLOCK_COUNT, 0)
        self.size = self.sector * self.sectors
        # program granularity: every write is aligned to it and a multiple of it
        self.write_size = write_size

    def read(self, offset, buf):
        """Fill `buf` from `offset`, crossing sector boundaries as needed."""
        self._per_sector(self.dev.readblocks, offset, buf)

    def program(self, offset, data):
        """Program `data` at `offset` (must already be erased), one call per sector."""
        self._per_sector(self.dev.writeblocks, offset, data)

    def _per_sector(self, op, offset, buf):
        # block devices take (block, buf, offset-in-block): split at sector boundaries
        n = len(buf)
        mv = memoryview(buf)
        done = 0
        while done < n:
            blk, off = divmod(offset + done, self.sector)
            chunk = min(n - done, self.sector - off)
            op(blk, mv[done:done + chunk], off)
            done += chunk

    def erase(self, sector):
        self.dev.ioctl(IOCTL_BLOCK_ERASE, sector)

    def is_erased(self, offset, length, scratch):
        """True when `length` bytes from `offset` all read erased (uses `scratch` as buffer)."""
        ff = bytes((self.erased,)) * len(scratch)
        while length > 0:
            n = min(length, len(scratch))
            mv = memoryview(scratch)[:n]
            self.read(offset, mv)
            if bytes(mv) != ff[:n]:  # one C-level compare instead of a Python loop
                return False
            offset += n
            length -= n
        return True
