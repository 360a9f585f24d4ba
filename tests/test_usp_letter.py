"""TR-369 / TR-181 to the letter, at the agent (loopback controller, simulated flash):
unprocessable Records, header/body mismatch, session context, Reboot() without Reason,
TransferComplete! fault codes, NotifRetry re-delivery, search expressions in paths."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "device"))

from usp_loopback import (AGENT_ID, CTRL_ID, T0, Controller, device, image, names,  # noqa: E402
                          notifications, reboot)

from firmware_slots.usp import codec, notify, schema  # noqa: E402
from firmware_slots.usp.agent import BadRecord, UspAgent  # noqa: E402
from firmware_slots.usp.platform import Platform, Rebooting  # noqa: E402

FW = "Device.DeviceInfo.FirmwareImage."


@pytest.fixture
def dev():
    flash, mgr = device("1.0")
    agent = UspAgent(mgr, AGENT_ID, Platform(wall_s=T0))
    agent.startup()
    c = Controller(agent)
    agent.take_outbox()
    return flash, mgr, agent, c


def _state(c):
    return c.values("Device.DeviceInfo.")


# --- Records the agent cannot process: 4.00 at the MTP (R-COAP.13), nothing changes ---------

def test_unprocessable_records_raise_badrecord_and_change_nothing(dev):
    flash, mgr, agent, c = dev
    before = _state(c)
    bad = [codec.make_record(AGENT_ID, CTRL_ID, b""),                 # empty payload
           codec.make_record(AGENT_ID, CTRL_ID, b"\x0a\xff\xff"),     # Msg does not decode
           codec.make_record(AGENT_ID, "", b"\x0a\x00")]              # no from_id
    for rec in bad:
        with pytest.raises(BadRecord):
            agent.handle(bytes(rec), "coap://192.0.2.10:5683/usp")
    assert _state(c) == before and not agent.take_outbox()


def test_session_context_record_gets_disconnect_7106(dev):
    agent = dev[2]
    rec = codec.encode_record({"version": "1.3", "to_id": AGENT_ID, "from_id": CTRL_ID,
                               "session_context": {"session_id": 1, "sequence_id": 1, "expected_id": 1,
                                                   "payload": [b"x"]}})
    with pytest.raises(BadRecord) as ei:
        agent.handle(bytes(rec))
    (reply,) = ei.value.replies
    d = codec.decode_record(reply)
    assert d["to_id"] == CTRL_ID and d["from_id"] == AGENT_ID
    assert d["disconnect"]["reason_code"] == 7106 and "Session Context" in d["disconnect"]["reason"]


def test_header_that_disagrees_with_the_body_is_7001_and_not_carried_out(dev):
    flash, mgr, agent, c = dev
    body = {"update_objs": [{"obj_path": FW + "1.", "param_settings": [
        {"param": "Alias", "value": "hijacked", "required": True}]}]}
    msg = codec.new_msg("x1", schema.GET, "request", "set", body)   # header GET, body Set
    out = agent.handle(bytes(codec.make_record(AGENT_ID, CTRL_ID, codec.encode_msg(msg))))
    m = codec.decode_msg(codec.record_payload(codec.decode_record(out[0])))
    assert m["header"].get("msg_type", 0) == schema.ERROR and m["body"]["error"]["err_code"] == 7001
    assert c.values(FW + "1.Alias") == {FW + "1.Alias": "cpe-1"}
    # a matching header still works
    assert c.set([(FW + "1.", {"Alias": "mine"})])["updated_obj_results"]


# --- Reboot() without Reason -> Boot! Reason "Unknown" (TR-181 Reboot() Reason) -----------------

def test_reboot_without_reason_reports_unknown(dev):
    flash, mgr, agent, c = dev
    c.subscribe("Event", "Device.Boot!")
    c.operate("Device.Reboot()", {}, key="rb")
    with pytest.raises(Rebooting):
        agent.poll(0)
    assert agent.platform.reboots == [("RemoteReboot", "Unknown")]
    mgr2, agent2 = reboot(flash)
    (boot,) = [n for n in notifications(agent2) if "event" in n[1]]
    p = boot[1]["event"]["params"]
    assert p["Reason"] == "Unknown" and p["Cause"] == "RemoteReboot" and p["CommandKey"] == "rb"


# --- TransferComplete! FaultCode / FaultString say what failed ---------------------------------

def _failed_download(dev, url, digest, size=None):
    flash, mgr, agent, c = dev
    if not agent.la.subs:
        c.subscribe("Event", "Device.LocalAgent.TransferComplete!")
        c.subscribe("OperationComplete", FW + "*.Download()")
    args = {"URL": url, "AutoActivate": "false", "CheckSumAlgorithm": "SHA-256", "CheckSum": digest}
    if size:
        args["FileSize"] = str(size)
    c.operate(FW + "2.Download()", args, key="dl")
    agent.poll(0)
    notes = notifications(agent)
    assert names(notes) == ["OperationComplete", "TransferComplete!"], notes
    return notes[0][1]["oper_complete"]["cmd_failure"], notes[1][1]["event"]["params"]


def test_transfer_faults_name_what_failed(dev, tmp_path):
    import hashlib
    data = image("2.0")
    f = tmp_path / "fw.bin"
    f.write_bytes(data)
    good = hashlib.sha256(data).hexdigest()
    oc, tc = _failed_download(dev, "file://%s" % f, "00" * 32)
    assert tc["FaultCode"] == "7022" and tc["FaultString"].startswith("checksum mismatch: "), tc
    assert oc["err_code"] == 7022
    oc, tc = _failed_download(dev, "file://%s.missing" % f, good)
    assert tc["FaultCode"] == "7022" and tc["FaultString"].startswith("not found: "), tc
    mgr = dev[1]
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * (mgr.slot_size(1) + 1))
    oc, tc = _failed_download(dev, "file://%s" % big, good)
    assert tc["FaultCode"] == "7005" and tc["FaultString"].startswith("image too large: "), tc
    assert oc["err_code"] == 7005
    v = dev[3].values("Device.DeviceInfo.")
    assert v["Device.DeviceInfo.ActiveFirmwareImage"] == FW + "1" and v[FW + "1.Status"] == "Active"


def test_fault_table_for_transfer_errors():
    from firmware_slots import transfer
    from firmware_slots.usp.commands import fault
    assert fault(transfer.TransferError("coap://h/x: 4.04", "not found")) == (7022, "not found: coap://h/x: 4.04")
    assert fault(transfer.TransferError("x", transfer.os_why(OSError(111, "refused"))))[1].startswith(
        "connection refused: ")
    assert fault(transfer.TransferError("x", transfer.os_why(OSError(110, "t"))))[1].startswith("timeout: ")
    assert len(fault(transfer.TransferError("y" * 400))[1]) == 256


# --- NotifRetry: re-sent until the NotifyResp, per the TR-369 retry interval, until expiry ------

def test_notif_retry_resends_until_acked_and_stops_at_expiration(dev):
    flash, mgr, agent, c = dev
    pl = agent.platform
    c.subscribe("ObjectCreation", "Device.LocalAgent.Controller.1.BootParameter.",
                NotifRetry="true", NotifExpiration="100")
    agent.take_outbox()
    c.add("Device.LocalAgent.Controller.1.BootParameter.", {"ParameterName": "Device.DeviceInfo."})
    first = notifications(agent)
    assert len(first) == 1 and first[0][1]["send_resp"] is True
    mid = codec.decode_msg(codec.record_payload(codec.decode_record(agent.retry[0][2])))["header"]["msg_id"]
    # first retry: uniform in [m, m*k] = [5, 10] s after the first attempt
    pl.wall_s = T0 + 4
    agent.poll(0)
    assert notifications(agent) == []
    pl.wall_s = T0 + 10
    agent.poll(0)
    assert len(notifications(agent)) == 1
    # the second waits [10, 20] s
    pl.wall_s += 9
    agent.poll(0)
    assert notifications(agent) == []
    pl.wall_s += 11
    agent.poll(0)
    assert len(notifications(agent)) == 1
    # NotifyResp: no more retries
    resp = codec.new_msg(mid, schema.NOTIFY_RESP, "response", "notify_resp",
                         {"subscription_id": first[0][1]["subscription_id"]})
    assert agent.handle(bytes(codec.make_record(AGENT_ID, CTRL_ID, codec.encode_msg(resp)))) == []
    assert agent.retry == []
    # a second notification, never acked, stops after NotifExpiration (100 s)
    c.add("Device.LocalAgent.Controller.1.BootParameter.", {"ParameterName": "Device.LocalAgent."})
    agent.take_outbox()
    t = pl.wall_s
    sent = 0
    for s in range(1, 400):
        pl.wall_s = t + s
        agent.poll(0)
        sent += len(agent.take_outbox())
    assert agent.retry == [] and 2 <= sent <= 5, sent


def test_retry_wait_bounds():
    for n in range(1, 14):
        w = notify.retry_wait(n, 5, 2000)
        k = min(n, 10)
        assert 5 * 2 ** (k - 1) <= w <= 5 * 2 ** k


def test_retry_table_is_bounded(dev):
    flash, mgr, agent, c = dev
    sub = {"id": "s", "nr": True, "ne": 0}
    for i in range(notify.RETRY_MAX + 3):
        notify.emit(agent, sub, CTRL_ID, "event", {"obj_path": "Device.", "event_name": "Boot!"})
    assert len(agent.retry) == notify.RETRY_MAX and agent.retry_dropped == 3


# --- search expressions ------------------------------------------------------------------------

def test_search_expressions(dev):
    c = dev[3]

    def rows(path):
        (r,) = c.get(path)
        assert not r.get("err_code"), r
        return sorted((x["resolved_path"], tuple(sorted(x["result_params"].items())))
                      for x in r.get("resolved_path_results", []))

    assert rows(FW + '[Status=="Active"].Version') == [(FW + "1.", (("Version", "1.0"),))]
    assert rows(FW + '[Status!="Active"].Status') == [(FW + "2.", (("Status", "NoImage"),))]
    assert rows(FW + '[Status=="Active"&&Available==true].Name') == [(FW + "1.", (("Name", "app"),))]
    assert rows(FW + '[Status=="Active"&&Available==false].Name') == []
    assert rows(FW + '[Version=="1.0"].')[0][0] == FW + "1."
    assert [r[0] for r in rows("Device.LocalAgent.Controller.[Enable==true].EndpointID")] == [
        "Device.LocalAgent.Controller.1."]
    c.add("Device.LocalAgent.Subscription.", {"NotifType": "Event", "ReferenceList": "Device.Boot!",
                                              "TimeToLive": "50"})
    c.add("Device.LocalAgent.Subscription.", {"NotifType": "Event", "ReferenceList": "Device.Boot!",
                                              "TimeToLive": "500"})
    sub = "Device.LocalAgent.Subscription."
    assert [r[0] for r in rows(sub + "[TimeToLive>100].TimeToLive")] == [sub + "2."]
    assert [r[0] for r in rows(sub + "[TimeToLive<=50].TimeToLive")] == [sub + "1."]
    assert [r[0] for r in rows(sub + "[TimeToLive>=50&&TimeToLive<500].ID")] == [sub + "1."]
    assert len(rows(sub + "[TimeToLive!=7].ID")) == 2
    errs = {FW + '[Nope=="x"].Name': 7026, FW + '[Status<"x"].Name': 7008,
            FW + '[Status=="Active".Name': 7008, FW + "[Status].Name": 7008}
    for p, code in errs.items():
        (r,) = c.get(p)
        assert r.get("err_code") == code, (p, r)
    # a search in a Set selects the rows it writes
    r = c.set([(FW + '[Status=="Active"].', {"Alias": "live"})])
    assert c.values(FW + "1.Alias") == {FW + "1.Alias": "live"}
    assert c.values(FW + "2.Alias") == {FW + "2.Alias": "cpe-2"}


# --- first contact costs no flash write and cannot lock the Controller table ------------------

def test_new_controllers_and_reply_tos_cost_no_writes_and_never_fill_the_table(dev):
    flash, mgr, agent, c = dev
    from firmware_slots.datamodel.localagent import MAX_CONTROLLERS
    c.subscribe("Event", "Device.Boot!")  # the loopback controller's row is now referred to
    flash.reset_counters()
    for n in range(3 * MAX_CONTROLLERS):
        other = Controller(agent, eid="self::passer-by-%d" % n, reply_to="coap://192.0.2.%d:5683/usp" % n)
        assert other.values("Device.DeviceInfo.SoftwareVersion")
    assert sum(flash.programs) == 0 and sum(flash.erases) == 0
    assert len(agent.la.ctrls) == MAX_CONTROLLERS
    eids = [r["e"] for r in agent.la.ctrls.values()]
    assert c.eid in eids and "self::passer-by-%d" % (3 * MAX_CONTROLLERS - 1) in eids
    # a newcomer can still subscribe (its row is made on first contact, then kept)
    late = Controller(agent, eid="self::late", reply_to="coap://192.0.2.99:5683/usp")
    path = late.subscribe("Event", "Device.Boot!")
    assert late.values(path + "Recipient")[path + "Recipient"].startswith("Device.LocalAgent.Controller.")
    # and what was made in RAM is on flash after that write
    mgr2, agent2 = reboot(flash)
    assert {r["e"] for r in agent2.la.ctrls.values()} >= {c.eid, "self::late"}


def test_notif_retry_interval_is_the_controllers(dev):
    flash, mgr, agent, c = dev
    pl = agent.platform
    ct = "Device.LocalAgent.Controller.1."
    v = c.values(ct)
    assert v[ct + "USPNotifRetryMinimumWaitInterval"] == "5" and v[ct + "USPNotifRetryIntervalMultiplier"] == "2000"
    for name, bad in (("USPNotifRetryMinimumWaitInterval", "0"), ("USPNotifRetryIntervalMultiplier", "999")):
        r = c.call("set", {"update_objs": [{"obj_path": ct, "param_settings": [
            {"param": name, "value": bad, "required": True}]}]})
        assert r[0] == "error" and r[1]["err_code"] in (7012, 7004), r  # out of TR-181's range
    c.set([(ct, {"USPNotifRetryMinimumWaitInterval": "20", "USPNotifRetryIntervalMultiplier": "1500"})])
    c.subscribe("ObjectCreation", "Device.LocalAgent.Controller.1.BootParameter.", NotifRetry="true")
    agent.take_outbox()
    c.add("Device.LocalAgent.Controller.1.BootParameter.", {"ParameterName": "Device.DeviceInfo."})
    agent.take_outbox()
    first = agent.retry[0][4] - agent.retry[0][3]
    assert 20 <= first <= 30, first  # [m, m*k]
    pl.wall_s = T0 + 19
    agent.poll(0)
    assert not agent.take_outbox()
    pl.wall_s = T0 + 31
    agent.poll(0)
    assert len(agent.take_outbox()) == 1
    mgr2, agent2 = reboot(flash)  # the interval is persisted with the Controller row
    assert Controller(agent2).values(ct + "USPNotifRetryMinimumWaitInterval") == {
        ct + "USPNotifRetryMinimumWaitInterval": "20"}


def test_endless_passers_by_never_exhaust_the_state_budget(dev):
    # rows that give way take their bytes with them: the 200th newcomer fits like the first
    flash, mgr, agent, c = dev
    for n in range(200):
        other = Controller(agent, eid="self::passer-%03d-%s" % (n, "x" * 40),
                           reply_to="coap://192.0.2.%d:%d/usp" % (n % 250, 5000 + n))
        assert other.values("Device.DeviceInfo.SoftwareVersion"), n
    assert agent.la.left() > 1000 and len(agent.la.ctrls) <= 4
