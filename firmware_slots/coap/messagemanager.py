"""Message layer (RFC 7252 4): duplicate detection, CON retransmission (message IDs:
protocol.CoapEndpoint.next_mid).

All state here is bounded by a fixed number of entries, never per peer:
a device facing many peers forgets the oldest, it does not grow.
"""
from . import numbers as N
from ._compat import ticks_ms, ticks_diff, ticks_add, urandom

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

PENDING = b""  # DedupCache reply: seen, no reply yet (NON, or a separate response being prepared)


class DedupCache:
    """Recently seen (peer, message id) -> cached reply bytes (or None).

    At most `size` entries and `max_bytes` of cached replies; entries expire after
    EXCHANGE_LIFETIME. When the byte budget is exceeded the oldest replies are
    dropped but their ids are kept, so an idempotent request is re-executed and a
    non-idempotent one is ignored rather than run twice.
    Device cost: size * ~60 bytes plus max_bytes.
    """

    def __init__(self, size=24, max_bytes=4096, lifetime_ms=N.DEFAULT_PARAMS.exchange_lifetime_ms):
        self.size = size
        self.max_bytes = max_bytes
        self.lifetime_ms = lifetime_ms
        self._entries = []  # [key, t, reply] oldest first
        self._bytes = 0

    def _expire(self, now):
        e = self._entries
        while e and ticks_diff(now, e[0][1]) > self.lifetime_ms:
            self._drop(0)

    def _drop(self, i):
        r = self._entries.pop(i)[2]
        if r:
            self._bytes -= len(r)

    def lookup(self, key):
        """-> (True, reply) if seen (reply may be None or PENDING), else (False, None)."""
        self._expire(ticks_ms())
        for ent in self._entries:
            if ent[0] == key:
                return True, ent[2]
        return False, None

    def add(self, key, reply=None):
        now = ticks_ms()
        self._expire(now)
        for i, ent in enumerate(self._entries):
            if ent[0] == key:
                self._drop(i)
                break
        while len(self._entries) >= self.size:
            self._drop(0)
        self._entries.append([key, now, None])
        if reply is not None:
            self.set_reply(key, reply)

    def set_reply(self, key, reply):
        if reply and len(reply) > self.max_bytes:
            reply = None
        for ent in self._entries:
            if ent[0] == key:
                if ent[2]:
                    self._bytes -= len(ent[2])
                ent[2] = reply
                if reply:
                    self._bytes += len(reply)
                break
        i = 0
        while self._bytes > self.max_bytes and i < len(self._entries):
            ent = self._entries[i]
            if ent[2] and ent[0] != key:
                self._bytes -= len(ent[2])
                ent[2] = None
            i += 1


# A Retransmitter entry is a list (one object per CON, no class): its fields by index
_ADDR = const(0)
_DATA = const(1)
_TIMEOUT = const(2)
_DEADLINE = const(3)
_COUNT = const(4)
_OWNER = const(5)   # the Exchange waiting for it, None for a separate response


class Retransmitter:
    """Outstanding CON messages with RFC 7252 4.2 exponential back-off.

    Initial timeout is random in [ACK_TIMEOUT, ACK_TIMEOUT * ACK_RANDOM_FACTOR],
    doubled after each of at most MAX_RETRANSMIT retransmissions.
    """

    def __init__(self, params=N.DEFAULT_PARAMS, limit=8):
        self.params = params
        self.limit = limit
        self.pending = {}  # mid -> [addr, data, timeout, deadline, count, owner]

    def add(self, mid, addr, data, owner):
        if len(self.pending) >= self.limit:
            raise OSError(105, "too many outstanding CON messages")  # ENOBUFS
        p = self.params
        t = int(p.ack_timeout_ms * (1 + (p.ack_random_factor - 1) * urandom(1)[0] / 255.0))
        self.pending[mid] = [addr, data, t, ticks_add(ticks_ms(), t), 0, owner]

    def pop(self, mid, addr):
        """Forget the CON `mid` sent to addr (ACKed or reset) -> its owner (None: unknown or none)."""
        r = self.pending.get(mid)
        if r is not None and r[_ADDR] == addr:
            del self.pending[mid]
            return r[_OWNER]
        return None

    def cancel_owner(self, owner):
        while True:  # find-then-delete, no list per call (an owner has one entry, rarely more)
            for m, r in self.pending.items():
                if r[_OWNER] is owner:
                    break
            else:
                return
            del self.pending[m]

    def next_deadline_ms(self, now):
        """Milliseconds until the earliest retransmission, or None."""
        best = None
        for r in self.pending.values():
            d = ticks_diff(r[_DEADLINE], now)
            if best is None or d < best:
                best = d
        return None if best is None else max(0, best)

    def due(self, now):
        """-> [(owner, data, addr)]: data to resend to addr, or data None when given up."""
        for r in self.pending.values():  # the common case, nothing due: allocate nothing
            if ticks_diff(now, r[_DEADLINE]) >= 0:
                break
        else:
            return ()
        out = []
        for mid, r in list(self.pending.items()):
            if ticks_diff(now, r[_DEADLINE]) >= 0:
                if r[_COUNT] >= self.params.max_retransmit:
                    del self.pending[mid]
                    out.append((r[_OWNER], None, None))
                else:
                    r[_COUNT] += 1
                    r[_TIMEOUT] *= 2
                    r[_DEADLINE] = ticks_add(now, r[_TIMEOUT])
                    out.append((r[_OWNER], r[_DATA], r[_ADDR]))
        return out
