"""coap/servertransport.py: a fetcher's connected socket reads whole Block2 blocks into one
preallocated buffer (no allocation per block), sized from a peek at the header; everything
it cannot size, and a second block while the first is still lent, is read exactly (recv)."""
import socket

from firmware_slots.coap import numbers as N
from firmware_slots.coap.message import CoapMessage, block_encode
from firmware_slots.coap.servertransport import ServerTransport
from mpy import requires_micropython, run_mp


def _resp(num, more, szx, payload, size2=None, etag=b"\x01\x02\x03\x04"):
    m = CoapMessage(N.ACK, N.CONTENT, 7, b"tokn")
    m.add_opt(N.ETAG, etag)
    m.add_opt(N.BLOCK2, block_encode(num, more, szx))
    if size2 is not None:
        m.add_opt(N.SIZE2, size2)
    m.payload = payload
    return m.encode()


def _sized(data, total=None):
    t = ServerTransport("127.0.0.1", 9)
    try:
        t.total = total
        return t._block_len(data[:64])
    finally:
        t.close()


def test_a_whole_block_is_sized_from_its_header():
    d = _resp(3, True, 6, b"x" * 1024)
    assert _sized(d) == len(d)
    d = _resp(0, True, 2, b"y" * 64, size2=1000)  # Size2 comes after Block2
    assert _sized(d) == len(d)


def test_the_last_block_is_sized_by_size2_only():
    d = _resp(2, False, 6, b"z" * 100)
    assert _sized(d) == 0                       # length unknown: read exactly (recv)
    assert _sized(d, total=2 * 1024 + 100) == len(d)
    assert _sized(d, total=5 * 1024) == 0       # Size2 says more than one block is left


def test_what_cannot_be_sized_is_not():
    assert _sized(_resp(3, True, 7, b"x" * 1024)) == 0          # BERT
    m = CoapMessage(N.ACK, N.CONTENT, 7, b"tokn", [], b"q" * 200)
    assert _sized(m.encode()) == 0                               # no Block2
    m = CoapMessage(N.CON, N.GET, 7, b"tokn")
    m.add_opt(N.BLOCK2, block_encode(3, True, 6))
    m.payload = b"r" * 100
    assert _sized(m.encode()) == 0                               # a request
    m = CoapMessage(N.ACK, N.CONTENT, 7, b"tokn")
    m.add_opt(N.LOCATION_PATH if hasattr(N, "LOCATION_PATH") else 8, b"p" * 60)
    m.add_opt(N.BLOCK2, block_encode(3, True, 6))
    m.payload = b"s" * 1024
    assert _sized(m.encode()) == 0                               # options run past the peek


def test_cpython_reads_plain_datagrams():
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind(("127.0.0.1", 0))
    t = ServerTransport("127.0.0.1", srv.getsockname()[1], 1152)
    try:
        t.sendto(b"\x40\x01\x00\x01", None)
        data, addr = srv.recvfrom(100)
        d = _resp(1, True, 6, b"a" * 1024)
        srv.sendto(d, addr)
        import time
        for _ in range(100):
            r = t.recvfrom()
            if r:
                break
            time.sleep(0.01)
        assert bytes(r[0]) == d and r[1] == t.peer
    finally:
        t.close()
        srv.close()


@requires_micropython
def test_micropython_lends_one_block_at_a_time():
    """Blocks land in the one buffer, lent until the next request goes out; a second block
    meanwhile, a short datagram and a last block without Size2 are read exactly."""
    out = run_mp(r'''
import socket, time, gc
from firmware_slots.coap import numbers as N
from firmware_slots.coap.message import CoapMessage, block_encode
from firmware_slots.coap.servertransport import ServerTransport

def resp(num, more, payload, size2=None):
    m = CoapMessage(N.ACK, N.CONTENT, 7, b"tokn")
    m.add_opt(N.BLOCK2, block_encode(num, more, 6))
    if size2 is not None:
        m.add_opt(N.SIZE2, size2)
    m.payload = payload
    return m.encode()

for port in range(47000, 47100):  # the unix port has no getsockname: bind a known port
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        srv.bind(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        break
    except OSError:
        srv.close()
t = ServerTransport("127.0.0.1", port, 1152)
t.sendto(b"\x40\x01\x00\x01", None)
_, peer = srv.recvfrom(64)

def get():
    for _ in range(200):
        r = t.recvfrom()
        if r is not None:
            return r[0]
        time.sleep_ms(5)

b0 = resp(0, True, b"A" * 1024, size2=2 * 1024 + 10)
b1 = resp(1, True, b"B" * 1024)
srv.sendto(b0, peer)
srv.sendto(b1, peer)
time.sleep_ms(50)
x = get()
print("first", type(x).__name__, bytes(x) == b0)
y = get()
print("second", type(y).__name__, bytes(y) == b1)   # lent buffer: read exactly
print("first intact", bytes(x) == b0)
t.sendto(b"\x40\x01\x00\x02", None)                 # the next request: the block is free
srv.sendto(resp(1, True, b"C" * 1024), peer)
z = get()
print("again", type(z).__name__, bytes(z[-4:]) == b"CCCC")
t.sendto(b"\x40\x01\x00\x03", None)
last = resp(2, False, b"D" * 10)
srv.sendto(last, peer)
w = get()
print("last", type(w).__name__, bytes(w) == last)   # short: whole in the peek
t.sendto(b"\x40\x01\x00\x04", None)
t.total = None
last = resp(2, False, b"E" * 900)
srv.sendto(last, peer)
v = get()
print("unsized", type(v).__name__, bytes(v) == last)
t.sendto(b"\x40\x01\x00\x05", None)
t.total = 2 * 1024 + 900
srv.sendto(last, peer)
u = get()
print("sized last", type(u).__name__, bytes(u) == last)
t.close()
srv.close()
''')
    assert "first memoryview True" in out, out
    assert "second bytes True" in out, out
    assert "first intact True" in out, out
    assert "again memoryview True" in out, out
    assert "last bytes True" in out, out
    assert "unsized bytes True" in out, out
    assert "sized last memoryview True" in out, out
