"""Resource tree (Site), handler API and /.well-known/core.

A handler sees one `Request` (method, path, query, options, payload, peer) and
returns a `Response`. Block-wise transfer, 4.04/4.05, 4.02 for unknown critical
options and the link-format listing are handled here so handlers never see them.

    site = Site()
    site.route("usp/agent", post=on_record, rt="bbf.usp.endpoint", if_="bbf.usp.a")
    site.add("fw/image.bin", FileResource(...))          # any Resource subclass
"""
from . import numbers as N
from .message import block_decode, block_encode, uint_encode, unknown_critical
from .blockwise import (block2_slice, Block1Assembler, B1_CONTINUE, B1_DONE,
                        B1_INCOMPLETE, B1_TOO_LARGE, B1_BAD)
from .error import HandlerError
from ._compat import ticks_ms, ticks_diff

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
    """One (reassembled) request as a handler sees it."""

    def __init__(self, msg, peer, endpoint, path, payload, query=None):
        self.msg = msg                 # the CoapMessage (options: msg.opt(N.X))
        self.peer = peer               # opaque transport address
        self.endpoint = endpoint
        self.method = msg.code
        self.path = path               # tuple of str
        self.path_rest = ()            # below a prefix resource
        self.query = msg.uri_query if query is None else query  # list of str
        self.payload = payload
        self.responder = None
        self.block2 = None             # (num, more, szx) the client asked for

    @property
    def options(self):
        return self.msg.options

    @property
    def content_format(self):
        return self.msg.content_format

    @property
    def accept(self):
        return self.msg.opt_uint(N.ACCEPT)

    @property
    def confirmable(self):
        return self.msg.mtype == N.CON

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
        """Answer later: the endpoint ACKs now and `Responder.respond()` sends a separate response."""
        if self.responder is None:
            self.responder = Responder(self)
        return self.responder


class Responder:
    def __init__(self, request):
        self.request = request
        self.sent = False

    def respond(self, response):
        if not self.sent:
            self.sent = True
            self.request.endpoint._send_separate(self.request, response)


class Resource:
    """Subclass and define render_get / render_post / render_put / render_delete ...

    link_attrs: dict of link-format attributes for /.well-known/core, or None to hide.
    max_body: Block1 reassembly limit in bytes (4.13 with Size1 beyond it).
    """
    link_attrs = {}
    max_body = 8192

    def render(self, request):
        name = N.METHOD_NAMES.get(request.method)
        fn = getattr(self, "render_" + name.lower(), None) if name else None
        if fn is None:
            return Response(N.METHOD_NOT_ALLOWED)
        return fn(request)


class Handler(Resource):
    """A Resource made of plain functions: Handler(get=f, post=g, rt="...")."""

    def __init__(self, get=None, post=None, put=None, delete=None, fetch=None,
                 max_body=8192, **attrs):
        self.methods = {}
        for code, fn in ((N.GET, get), (N.POST, post), (N.PUT, put), (N.DELETE, delete),
                         (N.FETCH, fetch)):
            if fn is not None:
                self.methods[code] = fn
        self.max_body = max_body
        self.link_attrs = _attrs(attrs)

    def render(self, request):
        fn = self.methods.get(request.method)
        if fn is None:
            return Response(N.METHOD_NOT_ALLOWED)
        return fn(request)


def _attrs(attrs):
    out = {}
    for k, v in attrs.items():
        if k.endswith("_"):
            k = k[:-1]  # if_ -> if
        out[k] = v
    return out


def _split(path):
    if isinstance(path, str):
        return tuple(s for s in path.strip("/").split("/") if s) if path.strip("/") else ()
    return tuple(path)


DEFERRED = object()


class Site:
    def __init__(self, max_szx=N.MAX_SZX, upload_slots=2, lifetime_ms=None):
        self.max_szx = max_szx
        self._res = {}          # path tuple -> Resource
        self._prefix = {}       # path tuple -> Resource serving the subtree
        # bodies of non-GET responses still being fetched with Block2 (RFC 7959 2.6);
        # re-running a POST for each block would repeat its side effects
        self._b2cache = []      # [(peer, path), ticks, Response], at most 2
        self.uploads = Block1Assembler(upload_slots) if lifetime_ms is None else \
            Block1Assembler(upload_slots, lifetime_ms)

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
            return _WKC, ()
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
        """-> (Request or None, Response or DEFERRED)."""
        crit = unknown_critical(msg)
        if crit is not None:
            return None, Response(N.BAD_OPTION, ("unknown critical option %d" % crit).encode())
        try:
            b1 = msg.block1
            b2 = msg.block2
            path = tuple(msg.uri_path)
            query = msg.uri_query
        except ValueError as e:  # UnicodeError is a ValueError on both ports: bad UTF-8 in Uri-*
            return None, Response(N.BAD_REQUEST, str(e).encode() if not isinstance(e, UnicodeError)
                                  else b"Uri-Path/Uri-Query not UTF-8")
        res, rest = self.find(path)
        if res is None:
            return None, Response(N.NOT_FOUND)
        payload = msg.payload
        if msg.code != N.GET and b2 is not None and b2[0] > 0 and b1 is None:
            cached = self._cached_body((peer, path))
            if cached is not None:
                return None, cached
        if b1 is not None:
            num, more, szx = b1
            limit = res.max_body
            size1 = msg.opt_uint(N.SIZE1)
            outcome, body = self.uploads.feed((peer, path), num, more, szx, payload, limit, size1)
            if outcome == B1_CONTINUE:
                szx_r = szx if szx < self.max_szx else self.max_szx
                return None, Response(N.CONTINUE, options=[(N.BLOCK1, block_encode(num, True, szx_r))])
            if outcome == B1_TOO_LARGE:
                return None, Response(N.REQUEST_ENTITY_TOO_LARGE, options=[(N.SIZE1, limit)])
            if outcome == B1_INCOMPLETE:
                return None, Response(N.REQUEST_ENTITY_INCOMPLETE)
            if outcome == B1_BAD:
                return None, Response(N.BAD_REQUEST, b"block size mismatch")
            payload = body
        req = Request(msg, peer, endpoint, path, payload, query)
        req.path_rest = rest
        req.block2 = b2
        try:
            resp = res.render(req)
        except HandlerError as e:
            resp = Response(e.code, e.text.encode() if isinstance(e.text, str) else e.text)
        except Exception as e:  # a broken handler must not take the server down
            _log_exc(e)
            resp = Response(N.INTERNAL_SERVER_ERROR)
        if resp is None:
            if req.responder is not None and not req.responder.sent:
                return req, DEFERRED
            resp = Response(N.INTERNAL_SERVER_ERROR, b"handler returned no response")
        if msg.code != N.GET and N.is_success(resp.code) and resp.payload is not None \
                and len(resp.payload) > N.szx_to_size(self.max_szx):
            self._cache_body((peer, path), resp)
        if b1 is not None and N.is_success(resp.code):
            resp.options.append((N.BLOCK1, block_encode(b1[0], False, b1[2] if b1[2] < self.max_szx else self.max_szx)))
        return req, resp

    def _cached_body(self, key):
        now = ticks_ms()
        self._b2cache = [c for c in self._b2cache if ticks_diff(now, c[1]) < 60000]
        for c in self._b2cache:
            if c[0] == key:
                r = c[2]
                return Response(r.code, r.payload, r.content_format, etag=r.etag)
        return None

    def _cache_body(self, key, resp):
        self._b2cache = [c for c in self._b2cache if c[0] != key][-1:]
        self._b2cache.append((key, ticks_ms(), resp))

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
                b2 = msg.block2
            except ValueError:
                b2 = None
            try:
                chunk, blk, size = block2_slice(payload, resp.reader, resp.size, b2, self.max_szx)
            except ValueError:
                return N.BAD_OPTION, [], b"block out of range"
            payload = chunk
            if blk is not None:
                opts.append((N.BLOCK2, block_encode(*blk)))
                if size is not None and (blk[0] == 0 or msg.has_opt(N.SIZE2)):
                    opts.append((N.SIZE2, uint_encode(size)))
        elif payload is None:
            payload = b""
        return code, opts, bytes(payload)


class _WellKnownCore(Resource):
    link_attrs = None

    def render_get(self, request):
        return Response(N.CONTENT, request.endpoint.site.link_format().encode(),
                        content_format=N.LINK_FORMAT)


_WKC = _WellKnownCore()


def _log_exc(e):
    import sys
    if hasattr(sys, "print_exception"):
        sys.print_exception(e)
    else:
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__)
