"""TR-369 CoAP MTP binding (USP 1.1 "CoAP Binding", R-COAP.0..16) for the agent.

    ep = CoapEndpoint(UdpTransport("0.0.0.0", 5683))
    mtp = CoapMtp(agent, ep, path="usp", reply_host="192.0.2.7")
    mtp.startup()                # agent.startup() + first poll; boot notifications go out
    while True:
        mtp.step(100)            # serve CoAP, advance POSTs and downloads, run agent.poll()

Inbound (our endpoint resource, rt="bbf.usp.endpoint", if="bbf.usp.a"):
  POST only (4.05 otherwise), Content-Format 42 (4.15 otherwise), a reply-to
  Uri-Query holding a coap/coaps URI (4.00 if missing or malformed), whose host must
  be the sender's own address (4.03: we never reflect replies to a third party),
  a Record the agent can process (4.00, R-COAP.13: not a Record, no payload, a Msg that
  does not decode, a session_context Record, which also gets a DisconnectRecord 7106);
  Records over one datagram arrive block-wise (Block1, reassembled by the Site up to
  max_body, 4.13 beyond). A good Record is answered 2.04 Changed at once with no payload.
Outbound: the agent's replies (to the reply-to URI) and notifications (agent.take_outbox,
  to agent.controller_uri(eid)) go into coap/outbox.py: per-destination bounded queues,
  one CON POST in flight per destination (Block1 when larger than one block) from the
  same socket, advanced by step() and never waited for; a silent destination's Records
  are dropped with a counted reason (outbox.stats). A due reboot waits up to
  REBOOT_HOLD_MS for the queue to drain, so a Reboot()'s OperateResp is ACKed first.
Downloads: the agent's Download() tasks are stepped by step() beside the handler; their
  sockets are watched by the same poll, so Gets are answered while an image is pulled.

Costs on the device: coap.outbox is loaded by the first outbound POST (an agent nobody
has talked to yet does not hold it); its POSTs are the endpoint's own exchanges, so the
reply path never loads coap.client; one reassembly buffer per concurrent Block1 upload (bounded by
max_body) and the queued reply Records; nothing else is kept per request.
A coaps reply-to needs `dtls_client=(cadata, cert, key)`: one DTLS session per
controller, opened on first use and kept (Certificate mode, peer cert required).
"""
from firmware_slots.coap import numbers as N
from firmware_slots.coap.server import Response
from firmware_slots.coap.uri import parse_uri, make_uri
from firmware_slots.coap._compat import ticks_ms, ticks_diff

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_CF_USP = const(42)            # N.OCTET_STREAM, R-COAP.6
_POLL_MS = const(50)           # agent.poll() cadence while a download is being stepped
_REBOOT_HOLD_MS = const(3000)  # longest a due reboot waits for queued Records to be ACKed


class CoapMtp:
    def __init__(self, agent, endpoint, path="usp", reply_host=None, max_body=8192,
                 timeout_ms=None, dtls_client=None, log=None):
        self.agent = agent
        self.endpoint = endpoint
        self.path = path.strip("/")
        self.site = endpoint.site
        self.site.route(self.path, post=self._on_post, max_body=max_body,
                        rt="bbf.usp.endpoint", if_="bbf.usp.a")
        self._timeout_ms = timeout_ms
        self.reply_host = reply_host
        self.dtls_client = dtls_client
        self._outbox = None     # coap.outbox.Outbox, made (and its module loaded) by the first POST
        self._replies = []      # reply-to, CoapUri, Record, ...: replies before the outbox exists
        self._rq = None         # (host, b"reply-to=...") last made by _reply_query
        self.log = log
        self._sessions = {}     # (host, port) -> DTLS CoapEndpoint
        self.stats = {"in": 0, "refused": 0}
        if hasattr(agent, "coop"):
            agent.coop = True   # Download() runs beside the USP handler, stepped by step()
        self._wgen = 0          # agent.task_gen the watched sockets belong to
        self._wkeys = []        # transfer sockets registered with the endpoint's poller
        self._polled = 0
        self._hold = None       # ticks when a due reboot started waiting for the outbox

    @property
    def outbox(self):
        o = self._outbox
        if o is None:
            from firmware_slots.coap.outbox import Outbox
            o = self._outbox = Outbox(self.endpoint, self._route, self._reply_query, self._timeout_ms,
                                      log=self.log)
        return o

    def _reply_query(self, u):
        # our POSTs' Uri-Query "reply-to=<own_uri>", made once per host it names, not per POST
        h = u.host  # a loopback controller gets a loopback reply-to
        host = self.reply_host or (h if h in ("127.0.0.1", "::1", "localhost") else "127.0.0.1")
        q = self._rq
        if q is None or q[0] != host:
            q = self._rq = (host, ("reply-to=" + self.own_uri(host)).encode())
        return q[1]

    def _route(self, u):
        ep = self.endpoint
        if u.scheme == ep.transport.scheme:
            return ep
        if u.scheme != "coaps":
            raise ValueError("no endpoint for scheme " + u.scheme)
        return self._dtls(u).endpoint

    def serve_images(self, mgr, prefix="fw"):
        """GET <prefix>/<i> streams FirmwareImage.<i>'s bytes block-wise (Block2, Size2,
        ETag = first 8 bytes of its SHA-256): for inspection and for peers pulling an
        image from a device that has it. Read from flash block by block, never copied."""
        from firmware_slots.coap.server import Handler

        def get(req):
            rest = req.path_rest
            # /fw/<1..n> only: anything else (0, 99, -1, /fw, /fw/1/x) is no resource: 4.04
            if len(rest) != 1 or not rest[0].isdigit() or not 0 < int(rest[0]) <= mgr.n:
                return Response(N.NOT_FOUND)
            i = int(rest[0]) - 1
            info = mgr.info(i)
            n = info["Length"]
            if not n or not info["SHA256"]:
                return Response(N.NOT_FOUND, b"no image")
            region = mgr.regions[i]

            def reader(offset, k):
                k = min(k, n - offset)
                buf = bytearray(k)
                region.read(offset, buf)
                return buf

            import binascii
            return Response(N.CONTENT, reader=reader, size=n, content_format=N.OCTET_STREAM,
                            etag=binascii.unhexlify(info["SHA256"][:16]))

        h = Handler(get=get, rt="fwslots.image")
        self.site.add(prefix, h, prefix=True)
        return h

    # -- our own address as controllers should reply to it --------------------------------
    def own_uri(self, peer_host=None):
        host = self.reply_host
        if host is None:
            host = peer_host or "127.0.0.1"
        port = self.endpoint.transport.local_port or N.COAP_PORT
        return make_uri(self.endpoint.transport.scheme, host, port, self.path.split("/"))

    # -- inbound ------------------------------------------------------------------------------
    def _refuse(self, code, why):
        self.stats["refused"] += 1
        self._log("refused %s: %s" % (N.code_str(code), why))
        return Response(code, why.encode())

    def _on_post(self, req):
        cf = req.content_format
        if cf != _CF_USP:
            return self._refuse(N.UNSUPPORTED_CONTENT_FORMAT, "Content-Format must be 42")
        reply_to = req.query_value("reply-to")
        if not reply_to:
            return self._refuse(N.BAD_REQUEST, "reply-to Uri-Query missing")
        try:
            u = parse_uri(reply_to)
        except ValueError as e:
            return self._refuse(N.BAD_REQUEST, "reply-to: %s" % e)
        if u.query:
            return self._refuse(N.BAD_REQUEST, "reply-to must not carry a query")
        peer_host, _ = req.remote()
        if u.host != peer_host:
            tr = self.endpoint.transport
            try:
                same = tr.resolve(u.host, u.port) == tr.resolve(peer_host, u.port)
            except (OSError, ValueError, IndexError):
                same = False
            if not same:
                # never let one host make us send to another (reflection/amplification)
                return self._refuse(N.FORBIDDEN, "reply-to host is not the sender")
        bad = getattr(self.agent, "BadRecord", None)
        if bad is None:
            from firmware_slots.usp.agent import BadRecord as bad
        if self._outbox is not None:
            self._outbox.heard(reply_to)
        try:
            replies = self._handle(req.payload, reply_to)
        except bad as e:
            replies = getattr(e, "replies", ())  # e.g. a DisconnectRecord (7106)
            self._hold_replies(reply_to, u, replies)
            return self._refuse(N.BAD_REQUEST, str(e) or "not a USP Record")  # R-COAP.13
        self.stats["in"] += 1
        self._hold_replies(reply_to, u, replies)
        return Response(N.CHANGED)  # R-COAP.7: at once, no payload

    def _hold_replies(self, reply_to, u, replies):
        # until the outbox exists, held for flush(): the first reply loads coap.outbox, which
        # in the handler (with the request's datagram, message and Records live) is the Get's
        # peak of heap; after that the outbox's bounds apply at once. Bounded: step() flushes
        # after every poll, and a poll drains at most 32 datagrams
        q = self._replies
        for rec in replies or ():
            if self._outbox is not None:
                self.send(reply_to, rec, u)
            else:
                q.append(reply_to)
                q.append(u)
                q.append(rec)

    def _handle(self, record, reply_to):
        # plain CoAP names no certificate; the coaps MTP's sessions override this
        return self.agent.handle(record, reply_to)

    # -- outbound ----------------------------------------------------------------------------
    def send(self, uri, record, u=None):
        """Queue one Record for a controller's USP endpoint URI (u: it parsed, if at hand);
        -> False if dropped (counted in outbox.stats). The POST goes out and is retransmitted
        from step(), never waited for."""
        try:
            return self.outbox.put(uri, record, u)
        except ValueError as e:
            self._log("bad controller URI %r: %s" % (uri, e))
            return False

    def _dtls(self, u):
        if self.dtls_client is None:
            raise ValueError("coaps reply-to but no DTLS client credentials configured")
        key = (u.host, u.port)
        c = self._sessions.get(key)
        if c is not None and c.endpoint.transport.error is not None:
            self._log("coaps session to %s:%d ended: %s" % (u.host, u.port, c.endpoint.transport.error))
            c.close()  # refused, timed out or gone: the next POST shakes hands anew
            c = None
        if c is None:
            from firmware_slots.coap.coaps import dtls_client
            c = dtls_client(u.host, u.port, *self.dtls_client)
            self._sessions[key] = c
        return c

    def flush(self):
        """Queue the handler's replies, advance queued POSTs (and poll DTLS client
        sessions); never blocks."""
        q = self._replies
        if q:
            for i in range(0, len(q), 3):
                self.send(q[i], q[i + 2], q[i + 1])
            del q[:]
        for c in self._sessions.values():
            c.endpoint.poll(0)
        if self._outbox is not None:
            self._outbox.step()

    def collect(self):
        for eid, rec in self.agent.take_outbox():
            uri = self.agent.controller_uri(eid)
            if uri:
                self.send(uri, rec)
            else:
                self._log("no CoAP address for controller %s" % eid)

    # -- driving ------------------------------------------------------------------------------
    def startup(self):
        self.agent.startup()
        self.collect()
        self.flush()

    def step(self, timeout_ms=100):
        """One loop turn: wait for a datagram (ours or a download's), serve it, advance
        POSTs and downloads, agent.poll() (at most every POLL_MS while a download runs:
        the pull keeps its speed) and send its outbox. Never blocks beyond timeout_ms."""
        ag = self.agent
        n = self.endpoint.poll(timeout_ms if not self._sessions else min(timeout_ms, 20))
        tasks = getattr(ag, "tasks", None)
        if tasks:
            ag.step_tasks()
            if not n and self._wgen == ag.task_gen and not self._sessions and \
                    (self._outbox is None or not self._outbox.dests) and \
                    ticks_diff(ticks_ms(), self._polled) < _POLL_MS:
                # only the download's socket speaks: block after block straight from the
                # poller, until our own socket has a datagram, a quiet 20 ms or POLL_MS
                ep = self.endpoint
                t0 = self._polled
                while ag.tasks and self._wgen == ag.task_gen and ticks_diff(ticks_ms(), t0) < _POLL_MS:
                    if ep.ready(20) != 1:
                        break  # quiet, or our own socket has a datagram: the full turn
                    ag.step_tasks(True)
                return
        self.flush()
        now = ticks_ms()
        if getattr(ag, "reboot_due", None) and self._outbox is not None and self._outbox.busy():
            # a Reboot()'s OperateResp (and the rest) gets its ACK before the reset, bounded
            if self._hold is None:
                self._hold = now
            if ticks_diff(now, self._hold) < _REBOOT_HOLD_MS:
                self.flush()
                return
        self._hold = None
        if n or not tasks or ticks_diff(now, self._polled) >= _POLL_MS:
            self._polled = now
            ag.poll(now)
        if tasks is not None and self._wgen != ag.task_gen:
            self._rewatch()
        self.collect()
        self.flush()

    def _rewatch(self):
        ep = self.endpoint
        for k in self._wkeys:
            ep.unwatch(k)
        self._wkeys = [ep.watch(p) for p in self.agent.pollables()]
        self._wgen = self.agent.task_gen

    def serve(self, duration_ms=None, stop=None):
        from firmware_slots.coap._compat import ticks_add
        end = None if duration_ms is None else ticks_add(ticks_ms(), duration_ms)
        while stop is None or not stop():
            if end is not None and ticks_diff(end, ticks_ms()) <= 0:
                break
            self.step(100)

    def close(self):
        for c in self._sessions.values():
            c.close()
        self._sessions = {}
        self.endpoint.close()

    def _log(self, s):
        if self.log:
            self.log(s)
