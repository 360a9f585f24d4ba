"""Board-like flash for measurements: the extended block protocol and nothing else.

    RamFlash(sector, sectors, erased=0xFF, path=None)
    readblocks(n, buf, off=0) / writeblocks(n, buf, off=0) / ioctl(op, arg)
    ioctl 1 init, 2 deinit, 3 sync -> 0; 4 block count; 5 block size; 6 erase block

Unlike norsim it keeps no counters, checks no programming rules and has no fault plan,
so the heap it costs is what a board's C driver (esp32.Partition, rp2.Flash) costs:
nothing per operation. The contents live outside the MicroPython heap, the way flash
does: in a file (path; put it on tmpfs, e.g. /dev/shm, no fsync) or, without a path,
in one io.BytesIO buffer allocated at construction (a RAM disk: heap = the whole size).
Every operation is seek + readinto/write on that one stream: no slices, no temporaries.
Host and tests only (sim/ is never frozen or installed on a board).
"""
import io

_ERASE_CHUNK = 256  # erase writes this many erased bytes at a time (one small buffer)


def open_sized(path, size, erased=0xFF):
    """`path` opened r+b, at least `size` bytes: a new or short file reads as erased flash."""
    try:
        f = open(path, "r+b")
    except OSError:
        f = open(path, "w+b")
    f.seek(0, 2)
    have = f.tell()
    if have < size:
        blank = bytes([erased]) * _ERASE_CHUNK
        while have < size:
            n = min(_ERASE_CHUNK, size - have)
            f.write(blank if n == _ERASE_CHUNK else blank[:n])
            have += n
        f.flush()
    return f


class RamFlash:
    def __init__(self, sector, sectors, erased=0xFF, path=None, write_size=1):
        self.sector = sector
        self.sectors = sectors
        self.write_size = write_size
        self.erased = erased
        self._blank = bytes([erased]) * _ERASE_CHUNK
        size = sector * sectors
        self.f = io.BytesIO(bytes([erased]) * size) if path is None else open_sized(path, size, erased)

    def readblocks(self, n, buf, off=0):
        self.f.seek(n * self.sector + off)
        self.f.readinto(buf)

    def writeblocks(self, n, buf, off=0):
        self.f.seek(n * self.sector + off)
        self.f.write(buf)

    def ioctl(self, op, arg):
        if op == 4:
            return self.sectors
        if op == 5:
            return self.sector
        if op == 6:
            f = self.f
            f.seek(arg * self.sector)
            for _ in range(self.sector // _ERASE_CHUNK):
                f.write(self._blank)
            return 0
        return 0

    def close(self):
        self.f.close()
