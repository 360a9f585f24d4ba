"""Signed MCUboot images: imgtool's output, checked by the device parser under CPython and
MicroPython; every tampered byte, every truncation, other keys, unsigned images refused;
`fwslots image sign/show` against imgtool."""
import hashlib
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519 as ced

from firmware_slots.core import ed25519, image, p256
from firmware_slots.host import signing
from firmware_slots.host.cli import main
from mpy import requires_micropython, run_mp

BIN = os.path.dirname(sys.executable)


def imgtool(*args):
    p = subprocess.run([os.path.join(BIN, "imgtool")] + [str(a) for a in args], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Keys (ec, ed, ec2), their public PEMs, a payload and imgtool-signed images."""
    d = tmp_path_factory.mktemp("sign")
    k = {"dir": d}
    for name, typ in (("ec", "ecdsa-p256"), ("ed", "ed25519"), ("ec2", "ecdsa-p256")):
        imgtool("keygen", "-k", d / (name + ".pem"), "-t", typ)
        imgtool("getpub", "-k", d / (name + ".pem"), "-e", "pem", "-o", d / (name + ".pub"))
        k[name] = image.load_key((d / (name + ".pub")).read_bytes())
    (d / "pay.bin").write_bytes(bytes(range(256)) * 8)
    common = ["--align", "4", "-S", "0x40000", d / "pay.bin"]
    imgtool("sign", "--header-size", "0x1000", "--pad-header", "--version", "1.2.3+4", "--security-counter", "7",
            "-k", d / "ec.pem", *common, d / "ec.img")
    imgtool("sign", "--header-size", "0x1000", "--pad-header", "--version", "2.0.0", "--security-counter", "9",
            "-k", d / "ed.pem", *common, d / "ed.img")
    imgtool("sign", "--header-size", "0x1000", "--pad-header", "--version", "1.0.0", *common, d / "unsigned.img")
    # small images (32-byte header, 40-byte payload) so every byte can be flipped quickly
    (d / "small.bin").write_bytes(b"payload!" * 5)
    for name in ("ec", "ed"):
        imgtool("sign", "--header-size", "32", "--pad-header", "--version", "1.0.0", "--security-counter", "3",
                "-k", d / (name + ".pem"), "--align", "4", "-S", "0x1000", d / "small.bin", d / ("small-%s.img" % name))
    return k


def check(data, keys=(), chunk=97):
    s = image.ImageStream()
    for i in range(0, len(data), chunk):
        s.feed(data[i:i + chunk])
    info = s.finish()
    info["key"] = image.check_signature(info, list(keys)) if keys else None
    return info


def test_imgtool_ecdsa_and_ed25519_images_verify(kit):
    d = kit["dir"]
    ec = check((d / "ec.img").read_bytes(), [kit["ed"], kit["ec"]])
    assert (ec["version"], ec["sc"], ec["key"], ec["hdr"], ec["size"]) == ((1, 2, 3, 4), 7, 1, 0x1000, 2048)
    ed = check((d / "ed.img").read_bytes(), [kit["ed"]], chunk=4096)
    assert (image.version_str(ed["version"]), ed["sc"], ed["key"]) == ("2.0.0+0", 9, 0)
    # same digest as imgtool reports
    assert ed["digest"] == hashlib.sha256((d / "ed.img").read_bytes()[:0x1000 + 2048 + 12]).digest()


def test_other_key_unsigned_and_mismatched_kind_refused(kit):
    d = kit["dir"]
    with pytest.raises(image.ImageError, match="unknown key"):
        check((d / "ec.img").read_bytes(), [kit["ec2"]])
    with pytest.raises(image.ImageError, match="unsigned"):
        check((d / "unsigned.img").read_bytes(), [kit["ec"]])
    assert check((d / "unsigned.img").read_bytes())["sc"] is None  # no keys: hash only, as today
    # right key hash, wrong key: the signature itself must fail
    kind, kh, _ = kit["ec"]
    with pytest.raises(image.ImageError, match="does not verify"):
        check((d / "ec.img").read_bytes(), [(kind, kh, kit["ec2"][2])])
    with pytest.raises(image.ImageError, match="is ed25519 but the image has an ecdsa-p256"):
        check((d / "ec.img").read_bytes(), [("ed25519", kh, kit["ed"][2])])


@pytest.mark.parametrize("name", ["ec", "ed"])
def test_every_flipped_byte_is_refused(kit, name):
    data = (kit["dir"] / ("small-%s.img" % name)).read_bytes()
    keys = [kit[name]]
    assert check(data, keys)["key"] == 0
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01 if i % 2 else 0x80
        with pytest.raises(image.ImageError):
            check(bytes(bad), keys)


def test_big_image_flips_in_header_payload_and_tlvs(kit):
    data = (kit["dir"] / "ec.img").read_bytes()
    for i in (0, 8, 10, 12, 20, 31, 32, 0xFFF, 0x1000, 0x1000 + 2047, 0x1800, len(data) - 150, len(data) - 1):
        bad = bytearray(data)
        bad[i] ^= 0x10
        with pytest.raises(image.ImageError):
            check(bytes(bad), [kit["ec"]])


def test_every_truncation_and_trailing_data_refused(kit):
    data = (kit["dir"] / "small-ec.img").read_bytes()
    for n in range(len(data)):
        with pytest.raises(image.ImageError):
            check(data[:n], [kit["ec"]])
    with pytest.raises(image.ImageError, match="1 bytes after the TLV area"):
        check(data + b"\xff")
    with pytest.raises(image.ImageError, match="TLV area too large or trailing data"):
        check((kit["dir"] / "ec.img").read_bytes() + bytes(600))


def test_precise_messages(kit):
    data = (kit["dir"] / "small-ec.img").read_bytes()
    with pytest.raises(image.ImageError, match="not an MCUboot image"):
        check(b"\0" * 64)
    with pytest.raises(image.ImageError, match="shorter than the 32-byte MCUboot header"):
        check(data[:31])
    with pytest.raises(image.ImageError, match="image hash mismatch"):
        check(data[:40] + bytes([data[40] ^ 1]) + data[41:])
    with pytest.raises(image.ImageError, match="big-endian"):
        check(bytes(reversed(data[:4])) + data[4:])
    enc = bytearray(data)
    enc[16] = 0x04
    with pytest.raises(image.ImageError, match="encrypted"):
        check(bytes(enc))
    for bad in ("-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n", b"\x30\x03\x02\x01\x01", "hello"):
        with pytest.raises(image.ImageError, match="trust key"):
            image.load_key(bad)


def test_p256_and_ed25519_edge_cases():
    k = ec.generate_private_key(ec.SECP256R1())
    pt = k.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    Q = p256.public_key(pt)
    digest = hashlib.sha256(b"m").digest()
    sig = k.sign(b"m", ec.ECDSA(hashes.SHA256()))
    assert p256.verify(Q, digest, sig)
    assert p256.verify(Q, digest, sig + b"\0\0")  # imgtool --pad-sig
    assert not p256.verify(Q, hashlib.sha256(b"n").digest(), sig)
    for bad in (b"", sig[:-1], b"\x31" + sig[1:], sig + b"\x01"):
        with pytest.raises(ValueError, match="DER"):
            p256.verify(Q, digest, bad)
    n = p256._N
    zero = b"\x30\x06\x02\x01\x00\x02\x01\x01"
    with pytest.raises(ValueError, match="range"):
        p256.verify(Q, digest, zero)
    big = b"\x30\x46\x02\x21\x00" + n.to_bytes(32, "big") + b"\x02\x21\x00" + n.to_bytes(32, "big")
    with pytest.raises(ValueError, match="range"):
        p256.verify(Q, digest, big)
    with pytest.raises(ValueError, match="not on the curve"):
        p256.public_key(pt[:-1] + bytes([pt[-1] ^ 1]))
    # RFC 8032 7.1 TEST 2 (one-byte message 0x72)
    A = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
    S = bytes.fromhex("92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
                      "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")
    assert ed25519.verify(A, S, b"\x72", hashlib.sha512)
    assert not ed25519.verify(A, S, b"\x73", hashlib.sha512)
    with pytest.raises(ValueError, match="S >= L"):
        ed25519.verify(A, S[:32] + (ed25519._L).to_bytes(32, "little"), b"\x72", hashlib.sha512)
    with pytest.raises(ValueError, match="not a point"):
        ed25519.point(b"\xff" * 32)


@requires_micropython
def test_device_verifies_imgtool_images_under_micropython(kit):
    d = kit["dir"]
    code = """
from firmware_slots.core import image
def run(img, pub):
    f = open(img, "rb")
    data = f.read()
    key = image.load_key(open(pub).read())
    def read(off, mv):
        mv[:] = data[off:off + len(mv)]
    try:
        info = image.check_stream(read, len(data), [key])
        print(image.version_str(info["version"]), info["sc"], info["key"])
    except image.ImageError as e:
        print("refused:", e)
D = %r
run(D + "/ec.img", D + "/ec.pub")
run(D + "/ed.img", D + "/ed.pub")
run(D + "/ec.img", D + "/ec2.pub")
run(D + "/unsigned.img", D + "/ed.pub")
run(D + "/small-ed.img", D + "/ed.pub")
""" % str(d)
    out = run_mp(code).splitlines()
    assert out[0] == "1.2.3+4 7 0"
    assert out[1] == "2.0.0+0 9 0"
    assert out[2].startswith("refused: image signed by an unknown key")
    assert out[3] == "refused: image is unsigned but trust keys are provisioned"
    assert out[4] == "1.0.0+0 3 0"


@requires_micropython
def test_micropython_rejects_tampered_signature():
    k = ced.Ed25519PrivateKey.generate()
    A = k.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    m = hashlib.sha256(b"x").digest()
    s = k.sign(m)
    e = ec.generate_private_key(ec.SECP256R1())
    pt = e.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    es = e.sign(b"x", ec.ECDSA(hashes.SHA256()))
    code = """
from firmware_slots.core import ed25519, p256
from firmware_slots.core.sha2 import sha512
A, s, m, pt, es = %r, %r, %r, %r, %r
bad = bytearray(s); bad[40] ^= 1
print(ed25519.verify(A, s, m, sha512), ed25519.verify(A, bytes(bad), m, sha512))
Q = p256.public_key(pt)
bad = bytearray(es); bad[-1] ^= 1
print(p256.verify(Q, m, es), p256.verify(Q, m, bytes(bad)))
""" % (A, s, m, pt, es)
    assert run_mp(code).split() == ["True", "False", "True", "False"]


def test_fwslots_image_sign_matches_imgtool(kit, tmp_path):
    d = kit["dir"]
    r = CliRunner().invoke(main, ["image", "sign", str(d / "pay.bin"), str(tmp_path / "ed.img"), "-k", str(d / "ed.pem"),
                                  "-v", "2.0.0", "-s", "9"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ed.img").read_bytes() == (d / "ed.img").read_bytes()  # Ed25519 is deterministic
    r = CliRunner().invoke(main, ["image", "sign", str(d / "pay.bin"), str(tmp_path / "ec.img"), "-k", str(d / "ec.pem"),
                                  "-v", "1.2.3+4", "-s", "7"])
    assert r.exit_code == 0 and "ecdsa-p256 signature" in r.output
    assert "correctly validated" in imgtool("verify", "-k", d / "ec.pem", tmp_path / "ec.img")
    ours, theirs = (tmp_path / "ec.img").read_bytes(), (d / "ec.img").read_bytes()
    t = 0x1000 + 2048 + 12  # TLV info: its total varies with the DER length of the random-k signature
    assert ours[:t + 2] == theirs[:t + 2] and ours[t + 4:t + 4 + 72] == theirs[t + 4:t + 4 + 72]  # SHA256, KEYHASH


def test_fwslots_image_show(kit, tmp_path):
    d = kit["dir"]
    r = CliRunner().invoke(main, ["image", "show", str(d / "ec.img"), "-k", str(d / "ed.pub"), "-k", str(d / "ec.pub"),
                                  "--json"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.output)
    assert (info["version"], info["security_counter"], info["verified"]) == ("1.2.3+4", 7, True)
    assert [t["type"] for t in info["tlvs"]] == ["SEC_CNT", "SHA256", "KEYHASH", "ECDSASIG"]
    r = CliRunner().invoke(main, ["image", "show", str(d / "ec.img"), "-k", str(d / "ec2.pub")])
    assert r.exit_code == 1 and "NOT verified: image signed by an unknown key" in r.output
    r = CliRunner().invoke(main, ["image", "show", str(d / "ec.img"), "-k", str(d / "ec.pem")])  # private key works too
    assert r.exit_code == 0 and "verified with key hash" in r.output
    r = CliRunner().invoke(main, ["image", "show", str(d / "pay.bin")])
    # neither a container nor an app image: one line naming both checks
    assert r.exit_code == 1 and r.output.strip().startswith("Error: not an app image or an MCUboot image: ")
    r = CliRunner().invoke(main, ["image", "sign", str(d / "pay.bin"), str(tmp_path / "x"), "-k", str(d / "ec.pub"), "-v", "1"])
    assert r.exit_code == 1 and "must be an ECDSA P-256 or Ed25519 private key" in r.output
    r = CliRunner().invoke(main, ["image", "sign", str(d / "pay.bin"), str(tmp_path / "x"), "-k", str(d / "ec.pem"), "-v", "x.y"])
    assert r.exit_code == 1 and "version 'x.y'" in r.output
    assert signing.public_pem((d / "ec.pem").read_bytes()) == (d / "ec.pub").read_text()
