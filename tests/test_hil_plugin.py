"""The fwslots pytest plugin from another project: registered by its pytest11 entry point,
next to pytest-embedded (whose --port and `dut` it must not take), naming logs and boards."""
import importlib.util
import subprocess
import sys
import xml.etree.ElementTree as ET
from importlib.metadata import entry_points

import pytest

from hil.virtual import micropython_exe

OTHER_PROJECT = '''
def test_board(fwslots_dut, request):
    pm = request.config.pluginmanager
    assert pm.has_plugin("fwslots") and pm.has_plugin("pytest_embedded")
    assert request.config.getoption("port") == "/dev/null"  # pytest-embedded's own --port
    assert fwslots_dut.exec_cmd("print(6*7)").strip() == "42"
    fwslots_dut.expect(r"4\\d")
    assert fwslots_dut.status()["slots"][0]["Status"] == "NoImage"
    assert open(fwslots_dut.console_log, "rb").read().count(b"no bootable image") == 1

def test_fails(fwslots_dut):
    fwslots_dut.expect("never printed", timeout=0.3)
'''


@pytest.mark.skipif(micropython_exe() is None, reason="MicroPython unix port not installed")
def test_registered_plugin_next_to_pytest_embedded(tmp_path):
    if not any(ep.value == "hil.pytest_plugin" for ep in entry_points(group="pytest11")):
        pytest.skip("firmware-slots is not pip-installed here (no pytest11 entry point)")
    if importlib.util.find_spec("pytest_embedded") is None:
        pytest.skip("pytest-embedded not installed")
    proj = tmp_path / "other"
    proj.mkdir()
    (proj / "pytest.ini").write_text("[pytest]\n")
    (proj / "test_it.py").write_text(OTHER_PROJECT)
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--fwslots-board", "unix-virtual",
            "--port", "/dev/null", "--junitxml", str(proj / "junit.xml"), "--basetemp", str(tmp_path / "bt")]
    if importlib.util.find_spec("labgrid"):  # labgrid's `target` fixture breaks pytest-embedded's autouse
        args[4:4] = ["-p", "no:labgrid"]
    p = subprocess.run(args, cwd=proj, capture_output=True, text=True, timeout=120)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out  # one pass, one failure, no usage error
    assert "1 failed, 1 passed" in out, out
    # the failure names the DUT's log file, which holds that board's console
    line = [l for l in out.splitlines() if l.startswith("unix-virtual: ") and l.endswith("console.log")]
    assert line, out
    assert b"no bootable image" in open(line[0].split(": ", 1)[1], "rb").read()
    cases = {c.get("name"): c for c in ET.parse(proj / "junit.xml").getroot().iter("testcase")}
    assert set(cases) == {"test_board[unix-virtual]", "test_fails[unix-virtual]"}, cases
    props = {p.get("name"): p.get("value") for p in cases["test_board[unix-virtual]"].iter("property")}
    assert props["fwslots_board"] == "unix-virtual"


def test_old_option_names_are_gone(tmp_path):
    """--board/--port belong to nobody here: ours are namespaced (pytest-embedded owns --port)."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:pytest_embedded",
                        "--board", "x"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert p.returncode == 4 and "unrecognized arguments: --board" in p.stderr, p.stderr
