"""Seeded CoAP/USP datagram fuzzer for the agent (tests/test_coap_malformed.py, bench/usp_stress.py).

datagrams(seed, n, reply_port) yields n datagrams, the same ones for the same seed:
the hand-made malformed datagrams of test_coap_server.py / test_mtp_binding.py, and
seeded mutations (byte flips, truncation, spliced option bytes, random bytes) of valid
requests: GET /fw/1 (Block2), GET /.well-known/core, a CoAP ping, and POST /usp carrying
a USP Get Record whose reply-to is 127.0.0.1:reply_port (a black hole unless someone
answers there). Only Gets are mutated: no seed asks for a change, so a mutation that
still decodes as something else must be refused by the agent's checks, not luck.
"""
import random

from firmware_slots.coap import numbers as N
from firmware_slots.coap.message import CoapMessage, block_encode
from firmware_slots.usp import codec, schema

FIXED = [b"", b"\x40", b"\x40\x01\x00", b"\x80\x01\x00\x07", b"\x5f\x01\x00\x08" + b"t" * 15,
         b"\x50\xe1\x00\x09", b"\x54\x01\x00\x0a" + b"t", b"\x49\x01\x01\x01" + b"t" * 9,
         b"\x4f\x01\x01\x02" + b"t" * 15, b"\x40\x01\x01\x03\xf1a", b"\x40\x01\x01\x04\xbfa",
         b"\x40\x01\x01\x05\xd1\x00" + b"x" * 4, b"\x40\x01\x01\x06\x1e\x10\x00" + b"x" * 100,
         b"\x40\x01\x01\x07\xff", b"\x48\x02\x00\x01abc", b"\x40\x02\x00\x01\xf0",
         b"\x40\x02\x00\x02\xb3usp\xd1\x08" + b"X" * 3]


def seeds(agent_id, reply_port):
    rec = codec.make_record(agent_id, "self::fuzz", codec.encode_msg(codec.new_msg(
        "fz", schema.GET, "request", "get", {"param_paths": ["Device.DeviceInfo.FirmwareImage.*.Status"]})))
    post = CoapMessage(N.CON, N.POST, 1, b"fz", [
        (N.URI_PATH, b"usp"), (N.CONTENT_FORMAT, b"\x2a"),
        (N.URI_QUERY, ("reply-to=coap://127.0.0.1:%d/usp" % reply_port).encode())], bytes(rec))
    fw = CoapMessage(N.CON, N.GET, 2, b"f1", [(N.URI_PATH, b"fw"), (N.URI_PATH, b"1"),
                                              (N.BLOCK2, block_encode(0, False, 6))])
    wkc = CoapMessage(N.CON, N.GET, 3, b"wk", [(N.URI_PATH, b".well-known"), (N.URI_PATH, b"core")])
    ping = CoapMessage(N.CON, N.EMPTY, 4)
    return [m.encode() for m in (post, fw, wkc, ping)]


def datagrams(seed, n, agent_id, reply_port):
    rnd = random.Random(seed)
    base = seeds(agent_id, reply_port)
    for i in range(n):
        k = rnd.randrange(16)
        if k == 0:
            d = FIXED[rnd.randrange(len(FIXED))]
        elif k == 1:
            d = bytes(rnd.getrandbits(8) for _ in range(rnd.randrange(300)))
        else:
            d = bytearray(base[rnd.randrange(len(base))])
            d[2:4] = rnd.getrandbits(16).to_bytes(2, "big")  # fresh message id: no dedup hit
            if k < 8:
                for _ in range(1 + rnd.randrange(4)):
                    d[rnd.randrange(len(d))] = rnd.getrandbits(8)
            elif k < 11:
                del d[rnd.randrange(len(d)):]
            elif k < 14:
                at = 4 + (d[0] & 15)
                d[at:at] = bytes(rnd.getrandbits(8) for _ in range(1 + rnd.randrange(8)))
            # else: the seed itself (valid), so real work is mixed in
            d = bytes(d)
        yield d
