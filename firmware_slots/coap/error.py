"""Exceptions raised to users of the CoAP stack."""


class CoapError(Exception):
    """Also what a request the peer answered with RST fails with ("reset by peer")."""


class CoapTimeout(CoapError):
    """No ACK/response within the RFC 7252 retransmission window (R-COAP.9)."""


class CoapResponseError(CoapError):
    """A 4.xx/5.xx (or otherwise unusable) response; `.response` is the CoapMessage."""

    def __init__(self, response, text=None):
        from .numbers import code_str
        super().__init__(text or ("CoAP error response " + code_str(response.code)))
        self.response = response
        self.code = response.code


class RepresentationChanged(CoapError):
    """The ETag changed between blocks of one Block2 transfer (or since a resume point)."""

    def __init__(self, old_etag, new_etag):
        super().__init__("representation changed (ETag %r -> %r)" % (old_etag, new_etag))
        self.old_etag = old_etag
        self.new_etag = new_etag


class BodyTooLarge(CoapError):
    """A response body exceeded the caller's max_body (use fetch() to stream)."""
