"""Image transfer: fetchers that stream a URL into a slots.ImageWriter.

A fetcher module exposes `fetch(url, writer, username="", password="", rate=0)`:
- start at writer.offset (non-zero when resuming an interrupted download);
- writer.write(chunk) for every chunk, in order, never holding the image in RAM;
- writer.checkpoint(**keys) now and then (at least every few KiB) with whatever it
  needs to resume safely (e.g. ETag, Size2, Content-Length); resume reads them back
  from writer.dl, and restarts from 0 (by raising Restart) when the remote file changed;
- rate: bytes per second cap (0 = unlimited);
- raise TransferError(message) on any failure (the caller records DownloadFailed).

Fetchers are looked up by URL scheme and imported only when first used, so a board
without DTLS or HTTP never loads that code. A fetcher also exposes
`start(url, writer, username, password, rate)` -> task (see start() below) so the agent
keeps serving USP while it pulls.
"""


import time


class Pacer:
    """Holds a transfer to `rate` bytes per second (0 = unlimited) by sleeping between chunks."""

    def __init__(self, rate):
        self.rate = rate
        self.n = 0
        self.t0 = now_ms()

    def add(self, n):
        if not self.rate:
            return
        self.n += n
        ahead = self.n * 1000 // self.rate - elapsed_ms(self.t0)
        if ahead > 0:
            _sleep_ms(ahead)


def now_ms():
    try:
        return time.ticks_ms()
    except AttributeError:  # CPython
        return int(time.time() * 1000)


def elapsed_ms(t0):
    try:
        return time.ticks_diff(time.ticks_ms(), t0)  # ticks wrap on a board
    except AttributeError:
        return now_ms() - t0


def _sleep_ms(ms):
    try:
        time.sleep_ms(ms)
    except AttributeError:
        time.sleep(ms / 1000)


class TransferError(Exception):
    """`why`: what failed, in a few words (the start of TransferComplete!'s FaultString)."""
    why = "transfer failed"

    def __init__(self, msg, why=None):
        super().__init__(msg)
        if why:
            self.why = why


def os_why(e):
    """A few words for a socket error (ECONNREFUSED, ETIMEDOUT, ...)."""
    n = e.args[0] if e.args and isinstance(e.args[0], int) else None
    if n == 111 or n == 61:
        return "connection refused"
    if n == 110 or n == 60 or n is None and "timed out" in str(e):
        return "timeout"
    if n in (101, 113, 51, 65):
        return "network unreachable"
    if n == 104 or n == 54:
        return "connection reset"
    if n == -2 or n == -3 or n == 202:  # getaddrinfo: name unknown
        return "host not found"
    return "transfer failed"


class Restart(TransferError):
    """The remote image changed since the checkpoint: start the download again."""


SCHEMES = {
    "file": "firmware_slots.transfer.file",
    "coap": "firmware_slots.transfer.coap",
    "coaps": "firmware_slots.transfer.coap",
    "http": "firmware_slots.transfer.http",
    "https": "firmware_slots.transfer.http",
}


def scheme_of(url):
    i = url.find("://")
    if i <= 0:
        raise TransferError("not a URL: %r" % url)
    return url[:i].lower()


def fetcher(url):
    """The fetcher module for `url`'s scheme, or TransferError if unsupported."""
    scheme = scheme_of(url)
    mod = SCHEMES.get(scheme)
    if mod is None:
        raise TransferError("unsupported URL scheme %r (supported: %s)" % (
            scheme, ", ".join(sorted(SCHEMES))))
    try:
        m = __import__(mod, None, None, ["fetch"])
    except ImportError as e:
        raise TransferError("%s transfers are not available on this device: %s" % (scheme, e))
    return m


def fetch(url, writer, username="", password="", rate=0):
    fetcher(url).fetch(url, writer, username, password, rate)


def start(url, writer, username="", password="", rate=0):
    """Begin a pull as a cooperative task: t.step() -> True when done (then t.error is None
    or what ended it), t.pollable (a socket for the caller's select.poll, or None),
    t.close(). Each fetcher's start() yields between blocks (coap: one Block2 exchange,
    file: a few chunks, http: one chunk once the socket has data)."""
    return fetcher(url).start(url, writer, username, password, rate)
