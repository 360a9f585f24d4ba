"""A virtual board provisioned with a trust key (board profile "trust"): signed app images
install over its console (`fwslots dev install`), boot from past the MCUboot header, and
tampered or foreign ones are refused with exit 1."""
import json
import os
import subprocess
import sys

from click.testing import CliRunner

from firmware_slots.host import signing
from firmware_slots.host.cli import main
from hil.apps import app_image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_dev_install_on_a_trust_key_board(fwslots_make_dut, tmp_path):
    imgtool = os.path.join(os.path.dirname(sys.executable), "imgtool")
    for name in ("good", "other"):
        subprocess.run([imgtool, "keygen", "-k", str(tmp_path / (name + ".pem")), "-t", "ed25519"], check=True)
    with open(os.path.join(ROOT, "boards", "profiles", "unix-virtual.json")) as f:
        p = json.load(f)
    p["trust"] = {"keys": [signing.public_pem((tmp_path / "good.pem").read_bytes())]}
    (tmp_path / "trusted.json").write_text(json.dumps(p))
    d = fwslots_make_dut(profile=str(tmp_path / "trusted.json"))
    v1 = signing.sign(app_image("demo", "1.0"), str(tmp_path / "good.pem"), "1.0.0", 1)
    info = d.install(0, v1)
    assert info["Status"] == "Available" and info["Name"] == "demo" and info["Version"] == "1.0", info
    d.set_boot(0)
    r = d.reboot()
    assert r.slot == 0 and "APP demo 1.0" in r.text and "APP confirmed" in r.text, r.text  # mounted past the header
    port = d.board.link
    bad = bytearray(signing.sign(app_image("demo", "2.0"), str(tmp_path / "good.pem"), "2.0.0", 2))
    bad[0x1000 + 100] ^= 1
    (tmp_path / "bad.img").write_bytes(bytes(bad))
    (tmp_path / "other.img").write_bytes(signing.sign(app_image("demo", "2.0"), str(tmp_path / "other.pem"), "2.0.0", 2))
    for img, why in (("bad.img", "image hash mismatch"), ("other.img", "image signed by an unknown key")):
        r = CliRunner().invoke(main, ["dev", "install", "--port", port, str(tmp_path / img)])
        assert r.exit_code == 1 and why in r.output and len(r.output.strip().splitlines()) == 1, r.output
    st = d.status()
    assert st["running"] == 0 and st["lkg"] == 0 and st["slots"][0]["Status"] == "Active"
