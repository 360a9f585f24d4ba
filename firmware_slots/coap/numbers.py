"""CoAP registries as named constants (RFC 7252 section 12, RFC 7959).

Plain ints, no enum machinery: on a device each name costs one dict slot (the module's
globals table grows in steps: 59, 73, 97 slots of 8 bytes), so only the numbers this
stack or its tests use are names; the rest of each registry is listed in a comment.
"""

# Message types (RFC 7252 3)
CON = 0
NON = 1
ACK = 2
RST = 3
TYPE_NAMES = ("CON", "NON", "ACK", "RST")


# Method codes (0.xx)
EMPTY = 0
GET = 1
POST = 2
PUT = 3
DELETE = 4
FETCH = 5
# 6 PATCH, 7 iPATCH (RFC 8132)
# by code 0..7; literal tuples (no names inside) stay in flash on a device
METHOD_NAMES = ("EMPTY", "GET", "POST", "PUT", "DELETE", "FETCH", "PATCH", "iPATCH")
# Methods whose duplicates may simply be re-executed (RFC 7252 4.5, 5.8):
# GET, PUT, DELETE, FETCH, iPATCH
IDEMPOTENT = (1, 3, 4, 5, 7)

# Response codes (also: 2.01 Created 65, 2.02 Deleted 66, 2.03 Valid 67, 4.01 Unauthorized
# 129, 4.06 Not Acceptable 134, 4.12 Precondition Failed 140, 5.01 Not Implemented 161,
# 5.02 Bad Gateway 162, 5.03 Service Unavailable 163, 5.04 Gateway Timeout 164,
# 5.05 Proxying Not Supported 165)
CHANGED = 68                    # 2.04
CONTENT = 69                    # 2.05
CONTINUE = 95                   # 2.31 (RFC 7959)
BAD_REQUEST = 128               # 4.00
BAD_OPTION = 130                # 4.02
FORBIDDEN = 131                 # 4.03
NOT_FOUND = 132                 # 4.04
METHOD_NOT_ALLOWED = 133        # 4.05
REQUEST_ENTITY_INCOMPLETE = 136  # 4.08 (RFC 7959)
REQUEST_ENTITY_TOO_LARGE = 141  # 4.13
UNSUPPORTED_CONTENT_FORMAT = 143  # 4.15
INTERNAL_SERVER_ERROR = 160     # 5.00


def code_str(c):
    """'2.05' style text for a code."""
    return "%d.%02d" % (c >> 5, c & 31)


def is_success(c):
    return (c >> 5) == 2


# Option numbers (RFC 7252 5.10, RFC 7641, RFC 7959); also 1 If-Match, 3 Uri-Host,
# 5 If-None-Match, 6 Observe, 7 Uri-Port, 20 Location-Query, 35 Proxy-Uri, 39 Proxy-Scheme
ETAG = 4
LOCATION_PATH = 8
URI_PATH = 11
CONTENT_FORMAT = 12
MAX_AGE = 14
URI_QUERY = 15
ACCEPT = 17
BLOCK2 = 23
BLOCK1 = 27
SIZE2 = 28
SIZE1 = 60
NO_RESPONSE = 258

# Options this stack understands; a request carrying any other critical (odd)
# option gets 4.02 Bad Option (RFC 7252 5.4.1). The numbers of the names above, spelled
# as literals so the tuple stays in flash: 1, 3, ETAG, 5, 6, 7, LOCATION_PATH, URI_PATH,
# CONTENT_FORMAT, MAX_AGE, URI_QUERY, ACCEPT, 20, BLOCK2, BLOCK1, SIZE2, SIZE1
KNOWN_OPTIONS = (1, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 17, 20, 23, 27, 28, 60)


# Content formats (RFC 7252 12.3); also 41 XML, 47 EXI, 50 JSON, 60 CBOR
TEXT_PLAIN = 0
LINK_FORMAT = 40
OCTET_STREAM = 42

# Ports (RFC 7252 12.6)
COAP_PORT = 5683
COAPS_PORT = 5684

# Block sizes: SZX 0..6 -> 16..1024 bytes; 7 is reserved (BERT, TCP only)
MAX_SZX = 6


def szx_to_size(szx):
    return 1 << (szx + 4)


def size_to_szx(size):
    """Largest SZX whose block size is <= size (16 bytes at least)."""
    szx = 0
    while szx < MAX_SZX and (1 << (szx + 5)) <= size:
        szx += 1
    return szx


# Largest datagram this stack reads: a 1024-byte block plus header, token and options
# fit the 1152 bytes RFC 7252 4.6 suggests; the margin lets a larger one be seen whole.
RECV_BUFFER = 1280


class TransmissionParams:
    """RFC 7252 4.8 transmission parameters and the times derived from them, in ms.

    Defaults are the RFC's; tests shrink ack_timeout_ms to run fast. The derived times
    are plain attributes set here (properties cost a function object each on a device).
    """

    def __init__(self, ack_timeout_ms=2000, ack_random_factor=1.5, max_retransmit=4,
                 max_latency_ms=100000, processing_delay_ms=None):
        self.ack_timeout_ms = ack_timeout_ms
        self.ack_random_factor = ack_random_factor
        self.max_retransmit = max_retransmit
        span = int(ack_timeout_ms * ((1 << max_retransmit) - 1) * ack_random_factor)
        self.max_transmit_span_ms = span
        self.max_transmit_wait_ms = int(ack_timeout_ms * ((1 << (max_retransmit + 1)) - 1)
                                        * ack_random_factor)
        delay = ack_timeout_ms if processing_delay_ms is None else processing_delay_ms
        self.exchange_lifetime_ms = span + 2 * max_latency_ms + delay  # 247 s with the defaults
        self.non_lifetime_ms = span + max_latency_ms                    # 145 s with the defaults


DEFAULT_PARAMS = TransmissionParams()
