"""USP agent: messages with their exact TR-369 error codes, over a loopback controller."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "device"))

from usp_loopback import (AGENT_ID, CTRL_ID, T0, Controller, device, names,  # noqa: E402
                          notifications)

from firmware_slots.usp import codec, schema  # noqa: E402
from firmware_slots.usp.agent import BadRecord, UspAgent  # noqa: E402
from firmware_slots.usp.platform import Platform  # noqa: E402

FW = "Device.DeviceInfo.FirmwareImage."


@pytest.fixture
def dev():
    flash, mgr = device("1.0")
    plat = Platform(wall_s=T0)
    agent = UspAgent(mgr, AGENT_ID, plat)
    agent.startup()
    agent.take_outbox()
    return flash, mgr, agent, Controller(agent)


# ---------------------------------------------------------------- records
def test_undecodable_record_raises_badrecord(dev):
    agent = dev[2]
    with pytest.raises(BadRecord):
        agent.handle(b"\xff\xff\xff")
    assert issubclass(BadRecord, ValueError)


def test_record_for_another_endpoint_is_ignored(dev):
    c = dev[3]
    assert c.send("get", {"param_paths": ["Device."]}, to="os::someone-else") == []
    assert dev[2].controller_uri(CTRL_ID) is None  # not even remembered


def test_undecodable_msg_is_a_bad_record(dev):
    # R-COAP.13: a Record whose Msg cannot be decoded is not processable -> the MTP's 4.00
    agent = dev[2]
    rec = codec.make_record(AGENT_ID, CTRL_ID, b"\xff\xff")
    with pytest.raises(BadRecord):
        agent.handle(bytes(rec))


def test_reply_to_is_the_controller_address(dev):
    c = dev[3]
    c.get("Device.DeviceInfo.SoftwareVersion")
    assert dev[2].controller_uri(CTRL_ID) == "coap://192.0.2.10:5683/usp"
    inst = "Device.LocalAgent.Controller.1."
    r = c.add(inst + "MTP.", {"Protocol": "CoAP"})
    mtp = r["created_obj_results"][0]["oper_status"]["oper_success"]["instantiated_path"]
    c.set([(mtp + "CoAP.", {"Host": "198.51.100.7", "Port": "5684", "Path": "usp/ctl"})])
    assert dev[2].controller_uri(CTRL_ID) == "coap://198.51.100.7:5684/usp/ctl"


# ---------------------------------------------------------------- Get
def test_get_param_and_partial_and_wildcard(dev):
    c = dev[3]
    v = c.values("Device.DeviceInfo.")
    assert v["Device.DeviceInfo.SoftwareVersion"] == "1.0"
    assert v["Device.DeviceInfo.ActiveFirmwareImage"] == FW + "1"
    assert v["Device.DeviceInfo.BootFirmwareImage"] == FW + "1"
    assert v["Device.DeviceInfo.FirmwareImageNumberOfEntries"] == "2"
    assert v["Device.DeviceInfo.MaxNumberOfActivateTimeWindows"] == "5"
    assert v[FW + "1.Status"] == "Active" and v[FW + "2.Status"] == "NoImage"
    assert v[FW + "1.Available"] == "true" and v[FW + "1.Name"] == "app"
    assert c.values(FW + "*.Version") == {FW + "1.Version": "1.0", FW + "2.Version": ""}
    assert c.values(FW + "2.Alias") == {FW + "2.Alias": "cpe-2"}
    assert set(c.values(FW)) == set(c.values(FW + "*."))
    assert c.values("Device.LocalAgent.EndpointID") == {"Device.LocalAgent.EndpointID": AGENT_ID}


def test_get_max_depth(dev):
    c = dev[3]
    r = c.get("Device.DeviceInfo.", max_depth=1)[0]
    assert [x["resolved_path"] for x in r["resolved_path_results"]] == ["Device.DeviceInfo."]
    r = c.get("Device.", max_depth=2)[0]
    paths = [x["resolved_path"] for x in r["resolved_path_results"]]
    assert "Device.DeviceInfo." in paths and FW + "1." not in paths
    r = c.get("Device.", max_depth=0)[0]
    assert FW + "1." in [x["resolved_path"] for x in r["resolved_path_results"]]


def test_get_errors(dev):
    c = dev[3]
    r = c.get("Device.DeviceInfo.Nope", FW + "3.Status", "Bogus.", FW + "1.Download()", FW + "x.Name")
    assert [x.get("err_code") for x in r] == [7026, 7016, 7026, 7026, 7026]
    assert all(x["err_msg"] for x in r)


# ---------------------------------------------------------------- Set
def _oper(res, i=0):
    return res["updated_obj_results"][i]["oper_status"]


def test_set_boot_firmware_image_not_available_is_7012(dev):
    c = dev[3]
    kind, err = c.set([("Device.DeviceInfo.", {"BootFirmwareImage": FW + "2"})])
    assert kind == "error" and err["err_code"] == 7012
    assert err["param_errs"][0]["param_path"] == "Device.DeviceInfo.BootFirmwareImage"
    kind, err = c.set([("Device.DeviceInfo.", {"BootFirmwareImage": "Device.Nope.1"})])
    assert err["err_code"] == 7012
    assert c.values("Device.DeviceInfo.BootFirmwareImage") == {"Device.DeviceInfo.BootFirmwareImage": FW + "1"}


def test_set_codes(dev):
    c = dev[3]
    cases = [
        ((FW + "1.", {"Version": "9"}), 7013),
        ((FW + "1.", {"Available": "maybe"}), 7011),
        ((FW + "1.", {"Available": "false"}), 7012),  # the active image stays Available
        ((FW + "1.", {"NoSuch": "x"}), 7026),
        ((FW + "7.", {"Alias": "x"}), 7016),
        (("Device.Nope.", {"A": "x"}), 7026),
        (("Device.LocalAgent.Subscription.", {"Enable": "true"}), 7026),
    ]
    for obj, code in cases:
        kind, err = c.set([obj])
        assert kind == "error" and err["err_code"] == code, (obj, err)


def test_set_allow_partial_and_rollback(dev):
    c = dev[3]
    # allow_partial false: one failure undoes everything, even the valid Alias
    kind, err = c.set([(FW + "2.", {"Alias": "spare"}), (FW + "1.", {"Name": "x"})])
    assert kind == "error" and err["err_code"] == 7013
    assert c.values(FW + "2.Alias") == {FW + "2.Alias": "cpe-2"}
    # allow_partial true: per-object results
    r = c.set([(FW + "2.", {"Alias": "spare"}), (FW + "1.", {"Name": "x"})], allow_partial=True)
    ok = _oper(r, 0)["oper_success"]["updated_inst_results"][0]
    assert ok["affected_path"] == FW + "2." and ok["updated_params"] == {"Alias": "spare"}
    fail = _oper(r, 1)["oper_failure"]
    assert fail["err_code"] == 7013
    assert fail["updated_inst_failures"][0]["param_errs"][0]["param"] == "Name"
    assert c.values(FW + "2.Alias") == {FW + "2.Alias": "spare"}
    # non-required failures are per-parameter errors of a successful object
    r = c.set([(FW + "*.", [("Alias", "dup", False), ("Status", "Active", False)])], allow_partial=True)
    res = _oper(r)["oper_success"]["updated_inst_results"]
    assert res[0]["updated_params"] == {"Alias": "dup"}
    assert {e["param"]: e["err_code"] for e in res[1]["param_errs"]} == {"Alias": 7012, "Status": 7013}


def test_set_available_and_boot(dev):
    flash, mgr, agent, c = dev
    from usp_loopback import image
    import hashlib
    data = image("2.0")
    w = mgr.install(1, len(data), "SHA-256", hashlib.sha256(data).digest())
    w.write(data)
    w.finish()
    r = c.set([("Device.DeviceInfo.", {"BootFirmwareImage": FW + "2"})])
    assert "oper_success" in _oper(r)
    assert mgr.boot_slot == 1
    kind, err = c.set([(FW + "2.", {"Available": "false"})])
    assert err["err_code"] == 7012  # the boot image must stay Available


# ---------------------------------------------------------------- Add / Delete / GetInstances
def test_add_on_static_table_is_7019(dev):
    c = dev[3]
    kind, err = c.add(FW, {})
    assert kind == "error" and err["err_code"] == 7019
    kind, err = c.add("Device.LocalAgent.Request.", {})
    assert err["err_code"] == 7019
    kind, err = c.add(FW + "1.", {})
    assert err["err_code"] == 7026
    r = c.add(FW, {}, allow_partial=True)
    assert r["created_obj_results"][0]["oper_status"]["oper_failure"]["err_code"] == 7019


def test_subscription_add_get_delete(dev):
    c = dev[3]
    path = c.subscribe("ValueChange", "Device.DeviceInfo.BootFirmwareImage", ID="boot-watch")
    assert path == "Device.LocalAgent.Subscription.1."
    v = c.values(path)
    assert v[path + "Recipient"] == "Device.LocalAgent.Controller.1"
    assert v[path + "ID"] == "boot-watch" and v[path + "NotifType"] == "ValueChange"
    assert v[path + "CreationDate"] == "2023-11-14T22:13:20Z"
    kind, err = c.add("Device.LocalAgent.Subscription.", {"NotifType": "Sometimes"})
    assert err["err_code"] == 7012
    kind, err = c.add("Device.LocalAgent.Subscription.", {"ID": "boot-watch"})
    assert err["err_code"] == 7012  # ID is unique per recipient
    r = c.call("get_instances", {"obj_paths": ["Device.LocalAgent."], "first_level_only": True})
    got = [x["instantiated_obj_path"] for x in r["req_path_results"][0]["curr_insts"]]
    assert got == ["Device.LocalAgent.Controller.1.", "Device.LocalAgent.Subscription.1."]
    r = c.call("delete", {"obj_paths": [path]})
    assert r["deleted_obj_results"][0]["oper_status"]["oper_success"]["affected_paths"] == [path]
    r = c.call("delete", {"obj_paths": [path]})  # already gone: success, nothing affected
    assert r["deleted_obj_results"][0]["oper_status"]["oper_success"].get("affected_paths", []) == []
    kind, err = c.call("delete", {"obj_paths": [FW + "1."]})
    assert err["err_code"] == 7024
    kind, err = c.call("delete", {"obj_paths": ["Device.Nope.1."]})
    assert err["err_code"] == 7026


def test_get_instances(dev):
    c = dev[3]
    r = c.call("get_instances", {"obj_paths": [FW, "Device.DeviceInfo.", FW + "5.", "Device.X."]})
    res = r["req_path_results"]
    assert [x["instantiated_obj_path"] for x in res[0]["curr_insts"]] == [FW + "1.", FW + "2."]
    assert res[0]["curr_insts"][1]["unique_keys"] == {"Alias": "cpe-2"}
    assert len(res[1]["curr_insts"]) == 2
    assert res[2]["err_code"] == 7016 and res[3]["err_code"] == 7026


# ---------------------------------------------------------------- supported DM / protocol
def test_get_supported_dm(dev):
    c = dev[3]
    r = c.call("get_supported_dm", {"obj_paths": ["Device.DeviceInfo.FirmwareImage.{i}."],
                                    "return_commands": True, "return_events": True, "return_params": True})
    objs = r["req_obj_results"][0]["supported_objs"]
    assert [o["supported_obj_path"] for o in objs] == [FW + "{i}."]
    o = objs[0]
    assert o.get("access", 0) == 0 and o["is_multi_instance"]
    p = {x["param_name"]: (x.get("access", 0), x["value_type"]) for x in o["supported_params"]}
    assert p == {"Alias": (1, 8), "Name": (0, 8), "Version": (0, 8), "Available": (1, 2),
                 "Status": (0, 8), "BootFailureLog": (0, 8)}
    cmds = {x["command_name"]: x for x in o["supported_commands"]}
    assert cmds["Download()"]["command_type"] == 2
    assert cmds["Download()"]["input_arg_names"][:2] == ["URL", "AutoActivate"]
    assert "TimeWindow.{i}.Mode" in cmds["Activate()"]["input_arg_names"]
    r = c.call("get_supported_dm", {"obj_paths": ["Device."], "first_level_only": True, "return_events": True})
    objs = r["req_obj_results"][0]["supported_objs"]
    assert [o["supported_obj_path"] for o in objs] == ["Device.", "Device.DeviceInfo.", "Device.LocalAgent."]
    assert objs[0]["supported_events"][0]["event_name"] == "Boot!"
    assert "supported_params" not in objs[1] and "supported_commands" not in objs[0]
    r = c.call("get_supported_dm", {"obj_paths": ["Device.LocalAgent.", "Device.Nope."], "return_events": True})
    la = r["req_obj_results"][0]["supported_objs"]
    assert "Device.LocalAgent.Controller.{i}.MTP.{i}.CoAP." in [o["supported_obj_path"] for o in la]
    assert la[0]["supported_events"][0]["arg_names"][0] == "Command"
    assert r["req_obj_results"][1]["err_code"] == 7026


def test_get_supported_protocol(dev):
    r = dev[3].call("get_supported_protocol", {"controller_supported_protocol_versions": "1.3"})
    assert "1.3" in r["agent_supported_protocol_versions"].split(",")


# ---------------------------------------------------------------- Operate
def test_operate_errors(dev):
    flash, mgr, agent, c = dev
    kind, err = c.operate("Device.Nope()")
    assert kind == "error" and err["err_code"] == 7026
    kind, err = c.operate(FW + "9.Download()", {"URL": "file:///x", "AutoActivate": "true"})
    assert err["err_code"] == 7016

    def failure(cmd, args):
        r = c.operate(cmd, args)["operation_results"][0]
        return r["cmd_failure"]["err_code"]

    assert failure(FW + "2.Download()", {"AutoActivate": "true"}) == 7027
    assert failure(FW + "2.Download()", {"URL": "file:///x"}) == 7027
    assert failure(FW + "2.Download()", {"URL": "file:///x", "AutoActivate": "perhaps"}) == 7027
    assert failure(FW + "2.Download()", {"URL": "gopher://x", "AutoActivate": "true"}) == 7027
    assert failure(FW + "2.Download()", {"URL": "file:///x", "AutoActivate": "true",
                                         "CheckSumAlgorithm": "MD5"}) == 7027
    assert failure(FW + "2.Download()", {"URL": "file:///x", "AutoActivate": "true",
                                         "CheckSumAlgorithm": "SHA-256", "CheckSum": "abcd"}) == 7027
    assert failure("Device.Reboot()", {"Cause": "Sleepy"}) == 7027
    # the running image is protected: 7022 and nothing changes
    before = dict(mgr.meta.state[0])
    r = c.operate(FW + "1.Download()", {"URL": "file:///x", "AutoActivate": "true"})["operation_results"][0]
    assert r["cmd_failure"]["err_code"] == 7022 and "running" in r["cmd_failure"]["err_msg"]
    assert mgr.meta.state[0] == before and not agent.la.reqs
    # Activate of a row without an image
    assert failure(FW + "2.Activate()", {"TimeWindow.1.Start": "0", "TimeWindow.1.End": "10",
                                         "TimeWindow.1.Mode": "Immediately"}) == 7022


def test_activate_window_checks(dev):
    c = dev[3]

    def code(windows):
        args = {}
        for n, w in enumerate(windows, 1):
            for k, v in w.items():
                args["TimeWindow.%d.%s" % (n, k)] = str(v)
        r = c.operate(FW + "1.Activate()", args)["operation_results"][0]
        return r.get("cmd_failure", {}).get("err_code")

    win = lambda s, e, m="AnyTime": {"Start": s, "End": e, "Mode": m}  # noqa: E731
    assert code([]) == 7027
    assert code([win(0, 10), win(5, 20)]) == 7027            # overlap
    assert code([win(i * 10, i * 10 + 5) for i in range(6)]) == 7027  # > 5 windows
    assert code([{"Start": 0, "End": 10}]) == 7027            # Mode is mandatory
    assert code([win(0, 10, "Whenever")]) == 7027
    assert code([win(10, 10)]) == 7027
    assert code([dict(win(0, 10, "ConfirmationNeeded"), MaxRetries=11)]) == 7027
    assert code([win(i * 10, i * 10 + 10) for i in range(5)]) is None  # 5 adjacent windows are fine


def test_reboot_is_sync_and_resets_after_the_response(dev):
    flash, mgr, agent, c = dev
    r = c.operate("Device.Reboot()", {"Cause": "LocalReboot", "Reason": "maintenance"}, key="rb-1")
    res = r["operation_results"][0]
    assert res["executed_command"] == "Device.Reboot()" and "req_output_args" in res
    assert agent.platform.reboots == []
    from firmware_slots.usp.platform import Rebooting
    with pytest.raises(Rebooting):
        agent.poll(0)
    assert agent.platform.reboots == [("LocalReboot", "maintenance")]


def test_operate_send_resp_false_sends_nothing(dev):
    c = dev[3]
    assert c.send("operate", {"command": "Device.Reboot()", "send_resp": False}) == []


def test_unsupported_message_is_7001_and_responses_are_silent(dev):
    c = dev[3]
    res = c.send("notify", {"subscription_id": "x", "event": {"obj_path": "Device.", "event_name": "Boot!"}})
    assert res[0]["body"]["error"]["err_code"] == 7001
    msg = codec.new_msg("r1", schema.NOTIFY_RESP, "response", "notify_resp", {"subscription_id": "x"})
    assert dev[2].handle(bytes(codec.make_record(AGENT_ID, CTRL_ID, codec.encode_msg(msg)))) == []


def test_object_creation_and_value_change_notifications(dev):
    flash, mgr, agent, c = dev
    c.subscribe("ObjectCreation", "Device.LocalAgent.Subscription.")
    c.subscribe("ValueChange", FW + "*.Alias")
    agent.take_outbox()
    c.subscribe("Event", "Device.Boot!")
    notes = notifications(agent)
    assert names(notes) == ["ObjectCreation"]
    assert notes[0][1]["obj_creation"]["obj_path"] == "Device.LocalAgent.Subscription.3."
    c.set([(FW + "2.", {"Alias": "spare"})])
    notes = notifications(agent)
    assert names(notes) == ["ValueChange"]
    assert notes[0][1]["value_change"] == {"param_path": FW + "2.Alias", "param_value": "spare"}
    assert notes[0][0] == CTRL_ID


def test_subscription_ttl_expires(dev):
    flash, mgr, agent, c = dev
    c.subscribe("Event", "Device.Boot!", TimeToLive="60")
    agent.poll(0)
    assert len(agent.la.subs) == 1
    agent.platform.wall_s = T0 + 61
    agent.poll(0)
    assert agent.la.subs == {}
