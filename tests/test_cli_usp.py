"""`fwslots usp` against the agent running under MicroPython on loopback."""
import hashlib

import pytest
from click.testing import CliRunner

from mpy import requires_micropython
from support.coap_peers import free_udp_port
from support.agent_proc import AGENT_ID, AgentProc, make_flash

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


@requires_micropython
def test_options_inspect_add_delete(agent):
    """--bind/--controller-id reach the agent as configured; inspect over CoAP is the one view."""
    import json
    a, d = agent
    port = free_udp_port()
    r = run("get", a.uri, "Device.DeviceInfo.SoftwareVersion", "--bind", "127.0.0.1:%d" % port,
            "--controller-id", "proto::fwslots-test")
    assert r.exit_code == 0 and "= 1.0" in r.output, r.output
    r = run("get", a.uri, "Device.DeviceInfo.SoftwareVersion", "--bind", "0.0.0.0:0")  # reply-to: the route's address
    assert r.exit_code == 0 and "= 1.0" in r.output, r.output
    r = CliRunner().invoke(main, ["inspect", a.uri, "--agent-id", AGENT_ID, "--json", "--timeout", "5"])
    assert r.exit_code == 0, r.output
    v = json.loads(r.output)
    assert v["via"] == "usp" and v["ActiveFirmwareImage"] == 1 and v["SoftwareVersion"] == "1.0"
    assert v["FirmwareImage"][0]["Status"] == "Active" and v["FirmwareImage"][0]["Size"] is None
    r = run("add", a.uri, "Device.LocalAgent.Subscription.", "Enable=true", "NotifType=Event",
            "ReferenceList=Device.Boot!", "Persistent=false")
    assert r.exit_code == 0, r.output
    row = r.output.splitlines()[0]
    assert row.startswith("Device.LocalAgent.Subscription.")
    r = run("delete", a.uri, row)
    assert r.exit_code == 0 and "deleted" in r.output, r.output
    r = run("delete", a.uri, row)  # USP: deleting what is not there is a success that affects nothing
    assert r.exit_code == 0 and "nothing to delete" in r.output, r.output
    # a wrong agent id: the agent drops the record, so no reply comes: a transport failure
    r = CliRunner().invoke(main, ["usp", "get", a.uri, "Device.", "--agent-id", "os::nobody", "--timeout", "1"])
    assert r.exit_code == 3 and "no USP reply" in r.output, r.output


@requires_micropython
def test_download_serves_a_local_file_watch_and_serve(agent, tmp_path):
    """download FILE: fwslots serves it block-wise itself; watch prints the notifications as JSON
    lines; serve hands out a folder that a Download() URL points at."""
    import json
    import os
    import subprocess
    import sys
    a, d = agent
    exe = os.path.join(os.path.dirname(sys.executable), "fwslots")
    base = [exe] if os.path.exists(exe) else [sys.executable, "-m", "firmware_slots.host.cli"]
    watch = subprocess.Popen(base + ["usp", "watch", a.uri, "--agent-id", AGENT_ID, "--json", "--for", "25",
                                     "--count", "2", "--controller-id", "self::watcher"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "watching" in watch.stderr.readline()
        img = tmp_path / "v3.bin"
        data = b"FWIMG:app:3.0\n" + bytes(range(256)) * 60
        img.write_bytes(data)
        r = run("download", a.uri, str(img), "--slot", "2", "--wait", "40", "--progress")
        assert r.exit_code == 0, r.output
        assert "FirmwareImage.2: downloaded" in r.output and "OperationComplete" in r.output
        r = run("get", a.uri, FW + "2.Status")
        assert "Available" in r.output
        out, _ = watch.communicate(timeout=30)
    finally:
        if watch.poll() is None:
            watch.kill()
            watch.wait()
    notes = [json.loads(l) for l in out.splitlines()]
    kinds = [n["kind"] for n in notes]
    assert "OperationComplete" in kinds and "TransferComplete!" in kinds, kinds
    tc = [n for n in notes if n["kind"] == "TransferComplete!"][0]["detail"]
    assert tc["TransferURL"].startswith("coap://127.0.0.1:") and tc["FaultCode"] == "0"
    # serve: a folder over CoAP; a plain operate Download() pulls from it
    folder = tmp_path / "www"
    folder.mkdir()
    (folder / "v4.bin").write_bytes(b"FWIMG:app:4.0\n" + b"z" * 3000)
    port = free_udp_port()
    srv = subprocess.Popen(base + ["usp", "serve", str(folder), "--bind", "127.0.0.1:%d" % port, "--for", "20"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = srv.stdout.readline().split()[0]
        assert url == "coap://127.0.0.1:%d/fw/v4.bin" % port
        r = run("operate", a.uri, FW + "2.Download()", "URL=" + url, "AutoActivate=false", "--wait", "20")
        assert r.exit_code == 0 and "completed" in r.output, r.output
        assert "served v4.bin" in srv.stdout.readline()
    finally:
        srv.kill()
        srv.wait()
    r = run("get", a.uri, FW + "2.Status")
    assert "Available" in r.output
