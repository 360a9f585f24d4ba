"""USP wire codec (firmware_slots/usp): cross-checked against the official schemas.

The official usp-msg-1-4 / usp-record-1-4 protos are compiled with grpc_tools
into a temp dir; tests that need them skip when the shared reference folder is
absent. Our own usp.proto subset is always compiled, so the MicroPython
cross-checks run everywhere.
"""
import ast
import importlib
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import USP_REFERENCE
from mpy import mpy_cross_exe, requires_micropython, run_mp

from firmware_slots.usp import pb, schema
from firmware_slots.usp.codec import (
    DecodeError,
    decode_msg,
    decode_record,
    encode_msg,
    encode_record,
    error_msg,
    make_record,
    new_msg,
    record_payload,
    split_msg,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USP_DIR = os.path.join(ROOT, "firmware_slots", "usp")
DEVICE_MODULES = ["__init__.py", "pb.py", "schema.py", "codec.py"]

pb2 = pytest.importorskip("google.protobuf")
from google.protobuf import json_format  # noqa: E402
from google.protobuf.descriptor import FieldDescriptor as FD  # noqa: E402
from google.protobuf.message import DecodeError as PbDecodeError  # noqa: E402


def _protoc(src_dir, files, out_dir):
    from grpc_tools import protoc

    args = ["protoc", "-I" + src_dir, "--python_out=" + str(out_dir)] + files
    assert protoc.main(args) == 0, "protoc failed on %s" % files
    sys.path.insert(0, str(out_dir))
    try:
        return [importlib.import_module(f[:-6].replace("-", "_") + "_pb2") for f in files]
    finally:
        sys.path.remove(str(out_dir))


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """(msg_pb2, record_pb2) compiled from the official USP 1.4 schemas."""
    if not os.path.isfile(os.path.join(USP_REFERENCE, "usp-msg-1-4.proto")):
        pytest.skip("shared USP reference schemas absent: %s" % USP_REFERENCE)
    out = tmp_path_factory.mktemp("usp_official")
    return tuple(_protoc(USP_REFERENCE, ["usp-msg-1-4.proto", "usp-record-1-4.proto"], out))


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    """usp_pb2 compiled from our own usp.proto (Record and Msg in one package)."""
    out = tmp_path_factory.mktemp("usp_subset")
    return _protoc(USP_DIR, ["usp.proto"], out)[0]


def to_dict(m):
    return json_format.MessageToDict(
        m, preserving_proto_field_name=True, use_integers_for_enums=True
    )


# ---------------------------------------------------------------- schema tables

_KIND = {
    FD.TYPE_STRING: pb.STR,
    FD.TYPE_BYTES: pb.BYTES,
    FD.TYPE_BOOL: pb.BOOL,
    FD.TYPE_ENUM: pb.INT,
    FD.TYPE_INT32: pb.INT,
    FD.TYPE_INT64: pb.INT,
    FD.TYPE_UINT32: pb.UINT,
    FD.TYPE_UINT64: pb.UINT,
    FD.TYPE_FIXED32: pb.FX32,
    FD.TYPE_MESSAGE: pb.MSG,
}
_LEFT_OUT = {"register", "deregister", "register_resp", "deregister_resp"}


def _walk(desc, table, path):
    """Assert tuple `table` describes descriptor `desc` exactly; return fields checked."""
    assert len(table) % 3 == 0, path
    ours = {}
    for i in range(0, len(table), 3):
        if table[i] is not None:
            ours[i // 3 + 1] = table[i : i + 3]
    n = 0
    for f in desc.fields:
        if f.name in _LEFT_OUT:
            assert f.number not in ours, path + f.name
            continue
        where = "%s.%s" % (path, f.name)
        assert f.number in ours, "missing " + where
        name, kind, sub = ours.pop(f.number)
        assert name == f.name, where
        is_map = f.type == FD.TYPE_MESSAGE and f.message_type.GetOptions().map_entry
        want = pb.MAP if is_map else _KIND[f.type]
        assert kind & 15 == want, where
        assert bool(kind & pb.REP) == (f.is_repeated and not is_map), where
        assert bool(kind & pb.ONEOF) == (f.containing_oneof is not None), where
        n += 1
        if want == pb.MSG:
            assert isinstance(sub, tuple), where
            n += _walk(f.message_type, sub, where)
        else:
            assert sub is None, where
    assert not ours, "extra fields in %s: %s" % (path, ours)
    return n


def test_schema_tables_match_official_protos(official):
    msg_pb2, rec_pb2 = official
    assert _walk(msg_pb2.Msg.DESCRIPTOR, schema.Msg, "Msg") > 150
    assert _walk(rec_pb2.Record.DESCRIPTOR, schema.Record, "Record") == 27
    for v in msg_pb2.Header.MsgType.DESCRIPTOR.values:
        assert getattr(schema, v.name) == v.number, v.name
    for v in rec_pb2.Record.PayloadSecurity.DESCRIPTOR.values:
        assert getattr(schema, v.name) == v.number, v.name


def test_our_proto_is_the_same_subset(subset):
    _walk(subset.Msg.DESCRIPTOR, schema.Msg, "Msg")
    _walk(subset.Record.DESCRIPTOR, schema.Record, "Record")


# ---------------------------------------------------------------- sample messages


def _m(mid, mtype, part, kind, body):
    return new_msg(mid, mtype, part, kind, body)


SAMPLES = [
    _m("g1", schema.GET, "request", "get", {"param_paths": ["Device.DeviceInfo.", "Device.LocalAgent.EndpointID"], "max_depth": 2}),
    _m("g2", schema.GET_RESP, "response", "get_resp", {"req_path_results": [
        {"requested_path": "Device.DeviceInfo.FirmwareImage.", "resolved_path_results": [
            {"resolved_path": "Device.DeviceInfo.FirmwareImage.1.",
             "result_params": {"Name": "slot-a", "Version": "1.2.3", "Status": "Active", "Alias": ""}},
            {"resolved_path": "Device.DeviceInfo.FirmwareImage.2."}]},
        {"requested_path": "Device.Nope.", "err_code": 7026, "err_msg": "Invalid path \u00e9\u2603"}]}),
    _m("s1", schema.SET, "request", "set", {"allow_partial": True, "update_objs": [
        {"obj_path": "Device.DeviceInfo.", "param_settings": [
            {"param": "BootFirmwareImage", "value": "Device.DeviceInfo.FirmwareImage.2", "required": True},
            {"param": "X", "value": ""}]},
        {"obj_path": "Device.DeviceInfo.FirmwareImage.2."}]}),
    _m("s2", schema.SET_RESP, "response", "set_resp", {"updated_obj_results": [
        {"requested_path": "Device.DeviceInfo.", "oper_status": {"oper_success": {"updated_inst_results": [
            {"affected_path": "Device.DeviceInfo.", "updated_params": {"BootFirmwareImage": "Device.DeviceInfo.FirmwareImage.2"},
             "param_errs": [{"param": "Alias", "err_code": 7012, "err_msg": "too long"}]}]}}},
        {"requested_path": "Device.DeviceInfo.FirmwareImage.1.", "oper_status": {"oper_failure": {
            "err_code": 7013, "err_msg": "not writable", "updated_inst_failures": [
                {"affected_path": "Device.DeviceInfo.FirmwareImage.1.", "param_errs": [{"param": "Name", "err_code": 7013}]}]}}},
        {"requested_path": "Device.X.", "oper_status": {"oper_success": {}}}]}),
    _m("a1", schema.ADD, "request", "add", {"allow_partial": False, "create_objs": [
        {"obj_path": "Device.LocalAgent.Subscription.", "param_settings": [
            {"param": "NotifType", "value": "OperationComplete", "required": True},
            {"param": "ReferenceList", "value": "Device."}]}]}),
    _m("a2", schema.ADD_RESP, "response", "add_resp", {"created_obj_results": [
        {"requested_path": "Device.LocalAgent.Subscription.", "oper_status": {"oper_success": {
            "instantiated_path": "Device.LocalAgent.Subscription.3.",
            "param_errs": [{"param": "Enable", "err_code": 7012, "err_msg": "bad"}],
            "unique_keys": {"ID": "sub-3", "Alias": "cpe-3"}}}},
        {"requested_path": "Device.DeviceInfo.FirmwareImage.", "oper_status": {"oper_failure": {"err_code": 7019, "err_msg": "not creatable"}}}]}),
    _m("d1", schema.DELETE, "request", "delete", {"allow_partial": True, "obj_paths": ["Device.LocalAgent.Subscription.3.", "Device.LocalAgent.Subscription.4."]}),
    _m("d2", schema.DELETE_RESP, "response", "delete_resp", {"deleted_obj_results": [
        {"requested_path": "Device.LocalAgent.Subscription.*.", "oper_status": {"oper_success": {
            "affected_paths": ["Device.LocalAgent.Subscription.3."],
            "unaffected_path_errs": [{"unaffected_path": "Device.LocalAgent.Subscription.4.", "err_code": 7002, "err_msg": "denied"}]}}},
        {"requested_path": "Device.DeviceInfo.FirmwareImage.1.", "oper_status": {"oper_failure": {"err_code": 7016}}}]}),
    _m("o1", schema.OPERATE, "request", "operate", {
        "command": "Device.DeviceInfo.FirmwareImage.2.Download()", "command_key": "ck-1", "send_resp": True,
        "input_args": {"URL": "coap://[fd00::1]:5683/fw.img", "AutoActivate": "true", "CheckSumAlgorithm": "SHA-256"}}),
    _m("o2", schema.OPERATE_RESP, "response", "operate_resp", {"operation_results": [
        {"executed_command": "Device.DeviceInfo.FirmwareImage.2.Download()", "req_obj_path": "Device.LocalAgent.Request.1."},
        {"executed_command": "Device.Reboot()", "req_output_args": {"output_args": {}}},
        {"executed_command": "Device.X()", "req_output_args": {"output_args": {"A": "1", "B": ""}}},
        {"executed_command": "Device.Y()", "cmd_failure": {"err_code": 7022, "err_msg": "failed"}},
        {"executed_command": "Device.Z()", "req_obj_path": ""}]}),
    _m("n1", schema.NOTIFY, "request", "notify", {"subscription_id": "sub-1", "send_resp": True, "oper_complete": {
        "obj_path": "Device.DeviceInfo.FirmwareImage.2.", "command_name": "Download()", "command_key": "ck-1",
        "req_output_args": {"output_args": {"Status": "Complete", "Size": "123456"}}}}),
    _m("n2", schema.NOTIFY, "request", "notify", {"subscription_id": "sub-1", "oper_complete": {
        "obj_path": "Device.DeviceInfo.FirmwareImage.2.", "command_name": "Activate()", "command_key": "ck-2",
        "cmd_failure": {"err_code": 7022, "err_msg": "image invalid"}}}),
    _m("n3", schema.NOTIFY, "request", "notify", {"subscription_id": "boot", "event": {
        "obj_path": "Device.", "event_name": "Boot!",
        "params": {"CommandKey": "ck-2", "Cause": "RemoteReboot", "FirmwareUpdated": "true", "ParameterMap": "{}"}}}),
    _m("n4", schema.NOTIFY, "request", "notify", {"subscription_id": "vc", "value_change": {
        "param_path": "Device.DeviceInfo.FirmwareImage.1.Status", "param_value": "Available"}}),
    _m("n5", schema.NOTIFY, "request", "notify", {"subscription_id": "oc", "obj_creation": {
        "obj_path": "Device.LocalAgent.Request.1.", "unique_keys": {"Alias": "cpe-1"}}}),
    _m("n6", schema.NOTIFY, "request", "notify", {"subscription_id": "od", "obj_deletion": {"obj_path": "Device.LocalAgent.Request.1."}}),
    _m("n7", schema.NOTIFY, "request", "notify", {"send_resp": True, "on_board_req": {
        "oui": "00D09E", "product_class": "fwslots", "serial_number": "0001", "agent_supported_protocol_versions": "1.0,1.1,1.3"}}),
    _m("n8", schema.NOTIFY_RESP, "response", "notify_resp", {"subscription_id": "sub-1"}),
    _m("n9", schema.NOTIFY_RESP, "response", "notify_resp", {}),
    _m("m1", schema.GET_SUPPORTED_DM, "request", "get_supported_dm", {
        "obj_paths": ["Device.DeviceInfo."], "first_level_only": True, "return_commands": True,
        "return_events": True, "return_params": True, "return_unique_key_sets": True}),
    _m("m2", schema.GET_SUPPORTED_DM_RESP, "response", "get_supported_dm_resp", {"req_obj_results": [
        {"req_obj_path": "Device.DeviceInfo.", "data_model_inst_uri": "urn:broadband-forum-org:tr-181-2-19-1",
         "supported_objs": [
             {"supported_obj_path": "Device.DeviceInfo.", "supported_params": [
                 {"param_name": "BootFirmwareImage", "access": 1,
                  "value_type": 8, "value_change": 1},
                 {"param_name": "FirmwareImageNumberOfEntries", "value_type": 9}]},
             {"supported_obj_path": "Device.DeviceInfo.FirmwareImage.{i}.", "access": 0,
              "is_multi_instance": True,
              "supported_commands": [
                  {"command_name": "Download()", "input_arg_names": ["URL", "AutoActivate", "FileSize"],
                   "command_type": 2},
                  {"command_name": "Activate()", "input_arg_names": ["TimeWindow.{i}.Start"],
                   "output_arg_names": [], "command_type": 2}],
              "supported_events": [{"event_name": "Ping!", "arg_names": ["A", "B"]}, {"event_name": "Quiet!"}],
              "supported_params": [{"param_name": "Available", "access": 1,
                                    "value_type": 2}],
              "divergent_paths": ["Device.DeviceInfo.FirmwareImage.1."],
              "unique_key_sets": [{"key_names": ["Alias"]}, {"key_names": ["Name", "Version"]}]}]},
        {"req_obj_path": "Device.Bogus.", "err_code": 7026, "err_msg": "Invalid path"}]}),
    _m("i1", schema.GET_INSTANCES, "request", "get_instances", {"obj_paths": ["Device.DeviceInfo.FirmwareImage."], "first_level_only": True}),
    _m("i2", schema.GET_INSTANCES_RESP, "response", "get_instances_resp", {"req_path_results": [
        {"requested_path": "Device.DeviceInfo.FirmwareImage.", "curr_insts": [
            {"instantiated_obj_path": "Device.DeviceInfo.FirmwareImage.1.", "unique_keys": {"Alias": "cpe-1", "Name": "a"}},
            {"instantiated_obj_path": "Device.DeviceInfo.FirmwareImage.2."}]},
        {"requested_path": "Device.X.", "err_code": 7016}]}),
    _m("p1", schema.GET_SUPPORTED_PROTO, "request", "get_supported_protocol", {"controller_supported_protocol_versions": "1.3,1.4"}),
    _m("p2", schema.GET_SUPPORTED_PROTO_RESP, "response", "get_supported_protocol_resp", {"agent_supported_protocol_versions": "1.0,1.1,1.3"}),
    error_msg("e1", 7004, "Invalid arguments", [
        {"param_path": "Device.DeviceInfo.BootFirmwareImage", "err_code": 7012, "err_msg": "not Available"},
        {"param_path": "Device.DeviceInfo.X", "err_code": 7026}]),
    error_msg("e2", 7000),
    _m("e3", 0, "error", None, {"err_code": 0xFFFFFFFF}),
]


def canon(d, table=schema.Msg):
    """`d` as it comes back from the wire: proto3 defaults and empty lists dropped."""
    out = {}
    for i in range(0, len(table), 3):
        name, kind, sub = table[i : i + 3]
        v = d.get(name) if name else None
        if v is None or v == []:
            continue
        kk = kind & 15
        if kk == pb.MSG:
            v = [canon(x, sub) for x in v] if kind & pb.REP else canon(v, sub)
        elif not v and (kk == pb.MAP or not kind & (pb.REP | pb.ONEOF)):
            continue
        out[name] = v
    return out


@pytest.mark.parametrize("sample", SAMPLES, ids=[s["header"]["msg_id"] for s in SAMPLES])
def test_msg_cross_codec(official, sample):
    msg_pb2, _ = official
    want = canon(sample)
    theirs = json_format.ParseDict(sample, msg_pb2.Msg())
    # official bytes -> our decoder
    assert decode_msg(theirs.SerializeToString()) == want
    # our bytes -> official parser, compared field by field and as a message
    ours = encode_msg(sample)
    parsed = msg_pb2.Msg.FromString(bytes(ours))
    assert to_dict(parsed) == want
    assert parsed == theirs
    # same size as the reference encoder (we also leave proto3 defaults out)
    assert len(ours) == theirs.ByteSize()


def test_msg_built_with_official_classes(official):
    """Messages built attribute by attribute (no dict in between), decoded by us."""
    M, _ = official
    m = M.Msg()
    m.header.msg_id = "n-42"
    m.header.msg_type = M.Header.NOTIFY
    oc = m.body.request.notify.oper_complete
    m.body.request.notify.subscription_id = "s"
    oc.obj_path = "Device.DeviceInfo.FirmwareImage.1."
    oc.command_name = "Download()"
    oc.req_output_args.output_args["Result"] = "ok"
    oc.req_output_args.output_args["\u00fcml"] = "\u2603"
    assert decode_msg(m.SerializeToString()) == {
        "header": {"msg_id": "n-42", "msg_type": 3},
        "body": {"request": {"notify": {"subscription_id": "s", "oper_complete": {
            "obj_path": "Device.DeviceInfo.FirmwareImage.1.", "command_name": "Download()",
            "req_output_args": {"output_args": {"Result": "ok", "\u00fcml": "\u2603"}}}}}},
    }
    oc.cmd_failure.err_code = 7023  # switching the oneof drops req_output_args
    d = decode_msg(m.SerializeToString())
    assert d["body"]["request"]["notify"]["oper_complete"]["cmd_failure"] == {"err_code": 7023}
    assert "req_output_args" not in d["body"]["request"]["notify"]["oper_complete"]

    e = M.Msg()
    e.header.msg_id = "x"
    e.body.error.err_code = 7004
    pe = e.body.error.param_errs.add()
    pe.param_path = "Device.A"
    pe.err_code = 7012
    e.body.error.param_errs.add().param_path = "Device.B"
    assert split_msg(decode_msg(e.SerializeToString())) == (
        "x", 0, "error", None,
        {"err_code": 7004, "param_errs": [{"param_path": "Device.A", "err_code": 7012}, {"param_path": "Device.B"}]},
    )

    r = M.Msg()
    obj = r.body.response.get_supported_dm_resp.req_obj_results.add().supported_objs.add()
    obj.supported_obj_path = "Device."
    cmd = obj.supported_commands.add()
    cmd.command_name = "Reboot()"
    cmd.command_type = M.GetSupportedDMResp.CMD_SYNC
    obj.unique_key_sets.add()  # empty submessage: present as {}
    obj.supported_params.add().value_type = M.GetSupportedDMResp.PARAM_DATE_TIME
    assert decode_msg(r.SerializeToString()) == {"body": {"response": {"get_supported_dm_resp": {"req_obj_results": [
        {"supported_objs": [{"supported_obj_path": "Device.",
                             "supported_commands": [{"command_name": "Reboot()", "command_type": 1}],
                             "unique_key_sets": [{}], "supported_params": [{"value_type": 3}]}]}]}}}}


def test_merge_and_last_oneof_member_wins(official):
    M, _ = official
    # a Request carrying get (field 1) then delete (field 6): only the last survives
    req = bytes([0x0A, 0x04, 0x0A, 0x02, 0x41, 0x2E, 0x32, 0x04, 0x12, 0x02, 0x42, 0x2E])
    data = bytes([0x12, 2 + len(req), 0x0A, len(req)]) + req
    assert decode_msg(data) == {"body": {"request": {"delete": {"obj_paths": ["B."]}}}}
    assert to_dict(M.Msg.FromString(data)) == decode_msg(data)
    # concatenated messages merge: repeated fields append, scalars and oneofs last-wins
    parts = [
        {"header": {"msg_id": "1"}, "body": {"request": {"get": {"param_paths": ["A."], "max_depth": 1}}}},
        {"header": {"msg_type": 1}, "body": {"request": {"get": {"param_paths": ["B."]}}}},
        {"body": {"request": {"set": {"allow_partial": True}}}},
        {"body": {"request": {"get": {"max_depth": 3}}}},
    ]
    for n in range(1, len(parts) + 1):
        data = b"".join(bytes(encode_msg(p)) for p in parts[:n])
        assert decode_msg(data) == to_dict(M.Msg.FromString(data)), n


def test_unknown_fields_skipped():
    get = bytes(encode_msg({"body": {"request": {"get": {"param_paths": ["A."]}}}}))
    # unknown fields of every wire type, plus a known field with the wrong wire type
    junk = bytes([0x78, 0x05, 0x7A, 0x02, 0x41, 0x42, 0x7D, 1, 2, 3, 4, 0x79, 1, 2, 3, 4, 5, 6, 7, 8, 0x0D, 0, 0, 0, 0])
    assert decode_msg(junk + get) == decode_msg(get)
    # Register (request field 10) is not described: skipped, leaving an empty request
    reg = bytes([0x12, 0x06, 0x0A, 0x04, 0x52, 0x02, 0x08, 0x01])
    assert decode_msg(reg) == {"body": {"request": {}}}
    assert split_msg(decode_msg(reg)) == ("", 0, "request", None, None)


# ---------------------------------------------------------------- records

RECORDS = [
    {"version": "1.3", "to_id": "proto::agent", "from_id": "proto::ctrl",
     "no_session_context": {"payload": b"\x0a\x03\x0a\x011\x00\xff"}},
    {"version": "1.4", "to_id": "a", "from_id": "c", "payload_security": schema.TLS12,
     "mac_signature": b"\x01\x02", "sender_cert": b"-----BEGIN",
     "session_context": {"session_id": 2 ** 64 - 1, "sequence_id": 7, "expected_id": 8, "retransmit_id": 3,
                         "payload_sar_state": 1, "payloadrec_sar_state": 3, "payload": [b"ab", b"", b"\x00"]}},
    {"version": "1.3", "websocket_connect": {}},
    {"version": "1.3", "mqtt_connect": {"version": 1, "subscribed_topic": "usp/agent"}},
    {"version": "1.3", "stomp_connect": {"subscribed_destination": "/q/agent"}},
    {"version": "1.3", "disconnect": {"reason": "bye", "reason_code": 7105}},
    {"version": "1.3", "uds_connect": {}},
    {"version": "1.3", "no_session_context": {}},
]


def _rec_to_dict(r):
    # MessageToDict spells bytes as base64 and uint64 as str: compare via attributes instead
    d = {}
    for f, v in r.ListFields():
        if f.type == FD.TYPE_MESSAGE:
            d[f.name] = _rec_to_dict(v)
        elif f.is_repeated:
            d[f.name] = list(v)
        else:
            d[f.name] = v
    return d


@pytest.mark.parametrize("rec", RECORDS, ids=lambda r: [k for k in r if k.endswith(("context", "connect", "disconnect"))][0])
def test_record_cross_codec(official, rec):
    _, R = official
    theirs = R.Record()
    for k, v in rec.items():
        if isinstance(v, dict):
            sub = getattr(theirs, k)
            sub.SetInParent()
            for kk, vv in v.items():
                if isinstance(vv, list):
                    getattr(sub, kk).extend(vv)
                else:
                    setattr(sub, kk, vv)
        else:
            setattr(theirs, k, v)
    assert decode_record(theirs.SerializeToString()) == rec
    ours = encode_record(rec)
    parsed = R.Record.FromString(bytes(ours))
    assert parsed == theirs
    assert _rec_to_dict(parsed) == rec
    assert parsed.WhichOneof("record_type") == [k for k in rec if isinstance(rec[k], dict)][0]


def test_make_record_and_payload_views(official):
    M, R = official
    msg = encode_msg(SAMPLES[0])
    rec = make_record("os::agent", "os::ctrl", msg)
    r = R.Record.FromString(bytes(rec))
    assert (r.version, r.to_id, r.from_id) == ("1.3", "os::agent", "os::ctrl")
    assert M.Msg.FromString(r.no_session_context.payload).header.msg_id == "g1"
    d = decode_record(rec, views=True)
    p = record_payload(d)
    assert isinstance(p, memoryview)
    assert decode_msg(p) == SAMPLES[0]
    assert record_payload(decode_record(rec)) == bytes(msg)
    assert record_payload({"version": "1.3", "disconnect": {}}) is None
    assert record_payload(decode_record(make_record("a", "b", b""))) == b""
    # a Msg dict is encoded in place: the same bytes as encoding it first
    for d in SAMPLES:
        assert make_record("os::agent", "os::ctrl", d) == make_record("os::agent", "os::ctrl", encode_msg(d))


# ---------------------------------------------------------------- hypothesis

_TEXT = st.text(max_size=12)
_NONEMPTY = st.text(min_size=1, max_size=12)


def _strategy(table, depth=0):
    """Dicts valid for `table`, without proto3 defaults outside oneofs/lists."""
    required, oneof = {}, {}
    for i in range(0, len(table), 3):
        name, kind, sub = table[i : i + 3]
        if name is None:
            continue
        kk, rep, oo = kind & 15, kind & pb.REP, kind & pb.ONEOF
        if kk == pb.MSG:
            s = _strategy(sub, depth + 1) if depth < 7 else st.just({})
        elif kk == pb.MAP:
            s = st.dictionaries(_TEXT, _TEXT, min_size=1, max_size=3)  # {} == absent
        elif kk == pb.STR:
            s = _TEXT if rep or oo else _NONEMPTY
        elif kk == pb.BYTES:
            s = st.binary(max_size=12) if rep or oo else st.binary(min_size=1, max_size=12)
        elif kk == pb.BOOL:
            s = st.booleans() if rep or oo else st.just(True)
        elif kk == pb.INT:
            s = st.integers(0 if rep or oo else 1, 2)  # enums: every USP enum has >= 3 values
        elif kk == pb.UINT:
            s = st.integers(0 if rep or oo else 1, 2 ** 64 - 1)
        else:
            s = st.integers(0 if rep or oo else 1, 2 ** 32 - 1)
        if rep:
            s = st.lists(s, min_size=1, max_size=2)
        (oneof if oo else required)[name] = s
    base = st.fixed_dictionaries({}, optional=required)
    if not oneof:
        return base
    pick = st.one_of([st.just(None)] + [st.tuples(st.just(k), v) for k, v in oneof.items()])
    return st.tuples(base, pick).map(lambda t: dict(t[0], **({t[1][0]: t[1][1]} if t[1] else {})))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_strategy(schema.Msg))
def test_hypothesis_msg_roundtrip(official, d):
    msg_pb2, _ = official
    b = encode_msg(d)
    assert decode_msg(b) == d
    assert decode_msg(memoryview(bytes(b))) == d
    theirs = msg_pb2.Msg.FromString(bytes(b))
    assert to_dict(theirs) == d
    assert decode_msg(theirs.SerializeToString()) == d


@settings(max_examples=100, deadline=None)
@given(_strategy(schema.Record))
def test_hypothesis_record_roundtrip(official, d):
    _, R = official
    b = encode_record(d)
    assert decode_record(b) == d
    assert _rec_to_dict(R.Record.FromString(bytes(b))) == d


@settings(max_examples=100, deadline=None)
@given(st.integers(-(2 ** 63), 2 ** 63 - 1), st.integers(0, 2 ** 64 - 1))
def test_hypothesis_varint_extremes(signed, unsigned):
    table = ("a", pb.INT, None, "b", pb.UINT, None, "c", pb.INT | pb.REP, None)
    d = {"a": signed, "b": unsigned, "c": [signed, 0, -1]}
    want = {k: v for k, v in d.items() if v != 0}
    assert pb.decode(table, pb.encode(table, d)) == want


# ---------------------------------------------------------------- malformed input

def _a_record():
    return bytes(make_record("proto::agent-\u00e9", "proto::ctrl", encode_msg(SAMPLES[1])))


def _decodes_or_decodeerror(fn, b):
    try:
        fn(b)
        return True
    except DecodeError:
        return False


def test_every_prefix_is_dict_or_decodeerror(official):
    M, R = official
    rec = _a_record()
    msg = bytes(encode_msg(SAMPLES[20]))  # nested GetSupportedDMResp
    for data, ours, theirs in ((rec, decode_record, R.Record), (msg, decode_msg, M.Msg)):
        ok = 0
        for n in range(len(data)):
            prefix = data[:n]
            mine = _decodes_or_decodeerror(ours, prefix)
            try:
                theirs.FromString(prefix)
                ref = True
            except PbDecodeError:
                ref = False
            assert mine == ref, (n, prefix.hex())
            ok += mine
        assert 0 < ok < len(data) // 2  # most cuts land inside a field


@pytest.mark.parametrize("bad", [
    b"\x0b", b"\x0c", b"\x0e\x00", b"\x0f",  # wire types 3/4/6/7
    b"\x80" * 10 + b"\x01",                 # 11-byte tag varint
    b"\x08" + b"\xff" * 10 + b"\x01",       # overlong value varint (wrong-type field is still parsed)
    b"\x0a" + b"\xff" * 10 + b"\x01",       # overlong length
    b"\x0a\x05abc",                         # length past end
    b"\x0a\x80",                            # truncated length varint
    b"\x0a",                                # tag without length
    b"\x0d\x01\x02",                        # truncated fixed32
    b"\x09\x01\x02\x03",                    # truncated fixed64
    b"\x00\x00",                            # field number 0
    b"\x0a\x03\x0a\x01\xff",                # invalid UTF-8 in msg_id
])
def test_malformed_raises_decodeerror(bad):
    with pytest.raises(DecodeError):
        decode_msg(bad)
    with pytest.raises(ValueError):  # DecodeError is a ValueError
        decode_record(bad)


@pytest.mark.parametrize("bad", [
    b"\x12\x04\x0b\x00\x00\x00",            # wire type 3 inside Body
    b"\x12\x03\x0a\x05\x00",                # inner length past inner end
    b"\x12\x05\x0a\x03\x0a\x01\x87",        # truncated varint three levels down
    b"\x0a\x02\x10\x80",                    # truncated msg_type varint inside Header
])
def test_malformed_nested_raises_decodeerror(bad):
    with pytest.raises(DecodeError):
        decode_msg(bad)


def test_varint_limits():
    ten = b"\x08" + b"\xff" * 9 + b"\x01"  # max uint64 in exactly 10 bytes is fine
    assert pb.decode(("a", pb.UINT, None), ten) == {"a": 2 ** 64 - 1}
    assert pb.decode(("a", pb.INT, None), ten) == {"a": -1}
    assert pb.decode(("a", pb.UINT, None), b"\x08" + b"\xff" * 9 + b"\x7f") == {"a": 2 ** 64 - 1}


@settings(max_examples=400, deadline=2000)
@given(st.binary(max_size=64))
def test_fuzz_random_bytes_only_decodeerror(data):
    for fn in (decode_msg, decode_record):
        try:
            assert isinstance(fn(data), dict)
        except DecodeError:
            pass


@settings(max_examples=300, deadline=2000)
@given(st.data())
def test_fuzz_mutated_record_only_decodeerror(data):
    rec = bytearray(_a_record())
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(rec) - 1))
        rec[i] = data.draw(st.integers(0, 255))
    try:
        d = decode_record(rec)
        p = record_payload(d)
        if p is not None:
            decode_msg(p)
    except DecodeError:
        pass


# ---------------------------------------------------------------- MicroPython

_MP_PRELUDE = """
import gc
from ubinascii import hexlify, unhexlify
from firmware_slots.usp.codec import *
from firmware_slots.usp import schema
"""


def test_device_modules_compile_with_mpy_cross(tmp_path):
    pkg = _compile_device_modules(tmp_path) / "firmware_slots" / "usp"
    for name in DEVICE_MODULES:
        assert (pkg / (name[:-3] + ".mpy")).stat().st_size > 0


@requires_micropython
def test_micropython_encodes_what_protobuf_parses(subset):
    code = _MP_PRELUDE + """
for s in SAMPLES:
    print(hexlify(make_record('proto::agent', 'proto::ctrl', encode_msg(s))).decode())
""".replace("SAMPLES", repr(SAMPLES))
    lines = run_mp(code).split()
    assert len(lines) == len(SAMPLES)
    for line, sample in zip(lines, SAMPLES):
        rec = subset.Record.FromString(bytes.fromhex(line))
        assert (rec.to_id, rec.from_id, rec.version) == ("proto::agent", "proto::ctrl", "1.3")
        msg = subset.Msg.FromString(rec.no_session_context.payload)
        assert to_dict(msg) == canon(sample)


@requires_micropython
def test_micropython_decodes_protobuf_bytes(subset):
    blobs = []
    for s in SAMPLES:
        m = json_format.ParseDict(s, subset.Msg())
        r = subset.Record(version="1.4", to_id="\u00e4gent", from_id="c")
        r.no_session_context.payload = m.SerializeToString()
        blobs.append(r.SerializeToString().hex())
    code = _MP_PRELUDE + """
for h in BLOBS:
    r = decode_record(unhexlify(h), views=True)
    m = decode_msg(record_payload(r))
    r['no_session_context'] = len(r['no_session_context']['payload'])
    print(repr((r, m)))
""".replace("BLOBS", repr(blobs))
    lines = run_mp(code).splitlines()
    assert len(lines) == len(SAMPLES)
    for line, s, h in zip(lines, SAMPLES, blobs):
        rec, msg = ast.literal_eval(line)
        assert rec == {"version": "1.4", "to_id": "\u00e4gent", "from_id": "c",
                       "no_session_context": len(decode_record(bytes.fromhex(h))["no_session_context"]["payload"])}
        assert msg == canon(s)


@requires_micropython
def test_micropython_malformed_only_decodeerror():
    rec = _a_record()
    bad = [b"\x0b", b"\x0f", b"\x80" * 11, b"\x0a" + b"\xff" * 10 + b"\x01", b"\x0a\x05abc", b"\x0a\x03\x0a\x01\xff", b"\x00"]
    code = _MP_PRELUDE + """
rec = REC
other = 0
ok = 0
for n in range(len(rec)):
    for fn in (decode_record, decode_msg):
        try:
            fn(rec[:n])
            ok += 1
        except DecodeError:
            pass
        except Exception as e:
            other += 1
            print('OTHER', n, repr(e))
for b in BAD:
    try:
        decode_msg(b)
        print('ACCEPTED', b)
    except DecodeError:
        pass
print('done', other, ok)
""".replace("REC", repr(rec)).replace("BAD", repr(bad))
    out = run_mp(code)
    assert out.strip().splitlines()[-1].startswith("done 0 "), out
    ok_cpy = sum(_decodes_or_decodeerror(fn, rec[:n]) for n in range(len(rec)) for fn in (decode_record, decode_msg))
    assert out.split()[-1] == str(ok_cpy)


def _compile_device_modules(dest):
    """mpy-cross the device modules into dest/firmware_slots/usp/; return dest."""
    exe = mpy_cross_exe()
    if exe is None:
        pytest.skip("mpy-cross not installed")
    pkg = dest / "firmware_slots" / "usp"
    pkg.mkdir(parents=True)
    (dest / "firmware_slots" / "__init__.py").write_text("")
    for name in DEVICE_MODULES:
        out = pkg / (name[:-3] + ".mpy")
        p = subprocess.run([exe, "-o", str(out), os.path.join(USP_DIR, name)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    return dest


@requires_micropython
def test_micropython_small_heap_roundtrip(tmp_path):
    """From .mpy, the codec plus a GetSupportedDMResp Record round trip fit a 44 KiB heap.

    (36 KiB before the schema became compile-time constants. Frozen, the tables now live in
    flash: -3.2 KB of heap on the 32-bit build (bench/device_fit.py). Loaded from a .mpy on
    the 64-bit port the constant pool is materialised at load and shared sub-tables are
    copied per use: +6 KiB here. A product freezes; the .mpy path is for development.)"""
    dest = _compile_device_modules(tmp_path)
    rec = bytes(make_record("proto::agent", "proto::ctrl", encode_msg(SAMPLES[20])))
    code = """
import sys, gc, micropython
sys.path.insert(0, DEST)
from ubinascii import unhexlify
rec = unhexlify(HEX)
gc.collect()
base = gc.mem_alloc()
from firmware_slots.usp.codec import encode_msg, decode_msg, make_record, decode_record, record_payload
import firmware_slots.usp.codec as c
assert c.__file__.endswith('.mpy'), c.__file__
gc.collect()
loaded = gc.mem_alloc()
r = decode_record(rec, views=True)
m = decode_msg(record_payload(r))
gc.collect()
held = gc.mem_alloc()
out = make_record(r['to_id'], r['from_id'], encode_msg(m))
print(out == rec, len(rec), loaded - base, held - loaded)
""".replace("DEST", repr(str(dest))).replace("HEX", repr(rec.hex()))
    out = run_mp(code, heapsize="44k").split()
    assert out[0] == "True", out  # decode + re-encode on the device is byte-identical
    assert int(out[1]) == len(rec) > 400
    assert int(out[2]) < 28 * 1024, out  # codec resident size (64-bit unix port)
    assert int(out[3]) < 8 * 1024, out  # decoded dict tree held in RAM


def test_schema_kinds_are_pb_kinds():
    # schema.py repeats pb's kind numbers as private consts (so its tables fold to constants)
    for k in ("STR", "BYTES", "BOOL", "INT", "UINT", "FX32", "MSG", "MAP", "REP", "ONEOF"):
        assert getattr(schema, "_" + k) == getattr(pb, k), k
    assert (schema._RM, schema._OM, schema._RS) == (pb.MSG | pb.REP, pb.MSG | pb.ONEOF, pb.STR | pb.REP)
