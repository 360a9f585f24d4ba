"""The scenario suite, unchanged, on a virtual board in a labgrid farm on loopback: a labgrid
coordinator and exporter (ser2net, RFC 2217) on 127.0.0.1, the board's pty exported as a
serial resource, power through labgrid's ExternalPowerDriver calling the board's power
switch; the suite runs with --fwslots-port labgrid://PLACE --lg-env ENV. All started and
stopped here; skips when labgrid or ser2net is missing."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from hil.virtual import ROOT, VirtualBoard, micropython_exe

BIN = os.path.dirname(sys.executable)


def _tool(name):
    p = os.path.join(BIN, name)
    return p if os.path.exists(p) else shutil.which(name)


pytestmark = [
    pytest.mark.skipif(micropython_exe() is None, reason="MicroPython unix port not installed"),
    pytest.mark.skipif(_tool("labgrid-coordinator") is None, reason="labgrid not installed (the labgrid extra)"),
    pytest.mark.skipif(shutil.which("ser2net") is None and not os.path.exists("/usr/sbin/ser2net"),
                       reason="ser2net not installed (Debian package ser2net)"),
]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args, log, cwd):
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)


def _stop(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def _until(fn, what, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if fn():
            return
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def test_scenario_suite_on_a_labgrid_place(tmp_path):
    board = VirtualBoard(str(tmp_path / "vb"), nslots=3, confirm_ms=1000).start()
    procs = []
    addr = "127.0.0.1:%d" % _free_port()
    env = dict(os.environ, LG_COORDINATOR=addr)
    client = [_tool("labgrid-client")]
    log = open(tmp_path / "farm.log", "ab")
    try:
        # the coordinator keeps places.yaml/resources.yaml in its working directory
        procs.append(_start([_tool("labgrid-coordinator"), "-l", addr], log, str(tmp_path)))

        def listening():
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", int(addr.split(":")[1]))) == 0
        _until(listening, "the coordinator")
        (tmp_path / "exporter.yaml").write_text(
            "vb:\n  RawSerialPort:\n    port: %s\n    speed: 115200\n" % board.port)
        procs.append(_start([_tool("labgrid-exporter"), "-c", addr, "-n", "ci", "--hostname", "127.0.0.1",
                             str(tmp_path / "exporter.yaml")], log, str(tmp_path)))

        def exported():
            p = subprocess.run(client + ["resources"], env=env, capture_output=True, text=True, timeout=20)
            return "ci/vb/NetworkSerialPort" in p.stdout
        _until(exported, "the exporter's serial resource")
        for args in (["-p", "vb", "create"], ["-p", "vb", "add-match", "ci/vb/*"]):
            p = subprocess.run(client + args, env=env, capture_output=True, text=True, timeout=20)
            assert p.returncode == 0, p.stdout + p.stderr
        power = "%s -m hil.virtual power %s " % (sys.executable, board.workdir)
        (tmp_path / "env.yaml").write_text(
            "targets:\n  main:\n    resources:\n      RemotePlace:\n        name: vb\n"
            "    drivers:\n      ExternalPowerDriver:\n"
            "        cmd_on: '%son'\n        cmd_off: '%soff'\n        cmd_cycle: '%scycle'\n" % (power, power, power))
        junit = tmp_path / "junit.xml"
        p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            os.path.join(ROOT, "tests", "test_virtual_board.py"),
                            "--fwslots-port", "labgrid://vb", "--lg-env", str(tmp_path / "env.yaml"),
                            "--junitxml", str(junit), "--basetemp", str(tmp_path / "suite")],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
        out = p.stdout + p.stderr
        assert p.returncode == 0, out
        names = {c.get("name"): c for c in ET.parse(junit).getroot().iter("testcase")}
        passed = sorted(n for n, c in names.items() if not [x for x in c if x.tag in ("failure", "error", "skipped")])
        for want in ("test_good_upgrade[vb]", "test_three_slots_fallback_skips_unverifiable[vb]",
                     "test_power_cut_during_install_keeps_lkg[vb]"):
            assert want in passed, (want, passed, out)
        assert any(n.startswith("test_bad_upgrade_falls_back[crash") and n.endswith("-vb]") for n in passed), \
            (passed, out)
        # the power cut went through labgrid's power driver to the board's switch
        assert any(e["cause"] == "power" for e in board.events), board.events
    finally:
        for pr in reversed(procs):
            _stop(pr)
        log.close()
        board.stop()
