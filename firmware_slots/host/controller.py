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
DEFAULT_ID = "self::fwslots-controller"


class TransportError(Exception):
    """The agent could not be reached (no route, no answer, not a USP endpoint): exit 3."""


class UspFailure(Exception):
    """The agent answered, and refused: a USP Error, or one path's/object's failure: exit 1."""


# --- reading replies and building requests: the one place every host tool uses ---------
def error_of(msg):
    """The reply Msg's response body, or UspFailure when the agent sent a USP Error."""
    body = msg.get("body", {})
    if "error" in body:
        e = body["error"]
        detail = "; ".join("%s: %s" % (p.get("param_path", ""), p.get("err_msg", ""))
                           for p in e.get("param_errs", []))
        raise UspFailure("USP error %s: %s%s" % (e.get("err_code"), e.get("err_msg", ""),
                                                 " (" + detail + ")" if detail else ""))
    return body.get("response", {})


def get_params(msg, strict=True):
    """A GetResp Msg -> {full parameter path: value}; strict: a path's error is UspFailure
    (else that path is left out)."""
    out = {}
    for rp in error_of(msg)["get_resp"].get("req_path_results", []):
        if rp.get("err_code") and strict:
            raise UspFailure("USP error %s: %s (%s)" % (rp["err_code"], rp.get("err_msg", ""),
                                                        rp.get("requested_path")))
        for res in rp.get("resolved_path_results", []):
            for k, v in sorted(res.get("result_params", {}).items()):
                out[res["resolved_path"] + k] = v
    return out


def subscription(notif_type, refs, persistent=True):
    """The Add body of one Device.LocalAgent.Subscription. row."""
    return {"allow_partial": False, "create_objs": [{
        "obj_path": "Device.LocalAgent.Subscription.", "param_settings": [
            {"param": "Enable", "value": "true", "required": True},
            {"param": "NotifType", "value": notif_type, "required": True},
            {"param": "ReferenceList", "value": refs, "required": True},
            {"param": "Persistent", "value": "true" if persistent else "false", "required": True}]}]}


def added_path(msg, what):
    """An AddResp Msg of one object -> its instantiated path; UspFailure naming `what` else."""
    st = error_of(msg)["add_resp"]["created_obj_results"][0]["oper_status"]
    if "oper_failure" in st:
        f = st["oper_failure"]
        raise UspFailure("USP error %s: %s (%s)" % (f.get("err_code"), f.get("err_msg"), what))
    return st["oper_success"]["instantiated_path"]


def check_uri(uri):
    """A one-line reason `uri` cannot name a USP agent on the CoAP MTP, or None."""
    from urllib.parse import urlsplit
    u = urlsplit(uri)
    if u.scheme not in ("coap", "coaps"):
        return "%r is not a coap:// or coaps:// URI (e.g. coap://192.0.2.7:5683/usp)" % uri
    if not u.hostname:
        return "%r names no host (e.g. coap://192.0.2.7:5683/usp)" % uri
    return None


def _coap_failure(uri, e):
    import aiocoap.error as ae
    name = type(e).__name__
    if isinstance(e, ae.ResolutionError):
        return TransportError("cannot resolve the host of %s" % uri)
    if isinstance(e, ae.ConRetransmitsExceeded):
        return TransportError("no CoAP answer from %s (nothing listening there?)" % uri)
    if isinstance(e, ae.NetworkError):
        import os
        cause = e.__cause__
        why = os.strerror(cause.errno) if isinstance(cause, OSError) and cause.errno else (str(e) or name)
        return TransportError("cannot reach %s: %s (is the agent running on that host and port?)" % (uri, why))
    return TransportError("%s: %s %s" % (uri, name, e))


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


class BlockFile(resource.Resource):
    """A file served block-wise (RFC 7959 Block2, up to 1024-byte blocks) from memory."""

    def __init__(self, data, on_block=None):
        super().__init__()
        import hashlib
        self.data = data
        self.on_block = on_block
        self.etag = hashlib.sha256(data).digest()[:8]

    async def needs_blockwise_assembly(self, request):
        return False  # sliced here: each block is counted, and a resume at block N works

    async def render_get(self, request):
        from aiocoap.optiontypes import BlockOption
        b2 = request.opt.block2
        num, szx = (b2.block_number, min(b2.size_exponent, 6)) if b2 is not None else (0, 6)
        size = 1 << (szx + 4)
        if num * size >= len(self.data) and num:
            return aiocoap.Message(code=aiocoap.BAD_OPTION)
        chunk = self.data[num * size:(num + 1) * size]
        if self.on_block:
            self.on_block(num * size + len(chunk), len(self.data))
        m = aiocoap.Message(payload=chunk, etag=self.etag)
        m.opt.block2 = BlockOption.BlockwiseTuple(num, (num + 1) * size < len(self.data), szx)
        m.opt.size2 = len(self.data)
        return m


class UspCoapController:
    def __init__(self, endpoint_id=DEFAULT_ID, host="127.0.0.1", port=0, path="usp"):
        self.endpoint_id = endpoint_id
        self.host = host
        self.port = port
        self.path = path
        self.ctx = None
        self.inbox = asyncio.Queue()
        self.received = []           # every (record dict, reply_to) seen, in order
        self._ids = itertools.count(1)

    async def start(self):
        site = self.site = resource.Site()
        site.add_resource([".well-known", "core"],
                          resource.WKCResource(site.get_resources_as_linkheader))
        site.add_resource(self.path.split("/"), _UspResource(self))
        if not self.port:
            self.port = self._free_port()
        try:
            self.ctx = await aiocoap.Context.create_server_context(site, bind=(self.host, self.port))
        except OSError as e:
            raise TransportError("cannot bind the controller to %s:%d: %s" % (self.host, self.port, e.strerror or e))
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

    advertise = None  # host put in reply-to and image URLs when bound to a wildcard

    @property
    def public_host(self):
        h = self.advertise or (self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1")
        return "[%s]" % h if ":" in h else h

    @property
    def reply_to(self):
        return "coap://%s:%d/%s" % (self.public_host, self.port, self.path)

    def serve_bytes(self, name, data, on_block=None):
        """Serve `data` at /fw/<name> on our own endpoint, Block2 sliced here so every block
        served is seen (on_block(offset, total) drives a progress bar); -> its coap:// URL."""
        self.site.add_resource(["fw", name], BlockFile(data, on_block))
        return "coap://%s:%d/fw/%s" % (self.public_host, self.port, name)

    def _deliver(self, rec, reply_to, raw):
        self.received.append((rec, reply_to))
        self.inbox.put_nowait(rec)

    # -- sending ----------------------------------------------------------------------
    async def post_record(self, agent_uri, record, reply_to=None, content_format=CF_USP, timeout=None):
        """POST raw Record bytes; -> the CoAP response (2.04 expected, no payload).

        timeout bounds the whole exchange: aiocoap's own retransmissions (up to 93 s) are
        cancelled with it. Failures to reach the agent raise TransportError."""
        import aiocoap.error as ae
        bad = check_uri(agent_uri)
        if bad:
            raise TransportError(bad)
        sep = "&" if "?" in agent_uri else "?"
        uri = agent_uri + sep + "reply-to=" + (reply_to or self.reply_to)
        try:
            req = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=bytes(record))
        except ValueError as e:
            raise TransportError("%s: %s" % (agent_uri, e))
        if content_format is not None:
            req.opt.content_format = content_format
        pending = self.ctx.request(req)
        try:
            return await asyncio.wait_for(pending.response, timeout)
        except asyncio.TimeoutError:
            raise TransportError("no CoAP answer from %s within %g s" % (agent_uri, timeout))
        except ae.Error as e:
            raise _coap_failure(agent_uri, e)

    async def request(self, agent_uri, agent_id, kind, body, timeout=10):
        """Send one USP request Msg; -> the decoded reply Msg (response or error).

        The whole round trip (CoAP POST, 2.04, the agent's reply POST) ends within timeout."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        mid = "c%d" % next(self._ids)
        mtype = getattr(schema, kind.upper()) if kind != "get_supported_protocol" \
            else schema.GET_SUPPORTED_PROTO
        msg = codec.new_msg(mid, mtype, "request", kind, body)
        rec = codec.make_record(agent_id, self.endpoint_id, codec.encode_msg(msg))
        resp = await self.post_record(agent_uri, rec, timeout=timeout)
        if resp.code != aiocoap.CHANGED:
            hint = " (no USP endpoint at this path; ours serve /usp)" if resp.code == aiocoap.NOT_FOUND else ""
            raise TransportError("%s answered %s%s%s" % (agent_uri, resp.code, hint, (": " + resp.payload.decode(
                "utf-8", "replace")[:80]) if resp.payload else ""))
        try:
            return await self.expect(lambda m: m.get("header", {}).get("msg_id") == mid, max(0.0, end - loop.time()))
        except asyncio.TimeoutError:
            raise TransportError("%s took the request (2.04) but sent no USP reply to %s within %g s "
                                 "(wrong --agent-id, a --controller-id it does not know, or it cannot "
                                 "reach us: --bind)" % (agent_uri, self.reply_to, timeout))

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
