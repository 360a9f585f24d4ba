"""MCUboot image container: streaming parse, hash and signature check on the device.

An image is what `imgtool sign --header-size 0x1000 --pad-header ...` writes; all
fields little-endian (imgtool's default; big-endian images are refused by name).

| offset             | size | field                                                   |
|--------------------|------|---------------------------------------------------------|
| 0                  | 4    | magic 0x96f3b83d                                        |
| 4                  | 4    | load address (ignored: we never load to RAM)            |
| 8                  | 2    | hdr_size: payload offset (>= 32; 0x1000 = one sector)   |
| 10                 | 2    | protected TLV area size, its 4-byte info included; 0=none|
| 12                 | 4    | img_size: payload bytes                                 |
| 16                 | 4    | flags (encrypted / compressed / RAM-load are refused)   |
| 20                 | 1+1+2+4 | version major, minor, revision (u16), build (u32)    |
| 28                 | 4    | pad                                                     |
| 32 .. hdr_size     |      | padding (--pad-header writes 0xff, the erased value)    |
| hdr_size           | img_size | payload: app-mode littlefs image or native firmware |
| H=hdr+img          | 4    | protected info: magic 0x6908, u16 total incl. info      |
| H+4 ..             |      | protected TLVs (SEC_CNT ...), covered by the hash       |
| E=H+prot           | 4    | info: magic 0x6907, u16 total incl. info                |
| E+4 .. E+total     |      | TLVs: SHA256, KEYHASH, signature; not hashed            |

A TLV is u16 type, u16 length, value. The hash (SHA-256 TLV) covers bytes [0, E):
header, payload and protected TLVs. Nothing may follow the TLV area.

| TLV      | type | length | where       | meaning                                      |
|----------|------|--------|-------------|----------------------------------------------|
| KEYHASH  | 0x01 | 32     | unprotected | SHA-256 of the signer's DER SubjectPublicKeyInfo |
| PUBKEY   | 0x02 | any    | unprotected | the full DER key instead of its hash         |
| SHA256   | 0x10 | 32     | unprotected | digest of [0, E)                             |
| SHA384/512 | 0x11/0x12 |  | unprotected | refused (only SHA-256 here)                  |
| ECDSASIG | 0x22 | <= 72  | unprotected | DER ECDSA-P256-SHA256 signature of the digest |
| ED25519  | 0x24 | 64     | unprotected | Ed25519 signature of the 32-byte digest      |
| SIG_PURE | 0x25 | 1      | unprotected | refused (signature over the whole image)     |
| SEC_CNT  | 0x50 | 4      | protected   | security counter (anti-rollback)             |
| others   |      |        | protected   | authenticated, ignored (boot record, deps)   |
| others   |      |        | unprotected | refused: they could say anything unsigned    |

A signature TLV belongs to the KEYHASH/PUBKEY before it (MCUboot's order).

What the device pays: one ImageStream holds a 32-byte header buffer, a TLV buffer
of TLV_MAX bytes and one SHA-256; feed() copies only the header and TLV bytes. The
verifiers (core/p256, core/ed25519) are imported only when a key of that kind is
provisioned and the image carries its signature.
"""

import binascii
import hashlib
import struct

MAGIC = 0x96F3B83D
PROT_MAGIC = 0x6908
TLV_MAGIC = 0x6907
HEADER = 32
TLV_MAX = 512  # whole TLV area (protected + unprotected); imgtool's signed images use ~200
T_KEYHASH, T_PUBKEY, T_SHA256, T_ECDSA, T_ED25519, T_PURE, T_SEC_CNT = 0x01, 0x02, 0x10, 0x22, 0x24, 0x25, 0x50
F_REFUSED = 0x04 | 0x08 | 0x20 | 0x200 | 0x400 | 0x800  # encrypted, RAM-load, compressed

# DER SubjectPublicKeyInfo prefixes: the key follows them (kind, prefix, key length)
_SPKI = (
    ("ecdsa-p256", binascii.unhexlify("3059301306072a8648ce3d020106082a8648ce3d030107034200"), 65),
    ("ed25519", binascii.unhexlify("302a300506032b6570032100"), 32),
)
_SIG = {T_ECDSA: "ecdsa-p256", T_ED25519: "ed25519"}


class ImageError(ValueError):
    """The image is not a well-formed, trusted MCUboot image; the message says why."""


def _hex(b):
    return binascii.hexlify(b).decode()


def load_key(data):
    """A provisioned public key (PEM text or DER bytes) -> (kind, keyhash, key).

    key is (x, y) for ecdsa-p256 and the 32 raw bytes for ed25519; keyhash is what
    imgtool puts in KEYHASH: SHA-256 of the DER SubjectPublicKeyInfo.
    """
    if isinstance(data, str):
        data = data.encode()
    if data[:5] == b"-----":
        lines = [ln.strip() for ln in data.split(b"\n")]
        if lines[0] != b"-----BEGIN PUBLIC KEY-----" or b"-----END PUBLIC KEY-----" not in lines:
            raise ImageError("trust key is not a PEM 'PUBLIC KEY' (SubjectPublicKeyInfo)")
        try:
            data = binascii.a2b_base64(b"".join(lines[1:lines.index(b"-----END PUBLIC KEY-----")]))
        except ValueError:
            raise ImageError("trust key PEM has invalid base64")
    der = bytes(data)
    for kind, prefix, n in _SPKI:
        if der[:len(prefix)] == prefix and len(der) == len(prefix) + n:
            raw = der[len(prefix):]
            try:
                if kind == "ed25519":
                    from firmware_slots.core import ed25519
                    ed25519.point(raw)
                    key = raw
                else:
                    from firmware_slots.core import p256
                    key = p256.public_key(raw)
            except ValueError as e:
                raise ImageError("trust key: %s" % e)
            return (kind, hashlib.sha256(der).digest(), key)
    raise ImageError("trust key is neither an ECDSA P-256 nor an Ed25519 public key")


def version_str(v):
    """imgtool's spelling: major.minor.revision+build."""
    return "%d.%d.%d+%d" % v


def parse_header(h):
    """(hdr_size, prot_size, img_size, flags, version) of the 32-byte header `h`."""
    magic, _, hdr, prot, img, flags, ma, mi, rev, build = struct.unpack_from("<IIHHIIBBHI", h, 0)
    if magic != MAGIC:
        if magic == 0x3DB8F396:
            raise ImageError("big-endian MCUboot image; sign with imgtool's default little endian")
        raise ImageError("not an MCUboot image (header magic 0x%08x, expected 0x%08x)" % (magic, MAGIC))
    if hdr < HEADER:
        raise ImageError("header size %d is smaller than the %d-byte header" % (hdr, HEADER))
    if flags & F_REFUSED:
        raise ImageError("image flags 0x%x: encrypted, compressed or RAM-load images are not supported" % flags)
    if prot and prot < 4:
        raise ImageError("protected TLV area size %d is smaller than its 4-byte info" % prot)
    return hdr, prot, img, flags, (ma, mi, rev, build)


class ImageStream:
    """Feed an image in any chunks; finish() parses and checks it. Nothing is kept but
    the header, the TLV area (at most TLV_MAX bytes) and a running SHA-256."""

    def __init__(self):
        self.hdr = bytearray(HEADER)
        self.tlv = bytearray(TLV_MAX)
        self.n = 0
        self.fields = None  # parse_header() result once 32 bytes are in
        self.sha = hashlib.sha256()

    def feed(self, data):
        mv = memoryview(data)
        n = len(mv)
        pos = self.n
        if pos < HEADER:
            k = min(HEADER - pos, n)
            self.hdr[pos:pos + k] = mv[:k]
            if pos + k == HEADER:
                self.fields = parse_header(self.hdr)
        f = self.fields
        if f is None:
            self.sha.update(mv)
            self.n = pos + n
            return
        t0 = f[0] + f[2]  # TLV area start
        e = t0 + f[1]     # end of the hashed region
        if pos < e:
            self.sha.update(mv[:min(n, e - pos)])
        end = pos + n
        if end > t0:
            a = max(pos, t0)
            if end - t0 > TLV_MAX:
                raise ImageError("more than %d bytes after the payload: TLV area too large or trailing data" % TLV_MAX)
            self.tlv[a - t0:end - t0] = mv[a - pos:]
        self.n = end

    def finish(self):
        """Check the structure and the hash; return a dict for check_signature().

        Keys: hdr, size, flags, version (tuple), sc (security counter or None),
        digest, sigs [(kind or None, keyhash or der, signature bytes)], tlvs [(type, len)].
        """
        n = self.n
        if self.fields is None:
            raise ImageError("image of %d bytes is shorter than the %d-byte MCUboot header" % (n, HEADER))
        hdr, prot, img, flags, ver = self.fields
        t0 = hdr + img
        if n < t0 + 4:
            raise ImageError("image truncated: %d bytes, header says payload ends at %d" % (n, t0))
        t = memoryview(self.tlv)
        info = {"hdr": hdr, "size": img, "flags": flags, "version": ver, "sc": None, "sigs": [], "tlvs": []}
        o = 0
        if prot:
            o = _area(t, 0, n - t0, PROT_MAGIC, prot, info)
        if n - t0 < o + 4:
            raise ImageError("image truncated: no TLV area after the %s" % ("protected TLVs" if prot else "payload"))
        magic, total = struct.unpack_from("<HH", t, o)
        if magic != TLV_MAGIC:
            raise ImageError("TLV area magic 0x%04x at offset %d, expected 0x%04x" % (magic, t0 + o, TLV_MAGIC))
        if n - t0 < o + total:
            raise ImageError("TLV area truncated: %d of %d bytes" % (n - t0 - o, total))
        if n - t0 > o + total:
            raise ImageError("%d bytes after the TLV area" % (n - t0 - o - total))
        _area(t, o, n - t0, TLV_MAGIC, total, info)
        digest = self.sha.digest()
        info["digest"] = digest
        got = info.get("sha")
        if got is None:
            raise ImageError("no SHA256 TLV")
        if got != digest:
            raise ImageError("image hash mismatch: header, payload or protected TLVs altered (TLV %s, computed %s)"
                             % (_hex(got)[:16], _hex(digest)[:16]))
        return info


def _area(t, o, avail, magic, size, info):
    # walk one TLV area at t[o:]; size is what the header (or info) promised
    m, total = struct.unpack_from("<HH", t, o)
    if magic == PROT_MAGIC:
        if m != PROT_MAGIC:
            raise ImageError("protected TLV magic 0x%04x, expected 0x%04x" % (m, PROT_MAGIC))
        if total != size:
            raise ImageError("protected TLV area is %d bytes, header says %d" % (total, size))
        if avail < o + total:
            raise ImageError("protected TLV area truncated")
    if total < 4:
        raise ImageError("TLV area size %d is smaller than its 4-byte info" % total)
    end = o + total
    o += 4
    kh = None
    while o < end:
        if o + 4 > end:
            raise ImageError("TLV at offset %d cut by the end of its area" % o)
        typ, ln = struct.unpack_from("<HH", t, o)
        o += 4
        if o + ln > end:
            raise ImageError("TLV 0x%02x of %d bytes overruns its area" % (typ, ln))
        v = bytes(t[o:o + ln])
        o += ln
        info["tlvs"].append((typ, ln))
        if magic == PROT_MAGIC:
            if typ == T_SEC_CNT:
                if ln != 4 or info["sc"] is not None:
                    raise ImageError("SEC_CNT TLV must appear once with 4 bytes")
                info["sc"] = struct.unpack("<I", v)[0]
            elif typ in (T_SHA256, T_KEYHASH, T_PUBKEY, T_ECDSA, T_ED25519, T_PURE):
                raise ImageError("TLV 0x%02x does not belong in the protected area" % typ)
        elif typ == T_SHA256:
            if ln != 32 or "sha" in info:
                raise ImageError("SHA256 TLV must appear once with 32 bytes")
            info["sha"] = v
        elif typ == T_KEYHASH:
            if ln != 32:
                raise ImageError("KEYHASH TLV must be 32 bytes, got %d" % ln)
            kh = v
        elif typ == T_PUBKEY:
            kh = hashlib.sha256(v).digest()  # compared like a KEYHASH
        elif typ in _SIG:
            if kh is None:
                raise ImageError("signature TLV 0x%02x without a KEYHASH before it" % typ)
            info["sigs"].append((_SIG[typ], kh, v))
            kh = None
        elif typ == T_PURE:
            raise ImageError("pure signatures (imgtool --pure) are not supported; sign the digest")
        elif 0x11 <= typ <= 0x12:
            raise ImageError("only SHA-256 images are supported (TLV 0x%02x)" % typ)
        else:
            raise ImageError("unprotected TLV 0x%02x is not allowed (not covered by the signature)" % typ)
    return end


def check_signature(info, keys):
    """Index of the provisioned key (load_key() tuples) whose signature verifies.

    ImageError names the failed check: unsigned, unknown key hash, or bad signature.
    """
    if not info["sigs"]:
        raise ImageError("image is unsigned but trust keys are provisioned")
    seen = []
    for kind, kh, sig in info["sigs"]:
        for i, (kk, khash, key) in enumerate(keys):
            if khash != kh:
                continue
            if kk != kind:
                raise ImageError("key %s is %s but the image has an %s signature" % (_hex(kh)[:16], kk, kind))
            try:
                if kind == "ed25519":
                    from firmware_slots.core import ed25519
                    try:
                        sha512 = hashlib.sha512
                    except AttributeError:  # MicroPython: the pure fallback
                        from firmware_slots.core.sha2 import sha512
                    ok = ed25519.verify(key, sig, info["digest"], sha512)
                else:
                    from firmware_slots.core import p256
                    ok = p256.verify(key, info["digest"], sig)
            except ValueError as e:
                raise ImageError("malformed signature: %s" % e)
            if not ok:
                raise ImageError("%s signature does not verify against key %s" % (kind, _hex(kh)[:16]))
            return i
        seen.append(_hex(kh)[:16])
    raise ImageError("image signed by an unknown key (key hash %s)" % ", ".join(seen))


def check_stream(read, length, keys=(), buf=None):
    """Parse and check an image already in flash: read(offset, memoryview) fills the view.

    Returns finish()'s info plus "key" (index of the verifying key, None without keys).
    """
    s = ImageStream()
    buf = buf or bytearray(256)
    mv = memoryview(buf)
    off = 0
    while off < length:
        k = min(len(buf), length - off)
        read(off, mv[:k])
        s.feed(mv[:k])
        off += k
    info = s.finish()
    info["key"] = check_signature(info, keys) if keys else None
    return info


def accept(stream, keys, min_sc):
    """The slot manager's one call at the end of a write: (payload offset, payload length,
    counter, version string without a zero build).

    `stream` has been fed the whole image. With `keys` the image must verify against one
    of them; its security counter (0 when it has none) must not be below `min_sc`.
    """
    info = stream.finish()
    if keys:
        check_signature(info, keys)
    sc = info["sc"] or 0
    if sc < min_sc:
        raise ImageError("security counter %d is below the device's minimum %d (anti-rollback)" % (sc, min_sc))
    v = info["version"]
    return info["hdr"], info["size"], sc, version_str(v) if v[3] else "%d.%d.%d" % v[:3]
