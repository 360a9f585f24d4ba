"""Loopback controller for the USP agent tests: builds Records with the device codec,
passes them to agent.handle() and decodes the replies. Also the simulated device with
images carrying a tiny manifest ("FWIMG:name:version\\n" + payload)."""
import hashlib

from firmware_slots.sim import simdev
from firmware_slots.usp import codec, schema
from firmware_slots.usp.agent import UspAgent
from firmware_slots.usp.platform import Platform, Rebooting

AGENT_ID = "os::0044FF-fwslots-1"
CTRL_ID = "self::controller-1"
REPLY_TO = "coap://192.0.2.10:5683/usp"
T0 = 1700000000


def inspect(dev, length):
    buf = bytearray(64)
    dev.readblocks(0, buf, 0)
    head = bytes(buf).split(b"\n")[0]
    if not head.startswith(b"FWIMG:"):
        raise ValueError("no FWIMG manifest")
    _, name, version = head.decode().split(":")
    return name, version


def image(version, size=6000):
    head = ("FWIMG:app:%s\n" % version).encode()
    body = hashlib.sha256(version.encode()).digest() * (size // 32 + 1)
    return head + body[:size - len(head)]


def device(version="1.0", nslots=2):
    """(flash, mgr) with `version` installed in slot 0, booted and confirmed."""
    flash, mgr = simdev.sim_device(slot_blocks=4, nslots=nslots, inspect=inspect)
    data = image(version)
    w = mgr.install(0, len(data), "SHA-256", hashlib.sha256(data).digest())
    w.write(data)
    w.finish()
    mgr.boot()
    mgr.confirm()
    return flash, mgr


def reboot(flash, platform=None, confirm=True):
    """What a reset does: a new SlotManager, the boot stub's mgr.boot(), a new agent."""
    mgr = simdev.reopen(flash)
    mgr.boot()
    if confirm:
        mgr.confirm()
    agent = UspAgent(mgr, AGENT_ID, platform or Platform(wall_s=T0 + 100))
    agent.startup()
    return mgr, agent


class Controller:
    def __init__(self, agent, eid=CTRL_ID, reply_to=REPLY_TO):
        self.agent = agent
        self.eid = eid
        self.reply_to = reply_to
        self.n = 0

    def send(self, kind, body, to=AGENT_ID):
        self.n += 1
        mt = getattr(schema, kind.upper()) if kind != "get_supported_protocol" else schema.GET_SUPPORTED_PROTO
        msg = codec.new_msg("m%d" % self.n, mt, "request", kind, body)
        rec = codec.make_record(to, self.eid, codec.encode_msg(msg))
        out = self.agent.handle(bytes(rec), self.reply_to)
        res = []
        for r in out:
            d = codec.decode_record(r)
            assert d["to_id"] == self.eid and d["from_id"] == AGENT_ID
            res.append(codec.decode_msg(codec.record_payload(d)))
        return res

    def call(self, kind, body):
        """The single response body (dict), or ('error', error dict)."""
        res = self.send(kind, body)
        assert len(res) == 1, res
        mid, mtype, part, k, payload = codec.split_msg(res[0])
        assert mid == "m%d" % self.n
        if part == "error":
            return "error", payload
        assert k == kind + "_resp", (k, kind)
        return payload

    def get(self, *paths, **kw):
        body = {"param_paths": list(paths)}
        body.update(kw)
        return self.call("get", body)["req_path_results"]

    def values(self, path):
        """{full param path: value} for one Get path."""
        r = self.get(path)[0]
        assert not r.get("err_code"), r
        out = {}
        for rp in r.get("resolved_path_results", []):
            for k, v in rp.get("result_params", {}).items():
                out[rp["resolved_path"] + k] = v
        return out

    def set(self, objs, allow_partial=False):
        """objs: [(obj_path, {param: value} or [(param, value, required)])]."""
        uo = []
        for path, ps in objs:
            if isinstance(ps, dict):
                ps = [(k, v, True) for k, v in ps.items()]
            uo.append({"obj_path": path, "param_settings": [
                {"param": p, "value": v, "required": r} for p, v, r in ps]})
        return self.call("set", {"allow_partial": allow_partial, "update_objs": uo})

    def add(self, path, params=None, allow_partial=False):
        ps = [{"param": k, "value": v, "required": True} for k, v in (params or {}).items()]
        return self.call("add", {"allow_partial": allow_partial,
                                 "create_objs": [{"obj_path": path, "param_settings": ps}]})

    def subscribe(self, notif_type, refs, persistent=True, **extra):
        p = {"Enable": "true", "NotifType": notif_type, "ReferenceList": refs,
             "Persistent": "true" if persistent else "false"}
        p.update(extra)
        r = self.add("Device.LocalAgent.Subscription.", p)
        ok = r["created_obj_results"][0]["oper_status"]["oper_success"]
        return ok["instantiated_path"]

    def operate(self, command, args=None, key="", send_resp=True):
        return self.call("operate", {"command": command, "command_key": key, "send_resp": send_resp,
                                     "input_args": args or {}})


def notifications(agent):
    """[(eid, notify dict)] drained from the agent's outbox."""
    out = []
    for eid, rec in agent.take_outbox():
        d = codec.decode_record(rec)
        assert d["to_id"] == eid and d["from_id"] == AGENT_ID
        mid, mtype, part, kind, n = codec.split_msg(codec.decode_msg(codec.record_payload(d)))
        assert mtype == schema.NOTIFY and kind == "notify"
        out.append((eid, n))
    return out


def names(notes):
    """Short labels: 'OperationComplete', 'TransferComplete!', 'Boot!', 'ValueChange'..."""
    out = []
    for eid, n in notes:
        if "oper_complete" in n:
            out.append("OperationComplete")
        elif "event" in n:
            out.append(n["event"]["event_name"])
        elif "value_change" in n:
            out.append("ValueChange")
        elif "obj_creation" in n:
            out.append("ObjectCreation")
        elif "obj_deletion" in n:
            out.append("ObjectDeletion")
    return out


__all__ = ["Rebooting"]
