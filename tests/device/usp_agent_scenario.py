"""Get / Set / Operate / Download+reboot through the USP agent; runs on CPython and MicroPython.

Prints one line per step: "name <sorted JSON>" so the two interpreters can be compared.
"""
import json

from firmware_slots.sim import simdev
from firmware_slots.usp import codec, schema
from firmware_slots.usp.agent import UspAgent
from firmware_slots.usp.platform import Platform, Rebooting

AGENT = "os::agent"
CTRL = "self::ctl"


def inspect(dev, length):
    buf = bytearray(32)
    dev.readblocks(0, buf, 0)
    head = bytes(buf).split(b"\n")[0].decode()
    return head.split(":")[1], head.split(":")[2]


def put(mgr, slot, version):
    data = ("FWIMG:app:%s\n" % version).encode() + b"x" * 3000
    w = mgr.install(slot, len(data))
    w.write(data)
    return w.finish()


def norm(o):
    # MicroPython's json.dumps has no sort_keys: sort maps here
    if isinstance(o, dict):
        return [[k, norm(o[k])] for k in sorted(o)]
    if isinstance(o, (list, tuple)):
        return [norm(x) for x in o]
    return o


class Ctl:
    def __init__(self, agent):
        self.agent = agent
        self.n = 0

    def __call__(self, kind, body, mt):
        self.n += 1
        msg = codec.new_msg("m%d" % self.n, mt, "request", kind, body)
        out = self.agent.handle(codec.make_record(AGENT, CTRL, codec.encode_msg(msg)), "coap://h:5683/c")
        return [codec.decode_msg(codec.record_payload(codec.decode_record(r))) for r in out]


def show(name, o):
    print(name, json.dumps(norm(o)))


def main(path):
    flash, mgr = simdev.sim_device(slot_blocks=2, inspect=inspect)
    put(mgr, 0, "1.0")
    mgr.boot()
    mgr.confirm()
    agent = UspAgent(mgr, AGENT, Platform(wall_s=1700000000))
    agent.startup()
    c = Ctl(agent)
    show("get", c("get", {"param_paths": ["Device.DeviceInfo.", "Device.DeviceInfo.FirmwareImage.*.Status",
                                          "Device.Bad"]}, schema.GET))
    show("set", c("set", {"allow_partial": True, "update_objs": [
        {"obj_path": "Device.DeviceInfo.FirmwareImage.2.", "param_settings": [
            {"param": "Alias", "value": "spare", "required": True}]},
        {"obj_path": "Device.DeviceInfo.", "param_settings": [
            {"param": "BootFirmwareImage", "value": "Device.DeviceInfo.FirmwareImage.2", "required": True}]}]},
        schema.SET))
    show("add", c("add", {"create_objs": [{"obj_path": "Device.LocalAgent.Subscription.", "param_settings": [
        {"param": "Enable", "value": "true"}, {"param": "NotifType", "value": "Event"},
        {"param": "ReferenceList", "value": "Device.Boot!,Device.LocalAgent.TransferComplete!"},
        {"param": "Persistent", "value": "true"}, {"param": "ID", "value": "s1"}]}]}, schema.ADD))
    c("add", {"create_objs": [{"obj_path": "Device.LocalAgent.Subscription.", "param_settings": [
        {"param": "Enable", "value": "true"}, {"param": "NotifType", "value": "OperationComplete"},
        {"param": "ReferenceList", "value": "Device.DeviceInfo.FirmwareImage."},
        {"param": "Persistent", "value": "true"}, {"param": "ID", "value": "s2"}]}]}, schema.ADD)
    show("operate", c("operate", {"command": "Device.DeviceInfo.FirmwareImage.2.Download()", "command_key": "k1",
                                  "send_resp": True, "input_args": {"URL": "file://" + path, "AutoActivate": "true"}},
                      schema.OPERATE))
    try:
        agent.poll(0)
        print("no reboot")
    except Rebooting as e:
        print("rebooting", str(e))
    mgr = simdev.reopen(flash)
    mgr.boot()
    mgr.confirm()
    agent = UspAgent(mgr, AGENT, Platform(wall_s=1700000100))
    agent.startup()
    notes = []
    for eid, rec in agent.take_outbox():
        n = codec.decode_msg(codec.record_payload(codec.decode_record(rec)))["body"]["request"]["notify"]
        if "event" in n:
            p = n["event"]["params"]
            notes.append([n["event"]["event_name"], p.get("FirmwareUpdated", p.get("FaultCode")),
                          p.get("CommandKey")])
        else:
            notes.append(["OperationComplete", n["oper_complete"]["command_key"]])
    show("after-boot", notes)
    show("get2", Ctl(agent)("get", {"param_paths": ["Device.DeviceInfo.SoftwareVersion",
                                                     "Device.DeviceInfo.ActiveFirmwareImage"]}, schema.GET))
