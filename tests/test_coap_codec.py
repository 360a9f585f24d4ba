"""CoAP codec: wire format against aiocoap in both directions, malformed input, fuzz."""
import warnings
warnings.filterwarnings("ignore", category=DeprecationWarning, module="aiocoap")
import glob
import os
import subprocess

import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from firmware_slots.coap import numbers as N
from firmware_slots.coap.message import (CoapMessage, CoapDecodeError, decode, uint_encode,
                                         uint_decode, block_encode, block_decode, unknown_critical)
from firmware_slots.coap.uri import parse_uri, make_uri
from mpy import ROOT, run_mp, requires_micropython, mpy_cross_exe

aiocoap = pytest.importorskip("aiocoap")
from aiocoap.numbers.codes import Code  # noqa: E402
from aiocoap.numbers.types import Type  # noqa: E402
from aiocoap.optiontypes import BlockOption  # noqa: E402


def _aio(msg):
    """Our CoapMessage -> an outgoing aiocoap.Message with the same content."""
    m = aiocoap.Message(mtype=Type(msg.mtype), code=Code(msg.code), mid=msg.mid,
                        token=msg.token, payload=msg.payload)
    for num, val in msg.options:
        from aiocoap.options import OptionNumber
        opt = OptionNumber(num).create_option(decode=val)
        m.opt.add_option(opt)
    return m


SAMPLES = [
    CoapMessage(N.CON, N.GET, 1, b"", [(N.URI_PATH, b".well-known"), (N.URI_PATH, b"core")]),
    CoapMessage(N.NON, N.POST, 0xFFFF, b"12345678",
                [(N.URI_PATH, b"usp"), (N.URI_PATH, b"agent"), (N.CONTENT_FORMAT, b"\x2a"),
                 (N.URI_QUERY, b"reply-to=coap://10.0.0.1:5683/usp/ctrl")], b"\x0a\x01rec"),
    CoapMessage(N.ACK, N.CONTENT, 4660, b"\x01", [(N.ETAG, b"v1"), (N.BLOCK2, block_encode(1234, True, 6)),
                                                 (N.SIZE2, uint_encode(1 << 20))], b"x" * 1024),
    # option deltas and lengths needing the 13 and 14 extensions
    CoapMessage(N.CON, N.PUT, 7, b"ab", [(N.URI_PATH, b"a" * 12), (N.URI_PATH, b"b" * 13),
                                         (N.URI_PATH, b"c" * 268), (N.URI_PATH, b"d" * 269),
                                         (N.SIZE1, uint_encode(70000)), (2048, b"x"), (65000, b"")],
                b"\xff\x00"),
    CoapMessage(N.RST, N.EMPTY, 99),
    CoapMessage(N.CON, N.REQUEST_ENTITY_TOO_LARGE, 5, b"t", [(N.BLOCK1, block_encode(0, False, 2)),
                                                           (N.SIZE1, uint_encode(8192))]),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=range(len(SAMPLES)))
def test_ours_decoded_by_aiocoap(msg):
    wire = msg.encode()
    a = aiocoap.Message.decode(wire)
    assert int(a.mtype) == msg.mtype and int(a.code) == msg.code
    assert a.mid == msg.mid and a.token == msg.token and a.payload == msg.payload
    got = [(int(o.number), o.encode()) for o in a.opt.option_list()]
    assert got == msg.options
    assert _aio(msg).encode() == wire  # and aiocoap writes the same bytes


@pytest.mark.parametrize("msg", SAMPLES, ids=range(len(SAMPLES)))
def test_aiocoap_decoded_by_ours(msg):
    wire = _aio(msg).encode()
    d = decode(wire)
    assert (d.mtype, d.code, d.mid, d.token, d.options, d.payload) == \
        (msg.mtype, msg.code, msg.mid, msg.token, msg.options, msg.payload)
    assert d.encode() == wire


def test_aiocoap_high_level_message():
    m = aiocoap.Message(code=Code.POST, uri="coap://h/usp/agent?reply-to=coap://c:5683/usp",
                        payload=b"rec", content_format=42, mid=3, token=b"tk", mtype=Type.CON)
    m.opt.block1 = BlockOption.BlockwiseTuple(2, True, 4)
    m.opt.size1 = 5000
    d = decode(m.encode())
    assert _values(d, N.URI_PATH) == ["usp", "agent"]
    assert _values(d, N.URI_QUERY) == ["reply-to=coap://c:5683/usp"]
    assert d.opt_uint(N.CONTENT_FORMAT) == 42 and block_decode(d.opt(N.BLOCK1)) == (2, True, 4)
    assert d.opt_uint(N.SIZE1) == 5000


def _values(msg, num):
    return [v.decode() for n, v in msg.options if n == num]


def test_repeated_options_keep_order_when_sorting():
    m = CoapMessage(N.CON, N.GET, 1, b"", [(N.URI_QUERY, b"a"), (N.URI_PATH, b"x"),
                                           (N.URI_QUERY, b"b"), (N.URI_PATH, b"y")])
    d = decode(m.encode())
    assert _values(d, N.URI_PATH) == ["x", "y"] and _values(d, N.URI_QUERY) == ["a", "b"]


MALFORMED = [
    (b"", False, "truncated header"),
    (b"\x40\x01\x00", False, "truncated header"),
    (b"\x80\x01\x00\x01", False, "version 2"),
    (b"\x00\x01\x00\x01", False, "version 0"),
    (b"\x49\x01\x00\x01" + b"t" * 9, True, "token length 9"),
    (b"\x4f\x01\x00\x01" + b"t" * 15, True, "token length 15"),
    (b"\x54\x01\x00\x01" + b"t" * 3, False, "NON truncated token"),
    (b"\x44\x01\x00\x01" + b"t" * 3, True, "CON truncated token"),
    (b"\x40\x01\x00\x01\xf1a", True, "option delta nibble 15"),
    (b"\x40\x01\x00\x01\xbfa", True, "option length nibble 15"),
    (b"\x40\x01\x00\x01\xb5ab", True, "option runs past end"),
    (b"\x40\x01\x00\x01\xd1", True, "truncated extended delta"),
    (b"\x40\x01\x00\x01\xe1\x00", True, "truncated 2-byte delta"),
    (b"\x40\x01\x00\x01\x1e\x00", True, "truncated 2-byte length"),
    (b"\x40\x01\x00\x01\x1e\x01\x00" + b"x" * 10, True, "oversized option"),
    (b"\x40\x01\x00\x01\xff", True, "payload marker, empty payload"),
    (b"\x40\x01\x00\x01\xb1a\xff", True, "option then bare marker"),
    (b"\x40\x00\x00\x01\xff\x01", True, "empty message with payload"),
    (b"\x41\x00\x00\x01t", True, "empty message with token"),
    (b"\x40\x21\x00\x01", True, "reserved class 1"),
    (b"\x40\xe1\x00\x01", True, "reserved class 7"),
    (b"\x50\xe1\x00\x01", False, "NON reserved class"),
]


@pytest.mark.parametrize("wire,reset,why", MALFORMED, ids=[m[2] for m in MALFORMED])
def test_malformed_raises(wire, reset, why):
    with pytest.raises(CoapDecodeError) as ei:
        decode(wire)
    assert ei.value.should_reset() == reset
    if reset:
        assert ei.value.mid == 1


def test_unknown_critical_option():
    m = CoapMessage(N.CON, N.GET, 1, b"", [(N.URI_PATH, b"a"), (9, b"x"), (10, b"y")])
    assert unknown_critical(m) == 9
    m.options = [(10, b"y"), (N.NO_RESPONSE, b"")]  # elective options are ignored
    assert unknown_critical(m) is None


def test_value_helpers():
    for v in (0, 1, 255, 256, 65535, 65536, 1 << 24, (1 << 32) - 1):
        assert uint_decode(uint_encode(v)) == v
    assert uint_encode(0) == b"" and uint_encode(256) == b"\x01\x00"
    assert block_encode(0, False, 0) == b""
    assert block_decode(block_encode(1023, True, 6)) == (1023, True, 6)
    assert block_decode(block_encode((1 << 20) - 1, False, 2)) == ((1 << 20) - 1, False, 2)
    with pytest.raises(ValueError):
        block_decode(b"\x07")  # SZX 7 is reserved
    with pytest.raises(ValueError):
        block_decode(b"\x00\x00\x00\x10")
    assert N.size_to_szx(1024) == 6 and N.size_to_szx(1000) == 5 and N.size_to_szx(16) == 0
    assert N.size_to_szx(4096) == 6
    p = N.DEFAULT_PARAMS
    assert p.exchange_lifetime_ms == 247000 and p.non_lifetime_ms == 145000
    assert p.max_transmit_span_ms == 45000 and p.max_transmit_wait_ms == 93000


def test_uri_parsing():
    u = parse_uri("coap://Example.COM/usp/agent?reply-to=coap://10.1.1.1:5683/usp/c&x")
    assert (u.scheme, u.host, u.port) == ("coap", "example.com", 5683)
    assert u.path == ["usp", "agent"] and u.query == ["reply-to=coap://10.1.1.1:5683/usp/c", "x"]
    u = parse_uri("coaps://[fe80::1]:6000/a%20b/c%2Fd/")
    assert (u.host, u.port, u.path, u.scheme) == ("fe80::1", 6000, ["a b", "c/d", ""], "coaps")
    assert parse_uri("coaps://h").port == 5684 and parse_uri("coap://h/").path == []
    assert str(parse_uri("coap://h:5683/a?b=c")) == "coap://h/a?b=c"
    assert make_uri("coap", "::1", 1234, ["x y"], ["q"]) == "coap://[::1]:1234/x%20y?q"
    for bad in ("http://h/", "coap://", "coap://h:0/", "coap://h/#frag", "coap://u@h/", "h/x"):
        with pytest.raises(ValueError):
            parse_uri(bad)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64))
def test_fuzz_decode_only_raises_decode_error(data):
    try:
        m = decode(data)
    except CoapDecodeError:
        return
    assert decode(m.encode()).options == m.options


@settings(max_examples=600, deadline=None)
@given(st.binary(min_size=4, max_size=40), st.integers(0, 39), st.integers(0, 255))
def test_fuzz_mutated_valid_messages(base, pos, byte):
    wire = bytearray(SAMPLES[1].encode() + base)
    wire[pos % len(wire)] = byte
    try:
        decode(bytes(wire))
    except CoapDecodeError:
        pass


_text = st.text(max_size=120).map(lambda s: s.encode()).filter(lambda b: len(b) <= 255)
_uint = st.integers(0, (1 << 32) - 1).map(uint_encode)
_block = st.tuples(st.integers(0, (1 << 20) - 1), st.booleans(), st.integers(0, 6)).map(
    lambda t: block_encode(*t))
opt_st = st.one_of(
    st.tuples(st.sampled_from([3, 8, 11, 15, 20, 35]), _text),
    st.tuples(st.sampled_from([7, 12, 14, 17, 28, 60, 258]), _uint),
    st.tuples(st.sampled_from([23, 27]), _block),
    st.tuples(st.sampled_from([1, 4, 2000, 65000]), st.binary(max_size=300)))


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 3), st.sampled_from([0, 1, 2, 3, 4, 65, 69, 95, 132, 160]), st.integers(0, 65535),
       st.binary(max_size=8), st.lists(opt_st, max_size=6), st.binary(max_size=100))
def test_fuzz_roundtrip_with_aiocoap(mtype, code, mid, token, options, payload):
    if code == 0:
        token, options, payload = b"", [], b""
    m = CoapMessage(mtype, code, mid, token, list(options), payload)
    wire = m.encode()
    d = decode(wire)
    assert sorted(d.options, key=lambda o: o[0]) == sorted(m.options, key=lambda o: o[0])
    a = aiocoap.Message.decode(wire)
    assert a.payload == payload and a.token == token and a.mid == mid
    assert [(int(o.number), o.encode()) for o in a.opt.option_list()] == d.options


def test_mpy_cross_compiles_every_module(tmp_path):
    exe = mpy_cross_exe()
    if exe is None:
        pytest.skip("mpy-cross not installed")
    files = sorted(glob.glob(os.path.join(ROOT, "firmware_slots", "coap", "*.py")))
    assert len(files) >= 9
    for f in files:
        out = tmp_path / (os.path.basename(f) + ".mpy")
        subprocess.run([exe, "-o", str(out), f], check=True, capture_output=True)


@requires_micropython
def test_codec_under_micropython():
    wires = [m.encode() for m in SAMPLES]
    code = "from firmware_slots.coap.message import decode, CoapDecodeError\n"
    code += "W = %r\n" % (wires,)
    code += "M = %r\n" % ([w for w, _, _ in MALFORMED],)
    code += """
out = []
for w in W:
    m = decode(w)
    assert m.encode() == w, w
for w in M:
    try:
        decode(w)
        print("NOERR", w)
    except CoapDecodeError as e:
        out.append(e.should_reset())
print("RESETS", out)
from firmware_slots.coap.uri import parse_uri
u = parse_uri("coaps://[::1]:6000/a%20b/c?x=1&y")
print(u.host, u.port, u.path, u.query)
import firmware_slots.coap.client, firmware_slots.coap.protocol
print("OK")
"""
    out = run_mp(code)
    assert "NOERR" not in out
    assert "RESETS %r" % ([r for _, r, _ in MALFORMED],) in out
    assert "::1 6000 ['a b', 'c'] ['x=1', 'y']" in out
    assert out.strip().endswith("OK")
