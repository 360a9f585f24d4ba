"""`fwslots usp get` against the BBF reference agent OB-USP-AGENT (obuspa) over CoAP.

obuspa is not packaged in Debian; build it with CoAP enabled (`./configure --enable-coap`)
and point $OBUSPA at the binary, or put `obuspa` on PATH. Without it this test skips.
The agent is configured, as production agents are, with its controller's EndpointID and
CoAP address: the test passes --controller-id and --bind to match.
"""
import os
import shutil
import subprocess
import time

import pytest
from click.testing import CliRunner

from firmware_slots.host.cli import main
from support.coap_peers import free_udp_port

OBUSPA = os.environ.get("OBUSPA") or shutil.which("obuspa")
CONTROLLER_ID = "self::fwslots-obuspa-test"

pytestmark = pytest.mark.skipif(not OBUSPA, reason="obuspa not found (set OBUSPA or put it on PATH)")


FACTORY = """Device.LocalAgent.MTP.1.Alias "cpe-1"
Device.LocalAgent.MTP.1.Enable "true"
Device.LocalAgent.MTP.1.Protocol "CoAP"
Device.LocalAgent.MTP.1.CoAP.Port "{agent_port}"
Device.LocalAgent.MTP.1.CoAP.Path "usp"
Device.LocalAgent.MTP.1.CoAP.EnableEncryption "false"
Device.LocalAgent.Controller.1.Alias "cpe-1"
Device.LocalAgent.Controller.1.Enable "true"
Device.LocalAgent.Controller.1.EndpointID "{controller_id}"
Device.LocalAgent.Controller.1.AssignedRole "Device.LocalAgent.ControllerTrust.Role.1"
Device.LocalAgent.Controller.1.MTP.1.Alias "cpe-1"
Device.LocalAgent.Controller.1.MTP.1.Enable "true"
Device.LocalAgent.Controller.1.MTP.1.Protocol "CoAP"
Device.LocalAgent.Controller.1.MTP.1.CoAP.Host "127.0.0.1"
Device.LocalAgent.Controller.1.MTP.1.CoAP.Port "{controller_port}"
Device.LocalAgent.Controller.1.MTP.1.CoAP.Path "usp"
Device.LocalAgent.Controller.1.MTP.1.CoAP.EnableEncryption "false"
Internal.Reboot.Cause "LocalFactoryReset"
"""


def test_usp_get_against_obuspa(tmp_path):
    agent_port, controller_port = free_udp_port(), free_udp_port()
    (tmp_path / "factory.txt").write_text(FACTORY.format(agent_port=agent_port, controller_port=controller_port,
                                                         controller_id=CONTROLLER_ID))
    proc = subprocess.Popen([OBUSPA, "-p", "-v", "1", "-i", "lo", "-r", str(tmp_path / "factory.txt"),
                             "-f", str(tmp_path / "usp.db"), "-s", str(tmp_path / "cli.sock")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=tmp_path, text=True)
    try:
        time.sleep(2)  # obuspa opens its CoAP server once its data model is up
        assert proc.poll() is None, proc.stdout.read()
        eid = subprocess.run([OBUSPA, "-s", str(tmp_path / "cli.sock"), "-c", "get", "Device.LocalAgent.EndpointID"], capture_output=True,
                             text=True, timeout=20, cwd=tmp_path).stdout.strip().split()[-1]
        args = ["usp", "get", "coap://127.0.0.1:%d/usp" % agent_port, "Device.DeviceInfo.SoftwareVersion",
                "Device.LocalAgent.EndpointID", "--agent-id", eid, "--controller-id", CONTROLLER_ID,
                "--bind", "127.0.0.1:%d" % controller_port, "--timeout", "10"]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        assert "Device.LocalAgent.EndpointID = %s" % eid in r.output
        assert "Device.DeviceInfo.SoftwareVersion = " in r.output
        r = CliRunner().invoke(main, args[:3] + ["Device.NoSuchThing."] + args[5:])
        assert r.exit_code == 1 and "USP error" in r.output  # its error, one line, exit 1
    finally:
        proc.kill()
        proc.wait()
