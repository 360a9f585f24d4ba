"""subjectAltName URIs of an X.509 certificate, read from its DER (TR-369's EndpointID rule).

    san_uris(der, n=4, size=80) -> [str, ...]

The uniformResourceIdentifier ([6] IA5String) names of the certificate's
subjectAltName extension (2.5.29.17), in order: at most `n`, each of at most `size`
printable ASCII characters. A longer or non-printable URI is skipped, never cut (a cut
"urn:bbf:usp:id:ctl-10" would name "ctl-1"). A strict DER walk by index over the buffer:
malformed or truncated DER gives [], never an exception. It does not verify anything;
the DTLS layer calls it for a certificate mbedTLS is verifying.
"""

SIZE = 80  # "urn:bbf:usp:id:" + a 64-character EndpointID (core.state.ID_MAX)


def _tlv(b, i, end, r):
    # tag of the element at i, which must fit before end; r <- [value start, value end]
    # (a list the walk reuses: a tuple per element would be ~40 allocations per certificate)
    if i + 2 > end:
        raise ValueError
    t = b[i]
    n = b[i + 1]
    i += 2
    if t & 0x1F == 0x1F:
        raise ValueError  # high tag numbers: not in a certificate
    if n & 0x80:
        k = n & 0x7F
        if not 0 < k < 4 or i + k > end:
            raise ValueError  # indefinite or > 16 MB lengths: not DER of a certificate
        n = 0
        for j in range(i, i + k):
            n = (n << 8) | b[j]
        i += k
    if i + n > end:
        raise ValueError
    r[0] = i
    r[1] = i + n
    return t


def _walk(b, n, size):
    r = [0, 0]
    t = _tlv(b, 0, len(b), r)  # Certificate
    if t != 0x30 or r[1] != len(b):
        return []
    t = _tlv(b, r[0], r[1], r)  # tbsCertificate
    if t != 0x30:
        return []
    i, end = r
    while True:  # version, serial, ..., subjectPublicKeyInfo, then [3] extensions
        t = _tlv(b, i, end, r)
        i = r[1]
        if t == 0xA3:
            break
    t = _tlv(b, r[0], r[1], r)  # Extensions ::= SEQUENCE OF Extension
    if t != 0x30:
        return []
    i, end = r
    while i < end:
        t = _tlv(b, i, end, r)  # Extension ::= SEQUENCE {extnID, critical?, extnValue}
        if t != 0x30:
            return []
        s, i = r
        t = _tlv(b, s, i, r)
        s, e = r
        if t != 0x06:
            return []
        if e - s != 3 or b[s] != 0x55 or b[s + 1] != 0x1D or b[s + 2] != 0x11:
            continue  # not 2.5.29.17
        t = _tlv(b, e, i, r)
        if t == 0x01:  # critical BOOLEAN
            t = _tlv(b, r[1], i, r)
        if t != 0x04 or r[1] != i:
            return []
        t = _tlv(b, r[0], i, r)  # GeneralNames ::= SEQUENCE OF GeneralName
        if t != 0x30 or r[1] != i:
            return []
        s = r[0]
        out = []
        while s < i:
            t = _tlv(b, s, i, r)
            v, s = r
            if t == 0x86 and s - v <= size and len(out) < n:
                for j in range(v, s):
                    if not 0x20 < b[j] < 0x7F:
                        break
                else:
                    out.append(str(b[v:s], "ascii"))  # the only copy: the name itself
        return out  # RFC 5280: one subjectAltName extension
    return []


def san_uris(der, n=4, size=SIZE):
    """The subjectAltName URIs of certificate `der` (bytes or memoryview), [] if none or malformed."""
    try:
        return _walk(memoryview(der), n, size)
    except Exception:  # malformed DER (ValueError), a non-buffer, no memory: no names
        return []
