"""fwslots deploy onto a virtual board whose filesystem starts empty, then dev install boots the
app through the deployed stub; the host refuses boards without (or with another) command set."""
import json

import pytest
from click.testing import CliRunner

from firmware_slots.host.cli import main
from hil import deploy as dp
from hil.apps import app_image
from hil.device import CommandSetError, Dut


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def empty_board(fwslots_make_virtual_board):
    import time
    b = fwslots_make_virtual_board(fs="empty")
    time.sleep(0.3)  # the bare interpreter's banner and prompt
    return b


def test_deploy_then_install_boots_through_the_stub(empty_board, runner, tmp_path):
    b = empty_board
    r = runner.invoke(main, ["dev", "slots", "-p", b.link])
    assert r.exit_code == 1 and "no fwslots command module" in r.output and "fwslots deploy" in r.output, r.output
    r = runner.invoke(main, ["deploy", "-p", b.link, "--profile", "unix-virtual"])
    assert r.exit_code == 0, r.output
    assert "each SHA-256 checked on the board" in r.output and "stub: no bootable image" in r.output, r.output
    fs = b.fs_path
    # compiled for the board, boot.py as source, the profile as board.json, nothing from the host tree
    assert open(fs + "/bootstub/cmd.mpy", "rb").read(2) == b"M\x06"
    assert open(fs + "/boot.py").read() == open(dp.ROOT + "/bootstub/boot.py").read()
    assert json.load(open(fs + "/board.json"))["name"] == "unix-virtual"
    assert not any(p.startswith(("firmware_slots/host", "hil")) for p in dp.files_for(["slots"], {"adapter": "unix_virtual"}))
    img = tmp_path / "app.img"
    img.write_bytes(app_image("demo", "1.0"))
    r = runner.invoke(main, ["dev", "install", "-p", b.link, str(img), "--set-boot"])
    assert r.exit_code == 0 and "slot 1: Available demo 1.0" in r.output, r.output
    r = runner.invoke(main, ["dev", "reset", "-p", b.link])
    assert r.exit_code == 0, r.output
    assert "fwslots: run image 1 demo 1.0" in b.transcript.decode(errors="replace")
    assert "APP confirmed" in b.transcript.decode(errors="replace")
    d = Dut(b.link, b)
    try:
        st = d.status()
        assert st["running"] == 0 and st["lkg"] == 0
    finally:
        d.close()


def test_command_set_version_mismatch_is_refused(empty_board):
    b = empty_board
    d = Dut(b.link, b)
    try:
        dp.put_file(d, "bootstub/__init__.py", b"")
        dp.put_file(d, "bootstub/cmd.py", b"def version():\n print('ok [99, 0, \"linux\"]')\n")
        with pytest.raises(CommandSetError, match=r"speaks fwslots device commands v99, this host v1"):
            d.status()
    finally:
        d.close()


def test_deploy_bad_input_is_one_line(empty_board, runner):
    r = runner.invoke(main, ["deploy", "-p", empty_board.link, "--profile", "nosuch"])
    assert r.exit_code == 1 and "no board profile 'nosuch'" in r.output and "Traceback" not in r.output, r.output
    r = runner.invoke(main, ["deploy", "-p", empty_board.link, "--profile", "unix-virtual", "--tier", "gold"])
    assert r.exit_code == 1 and "unknown tier 'gold'" in r.output, r.output


def test_tiers_come_from_tiers_json():
    files = dp.files_for(["slots"], dp.load_profile("rp2-pico-app"))
    assert "boards/rp2.py" in files and "boards/unix_virtual.py" not in files
    assert "firmware_slots/core/slots.py" in files and "bootstub/cmd.py" in files
    assert "bootstub/boot.py" not in files  # it goes to /boot.py, as source
    assert not any("/usp/" in f for f in files)
    agent = dp.files_for(["agent"], dp.load_profile("rp2-pico-app"))
    assert set(files) < set(agent) and "firmware_slots/usp/agent.py" in agent
    assert "firmware_slots/coap/dtls.py" not in agent  # excluded: the dtls tier owns it
    assert "firmware_slots/coap/dtls.py" in dp.files_for(["dtls"], dp.load_profile("rp2-pico-app"))
    # the flash simulator goes only onto the virtual board, whose adapter imports it
    assert not any("/sim/" in f for f in agent)
    assert "firmware_slots/sim/norsim.py" in dp.files_for(["slots"], dp.load_profile("unix-virtual"))
    assert "boards/profiles/esp32-app.json" in dp.data_for(["slots"])


def test_deploy_firmware_runs_esptool_and_stops_at_its_error(empty_board, runner, tmp_path):
    """--firmware hands the .bin to the real esptool; a port with no ESP32 behind it (the virtual
    board's console) ends in esptool's one-line error, and nothing is copied to the board."""
    pytest.importorskip("esptool")
    b = empty_board
    fw = tmp_path / "micropython-esp32.bin"
    fw.write_bytes(b"\xe9" + bytes(4095))
    r = runner.invoke(main, ["deploy", "-p", b.link, "--profile", "unix-virtual", "--firmware", str(fw)])
    assert r.exit_code == 1 and "has no firmware flashing method" in r.output, r.output
    r = runner.invoke(main, ["deploy", "-p", b.link, "--profile", "esp32-app", "--firmware", str(fw)])
    assert r.exit_code == 1, r.output
    errs = [ln for ln in r.output.splitlines() if ln.startswith("Error")]
    # a REPL answers garbage to esptool's sync ("Invalid head of packet"), a silent port nothing
    assert len(errs) == 1 and errs[0].startswith("Error: esptool: Failed to connect to ESP32: "), r.output
    assert "flashing micropython-esp32.bin at 0x1000 with esptool (esp32)" in r.output
    import os
    assert os.listdir(b.fs_path) == []  # refused before anything went onto the board
