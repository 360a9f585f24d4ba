"""The agent listening on coaps (DTLS 1.2, Certificate mode) under MicroPython.

A MicroPython controller does a USP Get over one DTLS session (request POST, 2.04,
reply POST back over the same session); libcoap's coap-client-openssl reads
/.well-known/core with a good client certificate and is refused with a rogue one.
"""
import os
import shutil
import subprocess
import time

import pytest

from mpy import ROOT, micropython_exe, requires_micropython, run_mp
from test_dtls import _free_udp_pair, _write_pki

COAP_CLIENT = shutil.which("coap-client-openssl")

AGENT = r"""
import sys, time
sys.path.append("tests/device")
import coaps_agent
mgr, agent, _, lst = coaps_agent.start(%(port)d, %(cert)r, %(key)r, %(ca)r)
print("READY")
end = time.ticks_add(time.ticks_ms(), %(ms)d)
while time.ticks_diff(end, time.ticks_ms()) > 0:
    lst.step(50)
print("REFUSED", lst.refused)
lst.close()
"""

CONTROLLER = r"""
import sys
sys.path.append("tests/device")
from coaps_peer import endpoint
from firmware_slots.coap import dtls
from firmware_slots.coap.client import CoapClient
from firmware_slots.coap import numbers as N
from firmware_slots.usp import codec, schema
def rd(p):
    with open(p, "rb") as f:
        return f.read()
s = dtls.connect("127.0.0.1", %(port)d, rd(%(ca)r), cert=rd(%(cert)r), key=rd(%(key)r))
ep, got = endpoint(s, %(port)d)
msg = codec.new_msg("m1", schema.GET, "request", "get", {"param_paths": ["Device.DeviceInfo.SoftwareVersion"]})
rec = codec.make_record("os::0044FF-fwslots-1", "self::ctl-coaps", codec.encode_msg(msg))
r = CoapClient(ep, timeout_ms=5000).request(N.POST, "coaps://127.0.0.1:%(port)d/usp?reply-to=coaps://127.0.0.1:1/ctl",
                                          bytes(rec), content_format=42)
print("CODE", r.code)
for _ in range(100):
    if got:
        break
    ep.poll(50)
m = codec.decode_msg(codec.record_payload(codec.decode_record(got[0])))
res = m["body"]["response"]["get_resp"]["req_path_results"][0]["resolved_path_results"][0]["result_params"]
print("VERSION", res["SoftwareVersion"])
s.close()
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("coaps-pki"))
    return _write_pki(d, "ec", "", "Test CA"), _write_pki(d, "ec", "rogue-", "Rogue CA")


@requires_micropython
def test_agent_serves_usp_over_coaps(pki):
    good, rogue = pki
    port = _free_udp_pair()
    code = AGENT % dict(port=port, cert=good["server.crt.der"], key=good["server.key.der"],
                        ca=good["ca.der"], ms=8000)
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]))
    agent = subprocess.Popen([micropython_exe(), "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=ROOT)
    try:
        assert agent.stdout.readline().strip() == "READY"
        out = run_mp(CONTROLLER % dict(port=port, ca=good["ca.der"], cert=good["client.crt.der"],
                                       key=good["client.key.der"]), timeout=60)
        assert "CODE 68" in out  # 2.04 Changed at once, no payload
        assert "VERSION 1.0" in out  # the USP reply came back over the same DTLS session
        if COAP_CLIENT:
            args = [COAP_CLIENT, "-B", "8", "-C", good["ca.pem"], "-c", good["client.crt.pem"],
                    "-j", good["client.key.pem"], "coaps://127.0.0.1:%d/.well-known/core" % port]
            p = subprocess.run(args, capture_output=True, text=True, timeout=30)
            assert 'rt="bbf.usp.endpoint"' in p.stdout and 'if="bbf.usp.a"' in p.stdout, p.stdout + p.stderr
            args = [COAP_CLIENT, "-B", "4", "-C", good["ca.pem"], "-c", rogue["client.crt.pem"],
                    "-j", rogue["client.key.pem"], "coaps://127.0.0.1:%d/.well-known/core" % port]
            p = subprocess.run(args, capture_output=True, text=True, timeout=30)
            assert "bbf.usp.endpoint" not in p.stdout  # a certificate from another CA gets nothing
        out, err = agent.communicate(timeout=30)
        assert agent.returncode == 0, err
        if COAP_CLIENT:
            assert int(out.split("REFUSED")[1]) >= 1
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()


@requires_micropython
@pytest.mark.skipif(COAP_CLIENT is None, reason="coap-client-openssl not installed")
def test_agent_main_listens_on_coap_and_coaps(pki, tmp_path):
    """`agent_main --coaps-port` (PEM files converted on the device) serves both bindings."""
    from support.agent_proc import LAYOUT, make_flash
    good, _ = pki
    make_flash(tmp_path / "dev.flash")
    port = _free_udp_pair()
    args = [micropython_exe(), "-m", "firmware_slots.agent_main", "--flash", str(tmp_path / "dev.flash"),
            "--port", str(port), "--coaps-port", str(port + 1), "--seconds", "8",
            "--dtls-cert", good["server.crt.pem"], "--dtls-key", good["server.key.der"],
            "--dtls-ca", good["ca.pem"]] + LAYOUT
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]))
    agent = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert agent.stdout.readline().startswith("READY")
        for scheme, p, extra in (("coap", port, []), ("coaps", port + 1, [
                "-C", good["ca.pem"], "-c", good["client.crt.pem"], "-j", good["client.key.pem"]])):
            r = subprocess.run([COAP_CLIENT, "-B", "8"] + extra + ["%s://127.0.0.1:%d/.well-known/core" % (scheme, p)],
                               capture_output=True, text=True, timeout=30)
            assert 'rt="bbf.usp.endpoint"' in r.stdout, (scheme, r.stdout, r.stderr)
    finally:
        agent.kill()
        agent.communicate()
