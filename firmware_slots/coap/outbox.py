"""Outbound POSTs that never block the inbound path: one bounded queue per destination.

    ob = Outbox(client)                      # client: a CoapClient on the serving endpoint
    ob.put("coap://10.0.0.2:5683/usp?reply-to=...", record)   # -> False when dropped
    loop: endpoint.poll(t); ob.step()        # starts/advances POSTs, never waits

Each destination (the URI string) has a FIFO of payloads and at most one POST in flight
(block-wise when the payload is larger than one block); retransmission and timeouts run
in the endpoint's poll() like every other CON. A destination that times out is *silent*:
what it has queued is dropped and new payloads for it are dropped at once until
SILENT_MS passes or heard(uri) says it spoke again. So a black-hole reply-to costs its
own queue and one exchange slot, never another controller's latency.

Bounds and drop reasons (stats keys, each counted; `dropped` is their sum):
  dests     at most MAX_DESTS destinations; a new one evicts the one that has waited
            longest ("evicted": its POST in flight and what it queued)
  count     MAX_COUNT payloads queued per destination                ("full")
  bytes     MAX_BYTES queued per destination, TOTAL_BYTES in all     ("full")
            (a lone payload is always taken: it is in RAM already)
  silent    the destination's last POST timed out                    ("silent")
  failed    the POST was answered 4.xx/5.xx or reset                 ("failed")
"""
from . import numbers as N
from .error import CoapTimeout
from ._compat import ticks_ms, ticks_diff, ticks_add

MAX_DESTS = 8
MAX_COUNT = 8  # a Download()'s end is a burst to one controller: OperationComplete, TransferComplete!, Get replies
MAX_BYTES = 8192
TOTAL_BYTES = 16384
SILENT_MS = 60000

# per destination: [queue [(uri, payload)], Pending or None, ticks started, silent-until or None, bytes]
_Q, _P, _T0, _SIL, _B = 0, 1, 2, 3, 4


class Outbox:
    def __init__(self, client, clients=None, max_dests=MAX_DESTS, max_count=MAX_COUNT,
                 max_bytes=MAX_BYTES, total_bytes=TOTAL_BYTES, log=None):
        self.client = client
        self.clients = clients      # uri -> client for other schemes (coaps sessions), or None
        self.max_dests = max_dests
        self.max_count = max_count
        self.max_bytes = max_bytes
        self.total_bytes = total_bytes
        self.dests = {}
        self.queued_bytes = 0
        self.log = log
        self.stats = {"sent": 0, "dropped": 0, "full": 0, "evicted": 0, "silent": 0, "failed": 0}
        ep = client.endpoint
        # one exchange per destination plus room for the loop's own requests
        if ep.max_exchanges < max_dests + 2:
            ep.max_exchanges = max_dests + 2
        if ep.retransmitter.limit < ep.max_exchanges + 4:
            ep.retransmitter.limit = ep.max_exchanges + 4

    def _drop(self, why, n=1):
        self.stats[why] += n
        self.stats["dropped"] += n

    def put(self, key, uri, payload):
        """Queue `payload` for destination `key` (POST to `uri`); -> False if dropped."""
        d = self.dests.get(key)
        now = ticks_ms()
        if d is not None and d[_SIL] is not None:
            if ticks_diff(d[_SIL], now) > 0:
                self._drop("silent")
                return False
            d[_SIL] = None
        if d is None:
            if len(self.dests) >= self.max_dests and not self._evict():
                self._drop("full")
                return False
            d = self.dests[key] = [[], None, now, None, 0]
        n = len(payload)
        # one Record always fits an empty queue (it is in RAM already); bounds stop piling up
        if len(d[_Q]) >= self.max_count or (d[_Q] and d[_B] + n > self.max_bytes) \
                or (self.queued_bytes and self.queued_bytes + n > self.total_bytes):
            self._drop("full")
            return False
        d[_Q].append((uri, payload))
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
            if d[_P] is None and not d[_Q]:
                old = k  # idle (only a silent mark): cheapest to forget
                break
            if old is None or ticks_diff(self.dests[old][_T0], d[_T0]) > 0:
                old = k  # waiting longest: in flight since _T0, or queued since then
        if old is None:
            return False
        d = self.dests.pop(old)
        self.queued_bytes -= d[_B]
        if d[_P] is not None:
            d[_P].cancel()
            self._drop("evicted")
        if d[_Q]:
            self._drop("evicted", len(d[_Q]) - (d[_P] is not None))
        return True

    def _start(self, key, d, now):
        if d[_P] is not None or not d[_Q]:
            return
        uri, payload = d[_Q][0]
        try:
            c = self.client if self.clients is None else self.clients(uri)
            d[_P] = c.start(N.POST, uri, payload, content_format=N.OCTET_STREAM)
        except (OSError, ValueError) as e:  # no exchange free, no DTLS: try at the next step
            self._log("POST to %s not started: %r" % (key, e))
            return
        d[_T0] = now

    def step(self):
        """Advance every POST in flight; start the next one of each destination."""
        if not self.dests:
            return
        now = ticks_ms()
        for key in list(self.dests):
            d = self.dests[key]
            p = d[_P]
            if p is not None and p.step():
                d[_P] = None
                _, payload = d[_Q].pop(0)
                d[_B] -= len(payload)
                self.queued_bytes -= len(payload)
                r = p.result
                if p.error is None and r is not None and r.code == N.CHANGED:
                    self.stats["sent"] += 1
                elif isinstance(p.error, CoapTimeout):
                    self._log("%s is silent: %r" % (key, p.error))
                    self._drop("silent", 1 + len(d[_Q]))
                    self.queued_bytes -= d[_B]
                    d[_Q] = []
                    d[_B] = 0
                    d[_SIL] = ticks_add(now, SILENT_MS)
                else:
                    self._drop("failed")
                    self._log("POST to %s: %s" % (key, p.error or N.code_str(r.code)))
            if d[_P] is None:
                if d[_Q]:
                    self._start(key, d, now)
                elif d[_SIL] is None or ticks_diff(d[_SIL], now) <= 0:
                    del self.dests[key]

    def busy(self):
        return bool(self.dests) and any(d[_P] is not None or d[_Q] for d in self.dests.values())

    def _log(self, s):
        if self.log:
            self.log(s)
