"""The campaign's image, served block-wise (RFC 7959 Block2) through the fleet budget.

GET coap://<host>:<port>/fw?d=<device id>  -> one Block2 block of the image, after the
token bucket let its bytes go. Block2 is handled here (not by aiocoap's cache) so every
block is counted as it leaves: per second (the bandwidth series) and per device (the
d= query; a completed download must never be served again). Size2 and an ETag (first 8
bytes of the SHA-256) go with every block so an agent resuming after a reset can tell
the image did not change. Counters are flushed to the store once a second.
"""
import time

import aiocoap
import aiocoap.resource as resource
from aiocoap.optiontypes import BlockOption

CF_OCTETS = 42
FLUSH_S = 1.0


class ImageResource(resource.Resource):
    def __init__(self, image, bucket, sha256):
        super().__init__()
        self.image = image
        self.bucket = bucket
        self.etag = sha256[:8]
        self.per_second = {}     # whole second -> [bytes, blocks], not yet flushed
        self.per_device = {}     # device id -> blocks, not yet flushed
        self.total_blocks = 0
        self.rt = "fwslots.image"

    async def needs_blockwise_assembly(self, request):
        return False

    async def render_get(self, request):
        b2 = request.opt.block2
        szx = 6 if b2 is None else min(b2.size_exponent, 6)
        num = 0 if b2 is None else b2.block_number
        size = 16 << szx
        off = num * size
        if off >= len(self.image) and off:
            return aiocoap.Message(code=aiocoap.BAD_OPTION, payload=b"block beyond the image")
        chunk = self.image[off:off + size]
        await self.bucket.take(len(chunk))
        dev = None
        for q in request.opt.uri_query:
            if q.startswith("d="):
                dev = q[2:]
        t = int(time.time())
        s = self.per_second.setdefault(t, [0, 0])
        s[0] += len(chunk)
        s[1] += 1
        self.total_blocks += 1
        if dev is not None and dev.isdigit():
            self.per_device[int(dev)] = self.per_device.get(int(dev), 0) + 1
        m = aiocoap.Message(code=aiocoap.CONTENT, payload=chunk)
        m.opt.block2 = BlockOption.BlockwiseTuple(num, off + len(chunk) < len(self.image), szx)
        m.opt.size2 = len(self.image)
        m.opt.etag = self.etag
        m.opt.content_format = CF_OCTETS
        return m

    def take_counts(self):
        ps, pd = self.per_second, self.per_device
        self.per_second, self.per_device = {}, {}
        return ps, pd
