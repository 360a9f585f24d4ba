"""TP-469 firmware sequences end to end on simulated flash, across simulated reboots."""
import hashlib
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "device"))

from usp_loopback import (AGENT_ID, CTRL_ID, T0, Controller, device, image, names,  # noqa: E402
                          notifications, reboot)

from firmware_slots.usp.agent import UspAgent  # noqa: E402
from firmware_slots.usp.platform import Platform, Rebooting  # noqa: E402

FW = "Device.DeviceInfo.FirmwareImage."


def setup(tmp_path, version="2.0", data=None):
    flash, mgr = device("1.0")
    agent = UspAgent(mgr, AGENT_ID, Platform(wall_s=T0))
    agent.startup()
    c = Controller(agent)
    c.subscribe("OperationComplete", FW + "*.Download()," + FW + "*.Activate()")
    c.subscribe("Event", "Device.LocalAgent.TransferComplete!,Device.Boot!")
    c.subscribe("ValueChange", "Device.DeviceInfo.SoftwareVersion")
    c.add("Device.LocalAgent.Controller.1.BootParameter.",
          {"Enable": "true", "ParameterName": "Device.DeviceInfo.SoftwareVersion"})
    agent.take_outbox()
    data = data if data is not None else image(version)
    path = tmp_path / "fw.bin"
    path.write_bytes(data)
    return flash, mgr, agent, c, "file://%s" % path, hashlib.sha256(data).hexdigest()


def download(c, url, digest, auto="true", key="dl-1"):
    r = c.operate(FW + "2.Download()", {"URL": url, "AutoActivate": auto, "CheckSumAlgorithm": "SHA-256",
                                        "CheckSum": digest}, key=key)
    res = r["operation_results"][0]
    assert res["req_obj_path"] == "Device.LocalAgent.Request.1", res
    return res


def test_download_autoactivate_reboot_reports_in_order(tmp_path):
    flash, mgr, agent, c, url, digest = setup(tmp_path)
    download(c, url, digest)
    assert names(notifications(agent)) == []
    v = c.values("Device.LocalAgent.Request.1.")
    assert v["Device.LocalAgent.Request.1.Command"] == FW + "2.Download()"
    assert v["Device.LocalAgent.Request.1.Status"] == "Requested"
    assert v["Device.LocalAgent.Request.1.Originator"] == CTRL_ID
    with pytest.raises(Rebooting):
        agent.poll(0)
    assert agent.platform.reboots == [("RemoteReboot", "Download() with AutoActivate")]
    assert agent.outbox == []  # everything is reported after the boot
    # reboot: the boot stub tries slot 1; the agent waits for the application's confirmation
    mgr2, agent2 = reboot(flash, confirm=False)
    assert mgr2.running == 1
    assert agent2.outbox == []
    mgr2.confirm()
    agent2.poll(0)
    notes = notifications(agent2)
    assert names(notes) == ["OperationComplete", "TransferComplete!", "Boot!", "ValueChange"]
    oc = notes[0][1]["oper_complete"]
    assert oc["obj_path"] == FW + "2." and oc["command_name"] == "Download()" and oc["command_key"] == "dl-1"
    assert "req_output_args" in oc
    tc = notes[1][1]["event"]
    assert tc["obj_path"] == "Device.LocalAgent." and tc["params"]["FaultCode"] == "0"
    assert tc["params"]["CommandKey"] == "dl-1" and tc["params"]["TransferURL"] == url
    assert tc["params"]["Affected"] == FW + "2" and tc["params"]["CheckSum"] == digest
    assert tc["params"]["StartTime"].endswith("Z")
    boot = notes[2][1]["event"]
    assert boot["obj_path"] == "Device." and boot["params"]["FirmwareUpdated"] == "true"
    assert boot["params"]["CommandKey"] == "dl-1" and boot["params"]["Cause"] == "RemoteReboot"
    assert json.loads(boot["params"]["ParameterMap"]) == {"Device.DeviceInfo.SoftwareVersion": "2.0"}
    assert notes[3][1]["value_change"]["param_value"] == "2.0"
    assert all(eid == CTRL_ID for eid, n in notes)
    c2 = Controller(agent2)
    v = c2.values("Device.DeviceInfo.")
    assert v["Device.DeviceInfo.SoftwareVersion"] == "2.0"
    assert v["Device.DeviceInfo.ActiveFirmwareImage"] == FW + "2"
    assert v["Device.DeviceInfo.BootFirmwareImage"] == FW + "2"
    assert v[FW + "1.Status"] == "Available" and v[FW + "2.Status"] == "Active"
    assert agent2.la.reqs == {}
    assert agent2.controller_uri(CTRL_ID) == "coap://192.0.2.10:5683/usp"  # persisted reply-to
    # the next plain boot reports nothing stale
    mgr3, agent3 = reboot(flash)
    boot = notifications(agent3)
    assert names(boot) == ["Boot!"]
    assert boot[0][1]["event"]["params"]["FirmwareUpdated"] == "false"
    assert boot[0][1]["event"]["params"]["CommandKey"] == ""


def test_bad_checksum_reports_failure_and_changes_nothing(tmp_path):
    flash, mgr, agent, c, url, digest = setup(tmp_path)
    download(c, url, "00" * 32)
    agent.poll(0)  # no reboot
    notes = notifications(agent)
    assert names(notes) == ["OperationComplete", "TransferComplete!"]
    oc = notes[0][1]["oper_complete"]
    assert oc["cmd_failure"]["err_code"] == 7022 and "mismatch" in oc["cmd_failure"]["err_msg"]
    tc = notes[1][1]["event"]["params"]
    assert tc["FaultCode"] == "7022" and "SHA-256 mismatch" in tc["FaultString"]
    assert agent.platform.reboots == []
    v = c.values("Device.DeviceInfo.")
    assert v["Device.DeviceInfo.BootFirmwareImage"] == FW + "1"
    assert v["Device.DeviceInfo.ActiveFirmwareImage"] == FW + "1"
    assert v[FW + "2.Status"] == "ValidationFailed" and v[FW + "2.Available"] == "false"
    assert agent.la.reqs == {}


def test_missing_file_is_a_download_failure(tmp_path):
    flash, mgr, agent, c, url, digest = setup(tmp_path)
    download(c, url + ".missing", digest)
    agent.poll(0)
    notes = notifications(agent)
    assert names(notes) == ["OperationComplete", "TransferComplete!"]
    assert notes[1][1]["event"]["params"]["FaultCode"] == "7022"
    assert c.values(FW + "2.Status") == {FW + "2.Status": "DownloadFailed"}


def test_image_that_never_confirms_falls_back(tmp_path):
    flash, mgr, agent, c, url, digest = setup(tmp_path, "2.0-broken")
    download(c, url, digest, key="dl-bad")
    with pytest.raises(Rebooting):
        agent.poll(0)
    # the new image boots max_attempts times, its application never confirms
    for attempt in range(mgr.max_attempts):
        m, a = reboot(flash, confirm=False)
        assert m.running == 1
        a.poll(0)
        assert a.outbox == []
    m, a = reboot(flash, confirm=False)  # fallback to the last-known-good image (already confirmed)
    assert m.running == 0
    notes = notifications(a)
    assert names(notes) == ["OperationComplete", "TransferComplete!", "Boot!"]
    oc = notes[0][1]["oper_complete"]
    assert oc["cmd_failure"]["err_code"] == 7022 and "ActivationFailed" in oc["cmd_failure"]["err_msg"]
    assert notes[1][1]["event"]["params"]["FaultCode"] == "0"  # the transfer itself worked
    boot = notes[2][1]["event"]["params"]
    assert boot["FirmwareUpdated"] == "false" and boot["CommandKey"] == "dl-bad"
    v = Controller(a).values("Device.DeviceInfo.")
    assert v["Device.DeviceInfo.BootFirmwareImage"] == FW + "2"  # a fallback never changes it
    assert v["Device.DeviceInfo.ActiveFirmwareImage"] == FW + "1"
    assert v["Device.DeviceInfo.SoftwareVersion"] == "1.0"
    assert v[FW + "2.Status"] == "ActivationFailed" and "not confirmed" in v[FW + "2.BootFailureLog"]


def test_download_without_autoactivate_then_activate_with_windows(tmp_path):
    flash, mgr, agent, c, url, digest = setup(tmp_path)
    download(c, url, digest, auto="false")
    agent.poll(0)
    notes = notifications(agent)
    assert names(notes) == ["OperationComplete", "TransferComplete!"]
    assert c.values(FW + "2.Status") == {FW + "2.Status": "Available"}
    # WhenIdle in [10, 20), then Immediately in [30, 40)
    args = {"TimeWindow.1.Start": "10", "TimeWindow.1.End": "20", "TimeWindow.1.Mode": "WhenIdle",
            "TimeWindow.2.Start": "30", "TimeWindow.2.End": "40", "TimeWindow.2.Mode": "Immediately"}
    r = c.operate(FW + "2.Activate()", args, key="act-1")["operation_results"][0]
    assert r["req_obj_path"] == "Device.LocalAgent.Request.2"
    p = agent.platform
    p.idle = False
    for t in (0, 5, 12, 19):
        p.wall_s = T0 + t
        agent.poll(0)
    assert p.reboots == [] and mgr.boot_slot == 0
    assert c.values("Device.LocalAgent.Request.2.Status")["Device.LocalAgent.Request.2.Status"] == "Active"
    p.idle = True
    p.wall_s = T0 + 25  # between windows: nothing
    agent.poll(0)
    p.wall_s = T0 + 31
    with pytest.raises(Rebooting):
        agent.poll(0)
    assert mgr.boot_slot == 1
    m, a = reboot(flash)
    notes = notifications(a)
    assert names(notes) == ["OperationComplete", "Boot!", "ValueChange"]
    assert notes[0][1]["oper_complete"]["command_name"] == "Activate()"
    assert notes[1][1]["event"]["params"]["FirmwareUpdated"] == "true"
    assert notes[1][1]["event"]["params"]["CommandKey"] == "act-1"


def test_when_idle_activates_when_idle(tmp_path):
    flash, mgr, agent, c, url, digest = setup(tmp_path)
    download(c, url, digest, auto="false")
    agent.poll(0)
    c.operate(FW + "2.Activate()", {"TimeWindow.1.Start": "0", "TimeWindow.1.End": "100",
                                    "TimeWindow.1.Mode": "WhenIdle"})
    p = agent.platform
    p.idle = False
    agent.poll(0)
    assert p.reboots == []
    p.idle = True
    with pytest.raises(Rebooting):
        agent.poll(0)


def test_confirmation_needed_with_max_retries(tmp_path):
    flash, mgr, agent, c, url, digest = setup(tmp_path)
    download(c, url, digest, auto="false")
    agent.poll(0)
    agent.take_outbox()
    c.operate(FW + "2.Activate()", {"TimeWindow.1.Start": "0", "TimeWindow.1.End": "1000",
                                    "TimeWindow.1.Mode": "ConfirmationNeeded", "TimeWindow.1.MaxRetries": "1",
                                    "TimeWindow.1.UserMessage": "update now?"}, key="ask")
    p = agent.platform
    p.answers = [False, False]
    for t in (0, 5, 10, 15, 20, 30):
        p.wall_s = T0 + t
        agent.poll(0)
    assert len(p.asked) == 2 and p.asked[0]["UserMessage"] == "update now?"
    assert p.reboots == [] and mgr.boot_slot == 0
    notes = notifications(agent)
    assert names(notes) == ["OperationComplete"]
    assert notes[0][1]["oper_complete"]["cmd_failure"]["err_code"] == 7022
    # a second request that gets its confirmation on the retry
    c.operate(FW + "2.Activate()", {"TimeWindow.1.Start": "0", "TimeWindow.1.End": "1000",
                                    "TimeWindow.1.Mode": "ConfirmationNeeded", "TimeWindow.1.MaxRetries": "2"})
    p.answers = [False, True]
    p.wall_s = T0 + 100
    agent.poll(0)
    p.wall_s = T0 + 111
    with pytest.raises(Rebooting):
        agent.poll(0)
    assert mgr.boot_slot == 1


def test_persistent_subscriptions_survive_reboot(tmp_path):
    flash, mgr, agent, c, url, digest = setup(tmp_path)
    c.subscribe("ObjectDeletion", "Device.LocalAgent.Subscription.", persistent=False)
    assert len(agent.la.subs) == 4
    m, a = reboot(flash)
    c2 = Controller(a)
    subs = c2.values("Device.LocalAgent.Subscription.")
    types = sorted(v for k, v in subs.items() if k.endswith("NotifType"))
    assert types == ["Event", "OperationComplete", "ValueChange"]
    # instance numbers are not reused after the reboot
    assert c2.subscribe("Event", "Device.Boot!", persistent=False) == "Device.LocalAgent.Subscription.5."


def test_reboot_command_boot_event(tmp_path):
    flash, mgr, agent, c, url, digest = setup(tmp_path)
    c.operate("Device.Reboot()", {"Reason": "because"}, key="rk")
    with pytest.raises(Rebooting):
        agent.poll(0)
    m, a = reboot(flash)
    notes = notifications(a)
    assert names(notes) == ["Boot!"]
    p = notes[0][1]["event"]["params"]
    assert (p["Cause"], p["Reason"], p["CommandKey"], p["FirmwareUpdated"]) == (
        "RemoteReboot", "because", "rk", "false")


def test_download_interrupted_before_it_started_runs_after_reboot(tmp_path):
    flash, mgr, agent, c, url, digest = setup(tmp_path)
    download(c, url, digest, auto="false")
    m, a = reboot(flash)  # power cut before poll() ran the download
    assert names(notifications(a)) == ["Boot!"]  # the request is still pending
    assert a.la.reqs[1]["x"]["rs"] == 1
    a.poll(0)
    notes = notifications(a)
    assert names(notes) == ["OperationComplete", "TransferComplete!"]
    p = notes[1][1]["event"]["params"]
    assert p["FaultCode"] == "0" and p["CheckSum"] == digest
    assert m.status(1) == "Available" and a.la.reqs == {}


def test_download_cut_by_power_loss_resumes_from_checkpoint(tmp_path):
    from firmware_slots.sim.norsim import FaultPlan, PowerCut
    data = image("2.0", size=14000)
    flash, mgr, agent, c, url, digest = setup(tmp_path, data=data)
    download(c, url, digest, auto="false")
    flash.arm(FaultPlan(flash.ops + 8, "torn", seed=3))  # mid-image, after a checkpoint
    with pytest.raises(PowerCut):
        agent.poll(0)
    flash.power_on()
    m, a = reboot(flash)
    assert names(notifications(a)) == ["Boot!"]
    resumed_at = m.download_progress(1)["o"]
    assert resumed_at >= 4096  # at least one sector programmed before the cut
    before = flash.bytes_programmed
    a.poll(0)
    notes = notifications(a)
    assert names(notes) == ["OperationComplete", "TransferComplete!"]
    assert notes[1][1]["event"]["params"]["FaultCode"] == "0"
    assert m.verify(1) and m.info(1)["SHA256"] == digest
    # only the rest of the image was programmed again, not the whole of it
    assert flash.bytes_programmed - before < len(data) - resumed_at + 4096


def test_download_that_keeps_getting_interrupted_is_reported_failed(tmp_path):
    flash, mgr, agent, c, url, digest = setup(tmp_path)
    download(c, url, digest, auto="false")
    for n in range(3):
        m, a = reboot(flash)
        assert names(notifications(a)) == ["Boot!"]
    m, a = reboot(flash)
    notes = notifications(a)
    assert names(notes) == ["OperationComplete", "TransferComplete!", "Boot!"]
    assert "interrupted by 3 reboots" in notes[0][1]["oper_complete"]["cmd_failure"]["err_msg"]
    assert a.la.reqs == {}


def test_download_into_boot_or_lkg_slot_refused(tmp_path):
    flash, mgr, agent, c, url, digest = setup(tmp_path)
    download(c, url, digest, auto="false")
    agent.poll(0)
    c.set([("Device.DeviceInfo.", {"BootFirmwareImage": FW + "2"})])
    r = c.operate(FW + "2.Download()", {"URL": url, "AutoActivate": "false"})["operation_results"][0]
    assert r["cmd_failure"]["err_code"] == 7022 and "boot" in r["cmd_failure"]["err_msg"]
