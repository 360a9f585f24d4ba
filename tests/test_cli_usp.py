"""`fwslots usp` against the agent running under MicroPython on loopback."""
import hashlib

import pytest
from click.testing import CliRunner

from mpy import requires_micropython
from test_mtp_binding import AGENT_ID, AgentProc, make_flash

from firmware_slots.host.cli import main

FW = "Device.DeviceInfo.FirmwareImage."


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    d = tmp_path_factory.mktemp("usp-cli")
    make_flash(d / "dev.flash")
    a = AgentProc(d / "dev.flash", seconds=120)
    yield a, d
    a.stop()


def run(*args):
    return CliRunner().invoke(main, ["usp"] + list(args) + ["--agent-id", AGENT_ID, "--timeout", "5"])


@requires_micropython
def test_get_set_operate(agent):
    a, d = agent
    r = run("get", a.uri, FW + "*.Status", "Device.DeviceInfo.SoftwareVersion")
    assert r.exit_code == 0, r.output
    assert FW + "1.Status = Active" in r.output and FW + "2.Status = NoImage" in r.output
    assert "Device.DeviceInfo.SoftwareVersion = 1.0" in r.output
    # an error is one line with the USP code, exit 1
    r = run("get", a.uri, "Device.DeviceInfo.FirmwareImage.9.Status")
    assert r.exit_code == 1 and "USP error 70" in r.output
    r = run("set", a.uri, "Device.DeviceInfo.BootFirmwareImage=" + FW + "2")
    assert r.exit_code == 1 and "7012" in r.output  # row 2 holds no Available image
    r = run("set", a.uri, FW + "2.Alias=spare")
    assert r.exit_code == 0 and "Alias = spare" in r.output
    # an async Download of a file the agent can read; --wait follows it to OperationComplete
    img = d / "v2.bin"
    data = b"FWIMG:app:2.0\n" + bytes(range(256)) * 40
    img.write_bytes(data)
    r = run("operate", a.uri, FW + "2.Download()", "URL=file://%s" % img, "AutoActivate=false",
            "CheckSumAlgorithm=SHA-256", "CheckSum=" + hashlib.sha256(data).hexdigest(), "--wait", "20")
    assert r.exit_code == 0, r.output
    assert "started Device.LocalAgent.Request." in r.output and "completed" in r.output
    r = run("get", a.uri, FW + "2.")
    assert FW + "2.Status = Available" in r.output and FW + "2.Available = true" in r.output
    r = run("operate", a.uri, FW + "1.Download()", "URL=file:///nonexistent", "AutoActivate=false")
    assert r.exit_code == 1 and "7022" in r.output  # slot 1 is running: refused, nothing changed


def test_bad_usage_is_exit_2():
    r = CliRunner().invoke(main, ["usp", "set", "coap://127.0.0.1:9/usp", "NoEquals"])
    assert r.exit_code == 2
