"""CoAP client: requests with Block1 upload and Block2 download (RFC 7959).

    client = CoapClient()                       # own endpoint on an ephemeral port
    client = CoapClient(server=("h", 5683))     # own socket connected to one server
    client = CoapClient(endpoint)               # share the server's endpoint (USP)
    resp = client.request(N.POST, "coap://h/usp?reply-to=...", record,
                          content_format=N.OCTET_STREAM)
    info = client.fetch("coap://h/fw.bin", on_block, start_block=17)

`fetch` streams: each block goes to on_block(offset, chunk, block_num, more, etag,
size2) and is dropped, so a 1 MiB image needs one block of RAM. The block-wise
logic is written once as generators of request messages and driven either
synchronously (request/fetch) or from asyncio (arequest/afetch).
"""
from . import numbers as N
from .message import CoapMessage, block_encode
from .uri import parse_uri
from . import error as E  # one global for the four it raises
from ._compat import urandom


class FetchResult:
    """Outcome of fetch(): etag, size2 (None if the server gave none), next_offset
    (bytes up to which the representation is now known), blocks (delivered count),
    complete (False if on_block stopped the transfer)."""

    def __init__(self):
        self.etag = None
        self.size2 = None
        self.next_offset = 0
        self.blocks = 0
        self.complete = False


class CoapClient:
    def __init__(self, endpoint=None, params=None, timeout_ms=None, recv_size=None, server=None):
        if endpoint is None:  # recv_size: largest datagram expected (default numbers.RECV_BUFFER)
            from .protocol import CoapEndpoint
            tr = None
            if server:  # (host, port): the only peer, blocks read without allocating
                from .servertransport import ServerTransport
                tr = ServerTransport(server[0], server[1], recv_size or N.RECV_BUFFER)
            elif recv_size:
                from .transport import UdpTransport
                tr = UdpTransport(recv_size=recv_size)
            endpoint = CoapEndpoint(tr, site=False, params=params)  # client-only: no Site
            self._own = True
        else:
            self._own = False
        self.endpoints = {endpoint.transport.scheme: endpoint}
        self.endpoint = endpoint  # the coap one once there is one (an attribute: no property object)
        self.timeout_ms = timeout_ms

    def add_endpoint(self, endpoint):
        """Register an endpoint for another scheme (e.g. a DTLS one for coaps)."""
        self.endpoints[endpoint.transport.scheme] = endpoint
        if endpoint.transport.scheme == "coap":
            self.endpoint = endpoint

    def close(self):
        if self._own:
            for ep in self.endpoints.values():
                ep.close()

    # --- public synchronous API --------------------------------------------------
    def request(self, method, uri, payload=b"", options=None, content_format=None,
                accept=None, block_size=1024, confirmable=True, max_body=65536):
        """-> final response CoapMessage, its payload the whole (Block2-reassembled) body.

        4.xx/5.xx come back as responses (check .code); timeouts raise CoapTimeout.
        """
        ep, addr, u = self._target(uri)
        gen = self._request_flow(method, u, payload, options, content_format, accept,
                                 N.size_to_szx(block_size), confirmable, max_body)
        return self._drive(gen, ep, addr)

    def fetch(self, uri, on_block, block_size=1024, start_block=0, options=None, etag=None):
        """Block2 GET streamed to on_block(offset, chunk, block_num, more, etag, size2).

        start_block resumes at that block (of block_size); etag, if given, is the one
        seen before the resume and RepresentationChanged is raised if it differs.
        on_block may return False to stop early. -> FetchResult. A non-2.05 answer
        raises CoapResponseError. chunk is a memoryview of the received datagram:
        copy it (bytes(chunk)) to keep it beyond the call.
        """
        ep, addr, u = self._target(uri)
        gen = self._fetch_flow(u, on_block, N.size_to_szx(block_size), start_block, options, etag)
        return self._drive(gen, ep, addr)

    # --- asyncio API (needs `endpoint.run()` running as a task) -------------------
    async def arequest(self, method, uri, payload=b"", options=None, content_format=None,
                       accept=None, block_size=1024, confirmable=True, max_body=65536):
        ep, addr, u = self._target(uri)
        gen = self._request_flow(method, u, payload, options, content_format, accept,
                                 N.size_to_szx(block_size), confirmable, max_body)
        return await self._adrive(gen, ep, addr)

    async def afetch(self, uri, on_block, block_size=1024, start_block=0, options=None, etag=None):
        ep, addr, u = self._target(uri)
        gen = self._fetch_flow(u, on_block, N.size_to_szx(block_size), start_block, options, etag)
        return await self._adrive(gen, ep, addr)

    # --- non-blocking API (the caller polls the endpoint and calls step()) ---------
    def start(self, method, uri, payload=b"", content_format=None, block_size=1024, max_body=65536):
        """Like request() but returns at once: a Pending to step() after each poll."""
        ep, addr, u = self._target(uri)
        gen = self._request_flow(method, u, payload, None, content_format, None,
                                 N.size_to_szx(block_size), True, max_body)
        return Pending(self, gen, ep, addr)

    def start_fetch(self, uri, on_block, block_size=1024, start_block=0, etag=None):
        """Like fetch() but returns at once: a Pending whose result is the FetchResult."""
        ep, addr, u = self._target(uri)
        gen = self._fetch_flow(u, on_block, N.size_to_szx(block_size), start_block, None, etag)
        return Pending(self, gen, ep, addr)

    # --- drivers ------------------------------------------------------------------
    def _target(self, uri):
        u = parse_uri(uri) if isinstance(uri, str) else uri
        ep = self.endpoints.get(u.scheme)
        if ep is None:
            raise ValueError("no endpoint for scheme %s (coaps needs a DTLS transport)" % u.scheme)
        return ep, ep.transport.resolve(u.host, u.port), u

    def _new_token(self, ep):
        while True:
            t = urandom(4)
            if t not in ep._exchanges:
                return t

    def _drive(self, gen, ep, addr):
        try:
            msg = next(gen)
            while True:
                msg.token = self._new_token(ep)
                resp = ep.wait(ep.send_request(msg, addr, self.timeout_ms))
                msg = gen.send(resp)
        except StopIteration as e:
            return e.value

    async def _adrive(self, gen, ep, addr):
        try:
            msg = next(gen)
            while True:
                msg.token = self._new_token(ep)
                resp = await ep.await_exchange(ep.send_request(msg, addr, self.timeout_ms))
                msg = gen.send(resp)
        except StopIteration as e:
            return e.value

    # --- block-wise flows (generators: yield request, receive response) -----------
    def _base(self, method, u, options, content_format, accept, confirmable):
        m = CoapMessage(N.CON if confirmable else N.NON, method)
        m.options = u.options()
        if options:
            for num, v in options:
                m.add_opt(num, v)
        if content_format is not None:
            m.add_opt(N.CONTENT_FORMAT, content_format)
        if accept is not None:
            m.add_opt(N.ACCEPT, accept)
        return m

    def _request_flow(self, method, u, payload, options, content_format, accept, szx,
                      confirmable, max_body):
        base = self._base(method, u, options, content_format, accept, confirmable)
        total = len(payload)
        bs = N.szx_to_size(szx)
        if total <= bs:
            m = _copy(base)
            m.payload = payload
            resp = yield m
        else:
            offset = 0
            num = 0
            while True:
                chunk = payload[offset:offset + bs]
                more = offset + len(chunk) < total
                m = _copy(base)
                m.add_opt(N.BLOCK1, block_encode(num, more, szx))
                if num == 0:
                    m.add_opt(N.SIZE1, total)
                m.payload = bytes(chunk)
                resp = yield m
                b1 = _block(resp, N.BLOCK1)
                if resp.code == N.REQUEST_ENTITY_TOO_LARGE and num == 0 and b1 and b1[2] < szx:
                    szx = b1[2]  # server asks for smaller blocks: start over
                    bs = N.szx_to_size(szx)
                    continue
                if not more or resp.code != N.CONTINUE:
                    break
                offset += len(chunk)
                if b1 is not None and b1[2] < szx:
                    szx = b1[2]
                    bs = N.szx_to_size(szx)
                num = offset // bs
        b2 = _block(resp, N.BLOCK2)
        if b2 is None or not b2[1]:
            return _owned(resp)
        # the response body comes in blocks: collect them (bounded by max_body)
        body = bytearray(resp.payload)
        etag = resp.etag
        final = resp
        while True:
            num, more, rszx = b2
            if not more:
                break
            if len(body) > max_body:
                raise E.BodyTooLarge("response body over %d bytes" % max_body)
            m = _copy(base)
            m.add_opt(N.BLOCK2, block_encode(len(body) // N.szx_to_size(rszx), False, rszx))
            resp = yield m
            if not N.is_success(resp.code):
                return _owned(resp)
            if resp.etag != etag:
                raise E.RepresentationChanged(etag, resp.etag)
            b2 = _block(resp, N.BLOCK2)
            if b2 is None:
                raise E.CoapResponseError(resp, "Block2 missing in a continuation")
            if b2[0] * N.szx_to_size(b2[2]) != len(body):
                raise E.CoapResponseError(resp, "Block2 out of sequence")
            body += resp.payload
            final = resp
        if len(body) > max_body:
            raise E.BodyTooLarge("response body over %d bytes" % max_body)
        final.payload = bytes(body)
        final.remove_opt(N.BLOCK2)
        return final

    def _fetch_flow(self, u, on_block, szx, start_block, options, etag):
        base = self._base(N.GET, u, options, None, None, True)
        u = options = None  # base has what they said: the parsed URI is not held for the whole pull
        res = FetchResult()
        offset = start_block * N.szx_to_size(szx)
        first = True
        primed = False
        prime_etag = prime_size = None
        while True:
            m = _copy(base)
            m.add_opt(N.BLOCK2, block_encode(offset // N.szx_to_size(szx), False, szx))
            if first:
                m.add_opt(N.SIZE2, 0)  # ask for the total size (RFC 7959 4)
            resp = yield m
            if first and offset and not primed and (
                    resp.code == N.REQUEST_ENTITY_INCOMPLETE
                    or (etag is not None and resp.code == N.CONTENT and resp.etag is None)):
                # A resume the server did not see start: aiocoap (Block2Cache) answers
                # 4.08, libcoap 4.3.1 omits ETag and Size2. Ask for block 0 once, then resume.
                primed = True
                m = _copy(base)
                m.add_opt(N.BLOCK2, block_encode(0, False, szx))
                m.add_opt(N.SIZE2, 0)
                resp = yield m
                if resp.code != N.CONTENT:
                    raise E.CoapResponseError(resp)
                if etag is not None and resp.etag is not None and resp.etag != etag:
                    raise E.RepresentationChanged(etag, resp.etag)
                prime_etag = resp.etag
                prime_size = resp.opt_uint(N.SIZE2)
                continue
            if resp.code != N.CONTENT:
                raise E.CoapResponseError(resp)
            tag = resp.etag
            if tag is None and first:
                tag = prime_etag
            if first:
                if etag is not None and tag != etag:
                    raise E.RepresentationChanged(etag, tag)
                res.etag = tag
                if prime_size is not None:
                    res.size2 = prime_size
            elif tag is not None and res.etag is not None and tag != res.etag:
                # only two different ETags prove a change: libcoap drops the ETag from a
                # block it serves after its transfer state expired (a slow client)
                raise E.RepresentationChanged(res.etag, tag)
            s2 = resp.opt_uint(N.SIZE2)
            if s2 is not None:
                res.size2 = s2
            b2 = _block(resp, N.BLOCK2)
            if b2 is None:
                # no block-wise support: the whole body arrived at once
                chunk = resp.payload[offset:] if offset else resp.payload
                if res.size2 is None:
                    res.size2 = len(resp.payload)
                on_block(offset, chunk, 0, False, tag, res.size2)
                res.blocks += 1
                res.next_offset = len(resp.payload)
                res.complete = True
                return res
            num, more, rszx = b2
            if num * N.szx_to_size(rszx) != offset:
                raise E.CoapResponseError(resp, "Block2 out of sequence")
            first = False
            szx = rszx
            r = on_block(offset, resp.payload, num, more, tag, res.size2)
            res.blocks += 1
            offset += len(resp.payload)
            res.next_offset = offset
            if not more:
                res.complete = True
                return res
            if r is False:
                return res
            # the block's datagram is not held while the next one is received: in a tight
            # heap that one ~1 KiB hole is where the next datagram fits
            resp = None


def _owned(resp):
    """A response handed to the caller owns its payload (the receive path gives a view)."""
    if isinstance(resp.payload, memoryview):
        resp.payload = bytes(resp.payload)
    return resp


class Pending:
    """A request flow (block-wise or not) in flight, advanced by step() without waiting.

    step() -> True once done; then .result (the final response / FetchResult) or .error
    (the exception that ended it: CoapError, OSError, or one raised by on_block). Nothing here blocks: retransmission
    and timeouts run in the endpoint's poll(), which the owner of the loop calls.
    """

    def __init__(self, client, gen, ep, addr):
        self.client = client
        self.gen = gen
        self.ep = ep
        self.addr = addr
        self.ex = None
        self.done = False
        self.result = None
        self.error = None
        self._next(None, True)

    def _next(self, resp, first=False):
        try:
            msg = next(self.gen) if first else self.gen.send(resp)
            msg.token = self.client._new_token(self.ep)
            self.ex = self.ep.send_request(msg, self.addr, self.client.timeout_ms)
        except StopIteration as e:
            self.done = True
            self.result = e.value
        except Exception as e:  # whatever ends the flow (incl. an on_block's) is its outcome
            self.done = True
            self.error = e

    def step(self):
        while not self.done and self.ex.done:  # a cached/piggy-backed answer may finish several
            ex = self.ex
            if ex.error is not None:
                self.done = True
                self.error = ex.error
            else:
                self._next(ex.response)
        return self.done

    def cancel(self):
        if not self.done:
            self.done = True
            self.error = E.CoapError("cancelled")
            if self.ex is not None:
                self.ex.cancel()


def _copy(m):
    return CoapMessage(m.mtype, m.code, 0, b"", list(m.options), b"")


def _block(msg, num):
    v = msg.opt(num)
    if v is None:
        return None
    from .message import block_decode
    return block_decode(v)

