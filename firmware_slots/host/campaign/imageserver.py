"""The campaign's image, served block-wise (RFC 7959 Block2) through the fleet budget.

GET coap://<host>:<port>/fw?d=<device id>  -> one Block2 block of the image, after the
token bucket let its bytes go. It is host/controller.py's BlockFile (Block2 sliced by us,
Size2, ETag = first 8 bytes of the SHA-256, so an agent resuming after a reset can tell the
image did not change) with the bucket in front and a count of every block as it leaves:
per second (the bandwidth series) and per device (the d= query: a completed download
must never be served again). The campaign flushes the counts to its store once a second.
"""
import time

from firmware_slots.host.controller import BlockFile

FLUSH_S = 1.0


class ImageResource(BlockFile):
    def __init__(self, image, bucket):
        super().__init__(image)
        self.bucket = bucket
        self.per_second = {}     # whole second -> [bytes, blocks], not yet flushed
        self.per_device = {}     # device id -> blocks, not yet flushed
        self.rt = "fwslots.image"

    async def render_get(self, request):
        b2 = request.opt.block2
        num, szx = (b2.block_number, min(b2.size_exponent, 6)) if b2 is not None else (0, 6)
        size = 1 << (szx + 4)
        await self.bucket.take(max(0, min(size, len(self.data) - num * size)))
        m = await super().render_get(request)
        if m.code is not None and not m.code.is_successful():  # BlockFile leaves 2.05 to aiocoap
            return m
        s = self.per_second.setdefault(int(time.time()), [0, 0])
        s[0] += len(m.payload)
        s[1] += 1
        for q in request.opt.uri_query:
            if q.startswith("d=") and q[2:].isdigit():
                self.per_device[int(q[2:])] = self.per_device.get(int(q[2:]), 0) + 1
        return m

    def take_counts(self):
        ps, pd = self.per_second, self.per_device
        self.per_second, self.per_device = {}, {}
        return ps, pd
