"""coap:// and coaps:// fetcher: RFC 7959 Block2 pull straight into an ImageWriter.

Resume: the writer's offset (programmed bytes) picks the first block; the blocks
before it are never asked for again. Progress is checkpointed every time the
programmed offset crosses a flash sector (SlotManager.resume rolls back to the
sector start anyway), with the keys that guard a resume:
  bs  block size in use (the server may negotiate it down from _BLOCK_SIZE)
  s2  Size2 of the representation, when the server sends it
  et  ETag, when the server sends one
A resume whose Size2 or ETag (each only when both sides have it) differs raises
Restart. ETag alone is not trusted to be stable: libcoap 4.3.1 numbers transfers
and omits ETag/Size2 on a cold resume at block N>0, aiocoap sends no Size2; the
TR-181 CheckSum, computed while streaming, is the last line of defence.

rate: bytes per second cap, enforced by sleeping between blocks.
coaps: DTLS Certificate mode via firmware_slots.coap.dtls; credentials from
set_dtls(cadata, cert, key) (NoSec is plain coap://).
Costs: one block buffer (1 KiB) plus the CoAP client and a socket while it runs.
"""

from firmware_slots.transfer import pacer, TransferError, Restart, os_why

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_BLOCK_SIZE = const(1024)
_TIMEOUT_MS = const(30000)  # no progress for this long: give up (the request remains resumable)
DTLS = None             # (cadata, cert, key) for coaps://
PARAMS = None           # coap.numbers.TransmissionParams (None: RFC 7252 defaults)
STATS = {"blocks": 0, "bytes": 0, "resumed_at": -1}


def set_dtls(cadata, cert=None, key=None):
    global DTLS
    DTLS = (cadata, cert, key)


def _client(u, bs):
    from firmware_slots.coap.client import CoapClient
    if u.scheme == "coaps":
        if DTLS is None:
            raise TransferError("coaps:// needs DTLS credentials (transfer.coap.set_dtls)")
        from firmware_slots.coap.coaps import dtls_client
        try:
            return dtls_client(u.host, u.port, *DTLS, timeout_ms=_TIMEOUT_MS)
        except (OSError, ValueError) as e:
            raise TransferError("DTLS to %s:%d failed: %s" % (u.host, u.port, e))
    # a socket connected to the server: its blocks land in one buffer of a block plus
    # header, token and options (coap/servertransport.py), none allocated per block.
    # 64 B covers a 2.05 block's worst case (~40 B: 8 B token, ETag 8, Content-Format,
    # Max-Age, Block2, Size2); a larger datagram than recv_size would be cut short
    return CoapClient(params=PARAMS, timeout_ms=_TIMEOUT_MS, recv_size=bs + 64, server=(u.host, u.port))


def fetch(url, writer, username="", password="", rate=0, block_size=None, client=None):
    """The whole pull, blocking (waits on the fetch socket between blocks)."""
    t = start(url, writer, username, password, rate, block_size, client)
    try:
        while not t.step():
            t.wait(200)
    finally:
        t.close()
    if t.error is not None:
        raise t.error


class _Task:
    """A pull in progress: step() after the loop's poll (never blocks) -> True when done,
    then .error is None or the TransferError/SlotError that ended it."""

    def __init__(self, pending, own, url):
        self.p = pending
        self.own = own
        self.url = url
        self.ep = pending.ep
        self.pollable = self.ep.transport.pollable  # for the owner's select.poll
        self.error = None

    def step(self, ready=False):
        ep = self.ep
        if ready:  # the owner's poll saw our socket readable: read it without polling again
            ep.readable()
        else:
            ep.poll(0)
        err = ep.transport.error  # a coaps session that failed (refused, timed out)
        if err is not None:
            self.error = TransferError("DTLS to %s failed: %s" % (self.url, err), "server refused")
            self.close()
            return True
        if not self.p.step():
            return False
        if self.p.error is not None:
            self.error = _error(self.p.error, self.url)
        self.close()
        return True

    def wait(self, ms):
        self.ep.poll(ms)

    def close(self):
        if self.own is not None:
            self.own.close()
            self.own = None


def _error(e, url):
    from firmware_slots.coap.error import CoapError, CoapResponseError, RepresentationChanged
    if isinstance(e, RepresentationChanged):
        return Restart("remote image changed during the transfer: %s" % e)
    if isinstance(e, CoapResponseError):
        return TransferError("%s: %s" % (url, e), "not found" if e.code == 0x84 else "server refused")
    if isinstance(e, CoapError):
        return TransferError("%s: %r" % (url, e), "timeout" if "no response" in str(e) else None)
    if isinstance(e, OSError):
        return TransferError("%s: %r" % (url, e), os_why(e))
    return e  # TransferError, Restart or SlotError raised while writing: as it is


def start(url, writer, username="", password="", rate=0, block_size=None, client=None):
    """Begin pulling `url` into `writer`; -> a task to step() from the caller's loop."""
    from firmware_slots.coap.uri import parse_uri
    try:
        u = parse_uri(url)
    except ValueError as e:
        raise TransferError("bad URL %r: %s" % (url, e))
    dl = writer.dl or {}
    start = writer.offset
    bs = dl.get("bs") if start else None
    bs = bs or block_size or _BLOCK_SIZE
    saved_s2 = dl.get("s2") if start else None
    saved_et = dl.get("et") if start else None
    sector = writer.region.sector
    st = {"first": True, "skip": start % bs, "sect": start // sector}
    pace = pacer(rate)
    STATS["blocks"] = 0
    STATS["bytes"] = 0
    STATS["resumed_at"] = start

    def on_block(offset, chunk, num, more, etag, size2):
        STATS["blocks"] += 1
        if st["first"]:
            st["first"] = False
            if start:
                if saved_s2 is not None and size2 is not None and size2 != saved_s2:
                    raise Restart("remote size changed from %d to %d" % (saved_s2, size2))
                if saved_et is not None and etag is not None and etag != saved_et:
                    raise Restart("remote ETag changed")
            blk = len(chunk) if more else bs
            keys = {"bs": blk if more else bs}
            if size2 is not None:
                keys["s2"] = size2
            if etag is not None:
                keys["et"] = bytes(etag)
            if not start or keys.get("s2") != saved_s2 or keys.get("et") != saved_et:
                writer.checkpoint(**keys)
            if writer.size and size2 is not None and size2 != writer.size:
                raise TransferError("server size %d differs from FileSize %d" % (size2, writer.size))
        skip = st["skip"]
        if skip:
            st["skip"] = 0
            chunk = memoryview(chunk)[skip:]
        writer.write(chunk)
        STATS["bytes"] += len(chunk)
        s = writer.offset // sector
        if s != st["sect"]:
            st["sect"] = s
            writer.checkpoint()
        if pace:
            pace(len(chunk))
        return True

    own = client is None
    if own:
        client = _client(u, bs)
    try:
        c = getattr(client, "client", client)  # a DTLS client wraps a CoapClient
        p = c.start_fetch(u, on_block, block_size=bs, start_block=start // bs)
    except (OSError, ValueError) as e:
        if own:
            client.close()
        raise _error(e, url)
    return _Task(p, client if own else None, url)
