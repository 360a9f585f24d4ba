"""Datagram transports: the only place that touches sockets.

A transport is any object with:

    sendto(data, addr)        send one datagram (addr as returned by resolve/recvfrom)
    recvfrom()                -> (bytes, addr) or None when nothing is waiting (never blocks)
    pollable                  object to register with select.poll (a socket or fd)
    resolve(host, port)       -> addr usable with sendto and comparable with recvfrom's
    peer_hostport(addr)       -> (host str, port int) for logs and reply-to URIs
    local_port                bound port or None
    scheme                    "coap" (a DTLS transport would say "coaps")
    close()

A DTLS transport can slot in behind the same five calls (one session per peer).
Addresses are opaque: tuples on CPython and bare-metal ports, raw sockaddr bytes
on the MicroPython unix port; they are only compared and passed back.

Receiving on MicroPython: recvfrom(n) allocates an n-byte scratch buffer for every
datagram, and in a fragmented heap a 1280-byte one is what fails first. No port has
recvfrom_into/recv_into, and socket.readinto() reads until its buffer is full (it would
run datagrams together), so a preallocated buffer cannot be filled safely. Instead a
small datagram (ACKs, USP requests) is read by a PEEK-byte MSG_PEEK (a small scratch
buffer) and then dropped from the queue by a 1-byte readinto; only a datagram that
fills the peek takes the full recvfrom. After a block-sized one the next read skips the
peek (a Block1 upload is all large ones; a 320-byte request is not one). A port
without MSG_PEEK always uses recvfrom.

ServerTransport (a client's socket connected to its one server, e.g. a fetcher's) reads a
whole Block2 block without allocating: readinto() ends exactly with a datagram when asked
for that datagram's length, and a peek at its first HEAD bytes gives the length (header
and options up to the payload marker, plus the block size its Block2 option announces:
RFC 7959 makes every block but the last exactly that size). The block is read into one
buffer allocated with the transport and lent until the next request goes out (a client
asks for the next block only after consuming this one); a second block meanwhile, and
every other datagram too large for the peek, takes recv() (one exact datagram, allocated).
Caveat: a datagram shorter than its own Block2 option says (a server breaking RFC 7959)
is topped up from the next queued datagram, like any other wrong bytes from the server:
the image's checksum is what catches those.
"""
import socket

from . import numbers as N
from ._compat import IS_MICROPYTHON

_EAGAIN = (11, 35, 10035)  # Linux, BSD/macOS, Windows
PEEK = 320  # bytes: a USP Get/Set/Operate request with its reply-to fits
HEAD = 64   # bytes a ServerTransport peeks: CoAP header, token and a block response's options


def _addr_key(addr):
    # getaddrinfo on the unix port returns a bytearray (unhashable); recvfrom gives bytes
    return bytes(addr) if isinstance(addr, bytearray) else addr


class UdpTransport:
    scheme = "coap"
    error = None  # never set: a UDP socket has no session to lose (ConnectedTransport's has)

    def __init__(self, host="0.0.0.0", port=0, sock=None, recv_size=N.RECV_BUFFER):
        self.recv_size = recv_size
        if sock is None:
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(fam, socket.SOCK_DGRAM)
            if port:  # rebind a fixed port at once after a restart; never for port 0:
                try:  # Linux hands an ephemeral port that another SO_REUSEADDR socket holds
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                except (OSError, AttributeError):
                    pass
            sock.bind(self.resolve(host, port))
        sock.setblocking(False)
        self.sock = sock
        # peek first on MicroPython only (CPython has no heap to fragment)
        self._peek = IS_MICROPYTHON and hasattr(socket, "MSG_PEEK") and hasattr(sock, "readinto")
        self._one = bytearray(1)
        self._big = False
        self.local_port = port or None
        try:
            self.local_port = sock.getsockname()[1]
        except (AttributeError, OSError, TypeError):
            pass  # MicroPython sockets have no getsockname

    @property
    def pollable(self):
        return self.sock

    def resolve(self, host, port):
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)
        return _addr_key(ai[0][-1])

    def sendto(self, data, addr):
        try:
            self.sock.sendto(data, addr)
        except OSError as e:
            # a full send buffer or an ICMP error from an earlier datagram must not kill
            # the loop; retransmission covers the loss
            if not e.args or e.args[0] not in _EAGAIN + (111, 113, 101):
                raise

    def recvfrom(self):
        s = self.sock
        try:
            if self._peek and not self._big:
                data, addr = s.recvfrom(PEEK, socket.MSG_PEEK)
                if len(data) < PEEK:
                    s.readinto(self._one)  # drops the datagram we already hold
                    return data, _addr_key(addr)
            data, addr = s.recvfrom(self.recv_size)
            self._big = len(data) > self.recv_size // 2  # a block: more will follow (Block1)
        except TypeError:  # this port's recvfrom takes no flags
            if not self._peek:
                raise
            self._peek = False
            return self.recvfrom()
        except OSError as e:
            if e.args and e.args[0] in _EAGAIN:
                return None
            if e.args and e.args[0] == 111:  # ECONNREFUSED from an earlier send
                return None
            raise
        return data, _addr_key(addr)

    def peer_hostport(self, addr):
        if isinstance(addr, tuple):
            return addr[0], addr[1]
        fam, ip, port = socket.sockaddr(addr)
        return socket.inet_ntop(fam, ip), port

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class ServerTransport(UdpTransport):
    """A UDP socket connected to one server (a client's own, e.g. a fetcher's): the kernel
    drops other senders, and whole Block2 blocks land in one preallocated buffer (see the
    module docstring). recvfrom() may then return a memoryview of that buffer, valid until
    the next request is sent."""

    def __init__(self, host, port, recv_size=N.RECV_BUFFER):
        UdpTransport.__init__(self, "::" if ":" in host else "0.0.0.0", 0, recv_size=recv_size)
        self.peer = self.resolve(host, port)
        self.sock.connect(self.peer)
        self.buf = bytearray(recv_size) if self._peek else None  # CPython: recv() as it is
        self._lent = False
        self.total = None  # the last Size2 seen: sizes the last block (one resource per transport)

    def sendto(self, data, addr):
        if data[1]:  # a request (not an empty ACK/RST): the lent block has been consumed
            self._lent = False
        try:
            self.sock.send(data)
        except OSError as e:
            if not e.args or e.args[0] not in _EAGAIN + (111, 113, 101):
                raise

    def _block_len(self, h):
        """Length of the datagram starting with the bytes `h` when it is a 2.xx response with a
        Block2 block of known size: a block with more to follow is whole (RFC 7959 2.2), the
        last one is what Size2 leaves; else 0. Walks the options in place (no allocation per
        datagram); message.decode parses the datagram later."""
        if h[1] >> 5 != 2:
            return 0
        pos = 4 + (h[0] & 15)
        num = 0
        blk = -1
        try:
            while True:
                b = h[pos]
                pos += 1
                if b == 0xFF:
                    break
                d = b >> 4
                ln = b & 15
                if d == 15 or ln == 15:
                    return 0
                if d == 13:
                    d = h[pos] + 13
                    pos += 1
                elif d == 14:
                    d = (h[pos] << 8 | h[pos + 1]) + 269
                    pos += 2
                if ln == 13:
                    ln = h[pos] + 13
                    pos += 1
                elif ln == 14:
                    return 0  # an option of 269+ bytes: not a block response we size
                num += d
                if num == N.BLOCK2 or num == N.SIZE2:
                    v = 0
                    for i in range(pos, pos + ln):
                        v = v << 8 | h[i]
                    if num == N.SIZE2:
                        self.total = v
                    else:
                        blk = v
                pos += ln
        except IndexError:  # the options run past the peek
            return 0
        if blk < 0 or blk & 7 == 7:  # no Block2, or BERT
            return 0
        size = 16 << (blk & 7)
        if blk & 8:
            return pos + size
        left = -1 if self.total is None else self.total - (blk >> 4) * size
        return pos + left if 0 < left <= size else 0

    def recvfrom(self):
        s = self.sock
        try:
            if self.buf is None:
                return s.recv(self.recv_size), self.peer
            h = s.recv(HEAD, socket.MSG_PEEK)
            if len(h) < HEAD:
                s.readinto(self._one)  # the whole datagram is in the peek: drop it from the queue
                return h, self.peer
            n = self._block_len(h)
            if not n or n > len(self.buf) or self._lent:
                return s.recv(self.recv_size), self.peer
            if s.readinto(self.buf, n) != n:
                return None  # shorter than its Block2 option says: dropped (retransmission)
            self._lent = True
            return memoryview(self.buf)[:n], self.peer
        except TypeError:  # this port's recv takes no flags: plain recv() from now on
            if self.buf is None:
                raise
            self.buf = None
            return self.recvfrom()
        except OSError as e:
            if e.args and e.args[0] in _EAGAIN + (111,):  # nothing, or ICMP refused: a timeout decides
                return None
            raise


class ConnectedTransport:
    """Adapter for a connected, one-peer datagram socket (e.g. a DTLS session).

    `sock` needs send(data) and recv(n); recv must not block (non-blocking socket,
    or pass `recv=lambda: ...` returning bytes or None). `pollable` is what
    select.poll should watch (default: sock). Every datagram is from/to `peer`.
    """

    error = None  # what ended the session (an OSError/ValueError from send or recv), sticky

    def __init__(self, sock, peer_host, peer_port, scheme="coaps", pollable=None, recv=None,
                 recv_size=N.RECV_BUFFER):
        self.sock = sock
        self.peer = (peer_host, peer_port)
        self.scheme = scheme
        self.pollable = pollable if pollable is not None else sock
        self._recv = recv
        self.recv_size = recv_size
        self.local_port = None

    def resolve(self, host, port):
        return self.peer  # one peer only: every URI on this transport goes to it

    def sendto(self, data, addr):
        if self.error is not None:
            return  # a dead session: its exchanges time out, its owner replaces it
        try:
            self.sock.send(data)
        except (OSError, ValueError) as e:  # handshake refused or timed out, peer gone
            self.error = e

    def recvfrom(self):
        if self.error is not None:
            return None
        try:
            data = self._recv() if self._recv is not None else self.sock.recv(self.recv_size)
        except OSError as e:
            n = e.args[0] if e.args else None
            if n in _EAGAIN or (n == 110 and len(e.args) == 1):
                return None  # EAGAIN, or the bare ETIMEDOUT of a zero-timeout read: nothing there
            self.error = e  # never out of the loop that serves everyone else
            return None
        except ValueError as e:  # the peer's certificate was refused during the handshake
            self.error = e
            return None
        if not data:
            return None
        return data, self.peer

    def peer_hostport(self, addr):
        return self.peer

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
