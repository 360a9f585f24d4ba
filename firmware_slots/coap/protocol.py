"""CoapEndpoint: one socket that is both CoAP server and client.

Ties a transport, the message layer (dedup, retransmission) and the
request/response layer (tokens, piggy-backed and separate responses) together.
USP needs both roles on one port: a record arrives as a POST, the reply leaves
as a POST from the same endpoint.

Driving it:
  * poll(timeout_ms)  - one non-blocking step (select.poll); call it from any loop.
  * serve(duration_ms) - poll until the time is up or stop() is called.
  * await run()        - asyncio task; MicroPython awaits the UDP socket directly.
"""
import select

from . import numbers as N
from .message import CoapMessage, CoapDecodeError, decode, unknown_critical
from .messagemanager import DedupCache, PENDING, Retransmitter
from .server import Site
from ._compat import ticks_ms, ticks_diff, ticks_add, randint16

# asyncio is imported by the async entry points only: a poll()/serve() device never
# pays for it (4 KB of heap frozen, ~20 KB more when it is a .mpy on the filesystem).


# The two errors an exchange ends with live here, where they are raised: the agent's Get
# path then never loads coap/error.py (the client's own errors, which re-exports these).
class CoapError(Exception):
    """Also what a request the peer answered with RST fails with ("reset by peer")."""


class CoapTimeout(CoapError):
    """No ACK/response within the RFC 7252 retransmission window (R-COAP.9)."""


class Exchange:
    """One outgoing request waiting for its response (matched by request.token)."""

    def __init__(self, endpoint, request, addr, deadline):
        self.endpoint = endpoint
        self.request = request
        self.addr = addr
        self.deadline = deadline  # ticks_ms; overall limit once the CON is ACKed / for NON
        self.acked = False
        self.done = False
        self.response = None
        self.error = None
        self._event = None
        self.fresh = 0            # resends under a new MID (stale-MID replies seen)

    def _finish(self, response=None, error=None):
        if self.done:
            return
        self.done = True
        self.response = response
        self.error = error
        ep = self.endpoint
        ep._exchanges.pop(self.request.token, None)
        ep.retransmitter.cancel_owner(self)
        if self._event is not None:
            self._event.set()

    def on_ack(self, msg):  # the endpoint's, for the ACK of our CON
        t = self.request.token
        if msg.code != N.EMPTY and msg.token != t and self.fresh < 3:
            # a piggy-backed reply for another token: the peer's dedup cache still holds
            # this MID from before our reboot (same port) -> resend under a new random MID
            self.fresh += 1
            ep = self.endpoint
            ep._mid = randint16()  # a new random start: away from our previous life's MIDs
            m = self.request
            m.mid = ep.next_mid()
            ep.retransmitter.add(m.mid, self.addr, ep._send(m, self.addr), self)
        elif msg.code == N.EMPTY or msg.token != t:
            self.acked = True  # separate response will follow
        else:
            self._finish(msg)

    def result(self):
        if self.error is not None:
            raise self.error
        return self.response

    def cancel(self):
        self._finish(error=CoapTimeout("cancelled"))


class CoapEndpoint:
    def __init__(self, transport=None, site=None, params=None, host="0.0.0.0", port=0,
                 dedup_size=8, dedup_bytes=1024, max_exchanges=8, log=None):
        # dedup 8 ids / 1 KiB of replies: enough for one controller's retransmissions within
        # MAX_TRANSMIT_SPAN; 24 / 4 KiB held 2 KB more on a board after a few dozen requests
        if transport is None:
            from .transport import UdpTransport
            transport = UdpTransport(host, port)
        # site=False: a client-only endpoint (a fetcher's): no Site, and a dedup cache only for
        # the few separate responses it may see twice; requests to it get RST (CON) or nothing
        self.transport = transport
        self.params = params or N.DEFAULT_PARAMS
        self.dedup = None  # client-only: made by the first separate response (handle_datagram)
        if site is None:
            site = Site()
        if site is not False:
            self.dedup = DedupCache(dedup_size, dedup_bytes, self.params.exchange_lifetime_ms)
        self.site = None if site is False else site
        self._mid = randint16()  # the next message ID (RFC 7252 4.4: start anywhere)
        self.retransmitter = Retransmitter(self.params, limit=max_exchanges + 4)
        self.max_exchanges = max_exchanges
        self._exchanges = {}  # token -> Exchange
        self._poller = select.poll()
        self._poller.register(transport.pollable, select.POLLIN)
        self._watched = []  # keys of other sockets this poll also waits on (watch())
        self._stop = False
        self.log = log
        self.stats = {"rx": 0, "tx": 0, "retransmit": 0, "dup": 0, "malformed": 0, "rst": 0}

    # --- sending -------------------------------------------------------------
    def next_mid(self):
        m = self._mid
        self._mid = (m + 1) & 0xFFFF
        return m

    def _send(self, msg, addr):
        data = msg.encode()
        self.transport.sendto(data, addr)
        self.stats["tx"] += 1
        return data

    def _send_empty(self, mtype, mid, addr):
        return self._send(CoapMessage(mtype, N.EMPTY, mid), addr)

    def send_request(self, msg, addr, timeout_ms=None):
        """Send a request (CON or NON, token set by the caller); -> Exchange.

        A CON is retransmitted until ACKed; after that (or for a NON) the exchange
        fails with CoapTimeout at timeout_ms (default MAX_TRANSMIT_WAIT).
        """
        if len(self._exchanges) >= self.max_exchanges:
            raise OSError(105, "too many outstanding requests")
        if msg.token in self._exchanges:
            raise ValueError("token in use")
        msg.mid = self.next_mid()
        if timeout_ms is None:
            timeout_ms = self.params.max_transmit_wait_ms
        ex = Exchange(self, msg, addr, ticks_add(ticks_ms(), timeout_ms))
        self._exchanges[msg.token] = ex
        data = self._send(msg, addr)
        if msg.mtype == N.CON:
            self.retransmitter.add(msg.mid, addr, data, ex)
        return ex

    def wait(self, ex, timeout_ms=None):
        """Poll until the exchange completes; -> response CoapMessage or raise."""
        if timeout_ms is not None:
            end = ticks_add(ticks_ms(), timeout_ms)
            if ticks_diff(ex.deadline, end) > 0:
                ex.deadline = end
        while not ex.done:
            self.poll(max(0, min(200, ticks_diff(ex.deadline, ticks_ms()))))
        return ex.result()

    async def await_exchange(self, ex):
        """Wait for an exchange while `run()` drives the endpoint."""
        if not ex.done:
            import asyncio
            ex._event = asyncio.Event()
            await ex._event.wait()
        return ex.result()

    def _send_separate(self, request, response):
        code, opts, payload = self.site.render_response(request.msg, response)
        mtype = N.CON if request.msg.mtype == N.CON else N.NON
        msg = CoapMessage(mtype, code, self.next_mid(), request.msg.token, opts, payload)
        data = self._send(msg, request.peer)
        if mtype == N.CON:
            try:
                self.retransmitter.add(msg.mid, request.peer, data, None)  # no owner: nothing to do on the outcome
            except OSError:
                pass  # sent once; best effort when the table is full

    def watch(self, pollable):
        """Also wake poll() when `pollable` (another socket the same loop serves, e.g. a
        download's) is readable; -> the key to give unwatch()."""
        k = pollable.fileno() if hasattr(pollable, "fileno") else pollable
        self._poller.register(k, select.POLLIN)
        self._watched.append(k)
        return k

    def unwatch(self, key):
        if key in self._watched:
            self._watched.remove(key)
        try:
            self._poller.unregister(key)
        except (OSError, KeyError, ValueError):
            pass

    # --- receiving -------------------------------------------------------------
    def poll(self, timeout_ms=0):
        """Wait up to timeout_ms (None = until something happens) for datagrams,
        handle them and run due timers. Returns the number of datagrams handled."""
        now = ticks_ms()
        wait = -1 if timeout_ms is None else timeout_ms
        nd = self._next_timer(now)
        if nd is not None and (wait < 0 or nd < wait):
            wait = nd
        if self.ready(wait) == 2:
            return self.readable()
        self._run_timers()
        return 0

    def ready(self, wait):
        """Wait up to `wait` ms: 0 nothing readable, 1 only watched sockets (leave them to
        their owner), 2 our own socket has a datagram."""
        w = self._watched
        if not w:
            return 2 if _ready(self._poller, wait) else 0
        got = 0
        # poll(), not ipoll(): measured on the unix port, iterating ipoll from Python made
        # a stepped 1 MiB download ~20% slower than one small list per wake-up
        for r in self._poller.poll(wait):
            if r[0] not in w:
                return 2
            got = 1
        return got

    def readable(self):
        """Someone else's poll saw our socket readable: handle what is queued and run due
        timers, without polling again (an owner's loop, a transfer stepped by the agent)."""
        n = 0
        udp = self.transport.scheme == "coap"  # the socket's queue is all there is (DTLS buffers)
        while n < 32:  # a bound: timers still run under a flood
            if n and udp and self.ready(0) != 2:
                break  # drained: the read that finds nothing raises, 368 bytes each on the unix port
            r = self.transport.recvfrom()
            if r is None:
                break
            n += 1
            try:
                self.handle_datagram(r[0], r[1])
            except Exception as e:  # never let one datagram stop the loop
                from .server import _log_exc
                _log_exc(e)
        self._run_timers()
        return n

    def _next_timer(self, now):
        best = self.retransmitter.next_deadline_ms(now)
        for ex in self._exchanges.values():
            d = max(0, ticks_diff(ex.deadline, now))
            if best is None or d < best:
                best = d
        return best

    def _run_timers(self):
        now = ticks_ms()
        for owner, data, addr in self.retransmitter.due(now):
            if data is not None:
                self.transport.sendto(data, addr)
                self.stats["retransmit"] += 1
            elif owner is not None:  # given up
                owner._finish(error=CoapTimeout("no response (retransmissions exhausted)"))
        for ex in self._exchanges.values():  # copy the table only when one has expired
            if ticks_diff(now, ex.deadline) >= 0:
                for ex in list(self._exchanges.values()):
                    if ticks_diff(now, ex.deadline) >= 0:
                        ex._finish(error=CoapTimeout("no response"))
                break

    def handle_datagram(self, data, addr):
        self.stats["rx"] += 1
        try:
            # a response's payload stays a view of the datagram (bytes from recvfrom: ours
            # alone); requests get a copy, handlers may keep it (measured: a view for the USP
            # Record moved where the next datagram's buffer fits and made the Get's minimum
            # heap worse, 34560 -> 35584)
            msg = decode(data, len(data) > 1 and data[1] >= 64)
        except CoapDecodeError as e:
            self.stats["malformed"] += 1
            if e.should_reset():
                self._send_empty(N.RST, e.mid, addr)
            return
        t = msg.mtype
        code = msg.code
        req = 1 <= code <= 31  # a request (else empty or a response)
        if t == N.ACK or t == N.RST:
            if not req:  # the answer to one of our CONs (an ACK/RST carrying a request: bogus)
                ex = self.retransmitter.pop(msg.mid, addr)  # None for a separate response's
                if ex is None:
                    pass
                elif t == N.RST:
                    ex._finish(error=CoapError("request reset by peer"))
                else:
                    ex.on_ack(msg)
            return
        if code == N.EMPTY:
            if t == N.CON:
                self._send_empty(N.RST, msg.mid, addr)  # CoAP ping
            return
        if req:
            self._on_request(msg, addr)
            return
        # a separate response (CON or NON)
        key = (addr, msg.mid)
        if self.dedup is None:  # its empty ACKs only (4 B each)
            self.dedup = DedupCache(2, 16, self.params.exchange_lifetime_ms)
        seen, reply = self.dedup.lookup(key)
        if seen:
            self.stats["dup"] += 1
            if reply:
                self.transport.sendto(reply, addr)
            return
        ex = self._exchanges.get(msg.token)
        if ex is None or ex.addr != addr or unknown_critical(msg) is not None:
            if t == N.CON:
                self.stats["rst"] += 1
                self._send_empty(N.RST, msg.mid, addr)
            return
        reply = None
        if t == N.CON:
            reply = self._send_empty(N.ACK, msg.mid, addr)
        self.dedup.add(key, reply)
        ex._finish(msg)

    def _on_request(self, msg, addr):
        if self.site is None:  # client-only: serves nothing (RFC 7252 4.2/4.3: reject)
            if msg.mtype == N.CON:
                self.stats["rst"] += 1
                self._send_empty(N.RST, msg.mid, addr)
            return
        key = (addr, msg.mid)
        seen, reply = self.dedup.lookup(key)
        if seen:
            self.stats["dup"] += 1
            if reply:
                self.transport.sendto(reply, addr)
                return
            if reply is not None:  # PENDING: a NON, or a CON whose response is separate
                if msg.mtype == N.CON:
                    self._send_empty(N.ACK, msg.mid, addr)
                return
            if msg.code not in N.IDEMPOTENT:
                return  # reply forgotten; never run a non-idempotent request twice
        else:
            self.dedup.add(key)
        if msg.mtype == N.NON and unknown_critical(msg) is not None:
            self.dedup.set_reply(key, PENDING)
            return  # RFC 7252 5.4.1: reject a NON silently
        req, resp = self.site.dispatch(msg, addr, self)
        if resp is None:  # deferred: a separate response follows
            if msg.mtype == N.CON:
                self._send_empty(N.ACK, msg.mid, addr)
            self.dedup.set_reply(key, PENDING)
            return
        try:
            code, opts, payload = self.site.render_response(msg, resp)
        except Exception as e:  # e.g. a reader() that failed: answer, do not go silent
            from .server import _log_exc
            _log_exc(e)
            code, opts, payload = N.INTERNAL_SERVER_ERROR, [], b""
        if msg.mtype == N.CON:
            out = CoapMessage(N.ACK, code, msg.mid, msg.token, opts, payload)
            self.dedup.set_reply(key, self._send(out, addr))
        else:
            out = CoapMessage(N.NON, code, self.next_mid(), msg.token, opts, payload)
            self._send(out, addr)
            self.dedup.set_reply(key, PENDING)

    # --- loops -------------------------------------------------------------------
    def serve(self, duration_ms=None, stop=None):
        """Poll until duration_ms elapses, stop() is called or stop_fn() is true."""
        self._stop = False
        end = None if duration_ms is None else ticks_add(ticks_ms(), duration_ms)
        while not self._stop and (stop is None or not stop()):
            if end is None:
                self.poll(200)
            else:
                left = ticks_diff(end, ticks_ms())
                if left <= 0:
                    break
                self.poll(min(200, left))

    def stop(self):
        self._stop = True

    async def run(self):
        """Drive the endpoint from asyncio until stop() (or cancellation)."""
        from .aio import run  # its own module: a poll()/serve() device never loads it
        await run(self)

    def close(self):
        self._stop = True
        for ex in list(self._exchanges.values()):
            ex.cancel()
        try:
            self._poller.unregister(self.transport.pollable)
        except (OSError, KeyError, ValueError):
            pass
        self.transport.close()


def _ready(poller, wait):
    # ipoll (MicroPython) reuses one tuple; poll() builds a list on every loop turn
    ip = getattr(poller, "ipoll", None)
    if ip is None:
        return bool(poller.poll(wait))
    for _ in ip(wait):
        return True
    return False
