"""A small USP controller over the TR-369 CoAP binding, built on aiocoap (host only).

    async with UspCoapController("self::ctl", port=0) as ctl:
        resp = await ctl.get("coap://127.0.0.1:5683/usp", "os::0044FF-dev1",
                             ["Device.DeviceInfo."])
        # resp: the decoded reply Msg (dict, firmware_slots.usp.codec layout)

It serves its own USP endpoint resource (rt="bbf.usp.endpoint";if="bbf.usp.c") on an
aiocoap server context: the agent answers our POST with 2.04 at once and delivers its
USP reply as a new POST to our reply-to URI, which lands in `inbox`. Notifications
(Boot!, TransferComplete!, ...) arrive the same way; `expect()` waits for one.
"""
import asyncio
import itertools

import aiocoap
import aiocoap.resource as resource

from firmware_slots.usp import codec, schema

CF_USP = 42


class _UspResource(resource.Resource):
    def __init__(self, ctl):
        super().__init__()
        self.ctl = ctl
        self.rt = "bbf.usp.endpoint"
        self.if_ = "bbf.usp.c"

    def get_link_description(self):
        d = super().get_link_description()
        d["rt"] = "bbf.usp.endpoint"
        d["if"] = "bbf.usp.c"
        return d

    async def render_post(self, request):
        if request.opt.content_format != CF_USP:
            return aiocoap.Message(code=aiocoap.UNSUPPORTED_CONTENT_FORMAT)
        reply_to = None
        for q in request.opt.uri_query:
            if q.startswith("reply-to="):
                reply_to = q[len("reply-to="):]
        try:
            rec = codec.decode_record(request.payload)
        except codec.DecodeError:
            return aiocoap.Message(code=aiocoap.BAD_REQUEST)
        self.ctl._deliver(rec, reply_to, request.payload)
        return aiocoap.Message(code=aiocoap.CHANGED)


class UspCoapController:
    def __init__(self, endpoint_id="self::fwslots-controller", host="127.0.0.1", port=0, path="usp"):
        self.endpoint_id = endpoint_id
        self.host = host
        self.port = port
        self.path = path
        self.ctx = None
        self.inbox = asyncio.Queue()
        self.received = []           # every (record dict, reply_to) seen, in order
        self._ids = itertools.count(1)

    async def start(self):
        site = resource.Site()
        site.add_resource([".well-known", "core"],
                          resource.WKCResource(site.get_resources_as_linkheader))
        site.add_resource(self.path.split("/"), _UspResource(self))
        if not self.port:
            self.port = self._free_port()
        self.ctx = await aiocoap.Context.create_server_context(site, bind=(self.host, self.port))
        return self

    def _free_port(self):
        import socket
        s = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((self.host, 0))
            return s.getsockname()[1]
        finally:
            s.close()

    async def close(self):
        if self.ctx is not None:
            await self.ctx.shutdown()
            self.ctx = None

    async def __aenter__(self):
        return await self.start()

    async def __aexit__(self, *exc):
        await self.close()

    @property
    def reply_to(self):
        return "coap://%s:%d/%s" % (self.host, self.port, self.path)

    def _deliver(self, rec, reply_to, raw):
        self.received.append((rec, reply_to))
        self.inbox.put_nowait(rec)

    # -- sending ----------------------------------------------------------------------
    async def post_record(self, agent_uri, record, reply_to=None, content_format=CF_USP):
        """POST raw Record bytes; -> the CoAP response (2.04 expected, no payload)."""
        sep = "&" if "?" in agent_uri else "?"
        uri = agent_uri + sep + "reply-to=" + (reply_to or self.reply_to)
        req = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=bytes(record))
        if content_format is not None:
            req.opt.content_format = content_format
        return await self.ctx.request(req).response

    async def request(self, agent_uri, agent_id, kind, body, timeout=10):
        """Send one USP request Msg; -> the decoded reply Msg (response or error)."""
        mid = "c%d" % next(self._ids)
        mtype = getattr(schema, kind.upper()) if kind != "get_supported_protocol" \
            else schema.GET_SUPPORTED_PROTO
        msg = codec.new_msg(mid, mtype, "request", kind, body)
        rec = codec.make_record(agent_id, self.endpoint_id, codec.encode_msg(msg))
        resp = await self.post_record(agent_uri, rec)
        if resp.code != aiocoap.CHANGED:
            raise RuntimeError("agent answered %s: %r" % (resp.code, resp.payload))
        return await self.expect(lambda m: m.get("header", {}).get("msg_id") == mid, timeout)

    async def expect(self, match=None, timeout=10):
        """Next reply/notification Msg (decoded) for which match(msg) is true."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            left = end - loop.time()
            if left <= 0:
                raise asyncio.TimeoutError("no matching USP message")
            rec = await asyncio.wait_for(self.inbox.get(), left)
            payload = codec.record_payload(rec)
            if payload is None:
                continue
            m = codec.decode_msg(payload)
            if match is None or match(m):
                return m

    async def get(self, agent_uri, agent_id, paths, max_depth=0, timeout=10):
        body = {"param_paths": list(paths)}
        if max_depth:
            body["max_depth"] = max_depth
        return await self.request(agent_uri, agent_id, "get", body, timeout)

    async def operate(self, agent_uri, agent_id, command, args, key="", send_resp=True, timeout=10):
        body = {"command": command, "command_key": key, "send_resp": send_resp,
                "input_args": dict(args)}
        return await self.request(agent_uri, agent_id, "operate", body, timeout)


async def _amain(argv):
    import argparse
    import json
    p = argparse.ArgumentParser(description="USP Get over the TR-369 CoAP binding")
    p.add_argument("agent_uri")
    p.add_argument("agent_id")
    p.add_argument("paths", nargs="+")
    p.add_argument("--eid", default="self::fwslots-controller")
    p.add_argument("--port", type=int, default=0)
    a = p.parse_args(argv)
    async with UspCoapController(a.eid, port=a.port) as ctl:
        m = await ctl.get(a.agent_uri, a.agent_id, a.paths)
        print(json.dumps(m, default=lambda o: bytes(o).hex(), indent=1))


if __name__ == "__main__":
    import sys
    asyncio.run(_amain(sys.argv[1:]))
