"""Outbound POSTs that never block the inbound path: one bounded queue per destination.

    ob = Outbox(endpoint)                    # the serving endpoint: POSTs leave from its socket
    ob.put("coap://10.0.0.2:5683/usp", record)   # -> False when dropped
    loop: endpoint.poll(t); ob.step()        # starts/advances POSTs, never waits

Each destination (a URI string, the key) has a FIFO of payloads and at most one CON POST
in flight, Content-Format 42, Block1 (RFC 7959, 1024-byte blocks, smaller when the server
asks) when the payload is larger than one block. The POSTs are the endpoint's own
exchanges (protocol.CoapEndpoint.send_request): retransmission and timeouts run in its
poll() like every other CON, and the agent's reply path needs no coap.client. A
destination that times out is *silent*: what it has queued is dropped and new payloads
for it are dropped at once until _SILENT_MS passes or heard(key) says it spoke again. So
a black-hole reply-to costs its own queue and one exchange slot, never another
controller's latency.

Hooks: query(uri) -> the Uri-Query bytes the POSTs carry instead of the key's own (the
MTP's reply-to), called once per destination entry; route(uri) -> the endpoint for the
URI's scheme (default: the one given; the MTP's coaps sessions), called per POST, so a
replaced DTLS session is picked up.

Bounds and drop reasons (stats keys, each counted; `dropped` is their sum):
  dests     at most _MAX_DESTS destinations; a new one evicts the one that has waited
            longest ("evicted": its POST in flight and what it queued)
  count     _MAX_COUNT payloads queued per destination               ("full")
  bytes     _MAX_BYTES queued per destination, _TOTAL_BYTES in all    ("full")
            (a lone payload is always taken: it is in RAM already)
  silent    the destination's last POST timed out                    ("silent")
  failed    the POST was answered 4.xx/5.xx or reset                 ("failed")
"""
from . import numbers as N
from .message import CoapMessage, block_encode, block_decode, uint_encode
from .protocol import CoapTimeout
from ._compat import ticks_ms, ticks_diff, ticks_add, urandom

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

# the bounds (module constants: folded into the code, no global each)
_MAX_DESTS = const(8)
_MAX_COUNT = const(8)  # a Download()'s end is a burst to one controller: OperationComplete, TransferComplete!, Get replies
_MAX_BYTES = const(8192)
_TOTAL_BYTES = const(16384)
_SILENT_MS = const(60000)
_SZX = const(6)  # 1024-byte Block1 blocks (a server may ask for smaller ones)

# A destination is a list (no class on the heap), fields by index:
_Q = const(0)     # [payload, ...] oldest first
_X = const(1)     # the Exchange of the block/POST in flight, or None
_T0 = const(2)    # ticks the POST in flight (or the first queued payload) started
_SIL = const(3)   # ticks until which it is silent, or None
_B = const(4)     # bytes queued
_OPTS = const(5)  # [(number, bytes)]: Uri-Path, Content-Format, Uri-Query (in number order)
_U = const(6)     # its CoapUri (route() and resolve per POST)
_EP = const(7)    # endpoint and address of the last POST (resolved once per endpoint)
_ADDR = const(8)
_OFF = const(9)   # Block1: offset of the block in flight, and its size exponent
_BSZ = const(10)


class Outbox:
    def __init__(self, endpoint, route=None, query=None, timeout_ms=None, max_dests=_MAX_DESTS,
                 max_count=_MAX_COUNT, max_bytes=_MAX_BYTES, total_bytes=_TOTAL_BYTES, log=None):
        self.endpoint = endpoint
        self.route = route
        self.query = query
        self.timeout_ms = timeout_ms
        self.max_dests = max_dests
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.total_bytes = total_bytes
        self.dests = {}
        self.queued_bytes = 0
        self.log = log
        self.stats = {"sent": 0, "dropped": 0, "full": 0, "evicted": 0, "silent": 0, "failed": 0}
        ep = endpoint
        # one exchange per destination plus room for the loop's own requests
        if ep.max_exchanges < max_dests + 2:
            ep.max_exchanges = max_dests + 2
        if ep.retransmitter.limit < ep.max_exchanges + 4:
            ep.retransmitter.limit = ep.max_exchanges + 4

    def _drop(self, why, n=1):
        self.stats[why] += n
        self.stats["dropped"] += n

    def put(self, key, payload, u=None):
        """Queue `payload` for destination `key` (u: the key already parsed, a CoapUri);
        -> False if dropped. ValueError: the key is not a coap/coaps URI, nothing changed."""
        d = self.dests.get(key)
        now = ticks_ms()
        if d is not None and d[_SIL] is not None:
            if ticks_diff(d[_SIL], now) > 0:
                self._drop("silent")
                return False
            d[_SIL] = None
        if d is None:
            if u is None:
                from .uri import parse_uri
                u = parse_uri(key)
            if len(self.dests) >= self.max_dests and not self._evict():
                self._drop("full")
                return False
            opts = [(N.URI_PATH, s.encode()) for s in u.path]
            opts.append((N.CONTENT_FORMAT, b"*"))  # 42, USP (R-COAP.6): uint_encode(42)
            if self.query is not None:
                opts.append((N.URI_QUERY, self.query(u)))
            else:
                for q in u.query:
                    opts.append((N.URI_QUERY, q.encode()))
            d = self.dests[key] = [[], None, now, None, 0, opts, u, None, None, 0, 0]
        n = len(payload)
        # one Record always fits an empty queue (it is in RAM already); bounds stop piling up
        if len(d[_Q]) >= self.max_count or (d[_Q] and d[_B] + n > self.max_bytes) \
                or (self.queued_bytes and self.queued_bytes + n > self.total_bytes):
            self._drop("full")
            return False
        d[_Q].append(payload)
        d[_B] += n
        self.queued_bytes += n
        return True  # step() sends it: after the handler returns, its garbage is free

    def heard(self, key):
        """The destination spoke to us: it is not silent any more."""
        d = self.dests.get(key)
        if d is not None:
            d[_SIL] = None

    def _evict(self):
        """Make room: forget an idle entry, else the destination whose POST is oldest."""
        old = None
        for k, d in self.dests.items():
            if d[_X] is None and not d[_Q]:
                old = k  # idle (only a silent mark): cheapest to forget
                break
            if old is None or ticks_diff(self.dests[old][_T0], d[_T0]) > 0:
                old = k  # waiting longest: in flight since _T0, or queued since then
        if old is None:
            return False
        d = self.dests.pop(old)
        self.queued_bytes -= d[_B]
        if d[_X] is not None:
            d[_X].cancel()
            self._drop("evicted")
        if d[_Q]:
            self._drop("evicted", len(d[_Q]) - (d[_X] is not None))
        return True

    def _send(self, d, off, szx):
        """Send the block of the head payload at `off` (the whole payload when it fits one
        block); -> its Exchange. OSError/ValueError: not sent (no exchange free, no DTLS)."""
        ep = self.endpoint if self.route is None else self.route(d[_U])
        if ep is not d[_EP]:
            d[_ADDR] = ep.transport.resolve(d[_U].host, d[_U].port)
            d[_EP] = ep
        payload = d[_Q][0]
        opts = d[_OPTS]  # shared by its messages: nothing here or in the endpoint changes them
        total = len(payload)
        bs = 1 << (szx + 4)
        if total > bs:
            end = off + bs
            opts = opts + [(N.BLOCK1, block_encode(off // bs, end < total, szx))]
            if not off:
                opts.append((N.SIZE1, uint_encode(total)))
            payload = memoryview(payload)[off:end]  # the queued Record stays until it is done
        while True:
            t = urandom(4)
            if t not in ep._exchanges:
                break
        d[_OFF] = off
        d[_BSZ] = szx
        return ep.send_request(CoapMessage(N.CON, N.POST, 0, t, opts, payload), d[_ADDR], self.timeout_ms)

    def _start(self, key, d, now):
        try:
            d[_X] = self._send(d, 0, _SZX)
        except (OSError, ValueError) as e:  # no exchange free, no DTLS: try at the next step
            self._log("POST to %s not started: %r" % (key, e))
            return
        d[_T0] = now

    def _next(self, d, r):
        """A block was answered: send the next one (or a smaller first one, 4.13) and -> True,
        or -> False when `r` is the POST's outcome."""
        szx = d[_BSZ]
        bs = 1 << (szx + 4)
        total = len(d[_Q][0])
        if total <= bs:
            return False
        b1 = r.opt(N.BLOCK1)
        b1 = None if b1 is None else block_decode(b1)
        off = d[_OFF]
        if r.code == N.REQUEST_ENTITY_TOO_LARGE and not off and b1 and b1[2] < szx:
            szx = b1[2]  # the server asks for smaller blocks: start over with them
        elif r.code == N.CONTINUE and off + bs < total:
            off += bs
            if b1 is not None and b1[2] < szx:
                szx = b1[2]  # smaller from here on: off, a multiple of the old size, is one of it
        else:
            return False
        d[_X] = self._send(d, off, szx)
        return True

    def step(self):
        """Advance every POST in flight; start the next one of each destination."""
        if not self.dests:
            return
        now = ticks_ms()
        for key in list(self.dests):
            d = self.dests[key]
            ex = d[_X]
            if ex is not None and ex.done:
                d[_X] = None
                err = ex.error
                r = ex.response
                if err is None:
                    try:
                        if self._next(d, r):
                            continue
                    except (OSError, ValueError) as e:  # the next block could not go out
                        err = e
                payload = d[_Q].pop(0)
                d[_B] -= len(payload)
                self.queued_bytes -= len(payload)
                if err is None and r.code == N.CHANGED:
                    self.stats["sent"] += 1
                elif isinstance(err, CoapTimeout):
                    self._log("%s is silent: %r" % (key, err))
                    self._drop("silent", 1 + len(d[_Q]))
                    self.queued_bytes -= d[_B]
                    d[_Q] = []
                    d[_B] = 0
                    d[_SIL] = ticks_add(now, _SILENT_MS)
                else:
                    self._drop("failed")
                    self._log("POST to %s: %s" % (key, err or N.code_str(r.code)))
            if d[_X] is None:
                if d[_Q]:
                    self._start(key, d, now)
                elif d[_SIL] is None or ticks_diff(d[_SIL], now) <= 0:
                    del self.dests[key]

    def busy(self):
        return bool(self.dests) and any(d[_X] is not None or d[_Q] for d in self.dests.values())

    def _log(self, s):
        if self.log:
            self.log(s)
