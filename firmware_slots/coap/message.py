"""CoapMessage: plain data plus the RFC 7252 section 3 wire format.

Wire layout (RFC 7252 3):

    byte 0     Ver(2 bits, =1) | Type(2) | TKL(4, 0..8)
    byte 1     Code (class 3 bits . detail 5 bits)
    byte 2..3  Message ID, big endian
    TKL bytes  Token
    options    delta(4)|length(4) [ext delta][ext length] value   (13 -> +1 byte, 14 -> +2 bytes)
    0xFF       payload marker, only if the payload is not empty
    payload

Options are kept as a list of (number, bytes) in wire order; repeated options
(Uri-Path, Uri-Query, ...) stay in the order they were added. Device cost: one
list and one bytes object per option; the payload is one copy of the datagram tail
(a request's) or a view of the received datagram (a response's).
"""
from . import numbers as N


class CoapDecodeError(ValueError):
    """A datagram that is not a well-formed CoAP message.

    `mtype` and `mid` are set once the 4-byte header parsed with version 1, so a
    receiver can answer a malformed CON with RST (RFC 7252 4.2); otherwise the
    datagram must be dropped silently (unknown version, truncated header).
    """

    def __init__(self, reason, mtype=None, mid=None, token=None, code=None):
        super().__init__(reason)
        self.reason = reason
        self.mtype = mtype
        self.mid = mid
        self.token = token
        self.code = code

    def should_reset(self):
        return self.mtype == N.CON and self.mid is not None


class CoapMessage:
    __slots__ = ("mtype", "code", "mid", "token", "options", "payload")

    def __init__(self, mtype=N.CON, code=N.EMPTY, mid=0, token=b"", options=None, payload=b""):
        self.mtype = mtype
        self.code = code
        self.mid = mid
        self.token = token
        self.options = options if options is not None else []
        self.payload = payload

    # --- options (the rest: iterate self.options; each method is heap on a device) ----
    def opt(self, num, default=None):
        for n, v in self.options:
            if n == num:
                return v
        return default

    def opt_uint(self, num, default=None):
        v = self.opt(num)
        return default if v is None else uint_decode(v)

    def add_opt(self, num, value):
        """Append an option; value is bytes, str (UTF-8) or int (uint encoding)."""
        if isinstance(value, int):
            value = uint_encode(value)
        elif isinstance(value, str):
            value = value.encode()
        self.options.append((num, bytes(value)))
        return self

    def remove_opt(self, num):
        self.options = [(n, v) for (n, v) in self.options if n != num]

    @property
    def etag(self):
        return self.opt(N.ETAG)

    def __repr__(self):
        return "<CoapMessage %s %s mid=%d token=%s opts=%r payload=%d bytes>" % (
            N.TYPE_NAMES[self.mtype], N.METHOD_NAMES[self.code] if self.code < 8 else N.code_str(self.code),
            self.mid, "".join("%02x" % x for x in self.token), self.options, len(self.payload))

    # --- wire format -------------------------------------------------------
    def encode(self):
        tkl = len(self.token)
        if tkl > 8:
            raise ValueError("token longer than 8 bytes")
        # MicroPython's sort is not stable: the index keeps repeated options in order
        opts = self.options
        for i in range(1, len(opts)):
            if opts[i][0] < opts[i - 1][0]:
                opts = sorted([(o[0], j, o[1]) for j, o in enumerate(opts)])
                opts = [(o[0], o[2]) for o in opts]
                break
        payload = self.payload
        # sized first, allocated once: a growing bytearray leaves its smaller copies as holes
        n = 4 + tkl
        last = 0
        for num, val in opts:
            n += 1 + _ext(num - last) + _ext(len(val)) + len(val)
            last = num
        if payload:
            n += 1 + len(payload)
        out = bytearray(n)
        out[0] = 0x40 | (self.mtype << 4) | tkl
        out[1] = self.code
        out[2] = (self.mid >> 8) & 0xFF
        out[3] = self.mid & 0xFF
        p = 4 + tkl
        out[4:p] = self.token
        last = 0
        for num, val in opts:
            delta = num - last
            last = num
            ln = len(val)
            d = _ext(delta)
            e = _ext(ln)
            # nibble: the value itself, or 13/14 for one/two extension bytes
            out[p] = ((12 + d if d else delta) << 4) | (12 + e if e else ln)
            p = _put_ext(out, _put_ext(out, p + 1, delta, d), ln, e)
            out[p:p + ln] = val
            p += ln
        if payload:
            out[p] = 0xFF
            out[p + 1:] = payload
        return out  # a bytearray: no second copy of a 1 KiB block; nothing writes to it after


def _ext(v):
    # extension bytes an option delta or length v needs (RFC 7252 3.1)
    if v < 13:
        return 0
    if v < 269:
        return 1
    if v < 65805:
        return 2
    raise ValueError("option delta/length too large")


def _put_ext(out, p, v, k):
    # writes v's k extension bytes at p -> the position after them
    if k == 1:
        out[p] = v - 13
    elif k == 2:
        v -= 269
        out[p] = v >> 8
        out[p + 1] = v & 0xFF
    return p + k


def decode(data, view=False):
    """Parse one datagram into a CoapMessage or raise CoapDecodeError.

    view=True: the payload is a memoryview of `data` (which must not change while the
    message is in use) instead of a copy; the receive path uses it for responses, so a
    1 KiB Block2 payload is not copied once more per block.
    """
    n = len(data)
    if n < 4:
        raise CoapDecodeError("truncated header")
    b0 = data[0]
    if b0 >> 6 != 1:
        raise CoapDecodeError("unknown version %d" % (b0 >> 6))
    mtype = (b0 >> 4) & 3
    tkl = b0 & 15
    code = data[1]
    mid = (data[2] << 8) | data[3]
    if tkl > 8:
        raise CoapDecodeError("token length %d" % tkl, mtype, mid, None, code)
    if 4 + tkl > n:
        raise CoapDecodeError("truncated token", mtype, mid, None, code)
    token = bytes(data[4:4 + tkl])
    if code == N.EMPTY:
        if n != 4:
            raise CoapDecodeError("empty message with content", mtype, mid, token, code)
        return CoapMessage(mtype, code, mid, token)
    cls_ = code >> 5
    if cls_ == 1 or cls_ >= 6:
        raise CoapDecodeError("reserved code class %d" % cls_, mtype, mid, token, code)
    pos = 4 + tkl
    options = []
    num = 0
    payload = b""
    while pos < n:
        b = data[pos]
        pos += 1
        if b == 0xFF:
            if pos >= n:
                raise CoapDecodeError("payload marker without payload", mtype, mid, token, code)
            payload = memoryview(data)[pos:] if view else bytes(data[pos:])
            break
        delta = b >> 4
        ln = b & 15
        if delta == 15 or ln == 15:
            raise CoapDecodeError("reserved option nibble 15", mtype, mid, token, code)
        if delta == 13:
            if pos >= n:
                raise CoapDecodeError("truncated option delta", mtype, mid, token, code)
            delta = data[pos] + 13
            pos += 1
        elif delta == 14:
            if pos + 2 > n:
                raise CoapDecodeError("truncated option delta", mtype, mid, token, code)
            delta = ((data[pos] << 8) | data[pos + 1]) + 269
            pos += 2
        if ln == 13:
            if pos >= n:
                raise CoapDecodeError("truncated option length", mtype, mid, token, code)
            ln = data[pos] + 13
            pos += 1
        elif ln == 14:
            if pos + 2 > n:
                raise CoapDecodeError("truncated option length", mtype, mid, token, code)
            ln = ((data[pos] << 8) | data[pos + 1]) + 269
            pos += 2
        if pos + ln > n:
            raise CoapDecodeError("option runs past the end", mtype, mid, token, code)
        num += delta
        options.append((num, bytes(data[pos:pos + ln])))
        pos += ln
    return CoapMessage(mtype, code, mid, token, options, payload)


# --- option value formats (RFC 7252 3.2) -----------------------------------
def uint_encode(v):
    """Minimal big-endian bytes; 0 encodes as the empty string."""
    if v < 0:
        raise ValueError("negative uint")
    n = 0
    t = v
    while t:
        n += 1
        t >>= 8
    out = bytearray(n)
    while n:
        n -= 1
        out[n] = v & 0xFF
        v >>= 8
    return bytes(out)


def uint_decode(b):
    v = 0
    for x in b:
        v = (v << 8) | x
    return v


def block_encode(num, more, szx):
    """Block1/Block2 option value (RFC 7959 2.2): NUM | M | SZX."""
    if not 0 <= szx <= 7 or num < 0 or num >= (1 << 20):
        raise ValueError("bad block option")
    return uint_encode((num << 4) | (8 if more else 0) | szx)


def block_decode(b):
    """-> (num, more, szx); ValueError on >3 bytes or the reserved SZX 7."""
    if len(b) > 3:
        raise ValueError("block option longer than 3 bytes")
    v = uint_decode(b)
    szx = v & 7
    if szx == 7:
        raise ValueError("reserved block size 7")
    return v >> 4, bool(v & 8), szx


def unknown_critical(msg, known=N.KNOWN_OPTIONS):
    """First critical option number this stack does not know, or None."""
    for n, _ in msg.options:
        if n & 1 and n not in known:
            return n
    return None
