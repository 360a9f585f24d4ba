"""Exhaustive power-cut sweep over a full update cycle (runs on CPython and MicroPython).

For every mutating flash operation of the cycle below, and for each way power can be
lost at it (before, after, torn program, half-done erase), replay the cycle from the
same starting flash, cut there, restore power, reboot with no faults and check:
  - the journal recovers and some image whose bytes match a known image boots;
  - slot 0 (the first last-known-good image) is byte-for-byte intact, and the
    recovered last-known-good slot verifies;
  - BootFirmwareImage only has a value an explicit set_boot() could have left;
  - the device still works: a metadata write persists, and an interrupted download
    resumes and finishes with the right bytes.

Cycle (starting from v1 confirmed in slot 0): boot; download v2 into slot 1; set_boot;
three unconfirmed boots; the fallback boot; download v3 into slot 1; set_boot; boot;
confirm; boot.

The trust sweep runs the same cycle with a trust key provisioned and the three images
signed MCUboot containers (Ed25519, signed here in pure Python from a fixed seed) with
security counters 1, 3, 2: every install verifies a signature (resumed ones re-parse
from flash), and the confirm of v3 raises the anti-rollback minimum from 1 to 2 in the
same journal record that makes it last-known-good, so after any cut the minimum is 2
exactly when slot 1 is last-known-good.
"""

import hashlib

from firmware_slots.core.journal import MAX_DELTAS
from firmware_slots.core.layout import carve
from firmware_slots.sim.norsim import FaultPlan, NorFlash, PowerCut
from firmware_slots.core.slots import DOWNLOADING, SlotManager

CHUNK = 128


def image(tag, n):
    b = bytearray(n)
    x = tag
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        b[i] = (x >> 16) & 0xFF
    return bytes(b)


def _mul(k, P):
    from firmware_slots.core import ed25519 as E
    R = (0, 1, 1, 0)
    for i in range(255, -1, -1):
        R = E._add(R, R)
        if (k >> i) & 1:
            R = E._add(R, P)
    return R


def _enc(P):
    from firmware_slots.core import ed25519 as E
    zi = pow(P[2], E._P - 2, E._P)
    x, y = P[0] * zi % E._P, P[1] * zi % E._P
    return (y | (x & 1) << 255).to_bytes(32, "little")


def _sign(seed, msg):
    # RFC 8032 Ed25519 signing, test-only: the device carries verification alone
    from firmware_slots.core import ed25519 as E
    from firmware_slots.core.sha2 import sha512
    h = sha512(seed).digest()
    a = int.from_bytes(h[:32], "little") & ((1 << 254) - 8) | (1 << 254)
    B = (E._BX, E._BY, 1, E._BX * E._BY % E._P)
    A = _enc(_mul(a, B))
    r = int.from_bytes(sha512(h[32:] + msg).digest(), "little") % E._L
    R = _enc(_mul(r, B))
    k = int.from_bytes(sha512(R + A + msg).digest(), "little") % E._L
    return A, R + ((r + k * a) % E._L).to_bytes(32, "little")


SEED = bytes(range(32))
SPKI_ED25519 = b"\x30\x2a\x30\x05\x06\x03\x2b\x65\x70\x03\x21\x00"


def signed(payload, counter):
    """An MCUboot image (32-byte header) of `payload`, SEC_CNT `counter`, signed with SEED."""
    import struct
    hdr = struct.pack("<IIHHIIBBHII", 0x96F3B83D, 0, 32, 12, len(payload), 0, 1, 0, 0, 0, 0)
    prot = struct.pack("<HHHHI", 0x6908, 12, 0x50, 4, counter)
    body = hdr + payload + prot
    digest = hashlib.sha256(body).digest()
    A, sig = _sign(SEED, digest)
    kh = hashlib.sha256(SPKI_ED25519 + A).digest()
    tlv = struct.pack("<HHHH", 0x6907, 4 + 36 + 36 + 68, 0x10, 32) + digest
    tlv += struct.pack("<HH", 0x01, 32) + kh + struct.pack("<HH", 0x24, 64) + sig
    return body + tlv, (("ed25519", kh, A),)


class Geometry:
    def __init__(self, name, sector, write_size, journal_blocks, slot_blocks, image_size, erased=0xFF):
        self.erased = erased  # what an erased byte reads: 0xFF (most NOR) or 0x00
        self.name = name
        self.sector = sector
        self.write_size = write_size
        self.journal_blocks = journal_blocks
        self.slot_blocks = slot_blocks
        self.image_size = image_size


GEOMETRIES = (
    Geometry("spi-nor-4k-1b", 4096, 1, 2, 4, 10 * 1024 + 100),
    Geometry("nor-4k-16b", 4096, 16, 2, 4, 10 * 1024 + 40),
    Geometry("stm32f4-128k", 131072, 4, 2, 1, 6 * 1024 + 8),
    Geometry("nor-4k-16b-erased00", 4096, 16, 2, 4, 10 * 1024 + 40, erased=0x00),
)
# 512-byte erase blocks (stm32 pyb.Flash): journal ring sectors of 8 blocks, so every wrap
# erases 8 blocks before the snapshot lands, and records cross block boundaries inside a
# sector (tests/test_device_core.py sweeps it on its own: small images keep it quick)
GEOMETRY_512 = Geometry("nor-512b-ring-of-8", 512, 4, 16, 12, 5000)


class Rig:
    def __init__(self, g, fill, trust=False, big=0, worn=False):
        self.g = g
        self.keys = ()
        self.v1 = image(1, g.image_size)
        self.v2 = image(2, g.image_size - 300)
        self.v3 = image(3, g.image_size - 17)
        if trust:  # the same payloads, signed, with room for the container
            self.v1, self.keys = signed(self.v1[:-300], 1)
            self.v2 = signed(self.v2[:-300], 3)[0]
            self.v3 = signed(self.v3[:-300], 2)[0]
        self.known = {}
        for v in (self.v1, self.v2, self.v3):
            self.known[hashlib.sha256(v).digest()] = v
        self.flash = NorFlash(g.sector, g.journal_blocks + 2 * g.slot_blocks, g.write_size, erased=g.erased)
        m = self.manager()
        self.install(m, 0, self.v1)
        m.set_boot(0)
        m.boot()
        m.confirm()
        if big:  # a larger state: snapshots span several erase blocks of a small-block journal
            m.meta.agent_update({"c": {1: {"e": "p" * big}}})
        k = 0
        j = m.meta.journal
        if worn:  # wrap the ring once first: the sector the cycle wraps into holds old records
            head = j.head
            while j.head == head:
                m.set_alias(1, "worn%d" % (k % 10))
                k += 1
        # park the journal head `fill` bytes short of a wrap so the cycle wraps it
        if fill is not None:
            while j.room() > fill and j.deltas < MAX_DELTAS - 3:
                m.set_alias(1, "fill%d" % (k % 10))
                k += 1
        self.base = self.flash.snapshot()

    def manager(self):
        j, s = carve(self.flash, self.g.journal_blocks, self.g.slot_blocks, 2)
        return SlotManager(s, j, self.g.write_size, keys=self.keys)

    def restore(self):
        self.flash.store.mem[:] = self.base
        self.flash.power_on()

    def install(self, m, i, img, checkpoint=True):
        w = m.install(i, size=len(img), algorithm="SHA-256", checksum=hashlib.sha256(img).digest())
        self.feed(w, img, checkpoint)
        return w.finish(name="app", version="v%d" % img[0])

    def feed(self, w, img, checkpoint=True):
        pos = w.offset
        last = pos
        while pos < len(img):
            w.write(img[pos:pos + CHUNK])
            pos += CHUNK
            if checkpoint and w.offset // 4096 > last // 4096:  # mid-sector on 128 KiB flash
                w.checkpoint()
                last = w.offset

    def cycle(self, boots):
        """The swept cycle. `boots` collects (ops before, ops after, old, new) of set_boot."""
        f = self.flash
        m = self.manager()
        m.boot()
        self.install(m, 1, self.v2)
        boots.append([f.ops, None, 0, 1])
        m.set_boot(1)
        boots[-1][1] = f.ops
        for _ in range(4):  # three trials, then the fallback boot
            m = self.manager()
            m.boot()
        self.install(m, 1, self.v3)
        boots.append([f.ops, None, 1, 1])
        m.set_boot(1)
        boots[-1][1] = f.ops
        m = self.manager()
        m.boot()
        m.confirm()
        m = self.manager()
        m.boot()


def allowed_boot(boots, at, kind):
    vals = [0]
    for (s, e, old, new) in boots:
        if at < s:
            break
        if e is None:  # the cut came inside this set_boot
            vals = [old, new]
        elif at >= e or (kind == "after" and at == e - 1):
            vals = [new]
        else:
            vals = [old, new]
    return vals


def check(rig, at, kind, boots):
    """Reboot after a cut; returns None if healthy, else a one-line complaint."""
    f = rig.flash
    f.power_on()
    try:
        m = rig.manager()
    except Exception as e:
        return "journal did not recover: %r" % e
    b = m.boot_slot
    if b not in allowed_boot(boots, at, kind):
        return "BootFirmwareImage is %d, allowed %r" % (b, allowed_boot(boots, at, kind))
    g = rig.g
    slot0 = f.read_raw(g.journal_blocks * g.sector, len(rig.v1))
    if slot0 != rig.v1:
        return "slot 0 (last-known-good v1) changed"
    k = m.lkg
    if k not in (0, 1) or not m.verify(k):
        return "last-known-good slot %r does not verify" % k
    if rig.keys and m.min_counter() != (2 if k == 1 else 1):
        return "anti-rollback minimum %d with last-known-good slot %d" % (m.min_counter(), k)
    d = m.boot()
    if d.slot is None:
        return "bricked: " + d.reason
    h = m.hash_slot(d.slot, m.info(d.slot)["Length"])
    if h not in rig.known:
        return "booted slot %d holds unknown bytes" % d.slot
    # still writable: a metadata change survives a reboot
    m.set_alias(0, "after-cut")
    if rig.manager().info(0)["Alias"] != "after-cut":
        return "metadata write after the cut did not persist"
    # an interrupted download resumes to the right bytes
    m = rig.manager()
    m.boot()
    if m.status_code(1) == DOWNLOADING:
        w = m.resume(1)
        img = rig.v2 if w.size == len(rig.v2) else rig.v3
        rig.feed(w, img)
        info = w.finish()
        if m.hash_slot(1, info["Length"]) != hashlib.sha256(img).digest():
            return "resumed download produced wrong bytes"
    return None


def sweep(g, fill=None, stride=1, limit=None, trust=False, big=0, worn=False):
    """Run every cut point of one geometry; returns (cut points tried, [failures]).
    big: bytes of extra state (so snapshots are that much larger); worn: the ring wrapped
    once before the cycle."""
    rig = Rig(g, fill, trust, big, worn)
    ops = _record(rig)
    tried = 0
    failures = []
    for at in range(0, len(ops), stride):
        op = ops[at][0]
        kinds = ("before", "after", "torn") if op == "program" else ("before", "after", "half")
        for kind in kinds:
            rig.restore()
            rig.flash.arm(FaultPlan(at, kind, seed=at * 7 + len(kind)))
            boots = []
            try:
                rig.cycle(boots)
                return tried, ["cut %d %s never fired" % (at, kind)]
            except PowerCut:
                pass
            tried += 1
            why = check(rig, at, kind, boots)
            if why:
                failures.append("%s%s fill=%r big=%d cut %d %s (%s): %s" % (
                    g.name, " trust" if trust else "", fill, big, at, kind, op, why))
            if limit and tried >= limit:
                return tried, failures
    return tried, failures


def run_all(stride=1, names=None):
    total = 0
    fails = []
    for g in GEOMETRIES:
        if names and g.name not in names:
            continue
        for fill in (None, 120):
            n, f = sweep(g, fill, stride)
            print("sweep", g.name, "fill", fill, "cut_points", n, "failures", len(f))
            total += n
            fails += f
    g = GEOMETRIES[0]
    if not names or g.name in names:  # signature checks and the counter update, one geometry
        n, f = sweep(g, None, stride, trust=True)
        print("sweep", g.name, "trust", "cut_points", n, "failures", len(f))
        total += n
        fails += f
    return total, fails


def ops_of(g, fill=None, big=0, worn=False):
    """The mutating flash operations of one uncut cycle: [(kind, block)]."""
    return _record(Rig(g, fill, False, big, worn))


def _record(rig):
    """The mutating flash operations of one uncut cycle of `rig`, from its restored start."""
    rig.restore()
    log = []
    rig.flash.log = log
    rig.cycle([])
    rig.flash.log = None
    return log


# (fill, big, worn): no wrap; a wrap into a sector of old records; the same with a 3-block snapshot
CASES_512 = ((None, 0, False), (120, 0, True), (120, 1200, True))


def run_512(stride=1):
    """The 512-byte-block sweep: every cut point of each case; (cut points, [failures])."""
    total = 0
    fails = []
    for fill, big, worn in CASES_512:
        n, f = sweep(GEOMETRY_512, fill, stride, big=big, worn=worn)
        print("sweep", GEOMETRY_512.name, "fill", fill, "big", big, "worn", worn, "cut_points", n, "failures", len(f))
        total += n
        fails += f
    return total, fails


if __name__ == "__main__":
    n, f = run_all()
    for x in f[:20]:
        print("FAIL", x)
    print("cut_points_tested", n, "bricked_or_failed", len(f))
