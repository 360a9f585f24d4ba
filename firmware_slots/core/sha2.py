"""Pure-Python SHA-2 (FIPS 180-4) for interpreters whose hashlib lacks it.

MicroPython's hashlib usually offers only sha256 (and md5/sha1); TR-181 Download()
may ask for SHA-224, SHA-384 or SHA-512. `hashes.new()` prefers hashlib and falls back
here. Objects follow hashlib: `sha512(data=b"")`, `update(data)`, `digest()`,
`digest_size`, `block_size`, `name`, `copy()`.

`digest()` does not finalise the object (CPython semantics): it pads a copy of the
state, so `update()` may continue afterwards. MicroPython's own hashlib objects cannot
be used after digest(); code that must run on both should not rely on either.

Streaming: at most one block (64 or 128 bytes) is buffered; full blocks are compressed
straight from the caller's buffer through a memoryview.

What the device pays: everything is 32-bit arithmetic. SHA-384/512 keep each 64-bit
word as two 32-bit halves, which on a 64-bit port are small ints that never allocate
(measured about 3x faster than 64-bit words, which are heap big ints there). On 32-bit
MCUs small ints hold only 31 bits, so values >= 2**30 become heap big ints in either
scheme and throughput drops well below the desktop figures of bench/hashes.py. Fine for
metadata and checksum fallbacks; slow for megabyte-sized images on a microcontroller.
Code size is the price of staying pure: about 6 KB of bytecode for the four classes.
"""

import struct

_M32 = 0xFFFFFFFF

_K256 = (
    0x428A2F98, 0x71374491, 0xB5C0FBCF, 0xE9B5DBA5, 0x3956C25B, 0x59F111F1, 0x923F82A4, 0xAB1C5ED5,
    0xD807AA98, 0x12835B01, 0x243185BE, 0x550C7DC3, 0x72BE5D74, 0x80DEB1FE, 0x9BDC06A7, 0xC19BF174,
    0xE49B69C1, 0xEFBE4786, 0x0FC19DC6, 0x240CA1CC, 0x2DE92C6F, 0x4A7484AA, 0x5CB0A9DC, 0x76F988DA,
    0x983E5152, 0xA831C66D, 0xB00327C8, 0xBF597FC7, 0xC6E00BF3, 0xD5A79147, 0x06CA6351, 0x14292967,
    0x27B70A85, 0x2E1B2138, 0x4D2C6DFC, 0x53380D13, 0x650A7354, 0x766A0ABB, 0x81C2C92E, 0x92722C85,
    0xA2BFE8A1, 0xA81A664B, 0xC24B8B70, 0xC76C51A3, 0xD192E819, 0xD6990624, 0xF40E3585, 0x106AA070,
    0x19A4C116, 0x1E376C08, 0x2748774C, 0x34B0BCB5, 0x391C0CB3, 0x4ED8AA4A, 0x5B9CCA4F, 0x682E6FF3,
    0x748F82EE, 0x78A5636F, 0x84C87814, 0x8CC70208, 0x90BEFFFA, 0xA4506CEB, 0xBEF9A3F7, 0xC67178F2,
)

# SHA-512 round constants as (high, low) 32-bit halves, see _compress512.
_K512 = (
    0x428A2F98, 0xD728AE22, 0x71374491, 0x23EF65CD, 0xB5C0FBCF, 0xEC4D3B2F, 0xE9B5DBA5, 0x8189DBBC,
    0x3956C25B, 0xF348B538, 0x59F111F1, 0xB605D019, 0x923F82A4, 0xAF194F9B, 0xAB1C5ED5, 0xDA6D8118,
    0xD807AA98, 0xA3030242, 0x12835B01, 0x45706FBE, 0x243185BE, 0x4EE4B28C, 0x550C7DC3, 0xD5FFB4E2,
    0x72BE5D74, 0xF27B896F, 0x80DEB1FE, 0x3B1696B1, 0x9BDC06A7, 0x25C71235, 0xC19BF174, 0xCF692694,
    0xE49B69C1, 0x9EF14AD2, 0xEFBE4786, 0x384F25E3, 0x0FC19DC6, 0x8B8CD5B5, 0x240CA1CC, 0x77AC9C65,
    0x2DE92C6F, 0x592B0275, 0x4A7484AA, 0x6EA6E483, 0x5CB0A9DC, 0xBD41FBD4, 0x76F988DA, 0x831153B5,
    0x983E5152, 0xEE66DFAB, 0xA831C66D, 0x2DB43210, 0xB00327C8, 0x98FB213F, 0xBF597FC7, 0xBEEF0EE4,
    0xC6E00BF3, 0x3DA88FC2, 0xD5A79147, 0x930AA725, 0x06CA6351, 0xE003826F, 0x14292967, 0x0A0E6E70,
    0x27B70A85, 0x46D22FFC, 0x2E1B2138, 0x5C26C926, 0x4D2C6DFC, 0x5AC42AED, 0x53380D13, 0x9D95B3DF,
    0x650A7354, 0x8BAF63DE, 0x766A0ABB, 0x3C77B2A8, 0x81C2C92E, 0x47EDAEE6, 0x92722C85, 0x1482353B,
    0xA2BFE8A1, 0x4CF10364, 0xA81A664B, 0xBC423001, 0xC24B8B70, 0xD0F89791, 0xC76C51A3, 0x0654BE30,
    0xD192E819, 0xD6EF5218, 0xD6990624, 0x5565A910, 0xF40E3585, 0x5771202A, 0x106AA070, 0x32BBD1B8,
    0x19A4C116, 0xB8D2D0C8, 0x1E376C08, 0x5141AB53, 0x2748774C, 0xDF8EEB99, 0x34B0BCB5, 0xE19B48A8,
    0x391C0CB3, 0xC5C95A63, 0x4ED8AA4A, 0xE3418ACB, 0x5B9CCA4F, 0x7763E373, 0x682E6FF3, 0xD6B2B8A3,
    0x748F82EE, 0x5DEFB2FC, 0x78A5636F, 0x43172F60, 0x84C87814, 0xA1F0AB72, 0x8CC70208, 0x1A6439EC,
    0x90BEFFFA, 0x23631E28, 0xA4506CEB, 0xDE82BDE9, 0xBEF9A3F7, 0xB2C67915, 0xC67178F2, 0xE372532B,
    0xCA273ECE, 0xEA26619C, 0xD186B8C7, 0x21C0C207, 0xEADA7DD6, 0xCDE0EB1E, 0xF57D4F7F, 0xEE6ED178,
    0x06F067AA, 0x72176FBA, 0x0A637DC5, 0xA2C898A6, 0x113F9804, 0xBEF90DAE, 0x1B710B35, 0x131C471B,
    0x28DB77F5, 0x23047D84, 0x32CAAB7B, 0x40C72493, 0x3C9EBE0A, 0x15C9BEBC, 0x431D67C4, 0x9C100D4C,
    0x4CC5D4BE, 0xCB3E42B6, 0x597F299C, 0xFC657E2A, 0x5FCB6FAB, 0x3AD6FAEC, 0x6C44198C, 0x4A475817,
)


def _compress256(state, w, buf, off):
    # One 64-byte block at buf[off:]. The rotations are written as (x >> n) ^ (x << 32-n)
    # with one mask at the end: the two halves never overlap, and one mask is cheaper.
    w[0:16] = struct.unpack_from(">16I", buf, off)
    M = _M32
    for t in range(16, 64):
        x = w[t - 15]
        y = w[t - 2]
        w[t] = (
            w[t - 16]
            + w[t - 7]
            + (((x >> 7) ^ (x >> 18) ^ (x >> 3) ^ (x << 25) ^ (x << 14)) & M)
            + (((y >> 17) ^ (y >> 19) ^ (y >> 10) ^ (y << 15) ^ (y << 13)) & M)
        ) & M
    K = _K256
    a, b, c, d, e, f, g, h = state
    for t in range(64):
        t1 = (
            h
            + (((e >> 6) ^ (e >> 11) ^ (e >> 25) ^ (e << 26) ^ (e << 21) ^ (e << 7)) & M)
            + (g ^ (e & (f ^ g)))
            + K[t]
            + w[t]
        )
        t2 = (((a >> 2) ^ (a >> 13) ^ (a >> 22) ^ (a << 30) ^ (a << 19) ^ (a << 10)) & M) + (
            (a & b) | (c & (a | b))
        )
        h = g
        g = f
        f = e
        e = (d + t1) & M
        d = c
        c = b
        b = a
        a = (t1 + t2) & M
    state[0] = (state[0] + a) & M
    state[1] = (state[1] + b) & M
    state[2] = (state[2] + c) & M
    state[3] = (state[3] + d) & M
    state[4] = (state[4] + e) & M
    state[5] = (state[5] + f) & M
    state[6] = (state[6] + g) & M
    state[7] = (state[7] + h) & M


def _compress512(st, w, buf, off):
    # One 128-byte block at buf[off:]. Every 64-bit word is kept as two 32-bit halves
    # (st and w hold hi, lo, hi, lo, ...): on a 64-bit MicroPython port halves are small
    # ints and never allocate, which measured about 3x faster than 64-bit big-int words.
    # Every intermediate stays below 2**62, the small-int limit there (hence the
    # `(x & 1) << 31`). Sums are left unmasked; the low half's carry is added once.
    w[0:32] = struct.unpack_from(">32I", buf, off)
    M = _M32
    for t in range(32, 160, 2):
        xh = w[t - 30]  # word t/2 - 15
        xl = w[t - 29]
        yh = w[t - 4]  # word t/2 - 2
        yl = w[t - 3]
        # sigma0 = rotr1 ^ rotr8 ^ shr7, sigma1 = rotr19 ^ rotr61 ^ shr6
        lo = (
            w[t - 31]
            + w[t - 13]
            + (((xl >> 1) ^ ((xh & 1) << 31) ^ (xl >> 8) ^ (xh << 24) ^ (xl >> 7) ^ (xh << 25)) & M)
            + (((yl >> 19) ^ (yh << 13) ^ (yh >> 29) ^ (yl << 3) ^ (yl >> 6) ^ (yh << 26)) & M)
        )
        w[t + 1] = lo & M
        w[t] = (
            w[t - 32]
            + w[t - 14]
            + (((xh >> 1) ^ ((xl & 1) << 31) ^ (xh >> 8) ^ (xl << 24) ^ (xh >> 7)) & M)
            + (((yh >> 19) ^ (yl << 13) ^ (yl >> 29) ^ (yh << 3) ^ (yh >> 6)) & M)
            + (lo >> 32)
        ) & M
    K = _K512
    ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl = st
    for t in range(0, 160, 2):
        # Sigma1(e) = rotr14 ^ rotr18 ^ rotr41, Sigma0(a) = rotr28 ^ rotr34 ^ rotr39
        t1l = (
            hl
            + (((el >> 14) ^ (eh << 18) ^ (el >> 18) ^ (eh << 14) ^ (eh >> 9) ^ (el << 23)) & M)
            + (gl ^ (el & (fl ^ gl)))
            + K[t + 1]
            + w[t + 1]
        )
        t1h = (
            hh
            + (((eh >> 14) ^ (el << 18) ^ (eh >> 18) ^ (el << 14) ^ (el >> 9) ^ (eh << 23)) & M)
            + (gh ^ (eh & (fh ^ gh)))
            + K[t]
            + w[t]
        )
        t2l = (((al >> 28) ^ (ah << 4) ^ (ah >> 2) ^ (al << 30) ^ (ah >> 7) ^ (al << 25)) & M) + (
            (al & bl) | (cl & (al | bl))
        )
        t2h = (((ah >> 28) ^ (al << 4) ^ (al >> 2) ^ (ah << 30) ^ (al >> 7) ^ (ah << 25)) & M) + (
            (ah & bh) | (ch & (ah | bh))
        )
        hh = gh
        hl = gl
        gh = fh
        gl = fl
        fh = eh
        fl = el
        x = dl + t1l
        eh = (dh + t1h + (x >> 32)) & M
        el = x & M
        dh = ch
        dl = cl
        ch = bh
        cl = bl
        bh = ah
        bl = al
        x = t1l + t2l
        ah = (t1h + t2h + (x >> 32)) & M
        al = x & M
    v = (ah, al, bh, bl, ch, cl, dh, dl, eh, el, fh, fl, gh, gl, hh, hl)
    for i in range(0, 16, 2):
        x = st[i + 1] + v[i + 1]
        st[i] = (st[i] + v[i] + (x >> 32)) & M
        st[i + 1] = x & M


class _SHA2:
    # Subclasses set: name, digest_size, block_size, _iv, _compress, _nw (schedule
    # length in list items), _fmt (struct format of the state).

    def __init__(self, data=None):
        self._h = list(self._iv)
        self._w = [0] * self._nw
        self._buf = bytearray(self.block_size)
        self._n = 0  # bytes currently buffered
        self._len = 0  # total bytes hashed
        if data is not None:
            self.update(data)

    def update(self, data):
        mv = memoryview(data)
        n = len(mv)
        self._len += n
        bs = self.block_size
        buf = self._buf
        h = self._h
        w = self._w
        compress = self._compress
        pos = 0
        fill = self._n
        if fill:
            take = min(bs - fill, n)
            buf[fill : fill + take] = mv[:take]
            fill += take
            pos = take
            if fill < bs:
                self._n = fill
                return
            compress(h, w, buf, 0)
        end = n - bs
        while pos <= end:
            compress(h, w, mv, pos)
            pos += bs
        rest = n - pos
        if rest:
            buf[:rest] = mv[pos:]
        self._n = rest

    def _final(self):
        # Pad copies so the object stays usable (CPython semantics).
        h = list(self._h)
        bs = self.block_size
        lenbytes = bs >> 3  # 8 for SHA-256, 16 for SHA-512
        buf = bytearray(self._buf)
        n = self._n
        buf[n] = 0x80
        for i in range(n + 1, bs):
            buf[i] = 0
        if n + 1 > bs - lenbytes:
            self._compress(h, self._w, buf, 0)
            for i in range(bs):
                buf[i] = 0
        bits = self._len * 8
        buf[bs - 8 : bs] = struct.pack(">Q", bits & 0xFFFFFFFFFFFFFFFF)
        if lenbytes == 16:
            buf[bs - 16 : bs - 8] = struct.pack(">Q", bits >> 64)
        self._compress(h, self._w, buf, 0)
        return h

    def digest(self):
        h = self._final()
        return struct.pack(self._fmt, *h)[: self.digest_size]

    def hexdigest(self):
        return "".join("%02x" % b for b in self.digest())

    def copy(self):
        c = self.__class__()
        c._h = list(self._h)
        c._buf[:] = self._buf
        c._n = self._n
        c._len = self._len
        return c


class _SHA256Family(_SHA2):
    block_size = 64
    _nw = 64
    _fmt = ">8I"

    def _compress(self, h, w, buf, off):
        _compress256(h, w, buf, off)


class _SHA512Family(_SHA2):
    block_size = 128
    _nw = 160  # 80 words as halves
    _fmt = ">16I"

    def _compress(self, h, w, buf, off):
        _compress512(h, w, buf, off)


class sha224(_SHA256Family):
    name = "sha224"
    digest_size = 28
    _iv = (0xC1059ED8, 0x367CD507, 0x3070DD17, 0xF70E5939, 0xFFC00B31, 0x68581511, 0x64F98FA7, 0xBEFA4FA4)


class sha256(_SHA256Family):
    # For ports without hashlib.sha256 and for cross-checking the pure code.
    name = "sha256"
    digest_size = 32
    _iv = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)


class sha384(_SHA512Family):
    name = "sha384"
    digest_size = 48
    _iv = (  # (high, low) halves
        0xCBBB9D5D, 0xC1059ED8, 0x629A292A, 0x367CD507,
        0x9159015A, 0x3070DD17, 0x152FECD8, 0xF70E5939,
        0x67332667, 0xFFC00B31, 0x8EB44A87, 0x68581511,
        0xDB0C2E0D, 0x64F98FA7, 0x47B5481D, 0xBEFA4FA4,
    )


class sha512(_SHA512Family):
    name = "sha512"
    digest_size = 64
    _iv = (  # (high, low) halves
        0x6A09E667, 0xF3BCC908, 0xBB67AE85, 0x84CAA73B,
        0x3C6EF372, 0xFE94F82B, 0xA54FF53A, 0x5F1D36F1,
        0x510E527F, 0xADE682D1, 0x9B05688C, 0x2B3E6C1F,
        0x1F83D9AB, 0xFB41BD6B, 0x5BE0CD19, 0x137E2179,
    )
