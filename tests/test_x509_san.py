"""firmware_slots/coap/x509.san_uris: the subjectAltName URIs of a certificate's DER, on CPython
and under the real MicroPython unix port, with certificates made by `cryptography`: 0, 1, 3
and 5 URIs beside DNS names and other GeneralNames; every truncation and seeded byte
corruptions never raise and stay within the bounds."""
import json
import os

import pytest

pytest.importorskip("cryptography")
from cryptography import x509  # noqa: E402

from mpy import requires_micropython, run_mp  # noqa: E402
from support.certs import DER, make_ca, make_leaf  # noqa: E402

from firmware_slots.coap.x509 import SIZE, san_uris  # noqa: E402

U = "urn:bbf:usp:id:"
LONG = U + "x" * (SIZE - len(U) + 1)  # one character over the bound


@pytest.fixture(scope="module")
def certs():
    k, ca = make_ca("SAN CA")

    def der(**kw):
        return make_leaf("ctl", k, ca, **kw)[1].public_bytes(DER)

    return {
        "none": (der(), []),
        "dns_only": (der(dns=["a.example", "b.example"]), []),
        "one": (der(uris=[U + "self::ctl-1"], dns=["ctl.example"]), [U + "self::ctl-1"]),
        "three": (der(uris=[U + "a", "https://ctl.example/x", U + "c"], dns=["d1.example", "d2.example"]),
                  [U + "a", "https://ctl.example/x", U + "c"]),
        # RFC 5280 allows a critical subjectAltName: the BOOLEAN before the OCTET STRING
        "critical": (der(uris=[U + "crit"], critical=True), [U + "crit"]),
        # more than the cap of 4: the first 4, in order
        "five": (der(uris=[U + str(i) for i in range(5)]), [U + str(i) for i in range(4)]),
        # a URI over SIZE is skipped, not cut (cut, it could name another EndpointID)
        "long": (der(uris=[LONG, U + "short"]), [U + "short"]),
        "exact": (der(uris=[LONG[:-1]]), [LONG[:-1]]),
        # otherName, rfc822Name, directoryName, registeredID around a URI
        "mixed": (der(names=[x509.RFC822Name("ops@example.org"),
                             x509.DirectoryName(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "d")])),
                             x509.UniformResourceIdentifier(U + "mixed"),
                             x509.RegisteredID(x509.ObjectIdentifier("1.2.3.4")),
                             x509.OtherName(x509.ObjectIdentifier("1.3.6.1.5.5.7.8.4"), b"\x04\x02hi")]),
                  [U + "mixed"]),
    }


def test_uris_found_on_cpython_and_match_cryptography(certs):
    for name, (der, want) in certs.items():
        assert san_uris(der) == want, name
        assert san_uris(memoryview(der)) == want, name
        c = x509.load_der_x509_certificate(der)
        try:
            every = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
                .get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            every = []
        assert [u for u in every if len(u) <= SIZE][:4] == want, name


def test_cap_arguments_are_honoured(certs):
    der = certs["three"][0]
    assert san_uris(der, n=1) == [U + "a"]
    assert san_uris(der, n=0) == []
    assert san_uris(der, size=len(U) + 1) == [U + "a", U + "c"]  # the https one is longer


def test_non_certificates_give_nothing(certs):
    der = certs["one"][0]
    for bad in (None, b"", "text", 42, b"\x30", b"\x30\x80" + der[2:], der + b"\x00",
                b"\x30\x84\xff\xff\xff\xff" + der, bytes(len(der))):
        assert san_uris(bad) == [], bad[:8] if isinstance(bad, bytes) else bad


def test_a_uri_with_a_space_or_control_is_skipped(certs):
    der, _ = certs["one"]
    i = der.find(b"self::ctl-1")
    assert san_uris(der[:i] + b"self: ctl-1" + der[i + 11:]) == []
    assert san_uris(der[:i] + b"self:\x01ctl-1" + der[i + 11:]) == []


# Runs under MicroPython: every truncation of every certificate, then seeded corruptions
# (1..3 bytes changed); prints one JSON line of findings.
MP_SWEEP = r"""
import json, random
from firmware_slots.coap.x509 import san_uris
certs = json.loads(open(%(path)r).read())
out = {}
for name in certs:
    der = bytes.fromhex(certs[name][0])
    want = certs[name][1]
    r = {"full": san_uris(der), "mv": san_uris(memoryview(der)), "bad_trunc": [], "bad_fuzz": 0, "fuzz_hits": 0}
    for k in range(len(der)):
        got = san_uris(der[:k])
        if got != []:
            r["bad_trunc"].append(k)
    random.seed(7)
    buf = bytearray(der)
    for t in range(300):
        b = bytearray(buf)
        for _ in range(1 + t %% 3):
            b[random.getrandbits(16) %% len(b)] = random.getrandbits(8)
        got = san_uris(b)
        if not isinstance(got, list) or len(got) > 4 or any(not isinstance(u, str) or len(u) > 80 for u in got):
            r["bad_fuzz"] += 1
        elif got:
            r["fuzz_hits"] += 1
    out[name] = r
print(json.dumps(out))
"""


@requires_micropython
def test_micropython_finds_the_same_and_survives_truncation_and_corruption(certs, tmp_path):
    p = tmp_path / "certs.json"
    p.write_text(json.dumps({n: [d.hex(), w] for n, (d, w) in certs.items()}))
    res = json.loads(run_mp(MP_SWEEP % dict(path=str(p)), timeout=300).strip().splitlines()[-1])
    for name, (der, want) in certs.items():
        r = res[name]
        assert r["full"] == want and r["mv"] == want, name
        # the outer length must equal the buffer: a cut certificate has no names at all
        assert r["bad_trunc"] == [], (name, r["bad_trunc"][:10])
        assert r["bad_fuzz"] == 0, name
    # corruption outside the names mostly leaves them readable: the walk is not blind
    assert sum(res[n]["fuzz_hits"] for n in res) > 0


@requires_micropython
def test_walk_allocates_little(certs):
    """A walk of a 3-URI certificate allocates under 640 bytes on the 64-bit unix port: the
    three names and their list (one tuple per DER element instead was ~2 KB)."""
    der = certs["three"][0]
    code = ("import gc\nfrom firmware_slots.coap.x509 import san_uris\nd = bytes.fromhex(%r)\n"
            "san_uris(d)\ngc.collect()\na = gc.mem_free()\nr = san_uris(d)\nb = gc.mem_free()\n"
            "print('USED', a - b, len(r))\n") % der.hex()
    out = run_mp(code)
    used, n = map(int, out.split("USED")[1].split())
    assert n == 3
    assert 0 < used < 640, used


def test_module_is_in_the_dtls_tier():
    from firmware_slots.host import tiers as T
    assert "firmware_slots/coap/x509.py" in T.files(["dtls"])
    assert "firmware_slots/coap/x509.py" not in T.files(["agent"])
    assert os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                       "firmware_slots", "coap", "x509.py"))
