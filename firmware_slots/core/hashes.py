"""Hash objects for the TR-181 Download() CheckSumAlgorithm names.

`new("SHA-256")` returns the interpreter's hashlib object when it has one (CPython has
all five; MicroPython usually only sha1 and sha256) and the pure `sha2` fallback
otherwise, which is imported only when first needed (it costs ~6 KB of bytecode).

Finalisation differs by backend: MicroPython hashlib objects are unusable after
digest(), CPython's and sha2's are not. Call digest() (or hexdigest()) once, at the end.
"""

import binascii

try:
    import hashlib
except ImportError:  # a port built without it: everything comes from sha2
    hashlib = None

ALGORITHMS = ("SHA-1", "SHA-224", "SHA-256", "SHA-384", "SHA-512")

# TR-181 name -> (hashlib attribute, digest size in bytes)
_TABLE = {
    "SHA-1": ("sha1", 20),
    "SHA-224": ("sha224", 28),
    "SHA-256": ("sha256", 32),
    "SHA-384": ("sha384", 48),
    "SHA-512": ("sha512", 64),
}


class UnsupportedAlgorithm(ValueError):
    """A CheckSumAlgorithm name outside ALGORITHMS."""


def _entry(algorithm):
    e = _TABLE.get(algorithm) if isinstance(algorithm, str) else None
    if e is None:
        raise UnsupportedAlgorithm(
            "unsupported CheckSumAlgorithm %r; supported: %s" % (algorithm, ", ".join(ALGORITHMS))
        )
    return e


def backend(algorithm):
    """'hashlib' or 'sha2': where new(algorithm) gets its object on this interpreter."""
    name = _entry(algorithm)[0]
    return "hashlib" if getattr(hashlib, name, None) is not None else "sha2"


def new(algorithm, data=None):
    """A fresh hash object for a TR-181 name such as 'SHA-256' (exact spelling)."""
    name = _entry(algorithm)[0]
    ctor = getattr(hashlib, name, None)
    if ctor is None:
        # SHA-1 has no pure fallback: every MicroPython hashlib that exists has it.
        from firmware_slots.core import sha2

        ctor = getattr(sha2, name, None)
        if ctor is None:
            raise UnsupportedAlgorithm("%s is not available on this interpreter" % algorithm)
    return ctor() if data is None else ctor(data)


def digest_size(algorithm):
    """Digest length in bytes for a TR-181 name."""
    return _entry(algorithm)[1]


def hexdigest(h):
    """Lower-case hex digest of any hash object (MicroPython's lack hexdigest())."""
    return binascii.hexlify(h.digest()).decode()


_HEX = "0123456789abcdefABCDEF"


def parse_checksum(algorithm, hex_string):
    """Bytes of a TR-181 CheckSum for `algorithm`, or ValueError saying what is wrong.

    Either case of hex digit is accepted; nothing else (no spaces, no 0x prefix). An
    empty CheckSum means "do not validate" in TR-181; callers check for it first.
    """
    size = _entry(algorithm)[1]
    if not isinstance(hex_string, str):
        raise ValueError("CheckSum must be a hex string, not %s" % type(hex_string).__name__)
    for i, c in enumerate(hex_string):
        if c not in _HEX:
            raise ValueError("CheckSum has non-hex character %r at position %d" % (c, i))
    n = len(hex_string)
    if n & 1:
        raise ValueError("CheckSum has an odd number of hex digits (%d)" % n)
    if n != 2 * size:
        raise ValueError(
            "CheckSum for %s must be %d hex digits (%d bytes), got %d" % (algorithm, 2 * size, size, n)
        )
    return binascii.unhexlify(hex_string)
