"""GetInstances and GetSupportedDM, imported when the first one arrives.

The supported data model (SupportedObjectResult dicts) is built from dm.OBJS only
while answering GetSupportedDM; nothing of it is kept.
"""
try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from firmware_slots.datamodel.dm import (UspError, OBJS, ADD, MULTI, obj_path, children,
                                   match_template, params_of, E_INVALID_PATH)

DM_URI = "urn:broadband-forum-org:tr-181-2-19-1-usp"
# GetSupportedDMResp.ParamValueType per dm.py type letter: letter, value, ...
_VTYPES = const(("s", 8, "b", 2, "u", 9, "i", 6, "t", 3, "x", 5, "j", 8))


def h_get_instances(agent, req):
    m = agent.model
    first_only = req.get("first_level_only", False)
    results = []
    for path in req.get("obj_paths", []):
        r = {"requested_path": path}
        try:
            idx, kl, leaf = m.resolve(path)
            if leaf is not None:
                raise UspError(E_INVALID_PATH, "%s is not an object path" % path)
            direct = children(idx, True)
            insts = []
            for k in kl:
                for j, jk in m.subtree(idx, k):
                    if not OBJS[j][1] & MULTI or (j == idx and len(jk) == 0):
                        continue
                    if first_only and j != idx and j not in direct:
                        continue
                    insts.append({"instantiated_obj_path": obj_path(j, jk),
                                  "unique_keys": m.unique_keys(j, jk)})
            r["curr_insts"] = insts
        except UspError as e:
            r["err_code"] = e.code
            r["err_msg"] = e.msg
        results.append(r)
    return "get_instances_resp", {"req_path_results": results}


def h_get_supported_dm(agent, req):
    first_only = req.get("first_level_only", False)
    rp = req.get("return_params", False)
    rc = req.get("return_commands", False)
    re_ = req.get("return_events", False)
    results = []
    for path in req.get("obj_paths", []):
        r = {"req_obj_path": path}
        try:
            idx = supported_path(path)
            r["data_model_inst_uri"] = DM_URI
            r["supported_objs"] = [supported_obj(j, rp, rc, re_)
                                   for j in [idx] + children(idx, first_only)]
        except UspError as e:
            r["err_code"] = e.code
            r["err_msg"] = e.msg
        results.append(r)
    return "get_supported_dm_resp", {"req_obj_results": results}


def supported_obj(idx, params=True, commands=True, events=True):
    """One GetSupportedDMResp.SupportedObjectResult dict for object idx."""
    tpl, flags, _, cmds, evs = OBJS[idx]
    d = {
        "supported_obj_path": tpl,
        "access": 1 if flags & ADD else 0,
        "is_multi_instance": bool(flags & MULTI),
    }
    if params:
        d["supported_params"] = [
            {"param_name": n, "access": 1 if w else 0, "value_type": _VTYPES[_VTYPES.index(t) + 1], "value_change": 1}
            for n, t, w in params_of(idx)]
    if commands and cmds:
        d["supported_commands"] = [
            {"command_name": c[0], "input_arg_names": c[2].split(), "output_arg_names": c[3].split(),
             "command_type": 2 if c[1] else 1} for c in cmds]
    if events and evs:
        d["supported_events"] = [{"event_name": e[0], "arg_names": e[1].split()} for e in evs]
    return d


def supported_path(path):
    """Object index for a GetSupportedDM path ({i}, instance numbers or * all accepted)."""
    if not isinstance(path, str) or not path.startswith("Device.") or not path.endswith("."):
        raise UspError(E_INVALID_PATH, "invalid object path %r" % (path,))
    segs = path[:-1].split(".")
    segs = ["*" if s == "{i}" else s for s in segs]
    m = match_template(segs)
    if m is None:
        raise UspError(E_INVALID_PATH, "%s is not in the supported data model" % path)
    return m[0]
