"""Host-side peers for demos and tests: a free loopback port, an aiocoap image server,
console waits and factory provisioning of a virtual board over its serial console.

Host only (CPython, aiocoap); the product's device code never imports this.
"""
import asyncio
import hashlib
import socket
import threading
import time


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# --------------------------------------------------------------------- image server
class ImageServer:
    """aiocoap server on 127.0.0.1 in a background thread serving images at /fw/<name>
    (Block2 sliced by aiocoap). Counts every block request: `blocks[name]` is the list of
    Block2 numbers asked for, in order. delay: seconds per block (to aim a power cut);
    on_block(name, num): called from the server thread before each block is answered."""

    def __init__(self, images, delay=0.0, on_block=None):
        import aiocoap  # noqa: F401  (fail early, in the caller's thread)
        self.images = dict(images)
        self.delay = delay
        self.on_block = on_block
        self.blocks = {k: [] for k in self.images}
        self.port = free_udp_port()
        self._ready = threading.Event()
        self._err = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self._ready.wait(10) or self._err:
            raise RuntimeError("image server did not start: %s" % self._err)

    def uri(self, name):
        return "coap://127.0.0.1:%d/fw/%s" % (self.port, name)

    def _run(self):
        import aiocoap
        import aiocoap.resource as resource
        srv = self

        class Image(resource.Resource):
            def __init__(self, name):
                super().__init__()
                self.name = name
                self.etag = hashlib.sha256(srv.images[name]).digest()[:8]

            async def needs_blockwise_assembly(self, request):
                return False  # Block2 sliced here: every block is seen (and counted), and a
                # resume at block N from a new socket works (aiocoap's cache would 4.08 it)

            async def render_get(self, request):
                from aiocoap.optiontypes import BlockOption
                data = srv.images[self.name]
                b2 = request.opt.block2
                num, szx = (b2.block_number, min(b2.size_exponent, 6)) if b2 is not None else (0, 6)
                size = 1 << (szx + 4)
                srv.blocks[self.name].append(num)
                if srv.on_block:
                    srv.on_block(self.name, num)
                if srv.delay:
                    await asyncio.sleep(srv.delay)
                if num * size >= len(data) and num:
                    return aiocoap.Message(code=aiocoap.BAD_OPTION)
                m = aiocoap.Message(payload=data[num * size:(num + 1) * size], etag=self.etag,
                                    content_format=42)
                m.opt.block2 = BlockOption.BlockwiseTuple(num, (num + 1) * size < len(data), szx)
                m.opt.size2 = len(data)
                return m

        site = resource.Site()
        for name in self.images:
            site.add_resource(["fw", name], Image(name))
        self.loop = asyncio.new_event_loop()

        async def main():
            self._stop = asyncio.Event()
            try:
                self.ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", self.port))
            except Exception as e:
                self._err = e
                self._ready.set()
                return
            self._ready.set()
            await self._stop.wait()
            await self.ctx.shutdown()

        self.loop.run_until_complete(main())

    def close(self):
        if self.thread.is_alive() and not self._err:
            self.loop.call_soon_threadsafe(self._stop.set)
            self.thread.join(10)


def wait_console(board, text, start=0, timeout=20.0):
    """Wait until `text` (bytes or str) appears in the board's console after offset
    `start`; -> the offset just past it. TimeoutError with the console tail otherwise."""
    if isinstance(text, str):
        text = text.encode()
    end = time.monotonic() + timeout
    while True:
        i = bytes(board.transcript).find(text, start)
        if i >= 0:
            return i + len(text)
        if time.monotonic() > end:
            tail = bytes(board.transcript[max(start, len(board.transcript) - 3000):])
            raise TimeoutError("no %r on the console; tail:\n%s" % (text, tail.decode(errors="replace")))
        time.sleep(0.02)


def provision(board, image, slot=0, timeout=30.0, progress_cb=None):
    """Factory install over the serial console: write `image` into `slot`, point
    BootFirmwareImage at it, reset; returns once its agent confirmed (console 'APP confirmed').
    The console is then busy with the agent's loop: USP takes over."""
    import hil
    dut = hil.connect(board)
    try:
        first = dut.wait_boot(timeout)
        info = dut.install(slot, image, progress_cb)
        dut.set_boot(slot)
        mark = len(board.transcript)
        dut.reset()
        wait_console(board, "APP confirmed", mark, timeout)
    finally:
        dut.close()
    return first, info


