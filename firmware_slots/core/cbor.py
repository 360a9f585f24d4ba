"""Minimal CBOR (RFC 8949) for the metadata journal.

Supported subset, and nothing else, so the device pays for a few hundred bytes of
bytecode instead of a general codec:

    major 0/1  int, -2**64 .. 2**64 - 1
    major 2    bytes (bytearray/memoryview encode as bytes)
    major 3    str (UTF-8)
    major 4    list; tuples encode as arrays and decode as lists
    major 5    dict with int or str keys (no duplicates)
    major 7    false, true, null (simple values 20, 21, 22)

Not supported, because journal records never need them: floats, tags (major 6),
undefined and other simple values, indefinite lengths (additional info 31), the
reserved additional info 28-30. Decoding any of them, truncated input, trailing bytes,
invalid UTF-8, bad map keys or nesting deeper than MAX_DEPTH raises CBORDecodeError.

Encoding is deterministic (RFC 8949 section 4.2.1): integers and lengths take the
shortest form, and map entries are ordered by the bytewise order of their encoded keys,
so the same value gives the same bytes on CPython and MicroPython (whose dicts do not
keep insertion order). The decoder accepts non-shortest forms too.

Cost: dumps allocates one bytearray of the encoding's exact size; size() counts what dumps would write without building
it (budget checks on a small heap); loads reads through one memoryview without copying
and allocates only the decoded values.
"""

MAX_DEPTH = 32


class CBORDecodeError(ValueError):
    """The input is not a complete, supported CBOR item."""


def _head(out, p, major, n):
    # RFC 8949 3.1: the shortest argument encoding is the preferred (deterministic) one.
    # Writes at out[p:]; returns the position after it.
    if n < 24:
        out[p] = major | n
        return p + 1
    if n < 0x100:
        ai, w = 24, 1
    elif n < 0x10000:
        ai, w = 25, 2
    elif n < 0x100000000:
        ai, w = 26, 4
    elif n < 0x10000000000000000:
        ai, w = 27, 8
    else:
        raise ValueError("integer does not fit in CBOR's 64-bit argument")
    out[p] = major | ai
    p += 1
    out[p:p + w] = n.to_bytes(w, "big")
    return p + w


def _encode(out, p, obj, depth):
    # obj's encoding at out[p:] (out is exactly size() long, see dumps); returns the end
    if depth > MAX_DEPTH:
        raise ValueError("nesting deeper than %d" % MAX_DEPTH)
    t = _base(obj)
    if obj is False:
        out[p] = 0xF4
    elif obj is True:
        out[p] = 0xF5
    elif obj is None:
        out[p] = 0xF6
    elif t is int:
        if obj >= 0:
            return _head(out, p, 0x00, obj)
        return _head(out, p, 0x20, -1 - obj)
    elif t is str:
        b = obj.encode()
        p = _head(out, p, 0x60, len(b))
        out[p:p + len(b)] = b
        return p + len(b)
    elif t is bytes or t is bytearray or t is memoryview:
        p = _head(out, p, 0x40, len(obj))
        out[p:p + len(obj)] = obj
        return p + len(obj)
    elif t is list or t is tuple:
        p = _head(out, p, 0x80, len(obj))
        for item in obj:
            p = _encode(out, p, item, depth + 1)
        return p
    elif t is dict:
        items = []
        for k in obj:
            _key(k)
            kb = bytearray(size(k))
            _encode(kb, 0, k, depth + 1)
            items.append((bytes(kb), k))
        items.sort()  # by encoded key (unique, so the second element is never compared)
        p = _head(out, p, 0xA0, len(items))
        for kb, k in items:
            out[p:p + len(kb)] = kb
            p = _encode(out, p + len(kb), obj[k], depth + 1)
        return p
    else:
        raise TypeError("cannot CBOR-encode %s" % type(obj).__name__)
    return p + 1


def dumps(obj):
    """Encode `obj` (see the module docstring for the types) as deterministic CBOR.

    Returns a bytearray of exactly its length: one allocation, sized by size() first, instead
    of a growing buffer and a bytes copy (a whole-state snapshot is the largest block the
    device allocates while it downloads)."""
    out = bytearray(size(obj))
    _encode(out, 0, obj, 0)
    return out


def _head_len(n):
    return 1 if n < 24 else 2 if n < 0x100 else 3 if n < 0x10000 else 5 if n < 0x100000000 else 9


def _base(obj):
    # the supported type obj is, or None; identity tests first, because isinstance with a
    # tuple of types builds that tuple on the heap per call in MicroPython (subclasses: rare)
    t = type(obj)
    if t is str or t is dict or t is int or t is list or t is tuple or t is bytes or t is bytearray \
            or t is memoryview:
        return t
    for t in (int, str, bytes, bytearray, memoryview, list, tuple, dict):
        if isinstance(obj, t):
            return t
    return None


def size(obj, depth=0):
    """len(dumps(obj)), without building the encoding (map order does not change a length).
    Allocates only a 16-byte bytes header per text (str.encode shares the text's data)."""
    if depth > MAX_DEPTH:
        raise ValueError("nesting deeper than %d" % MAX_DEPTH)
    if obj is None or obj is True or obj is False:
        return 1
    t = _base(obj)
    if t is int:
        n = obj if obj >= 0 else -1 - obj
        if n >= 0x10000000000000000:
            raise ValueError("integer does not fit in CBOR's 64-bit argument")
        return _head_len(n)
    if t is str:
        n = len(obj.encode()) if len(obj) < 128 else _utf8_len(obj)
        return _head_len(n) + n
    if t is dict:
        n = _head_len(len(obj))
        for k in obj:
            _key(k)
            n += size(k, depth + 1) + size(obj[k], depth + 1)
        return n
    if t is list or t is tuple:
        n = _head_len(len(obj))
        for item in obj:
            n += size(item, depth + 1)
        return n
    if t is not None:  # bytes, bytearray, memoryview
        return _head_len(len(obj)) + len(obj)
    raise TypeError("cannot CBOR-encode %s" % type(obj).__name__)


def _key(k):
    t = type(k)
    if t is not str and t is not int and (k is True or k is False or _base(k) not in (int, str)):
        raise TypeError("CBOR map keys must be int or str, not %s" % type(k).__name__)


def _utf8_len(s):
    # a long text is measured in slices, so sizing never copies more than 64 characters at once
    n = 0
    for i in range(0, len(s), 64):
        n += len(s[i:i + 64].encode())
    return n


# The decoder is functions over (buf, st) with st = [position]: no class on the heap.
def _arg(buf, st, ai):
    # Argument of a head whose additional info is `ai`.
    if ai < 24:
        return ai
    if ai > 27:
        if ai == 31:
            raise CBORDecodeError("indefinite-length items are not supported")
        raise CBORDecodeError("reserved additional info %d" % ai)
    n = 1 << (ai - 24)
    p = st[0]
    end = p + n
    if end > len(buf):
        raise CBORDecodeError("truncated: argument needs %d bytes at offset %d" % (n, p))
    v = 0
    while p < end:
        v = (v << 8) | buf[p]
        p += 1
    st[0] = end
    return v


def _take(buf, st, n):
    p = st[0]
    end = p + n
    if end > len(buf):
        raise CBORDecodeError("truncated: %d bytes of content needed at offset %d" % (n, p))
    st[0] = end
    return buf[p:end]


def _item(buf, st, depth):
    if depth > MAX_DEPTH:
        raise CBORDecodeError("nesting deeper than %d" % MAX_DEPTH)
    p = st[0]
    if p >= len(buf):
        raise CBORDecodeError("truncated: item expected at offset %d" % p)
    ib = buf[p]
    st[0] = p + 1
    major = ib >> 5
    ai = ib & 0x1F
    if major == 7:
        if ai == 20:
            return False
        if ai == 21:
            return True
        if ai == 22:
            return None
        raise CBORDecodeError("unsupported simple/float item 0x%02x at offset %d" % (ib, p))
    if major == 6:
        raise CBORDecodeError("tags are not supported (offset %d)" % p)
    n = _arg(buf, st, ai)
    if major == 0:
        return n
    if major == 1:
        return -1 - n
    if major == 2:
        return bytes(_take(buf, st, n))
    if major == 3:
        try:
            return str(_take(buf, st, n), "utf-8")
        except ValueError:  # UnicodeError on both interpreters
            raise CBORDecodeError("invalid UTF-8 in text string at offset %d" % p)
    # Arrays and maps: every element needs at least one byte, so a huge count
    # fails here instead of looping or allocating.
    left = len(buf) - st[0]
    if major == 4:
        if n > left:
            raise CBORDecodeError("truncated: array of %d items at offset %d" % (n, p))
        out = []
        for _ in range(n):
            out.append(_item(buf, st, depth + 1))
        return out
    # major == 5
    if 2 * n > left:
        raise CBORDecodeError("truncated: map of %d pairs at offset %d" % (n, p))
    out = {}
    for _ in range(n):
        kp = st[0]
        k = _item(buf, st, depth + 1)
        if not isinstance(k, (int, str)) or k is True or k is False:
            raise CBORDecodeError("map key at offset %d is not int or str" % kp)
        if k in out:
            raise CBORDecodeError("duplicate map key at offset %d" % kp)
        out[k] = _item(buf, st, depth + 1)
    return out


def loads(buf):
    """Decode exactly one CBOR item from `buf` (bytes, bytearray or memoryview)."""
    mv = memoryview(buf)
    st = [0]
    obj = _item(mv, st, 0)
    if st[0] != len(mv):
        raise CBORDecodeError("%d trailing bytes after the item" % (len(mv) - st[0]))
    return obj
