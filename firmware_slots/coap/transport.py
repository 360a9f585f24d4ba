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

A DTLS session slots in behind the same calls: coaps.ConnectedTransport (in the dtls
tier, so an agent without DTLS holds no class for it).
Addresses are opaque: tuples on CPython and bare-metal ports, raw sockaddr bytes
on the MicroPython unix port; they are only compared and passed back.

Receiving on MicroPython: recvfrom(n) allocates an n-byte scratch buffer for every
datagram, and in a fragmented heap a 1280-byte one is what fails first. No port has
recvfrom_into/recv_into, and socket.readinto() reads until its buffer is full (it would
run datagrams together), so a preallocated buffer cannot be filled safely with datagrams
of unknown length (servertransport.py sizes block responses from a peek). Instead a
small datagram is read by a MSG_PEEK (a small scratch buffer) and then dropped from the
queue by a 1-byte readinto: first PEEK_ACK bytes (an ACK, RST or a response to our POST
needs no larger hole in a fragmented heap), then PEEK bytes (a USP request); only a
datagram that fills both takes the full recvfrom. After a block-sized one the next read skips the
peek (a Block1 upload is all large ones; a 320-byte request is not one). A port
without MSG_PEEK always uses recvfrom.

servertransport.ServerTransport is the socket of a client talking to one server (a
fetcher's): whole Block2 blocks without allocating (its own module: only a pull loads it).
"""
import socket

from . import numbers as N
from ._compat import IS_MICROPYTHON

_EAGAIN = (11, 35, 10035)  # Linux, BSD/macOS, Windows
PEEK_ACK = 64  # bytes: an empty ACK/RST, a 2.04/2.31 answering our POST (token, Block1)
PEEK = 320  # bytes: a USP Get/Set/Operate request with its reply-to fits


def _addr_key(addr):
    # getaddrinfo on the unix port returns a bytearray (unhashable); recvfrom gives bytes
    return bytes(addr) if isinstance(addr, bytearray) else addr


class UdpTransport:
    scheme = "coap"
    error = None  # never set: a UDP socket has no session to lose (a ConnectedTransport's has)

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
                n = PEEK_ACK
                while n:
                    data, addr = s.recvfrom(n, socket.MSG_PEEK)
                    if len(data) < n:
                        s.readinto(self._one)  # drops the datagram we already hold
                        return data, _addr_key(addr)
                    n = PEEK if n < PEEK else 0
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

