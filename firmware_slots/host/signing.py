"""Sign and inspect MCUboot images on the host.

Signing is imgtool's own library, so `fwslots image sign` writes exactly what
`imgtool sign --header-size 0x1000 --pad-header --align 4 --version V
--security-counter N -k KEY` writes. Inspection is the device's parser
(firmware_slots.core.image): the host shows what the device will decide.
"""

import contextlib
import io
import os
import tempfile

from firmware_slots.core import image as dimage  # the one device import here

HEADER_SIZE = 0x1000  # one 4 KiB sector: the app-mode littlefs image starts sector-aligned
ALIGN = 4
TLV_NAMES = {0x01: "KEYHASH", 0x02: "PUBKEY", 0x10: "SHA256", 0x22: "ECDSASIG", 0x24: "ED25519",
             0x25: "SIG_PURE", 0x50: "SEC_CNT", 0x60: "BOOT_RECORD", 0x40: "DEPENDENCY"}


class SigningError(Exception):
    """One-line reason a sign or show request cannot be done."""


def _load_private(path):
    from imgtool import keys

    try:
        k = keys.load(path)
    except FileNotFoundError:
        raise SigningError("key file %s not found" % path)
    except Exception as e:  # cryptography's messages for non-key files
        raise SigningError("%s is not a PEM key: %s" % (path, str(e).splitlines()[0] if str(e) else type(e).__name__))
    if k is None:
        raise SigningError("key %s is password-protected; use an unencrypted key" % path)
    if not isinstance(k, (keys.ECDSA256P1, keys.Ed25519)):
        raise SigningError("key %s must be an ECDSA P-256 or Ed25519 private key (imgtool keygen -t ecdsa-p256|ed25519)" % path)
    return k


def sign(data, key_path, version, security_counter=None, header_size=HEADER_SIZE, align=ALIGN):
    """Bytes of the signed image for payload `data` (bytes), as imgtool sign makes it."""
    from imgtool import image, version as ver

    try:
        v = ver.decode_version(version)
    except Exception:
        raise SigningError("version %r is not major[.minor[.revision[+build]]]" % version)
    if security_counter is not None and not 0 <= security_counter <= 0xFFFFFFFF:
        raise SigningError("security counter must be 0..4294967295")
    key = _load_private(key_path)
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "in.bin")
        dst = os.path.join(d, "out.bin")
        with open(src, "wb") as f:
            f.write(data)
        img = image.Image(version=v, header_size=header_size, pad_header=True, align=align,
                          security_counter=security_counter)
        with contextlib.redirect_stdout(io.StringIO()):  # imgtool prints "sign the digest"
            img.load(src)
            img.create(key, "hash", None)
            img.save(dst)
        with open(dst, "rb") as f:
            return f.read()


def load_public(path):
    """A device trust key tuple from a PEM file (public key, or a private key's public half)."""
    try:
        with open(path, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise SigningError("cannot read key %s: %s" % (path, e.strerror))
    return dimage.load_key(public_pem(pem))


def public_pem(pem):
    """PEM SubjectPublicKeyInfo text of a PEM public or private key (what profiles store)."""
    from cryptography.hazmat.primitives import serialization

    if b"PRIVATE KEY" in pem:
        try:
            k = serialization.load_pem_private_key(pem, password=None)
        except (TypeError, ValueError) as e:
            raise SigningError("unreadable private key: %s" % e)
        pem = k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        dimage.load_key(pem)
    except dimage.ImageError as e:
        raise SigningError(str(e))
    return pem.decode()


def show(data, keys=()):
    """A dict describing image bytes `data`; "verified" says whether a key's signature holds.

    Structural errors raise SigningError; a signature that fails is reported in "error".
    """
    s = dimage.ImageStream()
    try:
        s.feed(data)
        info = s.finish()
    except dimage.ImageError as e:
        raise SigningError(str(e))
    out = {
        "header_size": info["hdr"],
        "image_size": info["size"],
        "flags": info["flags"],
        "version": dimage.version_str(info["version"]),
        "security_counter": info["sc"],
        "sha256": info["digest"].hex(),
        "tlvs": [{"type": TLV_NAMES.get(t, "0x%02x" % t), "len": n} for t, n in info["tlvs"]],
        "signatures": [{"kind": k, "keyhash": kh.hex()} for k, kh, _ in info["sigs"]],
    }
    if keys:
        try:
            i = dimage.check_signature(info, list(keys))
            out["verified"] = True
            out["key"] = keys[i][1].hex()
        except dimage.ImageError as e:
            out["verified"] = False
            out["error"] = str(e)
    return out
