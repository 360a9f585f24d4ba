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
    b = s.encode()
    for c in b:
        if c not in _SAFE and c not in extra:
            break
    else:
        return s  # the usual case: nothing to escape, no copy
    out = []
    for c in b:
        if c in _SAFE or c in extra:
            out.append(chr(c))
        else:
            out.append("%%%02X" % c)
    return "".join(out)


def parse_uri(uri):
    """'coap://host:port/a/b?x=1&y' -> CoapUri; ValueError if not coap/coaps."""
    # positions in `uri`, not slices of slices: only the parts kept are copied (the MTP
    # parses a reply-to per request)
    i = uri.find("://")
    if i < 0:
        raise ValueError("not an absolute URI")
    if i == 4 and uri.startswith("coap"):
        scheme = "coap"
    elif i == 5 and uri.startswith("coaps"):
        scheme = "coaps"
    else:
        scheme = uri[:i].lower()
    if scheme == "coap":
        port = N.COAP_PORT
    elif scheme == "coaps":
        port = N.COAPS_PORT
    else:
        raise ValueError("unsupported scheme " + scheme)
    s = i + 3
    n = len(uri)
    if uri.find("#", s) >= 0:
        raise ValueError("fragment not allowed in a CoAP URI")
    q = uri.find("?", s)
    pe = n if q < 0 else q  # the path ends at the query
    end = uri.find("/", s, pe)
    if end < 0:
        end = pe  # the authority ends at the path
    if uri.find("@", s, end) >= 0:
        raise ValueError("userinfo not allowed in a CoAP URI")
    if uri.startswith("[", s):
        k = uri.find("]", s, end)
        if k < 0:
            raise ValueError("bad IPv6 literal")
        host = uri[s + 1:k]
        t = k + 1
    else:
        t = uri.rfind(":", s, end)
        if t < 0:
            t = end
        host = uri[s:t]
    if t < end:
        if not uri.startswith(":", t):
            raise ValueError("bad authority")
        if t + 1 < end:
            port = int(uri[t + 1:end])
            if not 0 < port < 65536:
                raise ValueError("bad port")
    if not host:
        raise ValueError("empty host")
    # RFC 7252 6.4: "/" or "" means no Uri-Path options; "a/" gives a trailing empty segment
    path = _split(uri, end + 1, pe, "/") if pe - end > 1 else []
    query = _split(uri, q + 1, n, "&") if 0 <= q < n - 1 else []
    return CoapUri(scheme, host if ":" in host else host.lower(), port, path, query)  # IPv6 as given


def _split(uri, a, b, sep):
    # uri[a:b].split(sep), percent-decoded, without the slice
    out = []
    while True:
        k = uri.find(sep, a, b)
        if k < 0:
            k = b
        out.append(_unquote(uri[a:k]))
        if k == b:
            return out
        a = k + 1


def make_uri(scheme, host, port, path=(), query=()):
    default = N.COAPS_PORT if scheme == "coaps" else N.COAP_PORT
    # one formatting, not a string per piece (the MTP makes its reply-to with it)
    return "%s://%s%s/%s%s" % (
        scheme, "[%s]" % host if ":" in host else host,  # an IPv6 literal
        ":%d" % port if port and port != default else "",
        "/".join([_quote(p) for p in path]),
        "?" + "&".join([_quote(q, b"/?") for q in query]) if query else "")
