"""Set, Add and Delete: the edit messages, imported when the first one arrives.

A device that is only read and sent commands never loads this module (its bytecode and
qstrs are ~8 KB of heap as a .mpy). Handlers take the UspAgent and the request body
and return (response kind, body) or raise UspError, like UspAgent.h_get.
"""
from firmware_slots.usp import notify
from firmware_slots.datamodel.dm import (UspError, OBJS, ADD, MULTI, obj_path, to_str, split_path,
                                   match_template, param_spec, E_INVALID_PATH, E_NOT_CREATABLE,
                                   E_DELETE, SUB_ID)


def _objects(agent, path, table_ok=False):
    """(idx, [keys]) for an object path in Set/Delete/Add; 7026 for params or tables."""
    segs, leaf = split_path(path)
    if leaf is not None:
        raise UspError(E_INVALID_PATH, "%s is not an object path" % path)
    mt = match_template(segs)
    if mt is None:
        raise UspError(E_INVALID_PATH, "path %s is not in the supported data model" % path)
    idx, pat, table_only = mt
    if table_only != table_ok:
        raise UspError(E_INVALID_PATH, "%s must name %s" % (
            path, "a table" if table_ok else "object instances, not a table"))
    if table_ok:
        if None in pat[:-1]:
            raise UspError(E_INVALID_PATH, "no wildcards in an Add path")
        pat = pat[:-1]
    return idx, agent.model.expand(idx, pat, True)


def _apply(agent, idx, keys, settings, done):
    """Set each (param, value, required); returns (updated {}, param_errs [], fatal err)."""
    m = agent.model
    upd = {}
    errs = []
    fatal = None
    for ps in settings:
        n = ps.get("param", "")
        try:
            old = to_str(m.get(idx, keys, n)) if param_spec(idx, n) is not None else None
            m.set(idx, keys, n, ps.get("value", ""))
            done.append((idx, keys, n, old))
            upd[n] = ps.get("value", "")
        except UspError as e:
            errs.append({"param": n, "err_code": e.code, "err_msg": e.msg})
            if ps.get("required") and fatal is None:
                fatal = e
    return upd, errs, fatal


def _undo(agent, done):
    for idx, keys, n, old in reversed(done):
        try:
            agent.model.set(idx, keys, n, old)
        except UspError:
            pass
    del done[:]


def h_set(agent, req):
    partial = req.get("allow_partial", False)
    results = []
    done = []
    first = None
    perrs = []
    for uo in req.get("update_objs", []):
        path = uo.get("obj_path", "")
        mark = len(done)
        try:
            idx, kl = _objects(agent, path)
            insts = []
            fails = []
            fatal = None
            for k in kl:
                upd, errs, f = _apply(agent, idx, k, uo.get("param_settings", []), done)
                ap = obj_path(idx, k)
                if f is not None:
                    fatal = fatal or f
                    fails.append({"affected_path": ap, "param_errs": errs})
                    for e in errs:
                        perrs.append({"param_path": ap + e["param"], "err_code": e["err_code"],
                                      "err_msg": e["err_msg"]})
                else:
                    ir = {"affected_path": ap, "updated_params": upd}
                    if errs:
                        ir["param_errs"] = errs
                    insts.append(ir)
            if fatal is not None:
                e = UspError(fatal.code, fatal.msg)
                e.fails = fails
                raise e
            results.append({"requested_path": path, "oper_status": {"oper_success": {
                "updated_inst_results": insts}}})
        except UspError as e:
            _undo_from(agent, done, mark)
            first = first or e
            if not getattr(e, "fails", None):
                perrs.append({"param_path": path, "err_code": e.code, "err_msg": e.msg})
            results.append({"requested_path": path, "oper_status": {"oper_failure": {
                "err_code": e.code, "err_msg": e.msg,
                "updated_inst_failures": getattr(e, "fails", [])}}})
    if first is not None and not partial:
        _undo(agent, done)
        e = UspError(first.code, first.msg)
        e.param_errs = perrs
        raise e
    return "set_resp", {"updated_obj_results": results}


def _undo_from(agent, done, mark):
    tail = done[mark:]
    del done[mark:]
    _undo(agent, tail)


def h_add(agent, req):
    partial = req.get("allow_partial", False)
    la = agent.la
    results = []
    made = []
    first = None
    start = la.mark()
    for co in req.get("create_objs", []):
        path = co.get("obj_path", "")
        mark = la.mark()
        try:
            idx, kl = _objects(agent, path, True)
            if not OBJS[idx][1] & ADD:
                raise UspError(E_NOT_CREATABLE, "%s is a static table: rows cannot be added" % path)
            k = kl[0]
            i = la.add(idx, k, agent.controllers is not None)  # only under a policy does adding vouch
            keys = k + (i,)
            done = []
            upd, errs, fatal = _apply(agent, idx, keys, co.get("param_settings", []), done)
            if fatal is not None:
                la.delete(idx, keys)
                la.rollback(mark)
                raise UspError(fatal.code, "%s: %s" % (errs[0]["param"], fatal.msg))
            made.append((idx, keys))
            ok = {"instantiated_path": obj_path(idx, keys), "unique_keys": agent.model.unique_keys(idx, keys)}
            if errs:
                ok["param_errs"] = errs
            results.append({"requested_path": path, "oper_status": {"oper_success": ok}})
        except UspError as e:
            first = first or e
            results.append({"requested_path": path, "oper_status": {"oper_failure": {
                "err_code": e.code, "err_msg": e.msg}}})
    if first is not None and not partial:
        for idx, keys in made:
            la.delete(idx, keys)
        la.rollback(start)
        raise UspError(first.code, first.msg)
    for idx, keys in made:
        if idx == SUB_ID:
            agent.vc.pop(keys[0], None)
        notify.obj_created(agent, obj_path(idx, keys), agent.model.unique_keys(idx, keys))
    return "add_resp", {"created_obj_results": results}


def h_delete(agent, req):
    partial = req.get("allow_partial", False)
    la = agent.la
    results = []
    gone = []
    first = None
    for path in req.get("obj_paths", []):
        try:
            segs, leaf = split_path(path)
            mt = match_template(segs) if leaf is None else None
            if mt is None or mt[2]:
                raise UspError(E_INVALID_PATH, "%s is not an object instance path" % path)
            idx = mt[0]
            if not OBJS[idx][1] & MULTI or not OBJS[idx][1] & ADD:
                raise UspError(E_DELETE, "%s cannot be deleted (static table or not a table)" % path)
            try:
                kl = agent.model.expand(idx, mt[1], True)
            except UspError:
                kl = []  # deleting what is not there succeeds with nothing affected
            paths = []
            for k in kl:
                paths.append(obj_path(idx, k))
                gone.append((idx, k))
            results.append({"requested_path": path, "oper_status": {"oper_success": {
                "affected_paths": paths}}})
        except UspError as e:
            first = first or e
            results.append({"requested_path": path, "oper_status": {"oper_failure": {
                "err_code": e.code, "err_msg": e.msg}}})
    if first is not None and not partial:
        raise UspError(first.code, first.msg)
    for idx, k in gone:
        try:
            la.delete(idx, k)
        except UspError:
            continue
        notify.obj_deleted(agent, obj_path(idx, k))
    return "delete_resp", {"deleted_obj_results": results}
