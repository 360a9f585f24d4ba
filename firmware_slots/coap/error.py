"""Exceptions raised to users of the CoAP stack.

CoapError and CoapTimeout are defined in protocol.py (the exchanges end with them, and
the agent's Get path loads no more than that); the rest are coap/client.py's.
"""
from .protocol import CoapError, CoapTimeout  # noqa: F401  (one import point for users)


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
