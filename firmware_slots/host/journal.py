"""Host-side journal reader: decodes a raw journal dump with struct, zlib and cbor2.

Written independently of firmware_slots/core/journal.py (the device's writer and the single
source of truth for the format, documented there) so tests can cross-check the two.
"""
import struct
import zlib

import cbor2

HEADER = struct.Struct("<BBHI")
MAGIC = 0xA5
KINDS = {0x53: "snapshot", 0x44: "delta"}
SPAN = 4096  # a ring sector spans at least this many bytes of erase blocks, if the journal has 2 of them


def geometry(block, blocks):
    """(bytes, count) of the ring's logical sectors for `blocks` erase blocks of `block` bytes:
    enough whole blocks to reach SPAN, but never fewer than two sectors in the ring."""
    per = max(1, min(-(-SPAN // block), blocks // 2))
    return per * block, blocks // per


def records(raw, sector_size, write_size=1):
    """Every record in `raw` (the journal's bytes, erase blocks of `sector_size`): dicts with
    sector (logical: see geometry), offset in it, kind, seq, valid and body (decoded CBOR,
    or None when the CRC fails)."""
    out = []
    sector_size, count = geometry(sector_size, len(raw) // sector_size)
    for sector in range(count):
        base = sector * sector_size
        off = 0
        while off + HEADER.size + 4 <= sector_size:
            magic, kind, length, seq = HEADER.unpack_from(raw, base + off)
            if magic == 0xFF and kind == 0xFF:
                break  # erased: end of this sector's records
            end = off + HEADER.size + length + 4
            if magic != MAGIC or kind not in KINDS or end > sector_size:
                out.append(dict(sector=sector, offset=off, kind="garbage", seq=None, valid=False, body=None))
                break
            rec = bytes(raw[base + off:base + end])
            crc = struct.unpack_from("<I", rec, len(rec) - 4)[0]
            valid = zlib.crc32(rec[:-4]) == crc
            body = cbor2.loads(rec[HEADER.size:-4]) if valid else None
            out.append(dict(sector=sector, offset=off, kind=KINDS[kind], seq=seq, valid=valid, body=body))
            if not valid:
                break
            off = end + (-end) % write_size
    return out


def recover(raw, sector_size, write_size=1):
    """The state the device would recover: newest snapshot plus the deltas after it."""
    recs = records(raw, sector_size, write_size)
    snaps = [r for r in recs if r["valid"] and r["kind"] == "snapshot" and r["offset"] == 0]
    if not snaps:
        return None
    head = max(snaps, key=lambda r: r["seq"])
    state = {k: dict(v) for k, v in head["body"].items()}
    seq = head["seq"]
    for r in recs:
        if r["sector"] != head["sector"] or r["offset"] == 0:
            continue
        if not r["valid"] or r["kind"] != "delta" or r["seq"] != seq + 1:
            break
        for section, changes in r["body"].items():
            sec = state.setdefault(section, {})
            for k, v in changes.items():
                if v is None:
                    sec.pop(k, None)
                else:
                    sec[k] = v
        seq = r["seq"]
    return state
