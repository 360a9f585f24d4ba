"""Ed25519 signature verification (RFC 8032, section 5.1.7) in pure MicroPython big integers.

Only verification. imgtool 2.x signs the image's 32-byte SHA-256 digest as the Ed25519
message ("sign the digest", not --pure), so the message here is that digest and the
SHA-512 of RFC 8032 runs over R || A || digest: 96 bytes, one pass of the caller's
sha512 (MicroPython's hashlib has none; firmware_slots' sha2 does).

Method: [S]B + [k](-A) in one pass (Shamir's trick) over extended twisted-Edwards
coordinates (add-2008-hwcd-3, unified, so it also doubles), the result encoded and
compared with R (cofactorless, like OpenSSL and libsodium). Four field inversions or
square roots in all (decoding A and R, encoding the result).

| check                          | outcome                                   |
|--------------------------------|-------------------------------------------|
| A or R not a valid encoding    | ValueError "... not a point on Ed25519"   |
| S >= L                         | ValueError "Ed25519 signature S >= L"     |
| equation fails                 | verify() returns False                    |
"""

_P = 2 ** 255 - 19
_L = 2 ** 252 + 27742317777372353535851937790883648493
_D = 37095705934669439343138083508754565189542113879843219016388785533085940283555
_I = 19681161376707505956807079304988542015446066515923890162744021073123829784752  # sqrt(-1)
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202


def point(s, what="public key"):
    """Extended coordinates of a 32-byte encoding; ValueError if it is not a curve point."""
    if len(s) != 32:
        raise ValueError("Ed25519 %s must be 32 bytes" % what)
    y = int.from_bytes(s, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    p = _P
    if y >= p:
        raise ValueError("Ed25519 %s is not a point on Ed25519" % what)
    u = (y * y - 1) % p
    v = (_D * y * y + 1) % p
    x = u * pow(v, 3, p) * pow(u * pow(v, 7, p), (p - 5) // 8, p) % p
    vx2 = v * x * x % p
    if vx2 != u:
        if vx2 != p - u:
            raise ValueError("Ed25519 %s is not a point on Ed25519" % what)
        x = x * _I % p
    if x == 0 and sign:
        raise ValueError("Ed25519 %s is not a point on Ed25519" % what)
    if x & 1 != sign:
        x = p - x
    return (x, y, 1, x * y % p)


def _add(P, Q):
    p = _P
    X1, Y1, Z1, T1 = P
    X2, Y2, Z2, T2 = Q
    a = (Y1 - X1) * (Y2 - X2) % p
    b = (Y1 + X1) * (Y2 + X2) % p
    c = 2 * _D * T1 * T2 % p
    d = 2 * Z1 * Z2 % p
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % p, g * h % p, f * g % p, e * h % p)


def verify(A, sig, msg, sha512):
    """True when 64-byte `sig` is an Ed25519 signature of `msg` under 32-byte key `A`.

    `sha512` is a constructor like hashlib.sha512. Malformed input raises ValueError;
    a well-formed signature that does not verify returns False.
    """
    if len(sig) != 64:
        raise ValueError("Ed25519 signature must be 64 bytes")
    nA = point(A)
    point(sig[:32], "signature R")  # R must decode, as RFC 8032 requires
    S = int.from_bytes(sig[32:], "little")
    if S >= _L:
        raise ValueError("Ed25519 signature S >= L")
    h = sha512()
    h.update(sig[:32])
    h.update(A)
    h.update(msg)
    k = int.from_bytes(h.digest(), "little") % _L
    p = _P
    nA = ((p - nA[0]) % p, nA[1], 1, (p - nA[3]) % p)  # -A
    B = (_BX, _BY, 1, _BX * _BY % p)
    BA = _add(B, nA)
    R = (0, 1, 1, 0)
    for i in range(252, -1, -1):  # S, k < L < 2**253
        R = _add(R, R)
        b1 = (S >> i) & 1
        b2 = (k >> i) & 1
        if b1 and b2:
            R = _add(R, BA)
        elif b1:
            R = _add(R, B)
        elif b2:
            R = _add(R, nA)
    zi = pow(R[2], p - 2, p)
    x = R[0] * zi % p
    y = R[1] * zi % p
    return (y | (x & 1) << 255).to_bytes(32, "little") == bytes(sig[:32])
