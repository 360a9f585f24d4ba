"""Simulated NOR flash with a fault plan: the device's flash as our tests see it.

Rules it enforces (those of real NOR):
- erase sets a whole sector to the erased value `erased` (0xFF by default; 0x00 for parts
  that erase to zeros); programming can only move bits away from it (clear them on 0xFF
  flash, set them on 0x00 flash), so a program that needs the other change raises
  FlashError. Internally a 0x00 part is a 0xFF part with every bit inverted;
- with write_size > 1 (ECC flash such as STM32 or 16-byte program units) a unit may be
  programmed once per erase: offsets and lengths are multiples of write_size and every
  unit written must still be erased;
- every operation is counted per sector (reads, programs, erases).

Faults: a FaultPlan names one mutating operation (program or erase, counted from 0
since power-on) and what happens to it:
    'before'  power is lost before it runs (nothing changes)
    'after'   it completes, then power is lost
    'torn'    a program lands only a prefix of its bytes
    'half'    an erase leaves the sector with arbitrary content (each bit old-or-1)
After the cut every access raises PowerCut until power_on(), as on a dead board.
Randomness comes from a seeded xorshift so CPython and MicroPython tear identically.

Runs under MicroPython too; storage is a bytearray or, for the virtual board, a file.
"""

from firmware_slots.core.flash import FlashError

KINDS = ("before", "after", "torn", "half")


class PowerCut(Exception):
    pass


class XorShift:
    def __init__(self, seed):
        self.s = (seed * 2654435761 + 1) & 0xFFFFFFFF or 1

    def next(self):
        x = self.s
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.s = x
        return x

    def below(self, n):
        return self.next() % n if n > 0 else 0


class FaultPlan:
    def __init__(self, at, kind, seed=1):
        if kind not in KINDS:
            raise ValueError("fault kind must be one of %s" % (KINDS,))
        self.at = at
        self.kind = kind
        self.seed = seed

    def __repr__(self):
        return "FaultPlan(%d, %r, seed=%d)" % (self.at, self.kind, self.seed)


class _FileStore:
    """Flash contents in a file: what a killed process wrote is still there."""

    def __init__(self, path, size, erased=0xFF):
        from firmware_slots.sim.ramflash import open_sized
        self.f = open_sized(path, size, erased)

    def read(self, off, buf):
        self.f.seek(off)
        self.f.readinto(buf)

    def write(self, off, data):
        self.f.seek(off)
        self.f.write(data)
        self.f.flush()

    def close(self):
        self.f.close()


class _RamStore:
    def __init__(self, size, erased=0xFF):
        self.mem = bytearray(bytes((erased,)) * size)

    def read(self, off, buf):
        n = len(buf)
        buf[:] = memoryview(self.mem)[off:off + n]

    def write(self, off, data):
        self.mem[off:off + len(data)] = data

    def close(self):
        pass


class NorFlash:
    """A NOR flash speaking MicroPython's extended block-device protocol."""

    def __init__(self, sector_size=4096, sectors=64, write_size=1, path=None, erased=0xFF):
        if write_size < 1 or sector_size % write_size:
            raise ValueError("write_size must divide sector_size")
        if erased not in (0xFF, 0x00):
            raise ValueError("erased must be 0xFF or 0x00")
        self.sector_size = sector_size
        self.sectors = sectors
        self.write_size = write_size
        self.erased = erased
        self.size = sector_size * sectors
        self.store = _FileStore(path, self.size, erased) if path else _RamStore(self.size, erased)
        self.fault = None
        self.dead = False
        self.ops = 0  # mutating operations since power-on (the fault plan's clock)
        self.reads = [0] * sectors
        self.programs = [0] * sectors
        self.erases = [0] * sectors
        self.bytes_read = 0
        self.bytes_programmed = 0
        self.log = None  # when a list, (kind, sector) of every mutating op is appended

    # -- fault control -----------------------------------------------------------
    def arm(self, plan):
        self.fault = plan

    def power_on(self):
        """Restore power: faults are disarmed and the op clock restarts."""
        self.fault = None
        self.dead = False
        self.ops = 0

    def reset_counters(self):
        n = self.sectors
        self.reads = [0] * n
        self.programs = [0] * n
        self.erases = [0] * n
        self.bytes_read = 0
        self.bytes_programmed = 0

    def snapshot(self):
        """A copy of the whole array (tests compare images before and after)."""
        buf = bytearray(self.size)
        self.store.read(0, buf)
        return buf

    def read_raw(self, off, n):
        buf = bytearray(n)
        self.store.read(off, buf)
        return buf

    def close(self):
        self.store.close()

    # -- block-device protocol -----------------------------------------------------
    def readblocks(self, n, buf, off=0):
        if self.dead:
            raise PowerCut("read after power loss")
        addr = n * self.sector_size + off
        ln = len(buf)
        if n < 0 or off < 0 or addr + ln > self.size:
            raise FlashError("read %d+%d out of range" % (addr, ln))
        self.store.read(addr, buf)
        self.reads[n] += 1
        self.bytes_read += ln

    def writeblocks(self, n, buf, off=0):
        addr = n * self.sector_size + off
        ln = len(buf)
        if n < 0 or off < 0 or addr + ln > self.size:
            raise FlashError("program %d+%d out of range" % (addr, ln))
        ws = self.write_size
        if addr % ws or ln % ws:
            raise FlashError("program %d+%d not aligned to %d" % (addr, ln, ws))
        old = bytearray(ln)
        self.store.read(addr, old)
        # big-int bit arithmetic: C speed on both CPython and MicroPython; on a 0x00 part
        # both sides are inverted (inv), so the rule is the 0xFF part's: only clear bits
        inv = (1 << (8 * ln)) - 1 if self.erased == 0 else 0
        o = int.from_bytes(old, "big")
        w = int.from_bytes(bytes(buf), "big")
        if inv:  # no big-int copies on the usual 0xFF part
            o ^= inv
            w ^= inv
        if w & ~o:
            bad = ((w & ~o).bit_length() - 1) // 8
            raise FlashError("program needs a %s bit change at %d" % (
                "0->1" if self.erased else "1->0", addr + ln - 1 - bad))
        if ws > 1 and old != bytes((self.erased,)) * ln:
            blank = bytes((self.erased,)) * ws
            for u in range(0, ln, ws):
                if old[u:u + ws] != blank:
                    raise FlashError("unit at %d programmed twice without erase" % (addr + u))
        fate = self._tick("program", n)
        if fate == "before":
            raise PowerCut("before program")
        if fate == "torn":
            keep = XorShift(self.fault.seed).below(ln)
            if ws > 1:
                keep -= keep % ws
            if keep:
                self.store.write(addr, ((o & w) ^ inv if inv else o & w).to_bytes(ln, "big")[:keep])
            self.dead = True
            raise PowerCut("torn program (%d of %d bytes)" % (keep, ln))
        self.store.write(addr, ((o & w) ^ inv if inv else o & w).to_bytes(ln, "big"))
        self.programs[n] += 1
        self.bytes_programmed += ln
        if fate == "after":
            raise PowerCut("after program")

    def ioctl(self, op, arg):
        if op == 4:
            return self.sectors
        if op == 5:
            return self.sector_size
        if op == 6:
            self._erase(arg)
            return 0
        if op in (1, 2, 3):  # init, deinit, sync
            return 0
        return None

    def _erase(self, n):
        if not 0 <= n < self.sectors:
            raise FlashError("erase of sector %d out of range" % n)
        fate = self._tick("erase", n)
        if fate == "before":
            raise PowerCut("before erase")
        ss = self.sector_size
        if fate == "half":
            # erasing drives bits towards erased: a random prefix made it, the rest is
            # old|noise (old&noise on a 0x00 part)
            rng = XorShift(self.fault.seed)
            noise = bytearray(256)
            for i in range(256):
                noise[i] = rng.next() & 0xFF
            cut = rng.below(ss)
            cur = bytearray(ss)
            self.store.read(n * ss, cur)
            nz = int.from_bytes((bytes(noise) * (ss // 256 + 1))[:ss], "big")
            c = int.from_bytes(cur, "big")
            mixed = (c | nz) if self.erased else (c & nz)
            cur = bytearray(mixed.to_bytes(ss, "big"))
            cur[:cut] = bytes((self.erased,)) * cut
            self.store.write(n * ss, cur)
            self.dead = True
            raise PowerCut("half-done erase")
        self.store.write(n * ss, bytes((self.erased,)) * ss)
        self.erases[n] += 1
        if fate == "after":
            raise PowerCut("after erase")

    def _tick(self, kind, sector):
        if self.dead:
            raise PowerCut("%s after power loss" % kind)
        i = self.ops
        self.ops += 1
        if self.log is not None:
            self.log.append((kind, sector))
        f = self.fault
        if f is None or f.at != i:
            return None
        k = f.kind
        if k == "torn" and kind != "program":
            k = "before"
        if k == "half" and kind != "erase":
            k = "before"
        self.dead = True  # whatever the fault, the board is off afterwards
        return k
