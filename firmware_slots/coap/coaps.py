"""coaps client: a CoapClient over one DTLS 1.2 session to one peer (Certificate mode).

Used by the MTP for coaps reply-to POSTs and by the coaps image fetcher; the DTLS
session itself is coap/dtls.py, the CoAP layers are the ones a coap:// client uses.
"""


class DtlsClient:
    """A CoapClient over one DTLS session (coaps) to one peer."""

    def __init__(self, sock, host, port, timeout_ms=None):
        from firmware_slots.coap.transport import ConnectedTransport
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
