"""UspAgent: USP Records in, Records out; transport-independent.

    agent = UspAgent(mgr, "os::012345-dev1", Platform())   # mgr after the boot stub's mgr.boot()
    agent.startup()                     # post-boot notifications into agent.outbox
    replies = agent.handle(record_bytes, reply_to="coap://10.0.0.2:5683/usp")
    agent.poll(now_ms)                  # runs Download(), Activate() windows, Reboot()
    agent.coop = True; agent.step_tasks()   # a loop that serves USP while Download() pulls
    for eid, rec in agent.take_outbox(): send rec to agent.controller_uri(eid)

What the device pays: Get, Operate and GetSupportedProtocol are handled here; Set/Add/
Delete (edit.py), GetInstances/GetSupportedDM (discover.py) and the commands (commands.py,
with the transfer code) are imported on first use, so an agent that is only read pays
for none of them; notify.py only once a Subscription exists (no subscription: nothing
to notify, no retry queue).

The MTP sends handle()'s replies before calling poll(): a Reboot() or an activation
resets the device from inside poll() (platform.reboot), after its OperateResp is out.
Notifications of a boot into an unconfirmed (trial) image are held until the image is
confirmed (mgr.confirm(), done by the application): if it never is, the boot stub
falls back and the agent of the fallback image reports the failure instead.

Controller trust (datamodel/trust.py): with `controllers` (provisioned EndpointIDs; the
board profile's "trust"."controllers") every request is checked against the sender's
roles before it runs, 7006 when denied; unknown senders get the untrusted role and no
Controller row, so every row is one a trusted controller made, and its EndpointID is trusted
too ("added by a trusted controller", TR-181 ControllerTrust). controllers=None keeps the first wave's open door (full access for all).
Over coaps a sender is also trusted when its verified certificate names it (handle()'s
san_uris, TR-369); the row made for it is marked, so over plain CoAP its EndpointID alone
is still a stranger's.
"""

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from firmware_slots.core.state import A_BOOT_CAUSE, A_PREV_VERSION, TEXT_MAX, clip
from firmware_slots.usp import codec
from firmware_slots.datamodel import dm  # by attribute: no global per name in this module's dict

PROTOCOL_VERSIONS = "1.0,1.1,1.2,1.3"


class BadRecord(ValueError):
    """A Record this agent cannot process (the CoAP MTP answers 4.00 Bad Request, R-COAP.13).
    `replies`: Records still to send to the sender (a DisconnectRecord for session context)."""
    replies = ()


# What the agent says to a Record or Msg it cannot process (TR-369 1.4 error codes;
# where TR-369 names none, the BBF reference agent obuspa's choice):
#   not a Record / Msg does not decode / empty payload    4.00 at the MTP, nothing else
#   session_context Record (not supported here)           4.00 + DisconnectRecord 7106
#   header msg_type disagrees with the body (GET + Set)   Error 7001 (obuspa: "inconsistent")
E_SESSION_CONTEXT = 7106   # Use of Session Context is not allowed or not supported
# request kind -> Header.MsgType (schema.py's numbers); a response's type is its request's
# + 1 (NotifyResp: 16). One ROM tuple: no dict of response types on the heap.
_REQ_TYPES = const(("get", 1, "set", 4, "operate", 6, "add", 8, "delete", 10, "get_supported_dm", 12,
                    "get_instances", 14, "get_supported_protocol", 17, "register", 19, "deregister", 21,
                    "notify", 3))
_ERROR = const(0)         # schema.ERROR
_NOTIFY_RESP = const(16)  # schema.NOTIFY_RESP


def _msg_type_of(part, kind):
    """Header.MsgType the body (part, kind) needs; -1 for a body this codec does not know."""
    if part == "error":
        return _ERROR
    if kind is None:
        return -1
    if part == "response":
        if kind == "notify_resp":
            return _NOTIFY_RESP
        kind = kind[:-5]
    for j in range(0, len(_REQ_TYPES), 2):
        if _REQ_TYPES[j] == kind:
            return _REQ_TYPES[j + 1] + (part == "response")
    return -1


def _notify(agent):
    """usp.notify while a Subscription exists, else None: with no subscription there is
    nothing to notify, so the Get path never loads it (retries need a subscription's Notify)."""
    if not agent.la.subs:
        return None
    from firmware_slots.usp import notify
    return notify


class UspAgent:
    def __init__(self, mgr, endpoint_id, platform=None, store=None, controllers=None):
        self.mgr = mgr
        self.controllers = controllers
        self.roles = (1,)  # the sender's ControllerTrust roles, set per message
        self.endpoint_id = endpoint_id
        # the backends' classes are imported here, once: no module global for each
        from firmware_slots.datamodel.firmware import Firmware
        from firmware_slots.datamodel.localagent import LocalAgent
        if platform is None:
            from firmware_slots.usp.platform import Platform
            platform = Platform()
        self.platform = platform
        self.fw = Firmware(mgr, platform)
        self.la = LocalAgent(mgr.meta, endpoint_id, platform)
        self.la.role_of = self.role_of
        fw, la = self.fw, self.la
        self.model = dm.Model(fw, la)
        self.outbox = []
        self.seq = 0
        self.boot_s = int(platform.now_s())
        self.vc = {}
        self.tries = {}
        self.reboot_due = None
        self.boot_pending = False
        self.current_eid = None
        self.creds = {}  # Request.{i} -> (Username, Password) of a pending Download(): RAM only
        self.tasks = {}               # request -> Download() in flight (commands.start_download)
        self.task_gen = 0             # bumped whenever a transfer starts or ends (MTP re-polls)
        self.coop = False             # True: the MTP's loop steps downloads (step_tasks)
        self.retry = []               # Notifies awaiting their NotifyResp (notify.py: NotifRetry)
        self.retry_dropped = 0

    def role_of(self, eid, san_uris=None):
        """eid's ControllerTrust role: full access without a policy; under one, provisioned
        (the profile's list, or a row a trusted controller added: vouched), or named by the
        verified certificate of this coaps session (san_uris, TR-369), else untrusted."""
        if self.controllers is None:
            return 1
        if eid == self.current_eid:
            return self.roles[0]  # the message being handled: what it was established with
        from firmware_slots.datamodel import trust
        if self.la.vouched(eid):
            return trust.FULL_ACCESS
        return trust.roles_for(eid, self.controllers, san_uris)[0]

    # -- lifecycle ------------------------------------------------------------------
    def startup(self):
        """Queue OperationComplete / TransferComplete! / Boot! for this boot (once confirmed)."""
        self.boot_pending = True
        self._boot_report()
        n = _notify(self)
        if n:
            n.value_changes(self)  # first look: snapshot for ValueChange subscriptions

    def _boot_report(self):
        mgr = self.mgr
        if mgr.running < 0 or mgr.running != mgr.lkg:
            return  # trial boot: wait for the application's mgr.confirm()
        self.boot_pending = False
        if self.la.reqs:  # requests persisted across the reboot (none: nothing to load)
            from firmware_slots.usp import commands
            commands.after_boot(self)
        meta = mgr.meta
        b = meta.agent(A_BOOT_CAUSE) or {}
        cur = self.fw.software_version()
        kept = clip(cur, TEXT_MAX)  # what the journal keeps of it (a platform's version may be longer)
        pv = meta.agent(A_PREV_VERSION)
        updated = pv is not None and kept != pv and mgr.running == mgr.boot_slot
        notify = _notify(self)
        if notify:
            args = {"CommandKey": b.get("k", ""), "Cause": b.get("c", "LocalReboot"),
                    "Reason": b.get("r", ""), "FirmwareUpdated": dm.to_str(updated)}
            notify.event(self, "Device.", "Boot!", args, notify.boot_parameters)
        if notify and pv is not None and kept != pv:
            for s, eid in notify.subscribers(self, "ValueChange", "Device.DeviceInfo.SoftwareVersion"):
                notify.emit(self, s, eid, "value_change",
                            {"param_path": "Device.DeviceInfo.SoftwareVersion", "param_value": cur})
        ch = {}
        if meta.agent(A_BOOT_CAUSE) is not None:
            ch[A_BOOT_CAUSE] = None
        if pv != kept:
            ch[A_PREV_VERSION] = kept
        if ch:
            meta.agent_update(ch)

    def poll(self, now_ms=None):
        """Timers and deferred work; may call platform.reboot()."""
        if self.boot_pending:
            self._boot_report()
        if self.reboot_due:
            cause, reason = self.reboot_due
            self.reboot_due = None
            self.platform.reboot(cause, reason)
        now_s = self.platform.now_s()
        la = self.la
        for i in sorted(la.reqs) if la.reqs else ():  # every loop turn: no list while idle
            r = la.reqs.get(i)
            if r is None:
                continue
            x = r.get("x", {})
            if x.get("ph", 0) != 0:
                continue
            if x.get("t") == "d":
                if i in self.tasks:
                    continue  # in flight: stepped by step_tasks()
                from firmware_slots.usp import commands
                if self.coop:
                    commands.start_download(self, i)
                else:
                    commands.run_download(self, i)
            elif x.get("t") == "a":
                from firmware_slots.usp import commands
                commands.run_activate(self, i, now_s)
        notify = _notify(self)
        if notify:
            notify.expire(self, now_s)
        la.flush()
        if notify:
            notify.value_changes(self)
        if self.retry:
            from firmware_slots.usp import notify
            notify.retry_due(self, now_s)

    def step_tasks(self, ready=False):
        """Advance every Download() in flight by about one block; -> True while any runs.
        ready: the caller's poll saw a download socket readable. May reset the device
        (AutoActivate) like poll()."""
        if not self.tasks:
            return False
        step = _step_download[0]
        if step is None:
            from firmware_slots.usp.commands import step_download as step
            _step_download[0] = step
        for i in self.tasks:  # no copy per block: stop when one ends (the dict changed)
            if step(self, i, ready):
                break
        return bool(self.tasks)

    def pollables(self):
        """Sockets of the transfers in flight, for the MTP's select.poll."""
        return [t[0].pollable for t in self.tasks.values() if t[0] is not None and t[0].pollable is not None]

    def take_outbox(self):
        out = self.outbox
        if not out:
            return ()  # the MTP asks every loop turn: no new list when there is nothing
        self.outbox = []
        return out

    def controller_uri(self, endpoint_id):
        return self.la.controller_uri(endpoint_id)

    # -- messages -------------------------------------------------------------------
    def handle(self, record_bytes, reply_to=None, san_uris=None):
        """Replies (Records) to one Record. san_uris: subjectAltName URIs of the sender's
        certificate, verified against the configured CA; only the coaps MTP passes them."""
        if not record_bytes:
            raise BadRecord("empty payload: not a USP Record")
        try:
            rec = codec.decode_record(record_bytes, True)  # the payload a view: no copy of the Msg
        except codec.DecodeError as e:
            raise BadRecord("not a USP Record: %s" % e)
        to = rec.get("to_id")
        if not to:
            raise BadRecord("Record without to_id")
        if to != self.endpoint_id:
            return []  # routed to someone else: not ours to answer
        sender = rec.get("from_id", "")
        if not sender:
            raise BadRecord("Record without from_id")
        if "session_context" in rec:
            e = BadRecord("session context is not supported")
            e.replies = [codec.encode_record({
                "version": codec.USP_VERSION, "to_id": sender, "from_id": self.endpoint_id,
                "disconnect": {"reason": "Session Context not supported", "reason_code": E_SESSION_CONTEXT}})]
            raise e
        payload = codec.record_payload(rec)
        if payload is None:
            for k in ("mqtt_connect", "stomp_connect", "websocket_connect", "uds_connect", "disconnect"):
                if k in rec:
                    return []  # connect / disconnect records: nothing to answer
            raise BadRecord("Record without a record type")
        if not payload:
            raise BadRecord("Record without payload")
        rec = None  # the Record's dict is done with: not live beside the Msg and the reply
        try:
            msg = codec.decode_msg(payload)
        except codec.DecodeError as e:
            raise BadRecord("undecodable Msg: %s" % e)
        payload = None
        self.roles = (self.role_of(sender, san_uris),)
        if self.roles != (2,):  # untrusted senders get no persisted Controller row
            try:
                self.la.seen(sender, reply_to)
            except dm.UspError as e:  # no room for this controller: refused, state untouched
                resp = codec.error_msg(codec.split_msg(msg)[0], e.code, e.msg)
                return [codec.make_record(sender, self.endpoint_id, resp)]
        self.current_eid = sender
        try:
            resp = self.dispatch(msg)
        finally:
            self.la.flush()
            self.current_eid = None
        msg = None  # nor the request's Msg beside the reply's Record
        n = _notify(self)
        if n:
            n.value_changes(self)
        if resp is None:
            return []
        return [codec.make_record(sender, self.endpoint_id, resp)]

    def dispatch(self, msg):
        mid, mtype, part, kind, body = codec.split_msg(msg)
        t = _msg_type_of(part, kind)
        if t >= 0 and t != mtype:
            # never carry out a body the header does not announce (a GET that is a Set)
            return codec.error_msg(mid, dm.E_NOT_SUPPORTED, "header msg_type %d does not match the %s body" % (
                mtype, kind or part))
        if part == "response" and kind == "notify_resp":
            if self.retry:  # nothing held: nothing to stop retrying
                from firmware_slots.usp import notify
                notify.acked(self, (body or {}).get("subscription_id", ""), mid)
            return None
        if part == "response" or part == "error":
            return None  # NotifyResp and errors for our notifications need no answer
        h = _handler(kind) if part == "request" else None
        if h is None:
            return codec.error_msg(mid, dm.E_NOT_SUPPORTED, "message type not supported")
        try:
            if self.roles != (1,):
                _authorize(self.roles, kind, body or {})
            out = h(self, body or {})
        except dm.UspError as e:
            return codec.error_msg(mid, e.code, e.msg, getattr(e, "param_errs", None))
        except Exception as e:  # a bug must not take the agent down: 7003
            return codec.error_msg(mid, dm.E_INTERNAL, "internal error: %r" % (e,))
        if out is None:
            return None
        rkind, rbody = out
        return codec.new_msg(mid, _msg_type_of("response", rkind), "response", rkind, rbody)

    # -- handlers ---------------------------------------------------------------------
    def h_get(self, req):
        m = self.model
        depth = req.get("max_depth", 0)
        results = []
        for path in req.get("param_paths", []):
            r = {"requested_path": path}
            try:
                idx, kl, leaf = m.resolve(path)
                res = []
                if leaf is not None:
                    if leaf[-1] in ")!":
                        raise dm.UspError(dm.E_INVALID_PATH, "%s is not a parameter" % path)
                    for k in kl:
                        res.append({"resolved_path": dm.obj_path(idx, k),
                                    "result_params": {leaf: dm.to_str(m.get(idx, k, leaf))}})
                else:
                    for k in kl:
                        for j, jk in m.subtree(idx, k, depth):
                            p = m.get_params(j, jk)
                            if p:
                                res.append({"resolved_path": dm.obj_path(j, jk), "result_params": p})
                r["resolved_path_results"] = res
            except dm.UspError as e:
                r["err_code"] = e.code
                r["err_msg"] = e.msg
            results.append(r)
        return "get_resp", {"req_path_results": results}

    def h_operate(self, req):
        from firmware_slots.usp import commands
        m = self.model
        cmd = req.get("command", "")
        idx, kl, leaf = m.resolve(cmd)
        if leaf is None or not leaf.endswith("()"):
            raise dm.UspError(dm.E_INVALID_PATH, "%s is not a command" % cmd)
        key = req.get("command_key", "")
        args = req.get("input_args", {})
        results = []
        for k in kl:
            ex = dm.obj_path(idx, k) + leaf
            r = {"executed_command": ex}
            try:
                how, out = commands.run(self, idx, k, leaf, key, args)
                if how == "sync":
                    r["req_output_args"] = {"output_args": out}
                else:
                    r["req_obj_path"] = out
                    n = _notify(self)
                    if n:
                        n.obj_created(self, out + ".", {})
            except dm.UspError as e:
                r["cmd_failure"] = {"err_code": e.code, "err_msg": e.msg}
            results.append(r)
        if not req.get("send_resp", False):
            return None
        return "operate_resp", {"operation_results": results}


def _authorize(roles, kind, body):
    # every path the request names, checked as requested (Targets match its wildcards)
    from firmware_slots.datamodel import trust
    if kind == "get":
        ps = [(p, "get") for p in body.get("param_paths", [])]
    elif kind == "operate":
        ps = [(body.get("command", ""), "operate")]
    elif kind == "set":
        ps = [(o.get("obj_path", "") + s.get("param", ""), "set")
              for o in body.get("update_objs", []) for s in o.get("param_settings", [])]
    elif kind == "add":
        ps = [(o.get("obj_path", ""), "add") for o in body.get("create_objs", [])]
    elif kind in ("delete", "get_instances", "get_supported_dm"):
        ps = [(p, kind) for p in body.get("obj_paths", [])]
    else:
        ps = []
    for p, op in ps:
        if not trust.allowed(roles, p, op):
            raise dm.UspError(*trust.denial(p, op))


_step_download = [None]  # commands.step_download once loaded: no import per block


def _h_get_supported_protocol(agent, req):
    return "get_supported_protocol_resp", {"agent_supported_protocol_versions": PROTOCOL_VERSIONS}


def _handler(kind):
    """UspAgent.h_<kind> or the function of that name in the module that handles it
    (the Get path's by name: no "h_" + kind string per message)."""
    if kind == "get":
        return UspAgent.h_get
    if kind == "operate":
        return UspAgent.h_operate
    if kind == "get_supported_protocol":
        return _h_get_supported_protocol
    if kind == "set" or kind == "add" or kind == "delete":
        from firmware_slots.usp import edit as m
    elif kind == "get_instances" or kind == "get_supported_dm":
        from firmware_slots.usp import discover as m
    else:
        return None
    return getattr(m, "h_" + kind)

