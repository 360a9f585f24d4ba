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
keeps serving USP while it pulls. writer_for() picks the writer: the interrupted pull
of the same URL, continued, or a new one.
"""

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x


def pacer(rate):
    """-> add(n), which holds a transfer to `rate` bytes per second by sleeping after each
    chunk of n bytes; None for rate 0 (unlimited: the usual Download() loads and keeps nothing)."""
    if not rate:
        return None
    import time
    from firmware_slots.coap._compat import ticks_ms, ticks_diff
    t0 = ticks_ms()
    sent = [0]

    def add(n):
        sent[0] += n
        ahead = sent[0] * 1000 // rate - ticks_diff(ticks_ms(), t0)
        if ahead > 0:
            time.sleep(ahead / 1000)
    return add


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


# URL scheme -> fetcher module (firmware_slots.transfer.<name>), pairs in one ROM tuple
_SCHEMES = const(("file", "file", "coap", "coap", "coaps", "coap", "http", "http", "https", "http"))


def module_of(url):
    """The fetcher module name for `url`'s scheme; TransferError if not a URL or unsupported
    (Download() checks this before its request exists; nothing is imported)."""
    i = url.find("://")
    if i <= 0:
        raise TransferError("not a URL: %r" % url)
    scheme = url[:i].lower()
    for j in range(0, len(_SCHEMES), 2):
        if _SCHEMES[j] == scheme:
            return "firmware_slots.transfer." + _SCHEMES[j + 1]
    raise TransferError("unsupported URL scheme %r (supported: %s)" % (
        scheme, ", ".join(sorted(_SCHEMES[::2]))))


def fetcher(url):
    """The fetcher module for `url`'s scheme, or TransferError if unsupported."""
    mod = module_of(url)
    try:
        m = __import__(mod, None, None, ["fetch"])
    except ImportError as e:
        raise TransferError("%s transfers are not available on this device: %s" % (
            url[:url.find(":")].lower(), e))
    return m


def writer_for(mgr, slot, url, size=0, algorithm="", checksum=b"", name="", version=""):
    """(writer, resumed): resume the interrupted download of `url` in `slot` or start one."""
    from firmware_slots.core.slots import DOWNLOADING
    dl = mgr.download_progress(slot)
    if dl and dl.get("u") == url and mgr.status_code(slot) == DOWNLOADING:
        return mgr.resume(slot), True
    return mgr.install(slot, size, algorithm, checksum, name, version, extra={"u": url}), False


def fetch(url, writer, username="", password="", rate=0):
    fetcher(url).fetch(url, writer, username, password, rate)


def start(url, writer, username="", password="", rate=0):
    """Begin a pull as a cooperative task: t.step() -> True when done (then t.error is None
    or what ended it), t.pollable (a socket for the caller's select.poll, or None),
    t.close(). Each fetcher's start() yields between blocks (coap: one Block2 exchange,
    file: a few chunks, http: one chunk once the socket has data)."""
    return fetcher(url).start(url, writer, username, password, rate)
