"""Resource tree (Site), handler API and /.well-known/core.

A handler sees one `Request` (method, path, query, payload, peer, msg) and returns a
`Response`. Block-wise transfer, 4.04/4.05, 4.02 for unknown critical options and the
link-format listing are handled here so handlers never see them.

    site = Site()
    site.route("usp/agent", post=on_record, rt="bbf.usp.endpoint", if_="bbf.usp.a")
    site.add("fw", Handler(get=on_image), prefix=True)   # a subtree: request.path_rest

A resource is any object with render(request) -> Response, max_body (Block1 limit) and
link_attrs (dict for /.well-known/core, None to hide); Handler is the one this stack has.
Device cost: Site, Response, Request, Handler; coap.blockwise is imported by the first
request that needs Block1 reassembly or Block2 slicing, so a small-record agent never holds it.
"""
from . import numbers as N
from .message import block_decode, block_encode, uint_encode, unknown_critical


class Response:
    """What a handler returns.

    payload: bytes, or leave it None and give reader(offset, n) -> bytes plus size
    (total length, None if unknown) to stream a large body block by block.
    options: extra [(number, bytes|str|int)] appended as-is.
    """

    def __init__(self, code=N.CONTENT, payload=b"", content_format=None, options=None,
                 etag=None, max_age=None, reader=None, size=None, location_path=None):
        self.code = code
        self.payload = payload if reader is None else None
        self.content_format = content_format
        self.options = options or []
        self.etag = etag
        self.max_age = max_age
        self.reader = reader
        self.size = size
        self.location_path = location_path


class Request:
    """One (reassembled) request as a handler sees it; other options: msg.opt(N.X)."""

    def __init__(self, msg, peer, endpoint, path, payload, query):
        self.msg = msg                 # the CoapMessage
        self.peer = peer               # opaque transport address
        self.endpoint = endpoint
        self.method = msg.code
        self.path = path               # tuple of str
        self.path_rest = ()            # below a prefix resource
        self.query = query             # list of str
        self.payload = payload
        self.content_format = msg.opt_uint(N.CONTENT_FORMAT)
        self.block2 = None             # (num, more, szx) the client asked for
        self.deferred = False          # defer() was called
        self.sent = False              # its separate response went out

    def query_value(self, name, default=None):
        """Value of the first `name=value` Uri-Query item (e.g. "reply-to")."""
        p = name + "="
        for q in self.query:
            if q.startswith(p):
                return q[len(p):]
            if q == name:
                return ""
        return default

    def remote(self):
        """(host, port) of the requesting peer."""
        return self.endpoint.transport.peer_hostport(self.peer)

    def defer(self):
        """Answer later: the endpoint ACKs now and `respond()` sends a separate response.
        -> the request itself (it is its own responder: one object less per deferral)."""
        self.deferred = True
        return self

    def respond(self, response):
        if not self.sent:
            self.sent = True
            self.endpoint._send_separate(self, response)


class Handler:
    """A resource made of plain functions: Handler(get=f, post=g, rt="...")."""

    def __init__(self, get=None, post=None, put=None, delete=None, fetch=None,
                 max_body=8192, **attrs):
        self.fns = (get, post, put, delete, fetch)  # by method code 1..5 (N.GET..N.FETCH)
        self.max_body = max_body
        la = {}
        for k, v in attrs.items():
            la[k[:-1] if k.endswith("_") else k] = v  # if_ -> if
        self.link_attrs = la

    def render(self, request):
        m = request.method
        fn = self.fns[m - 1] if 1 <= m <= 5 else None
        if fn is None:
            return Response(N.METHOD_NOT_ALLOWED)
        return fn(request)


def _split(path):
    if isinstance(path, str):
        return tuple(s for s in path.strip("/").split("/") if s) if path.strip("/") else ()
    return tuple(path)


def _well_known_core(request):
    return Response(N.CONTENT, request.endpoint.site.link_format().encode(),
                    content_format=N.LINK_FORMAT)


class Site:
    def __init__(self, max_szx=N.MAX_SZX, upload_slots=2, lifetime_ms=None):
        self.max_szx = max_szx
        self._res = {}          # path tuple -> resource
        self._prefix = {}       # path tuple -> resource serving the subtree
        # bodies of non-GET responses still being fetched with Block2 (RFC 7959 2.6);
        # re-running a POST for each block would repeat its side effects
        self._b2cache = []      # [(peer, path), ticks, Response], at most 2
        self.uploads = None     # blockwise.Block1Assembler, made by the first Block1 request
        self._up = (upload_slots, lifetime_ms)

    def add(self, path, resource, prefix=False):
        (self._prefix if prefix else self._res)[_split(path)] = resource
        return resource

    def remove(self, path):
        p = _split(path)
        self._res.pop(p, None)
        self._prefix.pop(p, None)

    def route(self, path, get=None, post=None, put=None, delete=None, fetch=None,
              max_body=8192, **link_attrs):
        return self.add(path, Handler(get, post, put, delete, fetch, max_body, **link_attrs))

    def find(self, path):
        r = self._res.get(path)
        if r is not None:
            return r, ()
        for i in range(len(path), -1, -1):
            r = self._prefix.get(path[:i])
            if r is not None:
                return r, path[i:]
        if path == (".well-known", "core"):
            r = Handler(_well_known_core)  # made per request: rare, and never resident
            r.link_attrs = None
            return r, ()
        return None, ()

    def link_format(self):
        """RFC 6690 listing of every resource with link_attrs (not None)."""
        items = []
        for table in (self._res, self._prefix):
            for path in sorted(table):
                attrs = table[path].link_attrs
                if attrs is None:
                    continue
                s = "</" + "/".join(path) + ">"
                for k in sorted(attrs):
                    v = attrs[k]
                    if v is True:
                        s += ";" + k
                    elif isinstance(v, int):
                        s += ";%s=%d" % (k, v)
                    else:
                        s += ';%s="%s"' % (k, v)
                items.append(s)
        return ",".join(items)

    # --- request processing (called by the endpoint) -------------------------
    def dispatch(self, msg, peer, endpoint):
        """-> (Request or None, Response); (Request, None): deferred, respond() answers later."""
        crit = unknown_critical(msg)
        if crit is not None:
            return None, Response(N.BAD_OPTION, ("unknown critical option %d" % crit).encode())
        path = []
        query = []
        b1 = b2 = size1 = None
        try:
            for n, v in msg.options:  # one pass over the options (first Block/Size1 counts)
                if n == N.URI_PATH:
                    path.append(v.decode())
                elif n == N.URI_QUERY:
                    query.append(v.decode())
                elif n == N.BLOCK1 and b1 is None:
                    b1 = block_decode(v)
                elif n == N.BLOCK2 and b2 is None:
                    b2 = block_decode(v)
        except ValueError as e:  # UnicodeError is a ValueError on both ports: bad UTF-8 in Uri-*
            return None, Response(N.BAD_REQUEST, str(e).encode() if not isinstance(e, UnicodeError)
                                  else b"Uri-Path/Uri-Query not UTF-8")
        path = tuple(path)
        res, rest = self.find(path)
        if res is None:
            return None, Response(N.NOT_FOUND)
        payload = msg.payload
        max_szx = self.max_szx
        if msg.code != N.GET and b2 is not None and b2[0] > 0 and b1 is None:
            from .blockwise import cached_body
            r = cached_body(self._b2cache, (peer, path))
            if r is not None:  # a copy: the BLOCK1 option below must not pile up on the cached one
                return None, Response(r.code, r.payload, r.content_format, etag=r.etag)
        if b1 is not None:
            num, more, szx = b1
            limit = res.max_body
            up = self.uploads
            if up is None:
                from .blockwise import Block1Assembler
                s, t = self._up
                up = self.uploads = Block1Assembler(s) if t is None else Block1Assembler(s, t)
            code, body = up.feed((peer, path), num, more, szx, payload, limit,
                                 msg.opt_uint(N.SIZE1))
            if code is not None:  # not complete yet, or refused
                if code == N.CONTINUE:
                    opts = [(N.BLOCK1, block_encode(num, True, szx if szx < max_szx else max_szx))]
                elif code == N.REQUEST_ENTITY_TOO_LARGE:
                    opts = [(N.SIZE1, limit)]
                else:
                    opts = None
                return None, Response(code, b"block size mismatch" if code == N.BAD_REQUEST else b"",
                                      options=opts)
            payload = body
        req = Request(msg, peer, endpoint, path, payload, query)
        req.path_rest = rest
        req.block2 = b2
        try:
            resp = res.render(req)
        except Exception as e:  # a broken handler must not take the server down
            _log_exc(e)
            resp = Response(N.INTERNAL_SERVER_ERROR)
        if resp is None:
            if req.deferred and not req.sent:
                return req, None
            resp = Response(N.INTERNAL_SERVER_ERROR, b"handler returned no response")
        if msg.code != N.GET and N.is_success(resp.code) and resp.payload is not None \
                and len(resp.payload) > N.szx_to_size(max_szx):
            from .blockwise import cache_body
            cache_body(self._b2cache, (peer, path), resp)
        if b1 is not None and N.is_success(resp.code):
            resp.options.append((N.BLOCK1, block_encode(b1[0], False, b1[2] if b1[2] < max_szx else max_szx)))
        return req, resp

    def render_response(self, msg, resp):
        """Response -> (code, options, payload) with Block2 slicing for `msg`."""
        opts = []
        for num, v in resp.options:
            if isinstance(v, int):
                v = uint_encode(v)
            elif isinstance(v, str):
                v = v.encode()
            opts.append((num, v))
        code = resp.code
        payload = resp.payload
        if resp.content_format is not None:
            opts.append((N.CONTENT_FORMAT, uint_encode(resp.content_format)))
        if resp.etag is not None:
            opts.append((N.ETAG, resp.etag))
        if resp.max_age is not None:
            opts.append((N.MAX_AGE, uint_encode(resp.max_age)))
        if resp.location_path:
            for seg in _split(resp.location_path):
                opts.append((N.LOCATION_PATH, seg.encode()))
        if N.is_success(code) and code != N.CONTINUE:
            try:
                b2 = msg.opt(N.BLOCK2)
                b2 = None if b2 is None else block_decode(b2)
            except ValueError:
                b2 = None
            if b2 is not None or payload is None or len(payload) > N.szx_to_size(self.max_szx):
                from .blockwise import block2_slice  # only a body over one block needs it
                try:
                    payload, blk, size = block2_slice(payload, resp.reader, resp.size, b2, self.max_szx)
                except ValueError:
                    return N.BAD_OPTION, [], b"block out of range"
                if blk is not None:
                    opts.append((N.BLOCK2, block_encode(*blk)))
                    if size is not None and (blk[0] == 0 or msg.opt(N.SIZE2) is not None):
                        opts.append((N.SIZE2, uint_encode(size)))
        elif payload is None:
            payload = b""
        return code, opts, bytes(payload)


def _log_exc(e):
    import sys
    if hasattr(sys, "print_exception"):
        sys.print_exception(e)
    else:
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__)
