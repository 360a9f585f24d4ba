"""fwslots CLI: real invocations against flash files; exit codes scripts can trust."""
import hashlib
import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from firmware_slots.host.cli import main


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def dev(tmp_path, runner):
    path = str(tmp_path / "d.flash")
    r = runner.invoke(main, ["flash", "init", path, "--slot-kib", "64", "--mode", "raw"])
    assert r.exit_code == 0, r.output
    return path


def image(tmp_path, name, size):
    data = hashlib.sha256(name.encode()).digest() * (size // 32)
    p = tmp_path / name
    p.write_bytes(data)
    return str(p), data


def test_install_boot_confirm_flow(dev, tmp_path, runner):
    img, data = image(tmp_path, "v1.bin", 20000)
    r = runner.invoke(main, ["install", dev, img, "--checksum", "SHA-256:" + hashlib.sha256(data).hexdigest(),
                             "--name", "app", "--version", "1.0", "--set-boot"])
    assert r.exit_code == 0, r.output
    assert "Available app 1.0" in r.output
    r = runner.invoke(main, ["boot", dev, "--confirm"])
    assert r.exit_code == 0 and "trial 1/3" in r.output and "confirmed" in r.output
    r = runner.invoke(main, ["inspect", dev, "--json"])
    table = json.loads(r.output)
    assert table["BootFirmwareImage"] == 1 and table["ActiveFirmwareImage"] == 1
    assert table["LastKnownGoodFirmwareImage"] == 1 and table["SoftwareVersion"] == "1.0"
    rows = table["FirmwareImage"]
    assert [r["Index"] for r in rows] == [1, 2]
    assert rows[0]["CheckSum"] == hashlib.sha256(data).hexdigest() and rows[0]["Size"] == 20000
    assert rows[1]["Status"] == "NoImage"
    # the running image cannot be overwritten: one-line error, exit 1, nothing changes
    r = runner.invoke(main, ["install", dev, img, "--slot", "1"])
    assert r.exit_code == 1 and "running" in r.output
    assert json.loads(runner.invoke(main, ["slots", dev, "--json"]).output) == table  # slots = inspect


def test_bad_inputs_have_precise_errors(dev, tmp_path, runner):
    img, data = image(tmp_path, "v2.bin", 8000)
    r = runner.invoke(main, ["install", dev, img, "--checksum", "SHA-256:" + "00" * 32])
    assert r.exit_code == 1 and "SHA-256 mismatch" in r.output
    r = runner.invoke(main, ["install", dev, img, "--checksum", "SHA-256:abcd"])
    assert r.exit_code == 2 and "64 hex digits" in r.output
    r = runner.invoke(main, ["install", dev, img, "--checksum", "MD5:" + "00" * 16])
    assert r.exit_code == 2 and "unsupported CheckSumAlgorithm" in r.output
    r = runner.invoke(main, ["install", dev, img, "--slot", "7"])
    assert r.exit_code == 2 and "slots 1..2" in r.output
    big, _ = image(tmp_path, "big.bin", 70000)
    r = runner.invoke(main, ["install", dev, big])
    assert r.exit_code == 1 and "does not fit" in r.output
    r = runner.invoke(main, ["set-boot", dev, "2"])
    assert r.exit_code == 1 and "cannot be the boot image" in r.output
    r = runner.invoke(main, ["slots", str(tmp_path / "missing.flash")])
    assert r.exit_code == 2
    r = runner.invoke(main, ["flash", "init", dev])
    assert r.exit_code == 1 and "already exists" in r.output


def test_journal_dump_decodes_with_cbor2(dev, tmp_path, runner):
    img, data = image(tmp_path, "v1.bin", 5000)
    runner.invoke(main, ["install", dev, img, "--set-boot"])
    r = runner.invoke(main, ["journal", dev, "--json"])
    recs = json.loads(r.output)
    assert recs[0]["kind"] == "snapshot" and all(x["valid"] for x in recs)
    assert [x["seq"] for x in recs] == list(range(1, len(recs) + 1))
    assert any(x["body"].get("-1", {}).get("b") == 0 for x in recs if x["body"])


def test_demo_runs_as_installed_command():
    exe = os.path.join(os.path.dirname(sys.executable), "fwslots")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "firmware_slots.host.cli"]
    p = subprocess.run(cmd + ["demo"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "demo passed" in p.stdout and "FAILED" not in p.stdout


def test_help_lists_commands(runner):
    r = runner.invoke(main, ["--help"])
    for c in ("demo", "install", "inspect", "slots", "set-boot", "boot", "confirm", "journal", "flash", "usp"):
        assert c in r.output


def test_dev_commands_drive_a_virtual_board(fwslots_make_virtual_board, tmp_path):
    """The CLI's serial commands, against a real virtual board's console."""
    from hil.apps import app_image
    board = fwslots_make_virtual_board()
    env = dict(os.environ, FWSLOTS_PORT=board.link)
    exe = os.path.join(os.path.dirname(sys.executable), "fwslots")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "firmware_slots.host.cli"]

    def run(*args, ok=True):
        p = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60, env=env)
        if ok:
            assert p.returncode == 0, p.stdout + p.stderr
        return p

    img = tmp_path / "v1.img"
    img.write_bytes(app_image("blinky", "1.0", "confirm"))
    out = run("dev", "install", str(img), "--set-boot").stdout
    assert "Available blinky 1.0" in out
    out = run("dev", "reset").stdout
    assert "run image 1 blinky 1.0" in out and "MicroPython" not in out  # the stub's decision, not the REPL banner
    st = json.loads(run("dev", "slots", "--json").stdout)
    row = [r for r in st["FirmwareImage"] if r["Version"] == "1.0"][0]
    n = row["Index"]
    assert row["Status"] == "Active" and st["LastKnownGoodFirmwareImage"] == n and st["BootFirmwareImage"] == n
    # refusals are one line with exit 1; a slot out of range is bad usage (2)
    p = run("dev", "install", str(img), "--slot", str(n), ok=False)
    assert p.returncode == 1 and "running" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    p = run("dev", "set-boot", "9", ok=False)
    assert p.returncode == 1
    p = run("dev", "install", str(img), "--slot", "9", ok=False)
    assert p.returncode == 2


def test_demo_virtual_tells_the_story_over_usp():
    """`fwslots demo --virtual`: serial install, USP Download over CoAP, fallback, all checked."""
    import shutil
    if not shutil.which("coap-server-notls"):
        pytest.skip("libcoap3-bin not installed")
    exe = os.path.join(os.path.dirname(sys.executable), "fwslots")
    cmd = [exe] if os.path.exists(exe) else [sys.executable, "-m", "firmware_slots.host.cli"]
    p = subprocess.run(cmd + ["demo", "--virtual"], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "demo --virtual passed" in p.stdout and "[FAILED]" not in p.stdout
