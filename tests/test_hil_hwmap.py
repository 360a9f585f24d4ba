"""Hardware map: checked on load, matched to ports and profiles, and driving the pytest plugin
(a virtual board stands in for the rack: its pty as the port, its power switch as the map's
power command)."""
import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from firmware_slots.host.cli import main
from hil import hwmap
from hil.virtual import VirtualBoard, micropython_exe

GOOD = """boards:
  - id: pico-1
    profile: rp2-pico-app
    serial_number: E6614C311B
  - id: pico-2
    profile: rp2-pico-app
    vid_pid: "2e8a:0005"
    power: "echo {action}"
  - id: esp-1
    profile: esp32-app
    port: /dev/ttyUSB7
"""

PORTS = [
    {"device": "/dev/ttyACM0", "vid": 0x2E8A, "pid": 5, "serial_number": "E6614C311B", "description": "Board in FS mode"},
    {"device": "/dev/ttyACM1", "vid": 0x2E8A, "pid": 5, "serial_number": "FFFF", "description": "Board in FS mode"},
    {"device": "/dev/ttyS0", "vid": None, "pid": None, "serial_number": None, "description": "n/a"},
]


def write(tmp_path, text):
    p = tmp_path / "map.yaml"
    p.write_text(text)
    return str(p)


def test_map_matches_ports_and_profiles(tmp_path):
    boards = hwmap.load(write(tmp_path, GOOD))
    assert [b["baud"] for b in boards] == [115200, 115200, 115200] and boards[0]["reset"] == "console"
    assert hwmap.resolve_port(boards[0], PORTS) == "/dev/ttyACM0"      # by serial number
    assert hwmap.resolve_port(boards[1], PORTS) == "/dev/ttyACM0"      # first with that USB id
    assert hwmap.resolve_port(boards[2], PORTS) == "/dev/ttyUSB7"
    rows = {r["port"]: r for r in hwmap.listing(boards, PORTS)}
    assert rows["/dev/ttyACM0"]["board"] == "pico-1,pico-2"
    assert rows["/dev/ttyACM1"]["board"] == "pico-2" and rows["/dev/ttyACM1"]["usb"] == "2e8a:0005"
    assert hwmap.listing([], PORTS)[1]["profiles"] == ["rp2-pico-app"]  # by the profile's VID/PID
    assert rows["/dev/ttyS0"]["board"] == "-" and rows["/dev/ttyS0"]["profiles"] == []
    assert rows["(not connected)"]["board"] == "esp-1"
    with pytest.raises(hwmap.MapError, match="board 'pico-1' is not connected"):
        hwmap.resolve_port(boards[0], PORTS[1:])


@pytest.mark.parametrize("text,msg", [
    ("boards:\n  - id: a\n    profile: nosuch\n    port: /dev/x\n", "no profile 'nosuch'"),
    ("boards:\n  - id: a\n    profile: esp32-app\n", "needs port, serial_number or vid_pid"),
    ("boards:\n  - id: a\n    profile: esp32-app\n    vid_pid: 2e8a\n", "vid_pid must look like"),
    ("boards:\n  - id: a\n    profile: esp32-app\n    port: /dev/x\n    colour: red\n", "unknown key 'colour'"),
    ("boards:\n  - {id: a, profile: esp32-app, port: /dev/x}\n  - {id: a, profile: esp32-app, port: /dev/y}\n",
     "id used twice"),
    ("boards: [\n", "is not YAML"),
    ("boards: 3\n", "expected a list"),
])
def test_bad_maps_have_precise_errors(tmp_path, text, msg):
    with pytest.raises(hwmap.MapError, match=msg):
        hwmap.load(write(tmp_path, text))


def test_hil_list_cli(tmp_path):
    r = CliRunner().invoke(main, ["hil", "list", "--hw-map", write(tmp_path, GOOD), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert {"board": "esp-1", "port": "(not connected)"}.items() <= [x for x in rows if x["board"] == "esp-1"][0].items()
    r = CliRunner().invoke(main, ["hil", "list", "--hw-map", write(tmp_path, "boards: 3\n")])
    assert r.exit_code == 1 and "expected a list" in r.output and "Traceback" not in r.output


TEST = '''
def test_power(fwslots_dut, request):
    d = fwslots_dut
    assert d.board is None and d.board_id == "bench-vb"   # reached as hardware, through the map
    assert d.status()["slots"][0]["Status"] == "NoImage"
    d.power_cut()
    r = d.wait_boot(20)
    assert "no bootable image" in r.text
    assert d.exec_cmd("print(1+1)").strip() == "2"
'''


@pytest.mark.skipif(micropython_exe() is None, reason="MicroPython unix port not installed")
def test_plugin_drives_a_map_entry(tmp_path):
    b = VirtualBoard(str(tmp_path / "vb")).start()
    try:
        proj = tmp_path / "proj"
        proj.mkdir()
        (proj / "pytest.ini").write_text("[pytest]\n")
        (proj / "test_map.py").write_text(TEST)
        (proj / "map.yaml").write_text(
            "boards:\n  - id: bench-vb\n    profile: unix-virtual\n    port: %s\n"
            "    power: \"%s -m hil.virtual power %s {action}\"\n" % (b.link, sys.executable, b.workdir))
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:pytest_embedded",
                            "--fwslots-hw-map", "map.yaml", "--fwslots-board", "bench-vb", "-p", "no:labgrid"],
                           cwd=proj, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
        assert [e["cause"] for e in b.events] == ["power"]
    finally:
        b.stop()
