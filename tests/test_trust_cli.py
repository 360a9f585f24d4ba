"""`fwslots flash init --trust-key` and the flash-file install: signed images in, the rest
refused with one line and exit 1, the slot table unchanged."""
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from firmware_slots.host import appimage, signing
from firmware_slots.host.cli import main

BIN = os.path.dirname(sys.executable)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    for name, typ in (("ec", "ecdsa-p256"), ("ed", "ed25519"), ("other", "ecdsa-p256")):
        subprocess.run([os.path.join(BIN, "imgtool"), "keygen", "-k", str(d / (name + ".pem")), "-t", typ], check=True)
        subprocess.run([os.path.join(BIN, "imgtool"), "getpub", "-k", str(d / (name + ".pem")), "-e", "pem",
                        "-o", str(d / (name + ".pub"))], check=True)
    (d / "app.img").write_bytes(appimage.build(files={"main.py": b"pass\n"}, name="demo", version="1.0.0"))
    for name in ("ec", "ed", "other"):
        # imgtool's own CLI, exactly as a user would sign
        subprocess.run([os.path.join(BIN, "imgtool"), "sign", "--header-size", "0x1000", "--pad-header", "--align", "4",
                        "--version", "1.0.0", "--security-counter", "2", "-S", "0x40000", "-k", str(d / (name + ".pem")),
                        str(d / "app.img"), str(d / (name + ".img"))], check=True, capture_output=True)
    return d


def table(path):
    r = run("slots", path, "--json")
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_trust_key_flash_accepts_imgtool_signed_refuses_the_rest(kit, tmp_path):
    f = tmp_path / "dev.flash"
    r = run("flash", "init", f, "--slots", 2, "--slot-kib", 256, "--trust-key", kit / "ec.pub", "--trust-key", kit / "ed.pub")
    assert r.exit_code == 0, r.output
    assert "trust" in json.loads((tmp_path / "dev.flash.json").read_text())
    r = run("install", f, kit / "ec.img")
    assert r.exit_code == 0 and "Available" in r.output, r.output
    before = table(f)
    bad = bytearray((kit / "ed.img").read_bytes())
    bad[0x1000 + 777] ^= 4
    (tmp_path / "bad.img").write_bytes(bytes(bad))
    for img, why in ((kit / "other.img", "image signed by an unknown key"), (tmp_path / "bad.img", "image hash mismatch"),
                     (kit / "app.img", "not an MCUboot image")):
        r = run("install", f, img)
        assert r.exit_code == 1, r.output
        lines = r.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: untrusted image: " + why), r.output
        assert table(f) == before
    r = run("install", f, kit / "ed.img")
    assert r.exit_code == 0 and "slot 2: Available" in r.output, r.output


def test_flash_without_key_says_so_and_accepts_both(kit, tmp_path):
    f = tmp_path / "dev.flash"
    assert run("flash", "init", f).exit_code == 0
    r = CliRunner().invoke(main, ["install", str(f), str(kit / "app.img")])
    assert r.exit_code == 0 and "no trust key: images are checked by checksum only" in r.output
    assert run("install", f, kit / "other.img").exit_code == 0


def test_trust_key_must_be_a_supported_public_key(kit, tmp_path):
    (tmp_path / "junk.pem").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    r = run("flash", "init", tmp_path / "x.flash", "--trust-key", tmp_path / "junk.pem")
    assert r.exit_code == 2 and "neither an ECDSA P-256 nor an Ed25519 public key" in r.output
    assert not (tmp_path / "x.flash").exists()
    assert signing.public_pem((kit / "ec.pem").read_bytes()) == (kit / "ec.pub").read_text()
