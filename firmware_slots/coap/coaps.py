"""coaps client: a CoapClient over one DTLS 1.2 session to one peer (Certificate mode).

Used by the coaps image fetcher; the DTLS session itself is coap/dtls.py, the CoAP layers
are the ones a coap:// client uses. ConnectedTransport (a one-peer datagram socket behind
the transport calls of transport.py) is here, not there: only DTLS sessions use it on a
device (the coaps listener's too).
"""
from . import numbers as N
from .transport import _EAGAIN


class DtlsClient:
    """A CoapClient over one DTLS session (coaps) to one peer."""

    def __init__(self, sock, host, port, timeout_ms=None):
        from firmware_slots.coap.protocol import CoapEndpoint
        from firmware_slots.coap.client import CoapClient
        sock.settimeout(0)
        tr = ConnectedTransport(sock, host, port, "coaps", pollable=sock._s,
                                recv=lambda: recv_nb(sock))
        self.endpoint = CoapEndpoint(tr)
        self.client = CoapClient(self.endpoint, timeout_ms=timeout_ms)

    def request(self, *a, **kw):
        return self.client.request(*a, **kw)

    def start(self, *a, **kw):
        return self.client.start(*a, **kw)

    def fetch(self, *a, **kw):
        return self.client.fetch(*a, **kw)

    def close(self):
        self.endpoint.close()


def recv_nb(sock):
    try:
        return sock.recv(2048, timeout=0)
    except OSError as e:
        if e.args == (110,):  # the zero timeout: nothing there (a failed handshake says more)
            return None
        raise


def dtls_client(host, port, cadata, cert=None, key=None, server_hostname=None, timeout_ms=None):
    """A client (request/fetch/close) speaking coaps to host:port, Certificate mode."""
    from firmware_slots.coap import dtls
    # the handshake runs in the session's steps: a silent or slow peer never holds the caller's loop
    s = dtls.connect(host, port, cadata, cert=cert, key=key, server_hostname=server_hostname, wait=False)
    return DtlsClient(s, host, port, timeout_ms)


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
