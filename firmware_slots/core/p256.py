"""ECDSA P-256 (secp256r1) signature verification in pure MicroPython big integers.

Only verification, only what MCUboot images carry: the message is the image's SHA-256
digest (imgtool's ECDSASIG TLV is ECDSA-SHA256 over the hashed region, i.e. over this
digest), the signature is DER `SEQUENCE { INTEGER r, INTEGER s }`, the key an
uncompressed point (x, y). No secrets are handled, so nothing needs constant time.

Method: u1*G + u2*Q in one pass (Shamir's trick) over Jacobian coordinates with a = -3
(dbl-2001-b, madd-2004-hmv), the three addends G, Q, G+Q kept affine; one field
inversion at the end (pow(z, p-2, p)). About 256 doublings and ~190 mixed additions.

What the device pays: each field operation allocates short-lived big ints (~40 bytes
each), so the peak heap is a few KB of garbage the GC reclaims; bench/signature.py
measures time and peak on the unix port. Code: three functions and four constants.

| check                               | ValueError message                  |
|-------------------------------------|-------------------------------------|
| DER shape, lengths, sign bits       | "ECDSA signature is not DER ..."    |
| 1 <= r, s < n                       | "ECDSA signature r/s out of range"  |
| Q on the curve (public_key())       | "P-256 public key not on the curve" |
"""

_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_B = 0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B
_G = (0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
      0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5)


def public_key(point):
    """(x, y) from a 65-byte uncompressed SEC1 point 04||x||y; ValueError if not on the curve."""
    if len(point) != 65 or point[0] != 4:
        raise ValueError("P-256 public key must be a 65-byte uncompressed point")
    x = int.from_bytes(point[1:33], "big")
    y = int.from_bytes(point[33:], "big")
    p = _P
    if x >= p or y >= p or (y * y - (x * x * x - 3 * x + _B)) % p:
        raise ValueError("P-256 public key not on the curve")
    return (x, y)


def _der(sig):
    # strict DER, but imgtool's --pad-sig zero padding after the SEQUENCE is tolerated
    bad = ValueError("ECDSA signature is not DER SEQUENCE{INTEGER r, INTEGER s}")
    if len(sig) < 8 or sig[0] != 0x30 or sig[1] + 2 > len(sig) or sig[1] > 70:
        raise bad
    for b in sig[sig[1] + 2:]:
        if b:
            raise bad
    end = sig[1] + 2
    o = 2
    out = []
    for _ in (0, 1):
        if o + 2 > end or sig[o] != 2:
            raise bad
        n = sig[o + 1]
        o += 2
        if n == 0 or n > 33 or o + n > end or sig[o] & 0x80 or (n > 1 and sig[o] == 0 and not sig[o + 1] & 0x80):
            raise bad
        out.append(int.from_bytes(sig[o:o + n], "big"))
        o += n
    if o != end:
        raise bad
    return out


def _madd(P, x2, y2):
    # Jacobian P + affine (x2, y2); Z == 0 is the point at infinity
    p = _P
    X1, Y1, Z1 = P
    if not Z1:
        return (x2, y2, 1)
    t1 = Z1 * Z1 % p
    t2 = (t1 * Z1 % p) * y2 % p - Y1
    t1 = t1 * x2 % p - X1
    if not t1 % p:
        if t2 % p:
            return (0, 1, 0)
        return _dbl(P)
    Z3 = Z1 * t1 % p
    t3 = t1 * t1 % p
    t4 = t3 * t1 % p
    t3 = t3 * X1 % p
    X3 = (t2 * t2 - 2 * t3 - t4) % p
    return (X3, ((t3 - X3) * t2 - t4 * Y1) % p, Z3)


def _dbl(P):
    p = _P
    X1, Y1, Z1 = P
    if not Z1 or not Y1:
        return (0, 1, 0)
    d = Z1 * Z1 % p
    g = Y1 * Y1 % p
    b = X1 * g % p
    a = 3 * (X1 - d) * (X1 + d) % p
    X3 = (a * a - 8 * b) % p
    Z3 = ((Y1 + Z1) * (Y1 + Z1) - g - d) % p
    return (X3, (a * (4 * b - X3) - 8 * g * g) % p, Z3)


def verify(Q, digest, sig):
    """True when DER `sig` is a valid ECDSA-SHA256 signature of `digest` (32 bytes) by Q.

    Q is the (x, y) of public_key(). A malformed signature raises ValueError; a
    well-formed one that does not verify returns False.
    """
    r, s = _der(sig)
    n = _N
    if not (0 < r < n and 0 < s < n):
        raise ValueError("ECDSA signature r/s out of range")
    e = int.from_bytes(digest, "big") % n
    w = pow(s, n - 2, n)
    u1 = e * w % n
    u2 = r * w % n
    p = _P
    gx, gy = _G
    qx, qy = Q
    S = _madd((gx, gy, 1), qx, qy)  # G + Q, made affine once for the mixed additions
    if not S[2]:
        sxy = None
    else:
        zi = pow(S[2], p - 2, p)
        sxy = (S[0] * zi * zi % p, S[1] * zi * zi * zi % p)
    R = (0, 1, 0)
    for i in range(255, -1, -1):  # MicroPython ints have no bit_length(); leading zeros cost little
        R = _dbl(R)
        b1 = (u1 >> i) & 1
        b2 = (u2 >> i) & 1
        if b1 and b2:
            if sxy is None:
                continue  # G + Q is infinity: adds nothing
            R = _madd(R, sxy[0], sxy[1])
        elif b1:
            R = _madd(R, gx, gy)
        elif b2:
            R = _madd(R, qx, qy)
    if not R[2]:
        return False
    zi = pow(R[2], p - 2, p)
    return R[0] * zi * zi % p % n == r
