"""http:// and https:// fetcher: one GET, streamed into the ImageWriter, Range resume.

Resume asks `Range: bytes=<offset>-` with `If-Range: <ETag or Last-Modified>` saved
at the first checkpoint; a 200 instead of 206, a Content-Range that does not start
at the offset, or a total length that differs from the saved one means the file
changed (or the server cannot resume): Restart. Username/Password go as HTTP Basic
auth. Redirects (301/302/303/307/308) are followed up to 3 times. https needs the
port's ssl module (server certificate verified when CADATA is set).
rate: bytes per second cap. Costs: one 1 KiB buffer and a socket.
"""
import socket

from firmware_slots.transfer import Pacer, TransferError, Restart, os_why

CHUNK = 1024
TIMEOUT_S = 30
CADATA = None   # DER CA for https (None: no server verification, as the port's ssl default)


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


class _Conn:
    def __init__(self, scheme, host, port):
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        s = socket.socket(ai[0], socket.SOCK_STREAM)
        try:
            s.settimeout(TIMEOUT_S)
        except (AttributeError, OSError):
            pass
        s.connect(ai[-1])
        if scheme == "https":
            try:
                import ssl
            except ImportError:
                s.close()
                raise TransferError("https is not available on this port (no ssl module)")
            if CADATA is not None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.verify_mode = ssl.CERT_REQUIRED
                ctx.load_verify_locations(cadata=CADATA)
                s = ctx.wrap_socket(s, server_hostname=host)
            else:
                s = ssl.wrap_socket(s, server_hostname=host)
        self.s = s
        self.buf = b""

    def send(self, data):
        if hasattr(self.s, "sendall"):
            self.s.sendall(data)
        else:
            self.s.write(data)

    def _more(self):
        d = self.s.recv(CHUNK) if hasattr(self.s, "recv") else self.s.read(CHUNK)
        return d

    def readline(self):
        while b"\n" not in self.buf:
            d = self._more()
            if not d:
                raise TransferError("connection closed in the response header")
            self.buf += d
            if len(self.buf) > 4096:
                raise TransferError("response header line too long")
        i = self.buf.index(b"\n")
        line, self.buf = self.buf[:i + 1], self.buf[i + 1:]
        return line

    def read(self, n):
        if self.buf:
            d, self.buf = self.buf[:n], self.buf[n:]
            return d
        return self._more()

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def _request(url, headers):
    for _ in range(4):
        scheme, host, port, path = split_url(url)
        c = _Conn(scheme, host, port)
        hostport = host if port in (80, 443) else "%s:%d" % (host, port)
        req = "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nUser-Agent: fwslots\r\n" % (path, hostport)
        for k in headers:
            req += "%s: %s\r\n" % (k, headers[k])
        c.send((req + "\r\n").encode())
        status = c.readline().split(None, 2)
        if len(status) < 2 or not status[0].startswith(b"HTTP/"):
            c.close()
            raise TransferError("not an HTTP response")
        code = int(status[1])
        hdr = {}
        while True:
            line = c.readline().strip()
            if not line:
                break
            k, _, v = line.partition(b":")
            hdr[k.strip().lower().decode()] = v.strip().decode()
        if code in (301, 302, 303, 307, 308) and "location" in hdr:
            c.close()
            loc = hdr["location"]
            if loc.startswith("/"):
                loc = "%s://%s%s" % (scheme, hostport, loc)
            url = loc
            continue
        return c, code, hdr
    raise TransferError("too many redirects")


def fetch(url, writer, username="", password="", rate=0):
    for _ in _pull(url, writer, username, password, rate, None):
        pass


def start(url, writer, username="", password="", rate=0):
    """The pull as a cooperative task: the request and headers in the first step, then one
    chunk per step, read only when the socket has data (plain http: never blocks on a
    stalled server; https reads through ssl, which may)."""
    return _Task(url, writer, username, password, rate)


class _Task:
    def __init__(self, *args):
        self.conn = []   # _pull puts the connection here once it is open
        self.gen = _pull(*(args + (self.conn,)))
        self.error = None
        self.poller = None
        self.pollable = None

    def step(self, ready=False):
        c = self.conn[0] if self.conn else None
        if not ready and c is not None and not c.buf and self.poller is not None and not self.poller.poll(0):
            return False  # nothing to read yet (the owner's poll says so when ready): serve USP meanwhile
        try:
            next(self.gen)
        except StopIteration:
            return True
        except Exception as e:  # TransferError, Restart, a SlotError from the writer
            self.error = e
            return True
        if c is None and self.conn:
            s = self.conn[0].s
            if hasattr(s, "recv"):  # a plain socket: poll it (an ssl stream buffers on its own)
                import select
                self.poller = select.poll()
                self.poller.register(s, select.POLLIN)
                self.pollable = s
        return False

    def close(self):
        try:
            self.gen.close()
        except Exception:
            pass


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
        c, code, hdr = _request(url, headers)
    except OSError as e:
        raise TransferError("%s: %r" % (url, e), os_why(e))
    if conn is not None:
        conn.append(c)
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
        pacer = Pacer(rate)
        yield
        while left is None or left > 0:
            d = c.read(CHUNK if left is None else min(CHUNK, left))
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
            pacer.add(len(d))
            yield
    except OSError as e:
        raise TransferError("%s: %r" % (url, e), os_why(e))
    finally:
        c.close()
