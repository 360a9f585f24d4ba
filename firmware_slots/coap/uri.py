"""coap:// and coaps:// URIs (RFC 7252 6) <-> host, port, Uri-Path, Uri-Query."""
from . import numbers as N


class CoapUri:
    __slots__ = ("scheme", "host", "port", "path", "query")

    def __init__(self, scheme, host, port, path, query):
        self.scheme = scheme
        self.host = host
        self.port = port
        self.path = path      # list of str segments, percent-decoded
        self.query = query    # list of str items, percent-decoded

    def options(self):
        """[(option number, bytes)] for Uri-Path and Uri-Query."""
        out = [(N.URI_PATH, s.encode()) for s in self.path]
        out += [(N.URI_QUERY, q.encode()) for q in self.query]
        return out

    def __str__(self):
        return make_uri(self.scheme, self.host, self.port, self.path, self.query)


def _unquote(s):
    if "%" not in s:
        return s
    out = bytearray()
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if c == "%" and i + 3 <= n:
            try:
                out.append(int(s[i + 1:i + 3], 16))
                i += 3
                continue
            except ValueError:
                pass
        out += c.encode()
        i += 1
    return bytes(out).decode()


_SAFE = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@"


def _quote(s, extra=b""):
    out = []
    for c in s.encode():
        if c in _SAFE or c in extra:
            out.append(chr(c))
        else:
            out.append("%%%02X" % c)
    return "".join(out)


def parse_uri(uri):
    """'coap://host:port/a/b?x=1&y' -> CoapUri; ValueError if not coap/coaps."""
    i = uri.find("://")
    if i < 0:
        raise ValueError("not an absolute URI")
    scheme = uri[:i].lower()
    if scheme == "coap":
        port = N.COAP_PORT
    elif scheme == "coaps":
        port = N.COAPS_PORT
    else:
        raise ValueError("unsupported scheme " + scheme)
    rest = uri[i + 3:]
    j = rest.find("#")
    if j >= 0:
        raise ValueError("fragment not allowed in a CoAP URI")
    end = len(rest)
    for ch in "/?":
        k = rest.find(ch)
        if 0 <= k < end:
            end = k
    authority = rest[:end]
    rest = rest[end:]
    if "@" in authority:
        raise ValueError("userinfo not allowed in a CoAP URI")
    if authority.startswith("["):
        k = authority.find("]")
        if k < 0:
            raise ValueError("bad IPv6 literal")
        host = authority[1:k]
        tail = authority[k + 1:]
    else:
        k = authority.rfind(":")
        if k >= 0:
            host, tail = authority[:k], authority[k:]
        else:
            host, tail = authority, ""
    if tail:
        if not tail.startswith(":"):
            raise ValueError("bad authority")
        if tail[1:]:
            port = int(tail[1:])
            if not 0 < port < 65536:
                raise ValueError("bad port")
    if not host:
        raise ValueError("empty host")
    q = rest.find("?")
    if q >= 0:
        path_s, query_s = rest[:q], rest[q + 1:]
    else:
        path_s, query_s = rest, None
    path = []
    # RFC 7252 6.4: "/" or "" means no Uri-Path options; "a/" gives a trailing empty segment
    if path_s not in ("", "/"):
        path = [_unquote(s) for s in path_s[1:].split("/")]
    query = [] if not query_s else [_unquote(s) for s in query_s.split("&")]
    return CoapUri(scheme, host if ":" in host else host.lower(), port, path, query)  # IPv6 as given


def make_uri(scheme, host, port, path=(), query=()):
    default = N.COAPS_PORT if scheme == "coaps" else N.COAP_PORT
    h = "[%s]" % host if ":" in host else host  # an IPv6 literal
    s = scheme + "://" + h
    if port and port != default:
        s += ":%d" % port
    s += "/" + "/".join(_quote(p) for p in path)
    if query:
        s += "?" + "&".join(_quote(q, b"/?") for q in query)
    return s
