"""The agent under real MicroPython (same output as CPython), and its Records decoded by
the official USP 1.4 protobuf classes."""
import importlib
import io
import os
import subprocess
import sys
from contextlib import redirect_stdout

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "device"))

from conftest import USP_REFERENCE  # noqa: E402
from mpy import requires_micropython, run_mp  # noqa: E402
from usp_loopback import AGENT_ID, CTRL_ID, T0, device  # noqa: E402

from firmware_slots.usp.agent import UspAgent  # noqa: E402
from firmware_slots.usp.platform import Platform  # noqa: E402


def _image(tmp_path):
    p = tmp_path / "fw2.bin"
    p.write_bytes(b"FWIMG:app:2.0\n" + b"y" * 4000)
    return str(p)


def _cpython(path):
    import usp_agent_scenario
    buf = io.StringIO()
    with redirect_stdout(buf):
        usp_agent_scenario.main(path)
    return buf.getvalue()


@requires_micropython
def test_same_results_under_micropython(tmp_path):
    path = _image(tmp_path)
    want = _cpython(path)
    got = run_mp("import usp_agent_scenario\nusp_agent_scenario.main(%r)\n" % path,
                 extra_path=[os.path.join(HERE, "device")])
    assert got == want
    lines = dict(line.split(" ", 1) for line in got.splitlines() if " " in line)
    assert '"OperationComplete", "k1"' in lines["after-boot"].replace("],", "]")  # the order is checked in CPython tests
    assert "rebooting RemoteReboot" in got
    assert '"2.0"' in lines["get2"]


# ---------------------------------------------------------------- official schemas
@pytest.fixture(scope="module")
def official(tmp_path_factory):
    if not os.path.isfile(os.path.join(USP_REFERENCE, "usp-msg-1-4.proto")):
        pytest.skip("shared USP reference schemas absent: %s" % USP_REFERENCE)
    pytest.importorskip("grpc_tools")
    from grpc_tools import protoc
    out = tmp_path_factory.mktemp("usp_official_agent")
    files = ["usp-msg-1-4.proto", "usp-record-1-4.proto"]
    assert protoc.main(["protoc", "-I" + USP_REFERENCE, "--python_out=" + str(out)] + files) == 0
    sys.path.insert(0, str(out))
    try:
        return [importlib.import_module(f[:-6].replace("-", "_") + "_pb2") for f in files]
    finally:
        sys.path.remove(str(out))


def _official_request(msg_pb2, record_pb2, fill):
    m = msg_pb2.Msg()
    m.header.msg_id = "x1"
    fill(m)
    r = record_pb2.Record(version="1.3", to_id=AGENT_ID, from_id=CTRL_ID)
    r.no_session_context.payload = m.SerializeToString()
    return r.SerializeToString()


def _official_reply(msg_pb2, record_pb2, rec):
    r = record_pb2.Record()
    r.ParseFromString(bytes(rec))
    assert r.to_id == CTRL_ID and r.from_id == AGENT_ID
    m = msg_pb2.Msg()
    m.ParseFromString(r.no_session_context.payload)
    return m


def test_official_controller_messages(official, tmp_path):
    msg_pb2, record_pb2 = official
    flash, mgr = device("1.0")
    agent = UspAgent(mgr, AGENT_ID, Platform(wall_s=T0))
    agent.startup()
    H = msg_pb2.Header

    def get(m):
        m.header.msg_type = H.GET
        m.body.request.get.param_paths.extend(["Device.DeviceInfo.FirmwareImage.*.", "Device.X."])

    m = _official_reply(msg_pb2, record_pb2, agent.handle(_official_request(msg_pb2, record_pb2, get))[0])
    assert m.header.msg_id == "x1" and m.header.msg_type == H.GET_RESP
    res = m.body.response.get_resp.req_path_results
    assert res[0].resolved_path_results[0].result_params["Status"] == "Active"
    assert res[1].err_code == 7026

    def gsdm(m):
        m.header.msg_type = H.GET_SUPPORTED_DM
        g = m.body.request.get_supported_dm
        g.obj_paths.append("Device.")
        g.return_commands = g.return_events = g.return_params = True

    m = _official_reply(msg_pb2, record_pb2, agent.handle(_official_request(msg_pb2, record_pb2, gsdm))[0])
    objs = m.body.response.get_supported_dm_resp.req_obj_results[0].supported_objs
    fw = [o for o in objs if o.supported_obj_path == "Device.DeviceInfo.FirmwareImage.{i}."][0]
    R = msg_pb2.GetSupportedDMResp
    assert fw.is_multi_instance and fw.access == R.OBJ_READ_ONLY
    assert {c.command_name: c.command_type for c in fw.supported_commands} == {
        "Download()": R.CMD_ASYNC, "Activate()": R.CMD_ASYNC}
    av = [p for p in fw.supported_params if p.param_name == "Available"][0]
    assert av.access == R.PARAM_READ_WRITE and av.value_type == R.PARAM_BOOLEAN

    def sub(m):
        m.header.msg_type = H.ADD
        co = m.body.request.add.create_objs.add(obj_path="Device.LocalAgent.Subscription.")
        for k, v in (("Enable", "true"), ("NotifType", "OperationComplete"),
                     ("ReferenceList", "Device.Reboot()")):
            co.param_settings.add(param=k, value=v, required=True)

    m = _official_reply(msg_pb2, record_pb2, agent.handle(_official_request(msg_pb2, record_pb2, sub))[0])
    ok = m.body.response.add_resp.created_obj_results[0].oper_status.oper_success
    assert ok.instantiated_path == "Device.LocalAgent.Subscription.1."

    def bad_set(m):
        m.header.msg_type = H.SET
        uo = m.body.request.set.update_objs.add(obj_path="Device.DeviceInfo.")
        uo.param_settings.add(param="SoftwareVersion", value="9", required=True)

    m = _official_reply(msg_pb2, record_pb2, agent.handle(_official_request(msg_pb2, record_pb2, bad_set))[0])
    assert m.header.msg_type == H.ERROR and m.body.error.err_code == 7013
    assert m.body.error.param_errs[0].param_path == "Device.DeviceInfo.SoftwareVersion"

    def op(m):
        m.header.msg_type = H.OPERATE
        o = m.body.request.operate
        o.command = "Device.DeviceInfo.FirmwareImage.2.Download()"
        o.command_key = "ck"
        o.send_resp = True
        o.input_args["URL"] = "file://" + _image(tmp_path)
        o.input_args["AutoActivate"] = "false"

    m = _official_reply(msg_pb2, record_pb2, agent.handle(_official_request(msg_pb2, record_pb2, op))[0])
    assert m.body.response.operate_resp.operation_results[0].req_obj_path == "Device.LocalAgent.Request.1"


def test_official_decodes_notifications(official, tmp_path):
    msg_pb2, record_pb2 = official
    sys.path.insert(0, os.path.join(HERE, "device"))
    from usp_loopback import Controller
    flash, mgr = device("1.0")
    agent = UspAgent(mgr, AGENT_ID, Platform(wall_s=T0))
    agent.startup()
    c = Controller(agent)
    c.subscribe("OperationComplete", "Device.DeviceInfo.FirmwareImage.*.Download()")
    c.subscribe("Event", "Device.LocalAgent.TransferComplete!")
    agent.take_outbox()
    c.operate("Device.DeviceInfo.FirmwareImage.2.Download()",
              {"URL": "file://" + _image(tmp_path), "AutoActivate": "false"}, key="ck")
    agent.poll(0)
    out = agent.take_outbox()
    assert len(out) == 2
    n0 = _official_reply(msg_pb2, record_pb2, out[0][1]).body.request.notify
    assert n0.WhichOneof("notification") == "oper_complete"
    assert n0.oper_complete.command_name == "Download()" and n0.oper_complete.command_key == "ck"
    assert n0.oper_complete.WhichOneof("operation_resp") == "req_output_args"
    n1 = _official_reply(msg_pb2, record_pb2, out[1][1]).body.request.notify
    assert n1.event.event_name == "TransferComplete!" and n1.event.params["FaultCode"] == "0"
    assert n1.subscription_id


def test_bench_prints_json():
    root = os.path.dirname(HERE)
    p = subprocess.run([sys.executable, os.path.join(root, "bench", "usp.py"), "--runs", "5"],
                       capture_output=True, text=True, timeout=120, cwd=root)
    if "micropython not found" in p.stderr:
        pytest.skip("no MicroPython")
    assert p.returncode == 0, p.stderr
    import json
    d = json.loads(p.stdout)
    assert d["get_all_firmware_params_us"] > 0
    assert set(d["agent_heap_peak_bytes"]) == {"get", "set", "operate"}
