"""`fwslots usp`/`inspect` over coaps:// (DTLS 1.2, Certificate mode) against agent_main's
coaps listener: the session runs in the MicroPython unix port's mbedTLS (host/coaps.py)."""
import os
import subprocess

import pytest
from click.testing import CliRunner

from mpy import ROOT, micropython_exe, requires_micropython
from test_dtls import _free_udp_pair, _write_pki
from support.agent_proc import AGENT_ID, LAYOUT, make_flash

from firmware_slots.host.cli import main


@pytest.fixture(scope="module")
def coaps_agent(tmp_path_factory):
    if micropython_exe() is None:
        pytest.skip("MicroPython unix port not installed")
    d = tmp_path_factory.mktemp("cli-coaps")
    good = _write_pki(str(d), "ec", "", "Test CA")
    rogue = _write_pki(str(d), "ec", "rogue-", "Rogue CA")
    make_flash(d / "dev.flash")
    port = _free_udp_pair()
    args = [micropython_exe(), "-m", "firmware_slots.agent_main", "--flash", str(d / "dev.flash"),
            "--port", str(port), "--coaps-port", str(port + 1), "--seconds", "60", "--endpoint-id", AGENT_ID,
            "--dtls-cert", good["server.crt.pem"], "--dtls-key", good["server.key.der"],
            "--dtls-ca", good["ca.pem"]] + LAYOUT
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]))
    agent = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    assert agent.stdout.readline().startswith("READY")
    yield "coaps://127.0.0.1:%d/usp" % (port + 1), good, rogue
    agent.kill()
    agent.communicate()


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@requires_micropython
def test_get_and_inspect_over_coaps(coaps_agent):
    import json
    uri, good, rogue = coaps_agent
    tls = ["--ca", good["ca.pem"], "--cert", good["client.crt.pem"], "--key", good["client.key.pem"]]
    r = cli("usp", "get", uri, "Device.DeviceInfo.SoftwareVersion", "--agent-id", AGENT_ID, "--timeout", "30", *tls)
    assert r.exit_code == 0, r.output
    assert "Device.DeviceInfo.SoftwareVersion = 1.0" in r.output
    r = cli("inspect", uri, "--agent-id", AGENT_ID, "--json", "--timeout", "30", *tls)
    assert r.exit_code == 0, r.output
    v = json.loads(r.output)
    assert v["via"] == "usp" and v["ActiveFirmwareImage"] == 1
    # a client certificate from another CA: the agent refuses the session; exit 3, one line
    bad = ["--ca", good["ca.pem"], "--cert", rogue["client.crt.pem"], "--key", rogue["client.key.pem"]]
    r = cli("usp", "get", uri, "Device.", "--agent-id", AGENT_ID, "--timeout", "3", *bad)
    assert r.exit_code == 3 and "Traceback" not in r.output, r.output
    # no --ca: usage of coaps explained
    r = cli("usp", "get", uri, "Device.", "--agent-id", AGENT_ID, "--timeout", "3")
    assert r.exit_code == 3 and "--ca" in r.output
