"""http:// and https:// fetcher: one GET, streamed into the ImageWriter, Range resume.

Resume asks `Range: bytes=<offset>-` with `If-Range: <ETag or Last-Modified>` saved
at the first checkpoint; a 200 instead of 206, a Content-Range that does not start
at the offset, or a total length that differs from the saved one means the file
changed (or the server cannot resume): Restart. Username/Password go as HTTP Basic
auth. Redirects (301/302/303/307/308) are followed up to 3 times. https needs the
port's ssl module (server certificate verified when CADATA is set).
rate: bytes per second cap. Costs: one 1 KiB buffer and a socket.

Every network wait is a yield: the socket is non-blocking from connect to close, and
_pull yields the poll event it waits for, so the agent's loop keeps serving USP while
a server is slow or silent. A wait longer than TIMEOUT_S with nothing readable ends the
transfer ("timeout"). Only a host name's DNS lookup blocks (IP literals never do).
"""
import select
import socket

from firmware_slots.transfer import pacer, TransferError, Restart, os_why
from firmware_slots.coap._compat import ticks_ms, ticks_diff

CHUNK = 1024
TIMEOUT_S = 30  # longest wait for the server with nothing readable/writable
CADATA = None   # DER CA for https (None: no server verification, as the port's ssl default)
_AGAIN = (11, 35, 115, 114, 36, 37, 10035)  # EAGAIN, EINPROGRESS, EALREADY (Linux, BSD/macOS, Windows)


def split_url(url):
    """-> (scheme, host, port, path)."""
    i = url.find("://")
    scheme = url[:i].lower()
    rest = url[i + 3:]
    j = rest.find("/")
    host, path = (rest, "/") if j < 0 else (rest[:j], rest[j:])
    if "@" in host:
        raise TransferError("credentials in the URL are not supported; use Username/Password")
    port = 443 if scheme == "https" else 80
    if host.startswith("["):
        k = host.find("]")
        if host[k + 1:k + 2] == ":":
            port = int(host[k + 2:])
        host = host[1:k]
    elif ":" in host:
        host, p = host.rsplit(":", 1)
        port = int(p)
    return scheme, host, port, path


def _b64(s):
    import binascii
    return binascii.b2a_base64(s.encode()).strip().decode()


def _again(e):
    # CPython's ssl says "want read/write" with its own classes; errno says it elsewhere
    n = e.args[0] if e.args and isinstance(e.args[0], int) else None
    return n in _AGAIN or type(e).__name__ in ("SSLWantReadError", "SSLWantWriteError", "BlockingIOError")


class _Conn:
    """One non-blocking TCP (+TLS) connection. Its generator methods yield the poll event
    they wait for (select.POLLIN / POLLOUT) and return when done."""

    def __init__(self, scheme, host, port):
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        s = socket.socket(ai[0], socket.SOCK_STREAM)
        s.setblocking(False)
        self.s = s
        self.buf = b""
        self.scheme, self.host, self.addr = scheme, host, ai[-1]

    def open(self):
        try:
            self.s.connect(self.addr)
        except OSError as e:
            if not _again(e):
                raise
        yield select.POLLOUT  # connected, or refused: the first send says which
        if self.scheme != "https":
            return
        try:
            import ssl
        except ImportError:
            raise TransferError("https is not available on this port (no ssl module)")
        if CADATA is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(cadata=CADATA)
        else:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if hasattr(ctx, "check_hostname"):  # CPython: no verification, as the port's default
                ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self.s = ctx.wrap_socket(self.s, server_hostname=self.host, do_handshake_on_connect=False)
        if hasattr(self.s, "do_handshake"):  # CPython; MicroPython shakes hands on the first read/write
            while True:
                try:
                    self.s.do_handshake()
                    return
                except OSError as e:
                    if not _again(e):
                        raise
                    yield select.POLLOUT if type(e).__name__ == "SSLWantWriteError" else select.POLLIN

    def send(self, data):
        mv = memoryview(data)
        while mv:
            try:
                n = self.s.send(mv) if hasattr(self.s, "send") else self.s.write(mv)
            except OSError as e:
                if not _again(e):
                    raise
                n = None
            if n is None:  # would block (MicroPython's ssl returns None)
                yield select.POLLOUT
                continue
            mv = mv[n:]

    def _more(self):
        """Bytes read (b"" at the end), or None when nothing is there yet."""
        try:
            return self.s.recv(CHUNK) if hasattr(self.s, "recv") else self.s.read(CHUNK)
        except OSError as e:
            if _again(e):
                return None
            raise

    def readline(self, out):
        """Appends the next line (with its newline) to list `out`."""
        while b"\n" not in self.buf:
            d = self._more()
            if d is None:
                yield select.POLLIN
                continue
            if not d:
                raise TransferError("connection closed in the response header")
            self.buf += d
            if len(self.buf) > 4096:
                raise TransferError("response header line too long")
        i = self.buf.index(b"\n")
        out.append(self.buf[:i + 1])
        self.buf = self.buf[i + 1:]

    def read(self, n):
        """Up to n bytes, b"" at the end, None when nothing is there yet (poll again)."""
        if self.buf:
            d, self.buf = self.buf[:n], self.buf[n:]
            return d
        return self._more()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def _request(url, headers, conn):
    """Generator: connect, send the GET, read the status and headers; returns (code, hdr)
    with the open connection in conn[0]."""
    for _ in range(4):
        scheme, host, port, path = split_url(url)
        c = _Conn(scheme, host, port)
        conn[:] = [c]
        hostport = host if port in (80, 443) else "%s:%d" % (host, port)
        req = "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: fwslots\r\n" % (path, hostport)
        for k in headers:
            req += "%s: %s\r\n" % (k, headers[k])
        yield from c.open()
        yield from c.send((req + "\r\n").encode())
        line = []
        yield from c.readline(line)
        status = line[0].split(None, 2)
        if len(status) < 2 or not status[0].startswith(b"HTTP/"):
            c.close()
            raise TransferError("not an HTTP response")
        code = int(status[1])
        hdr = {}
        while True:
            line = []
            yield from c.readline(line)
            ln = line[0].strip()
            if not ln:
                break
            k, _, v = ln.partition(b":")
            hdr[k.strip().lower().decode()] = v.strip().decode()
        if code in (301, 302, 303, 307, 308) and "location" in hdr:
            c.close()
            loc = hdr["location"]
            if loc.startswith("/"):
                loc = "%s://%s%s" % (scheme, hostport, loc)
            url = loc
            continue
        return code, hdr
    raise TransferError("too many redirects")


def fetch(url, writer, username="", password="", rate=0):
    """The whole pull, blocking (host tools, tests): the task stepped as its socket allows."""
    t = _Task(url, writer, username, password, rate)
    try:
        while not t.step(t.wait(100)):
            pass
    finally:
        t.close()
    if t.error is not None:
        raise t.error


def start(url, writer, username="", password="", rate=0):
    """The pull as a cooperative task: each step does what the socket allows without
    waiting (connect, request, headers, one chunk) and returns."""
    return _Task(url, writer, username, password, rate)


class _Task:
    def __init__(self, *args):
        self.conn = []   # _request puts the open connection here
        self.gen = _pull(*(args + (self.conn,)))
        self.error = None
        self.want = 0    # the poll event the pull waits for (0: run it again)
        self.poller = None
        self.polled = None  # the socket object registered with self.poller
        self.pollable = None
        self.since = ticks_ms()  # last time the socket had something for us

    def _ready(self, ms):
        c = self.conn[0] if self.conn else None
        if c is None or not self.want or c.buf:
            return True
        if self.polled is not c.s:  # a new connection (redirect) or the TLS wrapper
            self.poller = select.poll()
            self.polled = c.s
            self.poller.register(c.s, self.want)
        else:
            self.poller.modify(c.s, self.want)
        for r in self.poller.poll(ms):
            return True
        return False

    def wait(self, ms):
        """Block up to ms for the socket (the blocking fetch() only)."""
        return self._ready(ms)

    def step(self, ready=False):
        if not (ready or self._ready(0)):
            if ticks_diff(ticks_ms(), self.since) < TIMEOUT_S * 1000:
                return False  # nothing to do yet: serve USP meanwhile
            self.error = TransferError("no answer from the server for %d s" % TIMEOUT_S, "timeout")
            self.close()
            return True
        self.since = ticks_ms()
        try:
            self.want = next(self.gen) or 0
        except StopIteration:
            return True
        except OSError as e:
            self.error = TransferError("%r" % e, os_why(e))
            return True
        except Exception as e:  # TransferError, Restart, a SlotError from the writer
            self.error = e
            return True
        c = self.conn[0] if self.conn else None
        if c is not None and self.pollable is None and c.scheme == "http":
            self.pollable = c.s  # the owner's poll wakes us (an ssl stream buffers on its own)
        return False

    def close(self):
        try:
            self.gen.close()
        except Exception:
            pass
        for c in self.conn:
            c.close()


def _pull(url, writer, username, password, rate, conn):
    """Generator: the whole pull, yielding after the headers and after every chunk."""
    start = writer.offset
    dl = writer.dl or {}
    headers = {}
    if username or password:
        headers["Authorization"] = "Basic " + _b64("%s:%s" % (username, password))
    validator = dl.get("hv") if start else None
    if start:
        headers["Range"] = "bytes=%d-" % start
        if validator:
            headers["If-Range"] = validator
    try:
        code, hdr = yield from _request(url, headers, conn)
    except OSError as e:
        raise TransferError("%s: %r" % (url, e), os_why(e))
    c = conn[0]
    try:
        total = None
        if code == 206 and start:
            cr = hdr.get("content-range", "")  # bytes a-b/total
            try:
                rng, _, tot = cr[6:].partition("/")
                first = int(rng.split("-")[0])
                total = int(tot) if tot != "*" else None
            except ValueError:
                raise TransferError("bad Content-Range %r" % cr)
            if first != start:
                raise TransferError("server resumed at %d, asked %d" % (first, start))
            if dl.get("hl") is not None and total is not None and total != dl["hl"]:
                raise Restart("remote size changed")
        elif code == 200:
            if start:
                raise Restart("server sent the whole file (changed, or no Range support)")
            if "content-length" in hdr:
                total = int(hdr["content-length"])
        elif code in (401, 403):
            raise TransferError("HTTP %d: access denied (Username/Password)" % code, "access denied")
        else:
            raise TransferError("HTTP %d" % code, "not found" if code == 404 else "server refused")
        if "chunked" in hdr.get("transfer-encoding", ""):
            raise TransferError("chunked transfer coding is not supported")
        if writer.size and total is not None and total != writer.size:
            raise TransferError("server size %d differs from FileSize %d" % (total, writer.size))
        if not start:
            keys = {"hl": total}
            v = hdr.get("etag") or hdr.get("last-modified")
            if v and not v.startswith("W/"):  # If-Range needs a strong validator
                keys["hv"] = v
            writer.checkpoint(**keys)
        left = None if total is None else total - start
        sector = writer.region.sector
        sect = start // sector
        pace = pacer(rate)
        yield 0
        while left is None or left > 0:
            d = c.read(CHUNK if left is None else min(CHUNK, left))
            if d is None:
                yield select.POLLIN
                continue
            if not d:
                if left:
                    raise TransferError("connection closed with %d bytes to go" % left)
                break
            writer.write(d)
            if left is not None:
                left -= len(d)
            s = writer.offset // sector
            if s != sect:
                sect = s
                writer.checkpoint()
            if pace:
                pace(len(d))
            yield 0
    except OSError as e:
        raise TransferError("%s: %r" % (url, e), os_why(e))
    finally:
        c.close()
