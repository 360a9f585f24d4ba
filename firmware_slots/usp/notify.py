"""Subscriptions -> Notify messages: matching ReferenceList paths, building records.

A notification goes to every enabled Subscription of the right NotifType whose
ReferenceList (comma-separated paths; '*' matches one instance; a path ending in '.'
matches everything below it) names the event, command, object or parameter.
"""

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from firmware_slots.usp import codec
from firmware_slots.datamodel.dm import to_str, obj_path, params_of, UspError, SUB_ID

_NOTIFY = const(3)  # schema.NOTIFY (Header.MsgType)


def match(ref, path):
    ref = ref.strip()
    if not ref:
        return False
    prefix = ref.endswith(".")
    rs = (ref[:-1] if prefix else ref).split(".")
    ps = path.split(".")
    if path.endswith("."):
        ps = ps[:-1]
    if len(ps) < len(rs) or (not prefix and len(ps) != len(rs)):
        return False
    for a, b in zip(rs, ps):
        if a != b and a != "*":
            return False
    return True


def subscribers(agent, notif_type, path):
    """[(subscription dict, controller endpoint id)] for a notification about path."""
    la = agent.la
    out = []
    for i in sorted(la.subs):
        s = la.subs[i]
        if not s.get("en") or s.get("nt") != notif_type:
            continue
        eid = la.controller_eid(s.get("r"))
        if eid is None or not la.ctrls[s["r"]].get("en", True):
            continue
        for ref in s.get("rl", "").split(","):
            if match(ref, path):
                out.append((s, eid))
                break
    return out


def emit(agent, s, eid, kind, body):
    """Queue one Notify for subscription s to controller eid."""
    agent.seq += 1
    n = {"subscription_id": s.get("id", ""), "send_resp": bool(s.get("nr"))}
    n[kind] = body
    mid = "notify-%d-%d" % (agent.boot_s, agent.seq)
    msg = codec.new_msg(mid, _NOTIFY, "request", "notify", n)
    rec = codec.make_record(eid, agent.endpoint_id, codec.encode_msg(msg))
    agent.outbox.append((eid, rec))
    if s.get("nr"):
        _hold(agent, mid, eid, rec, s.get("ne", 0))


# NotifRetry (TR-369 "Responses to Notifications and Notification Retry"): a Notify with
# send_resp is sent again until its NotifyResp arrives. Retry n (1, 2, ...) waits a random
# time in [m * k^(n-1), m * k^n] seconds, n capped at 10, with the recipient Controller's
# m = USPNotifRetryMinimumWaitInterval (default 5 s) and k = USPNotifRetryIntervalMultiplier
# / 1000 (default 2000); it stops when NotifExpiration (s since the first attempt; 0 =
# never) passes or the agent restarts.
# agent.retry: [[msg_id, eid, record, first_s, next_s, n, expiration_s, m, k]], at most
# RETRY_MAX: the oldest is given up (counted in agent.retry_dropped) when a new one does not fit.
RETRY_MAX = 8


def retry_wait(n, m=5, k=2000):
    """Seconds before retry n: uniform in [m*k^(n-1), m*k^n] (k in thousandths)."""
    import os
    n = min(n, 10)
    lo = m * (k / 1000) ** (n - 1)
    return lo + (lo * k / 1000 - lo) * os.urandom(1)[0] / 255


def _hold(agent, mid, eid, rec, exp):
    q = agent.retry
    if len(q) >= RETRY_MAX:
        q.pop(0)
        agent.retry_dropped += 1
    now = agent.platform.now_s()
    la = agent.la
    c = la.ctrls.get(la.controller_by_eid(eid)) or {}
    m, k = c.get("rw", 5), c.get("rm", 2000)
    q.append([mid, eid, rec, now, now + retry_wait(1, m, k), 1, exp, m, k])


def acked(agent, sub_id, mid):
    """A NotifyResp for Notify `mid` arrived: stop retrying it."""
    q = agent.retry
    for i in range(len(q)):
        if q[i][0] == mid:
            q.pop(i)
            return


def retry_due(agent, now_s):
    """Re-queue every held Notify whose wait is over; forget expired ones."""
    q = agent.retry
    i = 0
    while i < len(q):
        r = q[i]
        if r[6] and now_s - r[3] >= r[6]:
            q.pop(i)  # NotifExpiration passed: stop re-delivering
            continue
        if now_s >= r[4]:
            agent.outbox.append((r[1], r[2]))
            r[5] += 1
            r[4] = now_s + retry_wait(r[5], r[7], r[8])
        i += 1


def event(agent, obj, name, params, per_controller=None):
    """Event `obj`+`name` (e.g. "Device.", "Boot!"); per_controller(agent, eid, params) may
    tailor a copy of params."""
    for s, eid in subscribers(agent, "Event", obj + name):
        p = per_controller(agent, eid, dict(params)) if per_controller else params
        emit(agent, s, eid, "event", {"obj_path": obj, "event_name": name, "params": p})


def oper_complete(agent, obj, cmd, key, out_args=None, err=None):
    for s, eid in subscribers(agent, "OperationComplete", obj + cmd):
        b = {"obj_path": obj, "command_name": cmd, "command_key": key}
        if err is None:
            b["req_output_args"] = {"output_args": out_args or {}}
        else:
            b["cmd_failure"] = {"err_code": err[0], "err_msg": err[1]}
        emit(agent, s, eid, "oper_complete", b)


def obj_created(agent, path, keys):
    for s, eid in subscribers(agent, "ObjectCreation", path):
        emit(agent, s, eid, "obj_creation", {"obj_path": path, "unique_keys": keys})


def obj_deleted(agent, path):
    for s, eid in subscribers(agent, "ObjectDeletion", path):
        emit(agent, s, eid, "obj_deletion", {"obj_path": path})


def watched_values(agent, s):
    """{param path: value} for the ReferenceList of a ValueChange subscription."""
    m = agent.model
    vals = {}
    for ref in s.get("rl", "").split(","):
        ref = ref.strip()
        if not ref:
            continue
        try:
            idx, keyslist, leaf = m.resolve(ref, False)
        except UspError:
            continue
        for keys in keyslist:
            if leaf is not None:
                if leaf[-1] not in ")!":
                    vals[obj_path(idx, keys) + leaf] = to_str(m.get(idx, keys, leaf))
                continue
            for j, k in m.subtree(idx, keys):
                p = obj_path(j, k)
                for n, t, w in params_of(j):
                    vals[p + n] = to_str(m.get(j, k, n))
    return vals


def value_changes(agent):
    """Compare every ValueChange subscription's values with the last look; notify changes."""
    la = agent.la
    seen = agent.vc
    for i in sorted(la.subs):
        s = la.subs[i]
        if not s.get("en") or s.get("nt") != "ValueChange":
            seen.pop(i, None)
            continue
        cur = watched_values(agent, s)
        old = seen.get(i)
        seen[i] = cur
        if old is None:
            continue
        eid = la.controller_eid(s.get("r"))
        if eid is None:
            continue
        for p in sorted(cur):
            if p in old and old[p] != cur[p]:
                emit(agent, s, eid, "value_change", {"param_path": p, "param_value": cur[p]})


def boot_parameters(agent, eid, args):
    """Boot!'s ParameterMap for controller eid: its enabled BootParameter rows' values (JSON)."""
    import json
    la = agent.la
    m = agent.model
    c = la.ctrls.get(la.controller_by_eid(eid), {})
    pm = {}
    for j in sorted(c.get("b", {})):
        bp = c["b"][j]
        if bp.get("en") and bp.get("n"):
            try:
                idx, kl, leaf = m.resolve(bp["n"], False)
                for k in kl:
                    if leaf:
                        pm[obj_path(idx, k) + leaf] = to_str(m.get(idx, k, leaf))
                    else:
                        for n, v in m.get_params(idx, k).items():
                            pm[obj_path(idx, k) + n] = v
            except UspError:
                pass
    args["ParameterMap"] = json.dumps(pm)
    return args


def expire(agent, now_s):
    """Delete the subscriptions whose TimeToLive has passed (ObjectDeletion for each)."""
    la = agent.la
    for i in list(la.subs):
        s = la.subs[i]
        if s.get("tl") and now_s >= s.get("cd", 0) + s["tl"]:
            la.delete(SUB_ID, (i,))
            obj_deleted(agent, "Device.LocalAgent.Subscription.%d." % i)
