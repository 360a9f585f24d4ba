"""RFC 7959 block-wise transfers, server side (loaded by the first request that needs it).

Block2: slice a body (bytes or a read(offset, n) callable) into the block the client
asked for, never holding more than one block of a streamed body.
Block1: reassemble uploads in a bounded number of bounded buffers.
Non-GET bodies over one block are kept (cache_body) for the client's further Block2
requests: re-running a POST for each block would repeat its side effects (RFC 7959 2.6).
"""
from . import numbers as N
from ._compat import ticks_ms, ticks_diff

OUT_OF_RANGE = "out of range"


def block2_slice(body, reader, size, req_block2, max_szx):
    """-> (chunk, (num, more, szx) or None, size); raises ValueError(OUT_OF_RANGE).

    `body` is bytes-like or None; then `reader(offset, n)` supplies bytes and `size`
    (total length, may be None when unknown) bounds it.
    """
    if body is not None:
        size = len(body)
    max_bs = N.szx_to_size(max_szx)
    if req_block2 is None:
        if size is not None and size <= max_bs:
            return (body if body is not None else reader(0, size)), None, size
        num, szx_c = 0, max_szx
    else:
        num, _, szx_c = req_block2
    szx = szx_c if szx_c < max_szx else max_szx
    offset = num * N.szx_to_size(szx_c)
    bs = N.szx_to_size(szx)
    num = offset // bs  # the server may shrink the block size; offset stays put
    if size is not None and offset >= size and not (offset == 0 and size == 0):
        raise ValueError(OUT_OF_RANGE)
    if body is not None:
        chunk = body[offset:offset + bs]
        more = offset + len(chunk) < size
    elif size is not None:
        chunk = reader(offset, min(bs, size - offset))
        more = offset + len(chunk) < size
    else:
        chunk = reader(offset, bs + 1)
        more = len(chunk) > bs
        chunk = chunk[:bs]
        if not chunk and offset:
            raise ValueError(OUT_OF_RANGE)
    return chunk, (num, more, szx), size


def cached_body(cache, key):
    """The Response a Site keeps in `cache` ([(key, ticks, Response)], its _b2cache) for
    key, or None; entries older than 60 s go first."""
    now = ticks_ms()
    cache[:] = [c for c in cache if ticks_diff(now, c[1]) < 60000]
    for c in cache:
        if c[0] == key:
            return c[2]
    return None


def cache_body(cache, key, resp):
    """Keep resp for key's further Block2 requests; at most 2 bodies (the newest)."""
    cache[:] = [c for c in cache if c[0] != key][-1:]
    cache.append((key, ticks_ms(), resp))


class Block1Assembler:
    """Reassembles Block1 uploads keyed by (peer, path).

    At most `slots` uploads at once (the oldest is evicted) and each bounded by the
    resource's limit; an idle upload expires after `lifetime_ms`.
    Device cost: slots * limit bytes in the worst case.
    """

    def __init__(self, slots=2, lifetime_ms=N.DEFAULT_PARAMS.exchange_lifetime_ms):
        self.slots = slots
        self.lifetime_ms = lifetime_ms
        self._ups = []  # [key, t, bytearray]

    def _find(self, key):
        now = ticks_ms()
        self._ups = [u for u in self._ups if ticks_diff(now, u[1]) <= self.lifetime_ms]
        for u in self._ups:
            if u[0] == key:
                return u
        return None

    def discard(self, key):
        self._ups = [u for u in self._ups if u[0] != key]

    def feed(self, key, num, more, szx, payload, limit, size1=None):
        """-> (None, body) once complete, else (response code, None): 2.31 Continue, 4.08
        Request Entity Incomplete, 4.13 Request Entity Too Large or 4.00 (block size mismatch)."""
        bs = N.szx_to_size(szx)
        if more and len(payload) != bs:
            self.discard(key)
            return N.BAD_REQUEST, None
        offset = num * bs
        up = self._find(key)
        if num == 0:
            if up is not None:
                self.discard(key)
            if (size1 is not None and size1 > limit) or len(payload) > limit:
                return N.REQUEST_ENTITY_TOO_LARGE, None
            if not more:
                return None, payload
            while len(self._ups) >= self.slots:
                self._ups.pop(0)
            self._ups.append([key, ticks_ms(), bytearray(payload)])
            return N.CONTINUE, None
        if up is None:
            return N.REQUEST_ENTITY_INCOMPLETE, None
        buf = up[2]
        if offset != len(buf):
            if more and offset + len(payload) == len(buf):
                return N.CONTINUE, None  # the last block again (lost 2.31): harmless
            return N.REQUEST_ENTITY_INCOMPLETE, None
        if len(buf) + len(payload) > limit:
            self.discard(key)
            return N.REQUEST_ENTITY_TOO_LARGE, None
        buf += payload
        up[1] = ticks_ms()
        if more:
            return N.CONTINUE, None
        self.discard(key)
        return None, bytes(buf)
