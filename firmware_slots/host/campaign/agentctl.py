"""Many USP exchanges at once over ONE aiocoap controller endpoint.

FleetController is host/controller.py's UspCoapController (same Record building, same
POST + reply-to core) with the one thing a fleet needs on top: replies are matched to
their waiting request by msg_id as they arrive, instead of one shared queue that a
single caller drains, and Notify requests go to `on_notify(endpoint_id, msg)`. Every
exchange is bounded by `timeout` (a rebooting agent does not answer the CON at all).
"""
import asyncio
import collections

from firmware_slots.host.controller import UspCoapController, UspFailure, error_of
from firmware_slots.host.demo_virtual import params, subscribe
from firmware_slots.host.usp_cli import describe
from firmware_slots.usp import codec

FW = "Device.DeviceInfo.FirmwareImage."
EARLY = 512   # replies that beat their waiter (the 2.04 is processed after the reply POST)

__all__ = ["FleetController", "UspFailure", "describe", "params", "subscribe", "FW"]


class FleetController(UspCoapController):
    def __init__(self, endpoint_id, host="127.0.0.1", port=0, on_notify=None):
        super().__init__(endpoint_id, host, port)
        self.on_notify = on_notify
        self.waiters = []
        self.early = collections.deque(maxlen=EARLY)

    def _deliver(self, rec, reply_to, raw):
        payload = codec.record_payload(rec)
        if payload is None:
            return
        try:
            m = codec.decode_msg(payload)
        except codec.DecodeError:
            return
        for w in self.waiters:
            if not w[1].done() and w[0](m):
                w[1].set_result(m)
                return
        if describe(m) is not None:
            if self.on_notify:
                self.on_notify(rec.get("from_id", ""), m)
            return
        self.early.append(m)

    async def expect(self, match=None, timeout=10):
        match = match or (lambda m: True)
        for m in list(self.early):
            if match(m):
                self.early.remove(m)
                return m
        w = [match, asyncio.get_running_loop().create_future()]
        self.waiters.append(w)
        try:
            return await asyncio.wait_for(w[1], timeout)
        finally:
            self.waiters.remove(w)

    async def call(self, uri, eid, kind, body, timeout=10):
        """One request, bounded as a whole; -> the reply Msg; UspFailure on a USP Error."""
        m = await asyncio.wait_for(self.request(uri, eid, kind, body, timeout), timeout)
        error_of(m)
        return m

    async def get_params(self, uri, eid, paths, timeout=10):
        return params(await self.call(uri, eid, "get", {"param_paths": list(paths)}, timeout))

    async def operate(self, uri, eid, command, args, key="", send_resp=True, timeout=10):
        m = await self.call(uri, eid, "operate", {"command": command, "command_key": key,
                                                  "send_resp": send_resp, "input_args": dict(args)}, timeout)
        r = m["body"]["response"]["operate_resp"]["operation_results"][0]
        if "cmd_failure" in r:
            f = r["cmd_failure"]
            raise UspFailure("USP error %s: %s" % (f.get("err_code"), f.get("err_msg", "")))
        return r

    async def set_param(self, uri, eid, obj, param, value, timeout=10):
        body = {"allow_partial": False, "update_objs": [{"obj_path": obj, "param_settings": [
            {"param": param, "value": value, "required": True}]}]}
        m = await self.call(uri, eid, "set", body, timeout)
        r = m["body"]["response"]["set_resp"]["updated_obj_results"][0]["oper_status"]
        if "oper_failure" in r:
            f = r["oper_failure"]
            raise UspFailure("USP error %s: %s" % (f.get("err_code"), f.get("err_msg", "")))
        return r
