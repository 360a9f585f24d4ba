"""ServerTransport: a client's UDP socket connected to its one server (a fetcher's).

It reads a whole Block2 block without allocating: readinto() ends exactly with a datagram
when asked for that datagram's length, and a peek at its first HEAD bytes gives the length (header
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
from .transport import UdpTransport, _EAGAIN

HEAD = 64  # bytes peeked: CoAP header, token and a block response's options


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
