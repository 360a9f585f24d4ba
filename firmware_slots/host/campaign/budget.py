"""The fleet's bandwidth budget and the download schedule.

TokenBucket: `await bucket.take(n)` before serving n image bytes. Tokens accrue at
`rate` bytes/s up to `burst`; takers wait in FIFO order (one lock), so over ANY window
of T seconds at most rate*T + burst bytes leave. With burst <= 2.5% of rate*10 the
measured 10 s peak stays within 1.025 of the budget (the campaign's limit is 1.05).

spread(n, window_s): start offsets that spread n downloads evenly over the window; the
concurrency cap and the bucket then hold the actual pace.
"""
import asyncio
import re
import time

BURST_S = 0.25          # bucket depth in seconds of budget
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text):
    """'8h', '90m', '45s', '1.5' (seconds) -> seconds (float); ValueError if not one."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*", str(text))
    if not m:
        raise ValueError("not a duration: %r (use e.g. 45s, 90m, 8h)" % (text,))
    return float(m.group(1)) * UNITS[m.group(2)]


class TokenBucket:
    def __init__(self, rate, burst=None, clock=time.monotonic):
        if rate <= 0:
            raise ValueError("budget must be > 0 bytes/s")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(2048, rate * BURST_S))
        self.clock = clock
        self.tokens = self.burst
        self.t = clock()
        self.lock = asyncio.Lock()

    def _refill(self):
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now

    async def take(self, n):
        async with self.lock:
            self._refill()
            while self.tokens < n:
                await asyncio.sleep((n - self.tokens) / self.rate)
                self._refill()
            self.tokens -= n


def spread(n, window_s):
    """Offsets (s from the start of distribution) of n downloads over window_s."""
    if n <= 0:
        return []
    step = window_s / n
    return [i * step for i in range(n)]


def peak_ratio(per_second, budget, window=10):
    """max over every `window`-second run of whole seconds of bytes / (budget*window)."""
    if not per_second:
        return 0.0
    t0 = min(per_second)
    t1 = max(per_second)
    vals = [per_second.get(t, 0) for t in range(t0, t1 + 1)]
    if len(vals) < window:
        return sum(vals) / (budget * window)
    s = sum(vals[:window])
    best = s
    for i in range(window, len(vals)):
        s += vals[i] - vals[i - window]
        best = max(best, s)
    return best / (budget * window)
