"""The TP-469 firmware sequence driven by `fwslots usp` alone against a virtual board:
watch subscribes and prints; download serves a local v2 block-wise and follows
OperationComplete, TransferComplete!, Boot!; serve hands v3 to a Download() by URL and
activate boots it."""
import hashlib
import json
import os
import subprocess
import sys

from click.testing import CliRunner

from mpy import requires_micropython

from firmware_slots.host.cli import main
from hil.peers import free_udp_port, provision

EID = "os::0044FF-tp469-1"
FW = "Device.DeviceInfo.FirmwareImage."


def fwslots():
    exe = os.path.join(os.path.dirname(sys.executable), "fwslots")
    return [exe] if os.path.exists(exe) else [sys.executable, "-m", "firmware_slots.host.cli"]


def usp(*args, timeout="5"):
    return CliRunner().invoke(main, ["usp"] + [str(a) for a in args] + ["--agent-id", EID, "--timeout", timeout])


@requires_micropython
def test_download_watch_serve_activate(fwslots_make_virtual_board, tmp_path):
    from hil.apps import agent_app
    port = free_udp_port()
    uri = "coap://127.0.0.1:%d/usp" % port
    v1 = agent_app("agent", "1.0", port, EID)
    v2 = agent_app("agent", "2.0", port, EID, pad=6000)
    v3 = agent_app("agent", "3.0", port, EID)
    board = fwslots_make_virtual_board(confirm_ms=8000)
    provision(board, v1, 0)
    watch = subprocess.Popen(fwslots() + ["usp", "watch", uri, "--agent-id", EID, "--controller-id", "self::tp469-watch",
                                          "--json", "--for", "90", "--count", "6"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    srv = None
    try:
        assert "watching" in watch.stderr.readline()
        (tmp_path / "v2.img").write_bytes(v2)
        r = usp("download", uri, tmp_path / "v2.img", "--auto-activate", "--wait", "60")
        assert r.exit_code == 0, r.output
        assert "FirmwareImage.2: downloaded, activated and booted" in r.output
        lines = [l.split()[0] for l in r.output.splitlines() if l.split() and l.split()[0][0].isupper()]
        seq = [k for k in lines if k in ("OperationComplete", "TransferComplete!", "Boot!")]
        assert seq == ["OperationComplete", "TransferComplete!", "Boot!"], r.output
        r = usp("get", uri, "Device.DeviceInfo.SoftwareVersion", "Device.DeviceInfo.ActiveFirmwareImage")
        assert "SoftwareVersion = 2.0" in r.output and "ActiveFirmwareImage = " + FW + "2" in r.output
        # serve a folder; Download() v3 by URL into row 1 (not activated), then activate it
        www = tmp_path / "www"
        www.mkdir()
        (www / "v3.img").write_bytes(v3)
        sport = free_udp_port()
        srv = subprocess.Popen(fwslots() + ["usp", "serve", www, "--bind", "127.0.0.1:%d" % sport, "--for", "90"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        url = srv.stdout.readline().split()[0]
        r = usp("download", uri, url, "--slot", "1", "--checksum", "sha256:" + hashlib.sha256(v3).hexdigest(),
                "--wait", "60")
        assert r.exit_code == 0 and "FirmwareImage.1: downloaded" in r.output, r.output
        assert "served v3.img" in srv.stdout.readline()
        r = usp("activate", uri, "1", "--wait", "60")
        assert r.exit_code == 0 and "Boot!" in r.output, r.output
        r = usp("get", uri, "Device.DeviceInfo.SoftwareVersion")
        assert "= 3.0" in r.output
        out, err = watch.communicate(timeout=60)
    finally:
        for p in (watch, srv):
            if p and p.poll() is None:
                p.kill()
                p.wait()
    notes = [json.loads(l) for l in out.splitlines()]
    kinds = [n["kind"] for n in notes]
    # the watcher saw the v2 sequence (its subscriptions are persistent: they outlive the reboot)
    assert kinds[:3] == ["OperationComplete", "TransferComplete!", "Boot!"] or \
        [k for k in kinds if k != "ValueChange"][:3] == ["OperationComplete", "TransferComplete!", "Boot!"], kinds
    boot = [n for n in notes if n["kind"] == "Boot!"][0]["detail"]
    assert boot["FirmwareUpdated"] == "true"
