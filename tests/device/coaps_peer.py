"""A controller's USP endpoint for device-side test scripts (MicroPython): /ctl collects the
Records POSTed to it, over one DTLS session (endpoint) or any transport (usp_site).
Scripts add tests/device to sys.path."""
from firmware_slots.coap import numbers as N
from firmware_slots.coap.coaps import recv_nb
from firmware_slots.coap.protocol import CoapEndpoint
from firmware_slots.coap.server import Response, Site
from firmware_slots.coap.coaps import ConnectedTransport


def usp_site():
    """(Site with POST /ctl, the list its payloads land in)."""
    got = []

    def on_post(req):
        got.append(bytes(req.payload))
        return Response(N.CHANGED)
    site = Site()
    site.route("ctl", post=on_post)
    return site, got


def endpoint(sock, peer_port):
    """(CoapEndpoint over DTLS session `sock` serving usp_site(), its payload list)."""
    site, got = usp_site()
    sock.settimeout(0)
    tr = ConnectedTransport(sock, "127.0.0.1", peer_port, "coaps", pollable=sock._s, recv=lambda: recv_nb(sock))
    return CoapEndpoint(tr, site), got
