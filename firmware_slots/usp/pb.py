"""Schema-driven protobuf (proto3) wire codec, small enough for a 36 KiB heap.

A schema is one flat tuple per message type: field number N lives at index
3*(N-1) as (name, kind, sub); holes have name None. `kind` is a KIND_* value
or'ed with REP (repeated) and/or ONEOF (member of the message's only oneof).
`sub` is the submessage schema for MSG fields, else None.

Decoded messages are plain dicts keyed by field name; fields absent on the wire
are absent from the dict. As in protobuf, a singular message field seen twice is
merged and the last member of a oneof wins. Repeated fields are lists, map<string,string> fields
are dicts, enums are ints. Unknown fields (and known fields sent with another
wire type) are skipped. Any malformed input raises DecodeError and nothing else.

What the device pays: decoding allocates only the result objects (plus a small
tuple per multi-byte varint); encoding sizes the whole tree first (a list of
ints), then writes once into an exactly sized bytearray.
"""

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# Field kinds: private consts folded into the code; pb.STR etc. read them by name
# (__getattr__ below), so the device keeps no module global per kind.
_STR = const(0)    # string (UTF-8 checked on decode)
_BYTES = const(1)
_BOOL = const(2)
_INT = const(3)    # int32, int64, enum: varint, negative as 10-byte two's complement
_UINT = const(4)   # uint32, uint64: varint
_FX32 = const(5)   # fixed32
_MSG = const(6)
_MAP = const(7)    # map<string, string>
_REP = const(0x10)
_ONEOF = const(0x20)
_KINDS = const(("STR", "BYTES", "BOOL", "INT", "UINT", "FX32", "MSG", "MAP"))

_M64 = const(0xFFFFFFFFFFFFFFFF)
_WT = const((2, 2, 0, 0, 0, 5, 2, 2))  # wire type per kind


def __getattr__(name):
    """pb.STR ... pb.MAP, pb.REP, pb.ONEOF: the kind numbers above (PEP 562)."""
    if name in _KINDS:
        return _KINDS.index(name)
    if name == "REP":
        return _REP
    if name == "ONEOF":
        return _ONEOF
    raise AttributeError(name)

try:
    memoryview("")
    _u8 = memoryview  # MicroPython: a str exposes its UTF-8 bytes, no copy
except TypeError:
    def _u8(s):
        return s.encode()


class DecodeError(ValueError):
    pass


def _varint(mv, pos, end):
    r = 0
    s = 0
    while pos < end:
        b = mv[pos]
        pos += 1
        r |= (b & 0x7F) << s
        if b < 0x80:
            if s == 63:
                r &= _M64
            return r, pos
        s += 7
        if s > 63:
            raise DecodeError("varint too long")
    raise DecodeError("truncated")


def decode(schema, buf, views=False):
    """Decode `buf` (bytes, bytearray or memoryview) as message `schema`.

    With views=True, bytes fields are memoryview slices of `buf` (no copy).
    """
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    return _dec(schema, mv, 0, len(mv), views)


def _dec(schema, mv, pos, end, views, d=None):
    n = len(schema)
    oo = None  # the oneof member currently in d
    if d is None:
        d = {}
    else:  # merging a repeated occurrence of a singular message field
        for j in range(0, n, 3):
            if schema[j] in d and schema[j + 1] & _ONEOF:
                oo = schema[j]
    while pos < end:
        t = mv[pos]
        if t < 0x80:
            pos += 1
        else:
            t, pos = _varint(mv, pos, end)
        wt = t & 7
        i = (t >> 3) * 3 - 3
        if wt == 2:
            ln = mv[pos] if pos < end else 0x80
            if ln < 0x80:
                pos += 1
            else:
                ln, pos = _varint(mv, pos, end)
            q = pos + ln
            if q > end:
                raise DecodeError("length past end")
        elif wt == 0:
            if pos < end and mv[pos] < 0x80:
                v = mv[pos]
                pos += 1
            else:
                v, pos = _varint(mv, pos, end)
        elif wt == 5:
            q = pos + 4
            if q > end:
                raise DecodeError("truncated")
        elif wt == 1:
            q = pos + 8
            if q > end:
                raise DecodeError("truncated")
        else:
            raise DecodeError("wire type")
        if i < 0:
            if t >> 3 == 0:
                raise DecodeError("field 0")
            i = n  # unreachable index: treat as unknown
        name = schema[i] if i < n else None
        if name is None or _WT[schema[i + 1] & 15] != wt:
            if wt != 0:
                pos = q  # skip unknown field
            continue
        k = schema[i + 1]
        kk = k & 15
        if wt == 0:
            if kk == _BOOL:
                v = v != 0
            elif kk == _INT:
                if v > 0x7FFFFFFFFFFFFFFF:
                    v -= 0x10000000000000000
        elif wt == 5:
            v = mv[pos] | mv[pos + 1] << 8 | mv[pos + 2] << 16 | mv[pos + 3] << 24
            pos = q
        else:
            if kk == _STR:
                try:
                    v = str(mv[pos:q], "utf-8")
                except UnicodeError:
                    raise DecodeError("bad utf-8")
            elif kk == _BYTES:
                v = mv[pos:q] if views else bytes(mv[pos:q])
            elif kk == _MSG:
                v = _dec(schema[i + 2], mv, pos, q, views, None if k & _REP else d.get(name))
            else:
                mk, mval = _entry(mv, pos, q)
                m = d.get(name)
                if m is None:
                    m = d[name] = {}
                m[mk] = mval
                pos = q
                continue
            pos = q
        if k & _REP:
            lst = d.get(name)
            if lst is None:
                d[name] = [v]
            else:
                lst.append(v)
        else:
            if k & _ONEOF:
                if oo is not None and oo != name:
                    del d[oo]
                oo = name
            d[name] = v
    return d


_ENTRY = const(("key", _STR, None, "value", _STR, None))


def _entry(mv, pos, end):
    e = _dec(_ENTRY, mv, pos, end, False)
    return e.get("key", ""), e.get("value", "")


def _vlen(v):
    n = 1
    while v > 0x7F:
        v >>= 7
        n += 1
    return n


def _blen(v):
    # length of a str/bytes value as it goes on the wire
    return len(_u8(v)) if isinstance(v, str) else len(v)


def _size(schema, d, plan):
    """Wire size of message `d`; appends nested message sizes to plan in write order."""
    total = 0
    i = 0
    n = len(schema)
    while i < n:
        name = schema[i]
        v = d.get(name) if name is not None else None
        if v is not None:
            k = schema[i + 1]
            kk = k & 15
            tl = _vlen((i // 3 + 1) << 3)
            if kk == _MAP:
                for mk in v:
                    a = _blen(mk)
                    b = _blen(v[mk])
                    e = 2 + _vlen(a) + a + _vlen(b) + b
                    total += tl + _vlen(e) + e
            else:
                rep = k & _REP
                for r in range(len(v) if rep else 1):  # no 1-tuple per singular field
                    x = v[r] if rep else v
                    if kk == _MSG:
                        j = len(plan)
                        plan.append(0)
                        s = _size(schema[i + 2], x, plan)
                        plan[j] = s
                        total += tl + _vlen(s) + s
                        continue
                    if not (k & (_REP | _ONEOF)) and not x:
                        continue  # proto3 default: not sent
                    if kk <= _BYTES:
                        if type(x) is tuple:  # (schema, dict): a message written in place
                            j = len(plan)
                            plan.append(0)
                            s = plan[j] = _size(x[0], x[1], plan)
                        else:
                            s = _blen(x)
                        total += tl + _vlen(s) + s
                    elif kk == _FX32:
                        total += tl + 4
                    elif kk == _BOOL:
                        total += tl + 1
                    else:
                        total += tl + _vlen(x if x >= 0 else x & _M64)  # no long int per value
        i += 3
    return total


def _put_varint(buf, p, v):
    # the writer is three functions over (buf, position), not an object: no class on the heap
    while v > 0x7F:
        buf[p] = (v & 0x7F) | 0x80
        v >>= 7
        p += 1
    buf[p] = v
    return p + 1


def _put_blob(buf, p, v):
    if isinstance(v, str):
        v = _u8(v)
    n = len(v)
    p = _put_varint(buf, p, n)
    buf[p:p + n] = v
    return p + n


def _put_msg(buf, p, plan, schema, d):
    """Write message `d` at buf[p:]; -> the position after it. plan[0] is the cursor into the
    nested message sizes _size listed after it."""
    i = 0
    n = len(schema)
    while i < n:
        name = schema[i]
        v = d.get(name) if name is not None else None
        if v is not None:
            k = schema[i + 1]
            kk = k & 15
            tag = (i // 3 + 1) << 3
            if kk == _MAP:
                for mk in v:
                    mv = v[mk]
                    a = _blen(mk)
                    b = _blen(mv)
                    p = _put_varint(buf, p, tag | 2)
                    p = _put_varint(buf, p, 2 + _vlen(a) + a + _vlen(b) + b)
                    buf[p] = 0x0A
                    p = _put_blob(buf, p + 1, mk)
                    buf[p] = 0x12
                    p = _put_blob(buf, p + 1, mv)
            else:
                rep = k & _REP
                for r in range(len(v) if rep else 1):  # no 1-tuple per singular field
                    x = v[r] if rep else v
                    if kk == _MSG or type(x) is tuple:
                        p = _put_varint(buf, p, tag | 2)
                        c = plan[0]
                        plan[0] = c + 1
                        p = _put_varint(buf, p, plan[c])
                        if kk == _MSG:
                            p = _put_msg(buf, p, plan, schema[i + 2], x)
                        else:
                            p = _put_msg(buf, p, plan, x[0], x[1])
                        continue
                    if not (k & (_REP | _ONEOF)) and not x:
                        continue
                    if kk <= _BYTES:
                        p = _put_blob(buf, _put_varint(buf, p, tag | 2), x)
                    elif kk == _FX32:
                        p = _put_varint(buf, p, tag | 5)
                        buf[p] = x & 0xFF
                        buf[p + 1] = (x >> 8) & 0xFF
                        buf[p + 2] = (x >> 16) & 0xFF
                        buf[p + 3] = (x >> 24) & 0xFF
                        p += 4
                    else:
                        p = _put_varint(buf, p, tag)
                        p = _put_varint(buf, p, (1 if x else 0) if kk == _BOOL else x if x >= 0 else x & _M64)
        i += 3
    return p


def encode(schema, d):
    """Encode dict `d` as message `schema`.

    Returns an exactly sized bytearray (no final copy). Unknown keys and None
    values are ignored; proto3 defaults are not sent unless the field is a
    oneof member or repeated. A bytes field given as (schema, dict) holds that
    message's encoding, written in place (a Record's Msg: no second buffer).
    """
    plan = [1]  # [cursor, nested message sizes in write order...]
    n = _size(schema, d, plan)
    buf = bytearray(n)
    if _put_msg(buf, 0, plan, schema, d) != n:
        raise ValueError("size mismatch")
    return buf
