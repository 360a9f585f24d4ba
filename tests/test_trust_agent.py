"""The USP agent under ControllerTrust: provisioned controllers act, others read the firmware
table and get 7006 for everything else (and no Controller row); Download() URLs with userinfo
are refused at Operate (7027); Username/Password never reach the journal or a report."""
import hashlib
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "device"))

from usp_loopback import AGENT_ID, CTRL_ID, T0, Controller, device, image, names, notifications  # noqa: E402

from firmware_slots.usp.agent import UspAgent  # noqa: E402
from firmware_slots.usp.platform import Platform  # noqa: E402

FW = "Device.DeviceInfo.FirmwareImage."
EVIL = "self::stranger"


def agent_for(controllers):
    flash, mgr = device("1.0")
    a = UspAgent(mgr, AGENT_ID, Platform(wall_s=T0), controllers=controllers)
    a.startup()
    a.take_outbox()
    return flash, mgr, a


def err(res):
    assert res[0] == "error", res
    return res[1]["err_code"], res[1]["err_msg"]


def test_unknown_controller_reads_but_gets_7006_for_the_rest(tmp_path):
    flash, mgr, a = agent_for([CTRL_ID])
    evil = Controller(a, EVIL)
    assert evil.values(FW + "1.Status") == {FW + "1.Status": "Active"}
    assert evil.values("Device.LocalAgent.EndpointID") == {"Device.LocalAgent.EndpointID": AGENT_ID}
    url = "file://" + str(tmp_path / "v2.img")
    (tmp_path / "v2.img").write_bytes(image("2.0"))
    code, msg = err(evil.operate(FW + "2.Download()", {"URL": url, "AutoActivate": "true"}))
    assert code == 7006 and "needs CommandEvent 'x'" in msg
    assert err(evil.operate("Device.Reboot()"))[0] == 7006
    assert err(evil.set([("Device.DeviceInfo.", {"BootFirmwareImage": FW + "1"})]))[0] == 7006
    assert err(evil.add("Device.LocalAgent.Subscription.", {"NotifType": "Event"}))[0] == 7006
    assert err(evil.call("delete", {"obj_paths": ["Device.LocalAgent.Controller.1."]}))[0] == 7006
    assert err(evil.call("get", {"param_paths": ["Device.LocalAgent.Controller."]}))[0] == 7006
    assert err(evil.call("get_supported_dm", {"obj_paths": ["Device."]}))[0] == 7006
    assert a.la.ctrls == {}  # a stranger leaves no row to fill the table with
    assert mgr.status(1) == "NoImage" and a.la.reqs == {}
    # the provisioned controller's Download() runs
    ok = Controller(a, CTRL_ID)
    r = ok.operate(FW + "2.Download()", {"URL": url, "AutoActivate": "false"})["operation_results"][0]
    assert r["req_obj_path"].startswith("Device.LocalAgent.Request.")
    a.poll(0)
    assert mgr.status(1) == "Available" and mgr.param(1, "Version") == "2.0"
    assert ok.values("Device.LocalAgent.ControllerNumberOfEntries") == {"Device.LocalAgent.ControllerNumberOfEntries": "1"}


def test_without_a_policy_everyone_keeps_full_access(tmp_path):
    flash, mgr, a = agent_for(None)
    evil = Controller(a, EVIL)
    assert evil.operate("Device.Reboot()")["operation_results"][0]["executed_command"] == "Device.Reboot()"


def test_userinfo_urls_refused_at_operate_and_long_urls_are_7005():
    flash, mgr, a = agent_for([CTRL_ID])
    c = Controller(a, CTRL_ID)

    def failure(url):
        r = c.operate(FW + "2.Download()", {"URL": url, "AutoActivate": "true"})["operation_results"][0]
        return r["cmd_failure"]["err_code"], r["cmd_failure"]["err_msg"]

    code, msg = failure("coap://user:pw@192.0.2.1/fw.img")
    assert code == 7027 and "userinfo" in msg and "pw" not in msg.replace("password", "")
    assert failure("http://a@h/x")[0] == 7027
    assert failure("coap://h/" + "x" * 300)[0] == 7005
    assert a.la.reqs == {} and mgr.status(1) == "NoImage"


def test_password_never_persisted_or_reported(tmp_path):
    flash, mgr, a = agent_for([CTRL_ID])
    c = Controller(a, CTRL_ID)
    c.subscribe("Event", "Device.LocalAgent.TransferComplete!")
    (tmp_path / "v2.img").write_bytes(image("2.0"))
    r = c.operate(FW + "2.Download()", {"URL": "file://" + str(tmp_path / "v2.img"), "AutoActivate": "false",
                                        "Username": "ops", "Password": "s3cret-pw"}, key="k1")
    req = r["operation_results"][0]["req_obj_path"]
    seen = str(c.values(req + "."))
    a.poll(0)
    notes = notifications(a)
    assert "TransferComplete!" in names(notes)
    assert mgr.status(1) == "Available"
    assert "s3cret-pw" not in seen and "s3cret-pw" not in str(notes)
    raw = bytearray(flash.sector_size * flash.sectors)  # every byte of the flash, journal included
    for s in range(flash.sectors):
        flash.readblocks(s, memoryview(raw)[s * flash.sector_size:(s + 1) * flash.sector_size])
    assert b"s3cret-pw" not in raw
    assert a.creds == {}  # gone from RAM once the transfer has them


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    import subprocess
    from firmware_slots.host import signing
    d = tmp_path_factory.mktemp("usp-keys")
    imgtool = os.path.join(os.path.dirname(sys.executable), "imgtool")
    for name in ("good", "other"):
        subprocess.run([imgtool, "keygen", "-k", str(d / (name + ".pem")), "-t", "ecdsa-p256"], check=True)
    return lambda name, version, sc: signing.sign(image(version), str(d / (name + ".pem")), version, sc), \
        signing.load_public(str(d / "good.pem"))


def trusted_device(signer):
    """A trust-key device running signed v1, its agent, and a provisioned controller
    subscribed to TransferComplete! and Download()'s OperationComplete."""
    from firmware_slots.sim.simdev import sim_device
    sign, key = signer
    flash, mgr = sim_device(slot_blocks=4, nslots=2, keys=[key])
    w = mgr.install(0)
    w.write(sign("good", "1.0.0", 1))
    w.finish()
    mgr.boot()
    mgr.confirm()
    a = UspAgent(mgr, AGENT_ID, Platform(wall_s=T0), controllers=[CTRL_ID])
    a.startup()
    a.take_outbox()
    c = Controller(a, CTRL_ID)
    c.subscribe("Event", "Device.LocalAgent.TransferComplete!")
    c.subscribe("OperationComplete", FW + "*.Download()")
    return sign, mgr, a, c


def test_download_of_signed_images_through_usp(signer, tmp_path):
    sign, mgr, a, c = trusted_device(signer)
    bad = bytearray(sign("good", "2.0.0", 2))
    bad[4200] ^= 1
    cases = ((sign("other", "2.0.0", 2), "untrusted image: image signed by an unknown key"),
             (bytes(bad), "untrusted image: image hash mismatch"),
             (image("2.0.0"), "untrusted image: not an MCUboot image"))
    for data, why in cases:
        (tmp_path / "x.img").write_bytes(data)
        r = c.operate(FW + "2.Download()", {"URL": "file://" + str(tmp_path / "x.img"), "AutoActivate": "false"})
        assert "req_obj_path" in r["operation_results"][0]
        a.poll(0)
        assert mgr.status(1) == "ValidationFailed" and mgr.info(1)["Error"].startswith(why)
        assert mgr.status(0) == "Active" and (mgr.boot_slot, mgr.lkg) == (0, 0)
    (tmp_path / "x.img").write_bytes(sign("good", "2.0.0", 2))
    c.operate(FW + "2.Download()", {"URL": "file://" + str(tmp_path / "x.img"), "AutoActivate": "false"})
    a.poll(0)
    assert mgr.status(1) == "Available" and mgr.param(1, "Version") == "2.0.0"


def test_refusal_is_reported_in_transfer_complete_and_operation_complete(signer, tmp_path):
    sign, mgr, a, c = trusted_device(signer)
    (tmp_path / "x.img").write_bytes(sign("other", "2.0.0", 2))
    c.operate(FW + "2.Download()", {"URL": "file://" + str(tmp_path / "x.img"), "AutoActivate": "false"})
    a.poll(0)
    notes = [n for _, n in notifications(a)]
    tc = [n["event"]["params"] for n in notes if n.get("event", {}).get("event_name") == "TransferComplete!"]
    oc = [n["oper_complete"] for n in notes if "oper_complete" in n]
    assert tc and "image signed by an unknown key" in tc[0]["FaultString"] and tc[0]["FaultCode"] != "0"
    assert oc and "image signed by an unknown key" in oc[0]["cmd_failure"]["err_msg"]


def test_controller_trust_objects_and_assigned_role():
    flash, mgr, a = agent_for([CTRL_ID, "self::ops"])
    c = Controller(a, CTRL_ID)
    v = c.values("Device.LocalAgent.ControllerTrust.")
    T = "Device.LocalAgent.ControllerTrust."
    assert v[T + "UntrustedRole"] == T + "Role.2" and v[T + "RoleNumberOfEntries"] == "2"
    assert v[T + "Role.1.Name"] == "Full Access" and v[T + "Role.2.Name"] == "Untrusted"
    assert v[T + "Role.1.Permission.1.Targets"] == "Device." and v[T + "Role.1.Permission.1.CommandEvent"] == "rwxn"
    assert v[T + "Role.2.Permission.1.CommandEvent"] == "----" and v[T + "Role.2.Permission.1.Param"] == "r---"
    assert c.values("Device.LocalAgent.Controller.1.AssignedRole") == {
        "Device.LocalAgent.Controller.1.AssignedRole": T + "Role.1"}
    # an EndpointID a trusted controller adds becomes trusted (provisioned by a trusted controller)
    later = Controller(a, "self::later")
    assert err(later.operate("Device.Reboot()"))[0] == 7006
    r = c.add("Device.LocalAgent.Controller.", {"EndpointID": "self::later"})
    inst = r["created_obj_results"][0]["oper_status"]["oper_success"]["instantiated_path"]
    assert c.values(inst + "AssignedRole") == {inst + "AssignedRole": T + "Role.1"}
    assert later.operate("Device.Reboot()")["operation_results"][0]["executed_command"] == "Device.Reboot()"
    # strangers may not even read the policy
    assert err(Controller(a, EVIL).call("get", {"param_paths": [T]}))[0] == 7006
    assert err(c.set([(T, {"UntrustedRole": T + "Role.1"})]))[0] in (7012, 7013, 7026)


def test_rows_made_while_the_door_was_open_are_not_trusted_once_a_policy_is_on():
    from firmware_slots.sim import simdev
    flash, mgr, a = agent_for(None)  # the first wave's open door: everyone has full access
    evil = Controller(a, EVIL)
    r = evil.add("Device.LocalAgent.Controller.", {"EndpointID": "self::friend"})  # persists both rows
    assert r["created_obj_results"][0]["oper_status"]["oper_success"]
    assert sorted(c["e"] for c in a.la.ctrls.values()) == sorted([EVIL, "self::friend"])
    # the board is provisioned: same journal, a policy naming only CTRL_ID
    mgr = simdev.reopen(flash)
    mgr.boot()
    a = UspAgent(mgr, AGENT_ID, Platform(wall_s=T0), controllers=[CTRL_ID])
    a.startup()
    a.take_outbox()
    assert len(a.la.ctrls) == 2  # the rows are still there, but vouch for nobody
    for eid in (EVIL, "self::friend"):
        assert err(Controller(a, eid).operate("Device.Reboot()"))[0] == 7006
    c = Controller(a, CTRL_ID)
    T = "Device.LocalAgent.ControllerTrust."
    roles = c.values("Device.LocalAgent.Controller.")
    got = {roles[k[:-len("EndpointID")] + "EndpointID"]: roles[k[:-len("EndpointID")] + "AssignedRole"]
           for k in roles if k.endswith(".EndpointID")}
    assert got == {EVIL: T + "Role.2", "self::friend": T + "Role.2", CTRL_ID: T + "Role.1"}
    # a row the provisioned controller adds now does vouch
    c.add("Device.LocalAgent.Controller.", {"EndpointID": "self::ops"})
    assert Controller(a, "self::ops").operate("Device.Reboot()")["operation_results"][0]["executed_command"] == "Device.Reboot()"


def test_a_controller_struck_from_the_profile_loses_its_rights_though_its_row_stays():
    from firmware_slots.sim import simdev
    flash, mgr, a = agent_for([CTRL_ID])
    c = Controller(a, CTRL_ID)
    c.subscribe("Event", "Device.Boot!")  # persistent: its Controller row is in the journal
    assert any(r["e"] == CTRL_ID for r in a.la.ctrls.values())
    mgr = simdev.reopen(flash)
    mgr.boot()
    a = UspAgent(mgr, AGENT_ID, Platform(wall_s=T0), controllers=["self::successor"])  # revoked
    a.startup()
    a.take_outbox()
    assert any(r["e"] == CTRL_ID for r in a.la.ctrls.values())  # the row (and subscription) remain
    assert err(Controller(a, CTRL_ID).operate("Device.Reboot()"))[0] == 7006
    assert Controller(a, "self::successor").operate("Device.Reboot()")["operation_results"][0][
        "executed_command"] == "Device.Reboot()"
