"""USP codec timings: median microseconds to encode/decode a Get and a GetResp Record.

Run on the device side (MicroPython):  MICROPYPATH=. micropython bench/usp_codec.py
Also runs under CPython for comparison. Prints one JSON object.
"""
import gc
import json
import sys

if sys.implementation.name != "micropython":
    import os

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

try:
    from time import ticks_us, ticks_diff
except ImportError:
    from time import perf_counter

    def ticks_us():
        return int(perf_counter() * 1000000)

    def ticks_diff(a, b):
        return a - b

gc.collect()
_base = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
from firmware_slots.usp.codec import decode_msg, decode_record, encode_msg, make_record, record_payload  # noqa: E402
from firmware_slots.usp import schema  # noqa: E402

gc.collect()
_import = (gc.mem_alloc() - _base) if _base else None

GET = {"header": {"msg_id": "42", "msg_type": schema.GET},
       "body": {"request": {"get": {"param_paths": ["Device.DeviceInfo.FirmwareImage.", "Device.DeviceInfo.BootFirmwareImage"]}}}}
_rows = []
for i in range(1, 4):
    _rows.append({"resolved_path": "Device.DeviceInfo.FirmwareImage.%d." % i, "result_params": {
        "Alias": "cpe-%d" % i, "Name": "slot-%d" % i, "Version": "1.%d.0" % i, "Available": "true",
        "Status": "Active" if i == 1 else "Available", "BootFailureLog": ""}})
GET_RESP = {"header": {"msg_id": "42", "msg_type": schema.GET_RESP},
            "body": {"response": {"get_resp": {"req_path_results": [
                {"requested_path": "Device.DeviceInfo.FirmwareImage.", "resolved_path_results": _rows}]}}}}


def median(f, n):
    t = []
    for _ in range(n):
        a = ticks_us()
        f()
        t.append(ticks_diff(ticks_us(), a))
    t.sort()
    return t[n // 2]


def run(name, d, n=200):
    rec = make_record("proto::agent", "proto::ctrl", encode_msg(d))

    def enc():
        make_record("proto::agent", "proto::ctrl", encode_msg(d))

    def dec():
        decode_msg(record_payload(decode_record(rec, views=True)))

    out = {"bytes": len(rec), "encode_us": median(enc, n), "decode_us": median(dec, n)}
    if hasattr(gc, "mem_alloc"):
        gc.collect()
        a = gc.mem_alloc()
        m = decode_msg(record_payload(decode_record(rec, views=True)))
        gc.collect()
        out["decoded_tree_bytes"] = gc.mem_alloc() - a
        del m
    return name, out


res = {"impl": sys.implementation.name, "import_bytes": _import}
for name, d in (("get", GET), ("get_resp", GET_RESP)):
    k, v = run(name, d)
    res[k] = v
print(json.dumps(res))
