"""CoapEndpoint.run(): the endpoint driven from asyncio (its own module, so a device
that drives the endpoint with poll() never holds this code or asyncio)."""
import asyncio

from ._compat import ticks_ms, IS_MICROPYTHON


async def run(ep):
    """Until ep.stop() (or cancellation): handle datagrams as the socket becomes readable,
    run the timers every 100 ms at most."""
    ep._stop = False
    timer = asyncio.create_task(_timer_loop(ep))
    try:
        while not ep._stop:
            if IS_MICROPYTHON:
                await _mp_readable(ep.transport.pollable)
            else:
                await _cpy_readable(ep.transport.pollable)
            ep.readable()
    finally:
        timer.cancel()


async def _timer_loop(ep):
    while not ep._stop:
        nd = ep._next_timer(ticks_ms())
        await asyncio.sleep(min(100 if nd is None else nd, 100) / 1000)
        ep._run_timers()


async def _mp_readable(sock):
    # MicroPython's asyncio waits on any pollable; this is how its streams do it.
    # (On CPython this would be an async generator; it is only called on MicroPython.)
    yield asyncio.core._io_queue.queue_read(sock)


async def _cpy_readable(sock):
    loop = asyncio.get_event_loop()
    fut = loop.create_future()
    fd = sock.fileno()

    def ready():
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await fut
    finally:
        loop.remove_reader(fd)
