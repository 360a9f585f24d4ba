"""TR-369's certificate rule over coaps: a controller whose client certificate chains to the
agent's CA and names its EndpointID in a subjectAltName URI ("urn:bbf:usp:id:<EndpointID>")
is trusted though not provisioned; a certificate naming someone else, or no one, leaves it
untrusted; another CA's certificate gets no session. The name counts only with the
certificate: over plain CoAP the same EndpointID is a stranger's.

First the agent alone on CPython (handle()'s san_uris, as the coaps MTP passes them), then
the real agent under MicroPython listening on coaps and plain CoAP, with MicroPython
controllers holding concurrent DTLS sessions.
"""
import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("cryptography")

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "device"))

from mpy import ROOT, micropython_exe, requires_micropython, run_mp  # noqa: E402
from support.coap_peers import free_udp_port  # noqa: E402
from support.certs import make_ca, make_leaf, make_server, write, write_ca  # noqa: E402
from test_dtls import _free_udp_pair  # noqa: E402
from usp_loopback import AGENT_ID, T0, Controller, device, image  # noqa: E402

from firmware_slots.sim import simdev  # noqa: E402
from firmware_slots.usp.agent import UspAgent  # noqa: E402
from firmware_slots.usp.platform import Platform  # noqa: E402

FW = "Device.DeviceInfo.FirmwareImage."
CT = "Device.LocalAgent.Controller."
FULL = "Device.LocalAgent.ControllerTrust.Role.1"
PROVISIONED = "self::ctl-provisioned"
SAN_ID = "self::ctl-san"
U = "urn:bbf:usp:id:"


class _Coaps:
    """What the coaps MTP hands the agent: each Record with its session's SAN URIs."""

    def __init__(self, agent, sans):
        self.agent, self.sans = agent, sans

    def handle(self, rec, reply_to):
        return self.agent.handle(rec, reply_to, self.sans)


def agent_for(controllers=(PROVISIONED,)):
    flash, mgr = device("1.0")
    a = UspAgent(mgr, AGENT_ID, Platform(wall_s=T0), controllers=list(controllers))
    a.startup()
    a.take_outbox()
    return flash, mgr, a


def download(c, path):
    r = c.operate(FW + "2.Download()", {"URL": "file://" + path, "AutoActivate": "false"})
    if isinstance(r, tuple):  # ("error", body)
        return r[1]["err_code"]
    return r["operation_results"][0]


# --- the agent alone ------------------------------------------------------------------------


def test_san_naming_the_sender_gives_full_access(tmp_path):
    flash, mgr, a = agent_for()
    (tmp_path / "v2.img").write_bytes(image("2.0"))
    c = Controller(_Coaps(a, [U + "self::someone", U + SAN_ID]), SAN_ID, "coaps://192.0.2.10:5684/ctl")
    r = download(c, str(tmp_path / "v2.img"))
    assert r["req_obj_path"].startswith("Device.LocalAgent.Request.")
    a.poll(0)
    assert mgr.status(1) == "Available"
    assert c.values(CT + "1.AssignedRole") == {CT + "1.AssignedRole": FULL}
    assert c.values(CT + "1.EndpointID") == {CT + "1.EndpointID": SAN_ID}


@pytest.mark.parametrize("sans", [[U + "self::ctl-other"], [], None, [SAN_ID], [U + SAN_ID + "x"],
                                  ["URN:BBF:USP:ID:" + SAN_ID]])
def test_san_not_naming_the_sender_is_untrusted(sans, tmp_path):
    flash, mgr, a = agent_for()
    c = Controller(_Coaps(a, sans), SAN_ID, "coaps://192.0.2.10:5684/ctl")
    assert download(c, str(tmp_path / "v2.img")) == 7006
    assert c.call("get", {"param_paths": [CT]})[1]["err_code"] == 7006
    assert c.values(FW + "1.Version") == {FW + "1.Version": "1.0"}  # the untrusted role still reads
    assert a.la.ctrls == {} and a.la.reqs == {}


def test_the_name_counts_only_with_the_certificate(tmp_path):
    """After a SAN-trusted session made its Controller row, the same EndpointID without the
    certificate (plain CoAP) is a stranger: 7006, and its reply-to does not replace the row's;
    and so after a reboot (the row was never vouched for)."""
    flash, mgr, a = agent_for()
    c = Controller(_Coaps(a, [U + SAN_ID]), SAN_ID, "coaps://192.0.2.10:5684/ctl")
    assert c.values(CT + "1.EndpointID") == {CT + "1.EndpointID": SAN_ID}
    c.subscribe("Event", "Device.Boot!")  # a persistent subscription: the row is in the journal
    spoof = Controller(a, SAN_ID, "coap://192.0.2.66:5683/usp")
    assert download(spoof, str(tmp_path / "v2.img")) == 7006
    assert a.la.ctrls[1]["u"] == "coaps://192.0.2.10:5684/ctl" and not a.la.vouched(SAN_ID)
    mgr2 = simdev.reopen(flash)
    mgr2.boot()
    a2 = UspAgent(mgr2, AGENT_ID, Platform(wall_s=T0 + 100), controllers=[PROVISIONED])
    a2.startup()
    assert a2.la.ctrls[1]["e"] == SAN_ID and not a2.la.vouched(SAN_ID)
    assert download(Controller(a2, SAN_ID, "coap://192.0.2.66:5683/usp"), str(tmp_path / "v2.img")) == 7006
    again = Controller(_Coaps(a2, [U + SAN_ID]), SAN_ID, "coaps://192.0.2.10:5684/ctl")
    assert again.values(CT + "1.AssignedRole") == {CT + "1.AssignedRole": FULL}


def test_provisioned_and_added_controllers_need_no_certificate_name(tmp_path):
    flash, mgr, a = agent_for()
    p = Controller(_Coaps(a, []), PROVISIONED, "coaps://192.0.2.10:5684/ctl")  # verified, no SAN
    r = p.add(CT, {"EndpointID": "self::ctl-added"})
    assert r["created_obj_results"][0]["oper_status"]["oper_success"]
    assert not a.la.vouched(PROVISIONED)  # trusted by the profile's list, not by its row
    added = Controller(a, "self::ctl-added", "coap://192.0.2.11:5683/usp")  # plain CoAP, no certificate
    assert download(added, str(tmp_path / "v2.img"))["req_obj_path"]
    assert a.la.vouched("self::ctl-added")


# --- the agent under MicroPython, on coaps and plain CoAP ------------------------------------

AGENT = r"""
import sys, json, os, time
sys.path.append("tests/device")
import coaps_agent
from firmware_slots.mtp import coaps
# the port's tls sends no close_notify: a hung-up session gives way to a new peer after this
coaps.EVICT_IDLE_MS = 1000
mgr, agent, mtp, lst = coaps_agent.start(%(port)d + 1, %(cert)r, %(key)r, %(ca)r, plain=%(port)d,
                                         controllers=[%(provisioned)r])
print("READY")
end = time.ticks_add(time.ticks_ms(), 120000)
while time.ticks_diff(end, time.ticks_ms()) > 0:
    lst.step(20)
    mtp.step(20)
    try:
        os.stat(%(stop)r)
        break
    except OSError:
        pass
rows = [[c["e"], c.get("u"), c.get("t", 0)] for c in agent.la.ctrls.values()]
print("RESULT", json.dumps({"refused": lst.refused, "rows": rows, "status2": mgr.status(1)}))
lst.close()
"""

CONTROLLERS = r"""
import json, sys, time
sys.path.append("tests/device")
import coaps_peer
from firmware_slots.coap import dtls
from firmware_slots.coap.transport import UdpTransport
from firmware_slots.coap.protocol import CoapEndpoint
from firmware_slots.coap.client import CoapClient
from firmware_slots.coap import numbers as N
from firmware_slots.usp import codec, schema
P = %(port)d
AGENT_ID = %(agent)r
def rd(p):
    with open(p, "rb") as f:
        return f.read()

def endpoint(sock=None):
    if sock is None:
        site, got = coaps_peer.usp_site()
        ep = CoapEndpoint(UdpTransport("127.0.0.1", %(plain)d), site)  # MicroPython has no getsockname
    else:
        ep, got = coaps_peer.endpoint(sock, P + 1)
    return [sock, ep, got, CoapClient(ep, timeout_ms=20000)]

def session(name):
    return endpoint(dtls.connect("127.0.0.1", P + 1, rd(%(ca)r), cert=rd(%(d)r + "/" + name + ".crt.der"),
                                 key=rd(%(d)r + "/" + name + ".key.der"), timeout=30))

def usp(s, eid, kind, body):
    sock, ep, got, cl = s
    mt = getattr(schema, kind.upper())
    msg = codec.new_msg("m-" + eid, mt, "request", kind, body)
    rec = codec.make_record(AGENT_ID, eid, codec.encode_msg(msg))
    if sock is None:
        uri = "coap://127.0.0.1:%%d/usp?reply-to=coap://127.0.0.1:%%d/ctl" %% (P, ep.transport.local_port)
    else:
        uri = "coaps://127.0.0.1:%%d/usp?reply-to=coaps://127.0.0.1:1/ctl" %% (P + 1)
    del got[:]
    r = cl.request(N.POST, uri, bytes(rec), content_format=42)
    assert r.code == 68, r.code
    for _ in range(400):
        if got:
            break
        ep.poll(50)
    m = codec.decode_msg(codec.record_payload(codec.decode_record(got[0])))
    b = m["body"]
    if "error" in b:
        return b["error"]["err_code"]
    return b["response"]

def download(s, eid):
    r = usp(s, eid, "operate", {"command": %(fw)r + "2.Download()", "command_key": "k", "send_resp": True,
                                "input_args": {"URL": "file://" + %(img)r, "AutoActivate": "false"}})
    return r if isinstance(r, int) else r["operate_resp"]["operation_results"][0].get("req_obj_path", "?")

def params(s, eid, path):
    r = usp(s, eid, "get", {"param_paths": [path]})
    if isinstance(r, int):
        return r
    res = r["get_resp"]["req_path_results"][0]
    if res.get("err_code"):
        return res["err_code"]
    out = {}
    for rp in res.get("resolved_path_results", []):
        for k in rp["result_params"]:
            out[rp["resolved_path"] + k] = rp["result_params"][k]
    return out

def close(s):
    s[0].close()

out = {}
# two sessions at once: the second handshake (no SAN) must not change what the first one is
a = session("san")
b = session("nosan")
out["b_download"] = download(b, "self::ctl-nosan")
out["a_download"] = download(a, %(san_id)r)
out["b_get_ct"] = params(b, "self::ctl-nosan", "Device.LocalAgent.Controller.")
out["b_version"] = params(b, "self::ctl-nosan", %(fw)r + "1.Version")
out["a_ct"] = params(a, %(san_id)r, "Device.LocalAgent.Controller.*.AssignedRole")
out["a_eid"] = params(a, %(san_id)r, "Device.LocalAgent.Controller.*.EndpointID")
# the nosan session claims the SAN session's EndpointID: its certificate does not name it
out["b_as_a"] = download(b, %(san_id)r)
close(a)
close(b)
time.sleep(1.5)  # both places still held (no close_notify), but quiet: the next peer gets one
c = session("mismatch")  # its SAN URI names self::ctl-other
out["c_download"] = download(c, "self::ctl-mismatch")
close(c)
try:
    session("rogue")  # another CA, though its SAN names the trusted EndpointID
    out["rogue"] = "session"
except Exception as e:
    out["rogue"] = repr(e)
# plain CoAP: the EndpointID alone, without the certificate
out["plain_as_a"] = download(endpoint(), %(san_id)r)
print("OUT", json.dumps(out))
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("coaps-san")
    k, ca = make_ca("SAN Test CA")
    files = {"dir": str(d), "ca": write_ca(d, "ca", ca), "server": write(d, "server", *make_server(k, ca))}
    write(d, "san", *make_leaf("ctl-san", k, ca, uris=[U + SAN_ID], dns=["ctl.example"]))
    write(d, "nosan", *make_leaf("ctl-nosan", k, ca))
    write(d, "mismatch", *make_leaf("ctl-mismatch", k, ca, uris=[U + "self::ctl-other"]))
    rk, rca = make_ca("Rogue CA")
    write(d, "rogue", *make_leaf("ctl-rogue", rk, rca, uris=[U + SAN_ID]))
    (d / "v2.img").write_bytes(image("2.0"))
    files["img"] = str(d / "v2.img")
    return files


@requires_micropython
def test_coaps_certificate_names_the_controller(pki, tmp_path):
    port = _free_udp_pair()
    stop = str(tmp_path / "stop")
    code = AGENT % dict(port=port, cert=pki["server"]["crt.der"], key=pki["server"]["key.der"], ca=pki["ca"],
                        provisioned=PROVISIONED, stop=stop)
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]))
    agent = subprocess.Popen([micropython_exe(), "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=ROOT)
    try:
        assert agent.stdout.readline().strip() == "READY"
        text = run_mp(CONTROLLERS % dict(port=port, plain=free_udp_port(), agent=AGENT_ID, ca=pki["ca"], d=pki["dir"], fw=FW,
                                         img=pki["img"], san_id=SAN_ID), timeout=240)
        out = json.loads(text.split("OUT", 1)[1])
        open(stop, "w").close()
        res, err = agent.communicate(timeout=60)
        assert agent.returncode == 0, err
        res = json.loads(res.split("RESULT", 1)[1])
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.communicate()
    # SAN names the sender, EndpointID not provisioned: Download() runs, AssignedRole is Full Access
    assert out["a_download"].startswith("Device.LocalAgent.Request."), out
    assert out["a_ct"] == {CT + "1.AssignedRole": FULL}, out
    assert out["a_eid"] == {CT + "1.EndpointID": SAN_ID}, out
    assert res["status2"] == "Available"  # and the download did install
    # no SAN, a SAN naming someone else, or the right name claimed by the wrong certificate: untrusted
    assert out["b_download"] == 7006 and out["c_download"] == 7006 and out["b_as_a"] == 7006, out
    assert out["b_get_ct"] == 7006, out
    assert out["b_version"] == {FW + "1.Version": "1.0"}, out  # the untrusted role, not no session
    # another CA: no session at all, counted by the listener
    assert out["rogue"] != "session" and res["refused"] >= 1, (out, res)
    # plain CoAP with the SAN-trusted EndpointID: a stranger; the one row is the certificate's
    assert out["plain_as_a"] == 7006, out
    assert res["rows"] == [[SAN_ID, "coaps://127.0.0.1:1/ctl", 0]], res  # the certificate's row vouches for nobody


GUARD_SERVER = r"""
import tls
from firmware_slots.coap import dtls
def rd(p):
    with open(p, "rb") as f:
        return f.read()
srv = dtls.server("127.0.0.1", %(port)d, rd(%(cert)r), rd(%(key)r), cadata=rd(%(ca)r))
srv._ctx.verify_mode = tls.CERT_OPTIONAL  # a chain that does not verify no longer fails the handshake
print("READY")
s = srv.accept(timeout=60)
print("SANS", repr(s.san_uris))
s.close()
srv.close()
"""

GUARD_CLIENT = r"""
from firmware_slots.coap import dtls
def rd(p):
    with open(p, "rb") as f:
        return f.read()
s = dtls.connect("127.0.0.1", %(port)d, rd(%(ca)r), cert=rd(%(d)r + "/rogue.crt.der"),
                 key=rd(%(d)r + "/rogue.key.der"), timeout=30)
print("CONNECTED")
s.close()
"""


@requires_micropython
def test_names_of_an_unverified_certificate_are_never_reported(pki):
    """With CERT_OPTIONAL a certificate from another CA (naming the trusted EndpointID) gets a
    session, and mbedTLS hands its DER to the callback all the same: only CERT_REQUIRED
    makes the names count, so this session has none."""
    port = _free_udp_pair()
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]))
    srv = subprocess.Popen([micropython_exe(), "-c", GUARD_SERVER % dict(
        port=port, cert=pki["server"]["crt.der"], key=pki["server"]["key.der"], ca=pki["ca"])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert srv.stdout.readline().strip() == "READY"
        assert "CONNECTED" in run_mp(GUARD_CLIENT % dict(port=port, ca=pki["ca"], d=pki["dir"]), timeout=60)
        out, err = srv.communicate(timeout=60)
    finally:
        if srv.poll() is None:
            srv.kill()
            srv.communicate()
    assert "SANS None" in out, out + err
