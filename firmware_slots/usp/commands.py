"""Download(), Activate() and Device.Reboot(): argument checks, requests, execution.

An async command becomes a Device.LocalAgent.Request.{i}. row whose 'x' state is
persisted, so its completion survives the reboot it causes:
    Download  {'t':'d','sl' slot,'u' URL (<= URL_MAX, no userinfo),'a' AutoActivate,'z' FileSize,
               'ca' CheckSumAlgorithm,'cs' CheckSum hex,'ph' phase,'rs' resumes,
               'tc' [StartTime, CompleteTime] of a transfer whose TransferComplete! waits for
               the boot (the other arguments are rebuilt from the row: _tc)}
    Activate  {'t':'a','sl' slot,'w' [[Start, End, mode, MaxRetries, UserMessage]...],
               't0' wall seconds at invocation,'ph' phase}
Every string in a row has its bound (state.py: URL_MAX, KEY_MAX, MESSAGE_MAX, ID_MAX for the
originator): a longer one is refused with 7005 before the row exists; what a row gains
later ('rs', 'tc') is charged when it is added (localagent.REQ_GROWTH).
phase 0 = waiting/running, 1 = rebooting into the image (reported after the boot).
Username/Password live only in agent.creds (RAM) until the transfer starts.
The boot cause goes to the agent state's A_BOOT_CAUSE = {'c' Cause,'r' Reason,'k' CommandKey}.
"""

from firmware_slots.core import slots
from firmware_slots import transfer
from firmware_slots.datamodel import dm, firmware as fw  # modules, not their names: ~13 B a global
from firmware_slots.datamodel.dm import UspError
from firmware_slots.core.state import A_BOOT_CAUSE, URL_MAX, KEY_MAX, TEXT_MAX, MESSAGE_MAX, too_long

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

_CONFIRM_INTERVAL_S = const(10)  # between two ConfirmationNeeded questions
_DEFAULT_RETRIES = const(3)      # MaxRetries -1: the agent's own policy
_MAX_RESUMES = const(3)          # reboots a Download() may survive before it is reported failed
# TransferComplete! FaultCode when TR-369 names nothing better: dm.E_CMD_FAILURE


def _arg(args, name, t, mandatory=False, default=None):
    v = args.get(name)
    if v is None:
        if mandatory:
            raise UspError(dm.E_CMD_ARGS, "missing mandatory input argument %s" % name)
        return default
    try:
        return dm.from_str(t, v)
    except UspError as e:
        raise UspError(dm.E_CMD_ARGS, "%s: %s" % (name, e.msg))


def run(agent, idx, keys, name, key, args):
    """Start command `name` on object (idx, keys). Returns ('sync', out) or ('async', req path)."""
    c = dm.OBJS[idx][0] + name  # commands are registered by their supported path
    if too_long(key, KEY_MAX):  # kept in the request row or the boot cause until reported
        raise UspError(dm.E_RESOURCES, "CommandKey of %d characters exceeds the %d bytes this agent can keep" % (
            len(key), KEY_MAX))
    if c == "Device.Reboot()":
        return "sync", reboot(agent, key, args)
    if c == dm.FW_PATH + "Download()":
        return "async", download(agent, keys, key, args)
    if c == dm.FW_PATH + "Activate()":
        return "async", activate(agent, keys, key, args)
    raise UspError(dm.E_INVALID_PATH, "no command %s" % name)


def reboot(agent, key, args):
    cause = _arg(args, "Cause", "s", default="RemoteReboot")
    if cause not in dm.ENUMS["Cause"].split():
        raise UspError(dm.E_CMD_ARGS, "Cause must be LocalReboot or RemoteReboot")
    reason = _arg(args, "Reason", "s", default="") or "Unknown"  # TR-181 Reboot(): absent -> "Unknown"
    if too_long(reason, TEXT_MAX):
        raise UspError(dm.E_RESOURCES, "Reason of %d characters exceeds the %d bytes this agent can keep" % (
            len(reason), TEXT_MAX))
    agent.mgr.meta.agent_update({A_BOOT_CAUSE: {"c": cause, "r": reason, "k": key}})
    agent.reboot_due = (cause, reason)  # after the OperateResp has gone out: poll()
    return {}


def _request(agent, keys, cmd, key, state):
    la = agent.la
    path = dm.obj_path(dm.FW_IDX, keys) + cmd
    i = la.add_request(agent.current_eid or "", path, key, state)
    la.flush()
    return "Device.LocalAgent.Request.%d" % i


def _busy(agent, slot):
    for r in agent.la.reqs.values():
        if r.get("x", {}).get("sl") == slot:
            raise UspError(dm.E_CMD_FAILURE, "FirmwareImage.%d already has a pending %s" % (
                slot + 1, r.get("c", "").split(".")[-1]))


def download(agent, keys, key, args):
    mgr = agent.mgr
    slot = keys[0] - 1
    url = _arg(args, "URL", "s", True)
    auto = _arg(args, "AutoActivate", "b", True)
    size = _arg(args, "FileSize", "u", default=0)
    alg = _arg(args, "CheckSumAlgorithm", "s", default="")
    cs = _arg(args, "CheckSum", "s", default="").lower()
    if alg and alg not in dm.ENUMS["CheckSumAlgorithm"].split():
        raise UspError(dm.E_CMD_ARGS, "CheckSumAlgorithm must be one of " + dm.ENUMS["CheckSumAlgorithm"])
    if cs:
        if not alg:
            raise UspError(dm.E_CMD_ARGS, "CheckSum needs a CheckSumAlgorithm")
        n = 32 if alg == "SHA-256" else 0  # SHA-256 needs no core.hashes (464 B of heap)
        if not n:
            from firmware_slots.core import hashes
            n = hashes.digest_size(alg)
        if len(cs) != 2 * n or any(c not in "0123456789abcdef" for c in cs):
            raise UspError(dm.E_CMD_ARGS, "CheckSum is not a %s digest in hex" % alg)
    _check_url(url)
    try:
        transfer.module_of(url)
    except transfer.TransferError as e:
        raise UspError(dm.E_CMD_ARGS, "URL %r: %s" % (url, e))
    if slot in mgr.protected():
        why = "running" if slot == mgr.running else "last-known-good" if slot == mgr.lkg else "boot"
        raise UspError(dm.E_CMD_FAILURE, "FirmwareImage.%d holds the %s image and cannot be overwritten; "
                       "download into another FirmwareImage" % (slot + 1, why))
    if size and size > mgr.slot_size(slot):
        raise UspError(dm.E_CMD_FAILURE, "FileSize %d exceeds FirmwareImage.%d capacity of %d bytes" % (
            size, slot + 1, mgr.slot_size(slot)))
    _busy(agent, slot)
    st = {"t": "d", "sl": slot, "u": url, "a": auto, "z": size, "ca": alg, "cs": cs, "ph": 0}
    u = _arg(args, "Username", "s", default="")
    p = _arg(args, "Password", "s", default="")
    if len(u) > 256 or len(p) > 256:
        raise UspError(dm.E_CMD_ARGS, "Username and Password are at most 256 characters")
    path = _request(agent, keys, "Download()", key, st)
    if u or p:  # RAM only, for this transfer: never in the journal, a Get or a report
        agent.creds[int(path.rsplit(".", 1)[1])] = (u, p)
    return path


# URL_MAX (state.py): a URL is persisted twice (request and slot download state)


def _check_url(url):
    # TR-181 Download(): the URL MUST NOT include userinfo; refused here, before anything runs
    a = url.split("://", 1)[-1].split("/", 1)[0]
    if "@" in a:
        raise UspError(dm.E_CMD_ARGS, "URL must not include userinfo (user:password@); use Username and Password")
    if too_long(url, URL_MAX):
        raise UspError(dm.E_RESOURCES, "URL of %d characters exceeds the %d bytes this agent can keep" % (
            len(url), URL_MAX))


def parse_windows(args):
    """[[Start, End, mode index, MaxRetries, UserMessage]] sorted by Start; 7027 if invalid."""
    win = {}
    for k in args:
        if not k.startswith("TimeWindow."):
            continue
        parts = k.split(".")
        if len(parts) != 3 or not parts[1].isdigit() or parts[2] not in (
                "Start", "End", "Mode", "UserMessage", "MaxRetries"):
            raise UspError(dm.E_CMD_ARGS, "unknown input argument %s" % k)
        win.setdefault(int(parts[1]), {})[parts[2]] = args[k]
    if not win:
        raise UspError(dm.E_CMD_ARGS, "missing mandatory input argument TimeWindow.{i}.")
    if len(win) > fw.MAX_WINDOWS:
        raise UspError(dm.E_CMD_ARGS, "%d time windows: at most %d (MaxNumberOfActivateTimeWindows)" % (
            len(win), fw.MAX_WINDOWS))
    out = []
    modes = dm.ENUMS["Mode"].split()
    for n in sorted(win):
        w = win[n]
        pre = "TimeWindow.%d." % n
        start = _arg(w, "Start", "u", True)
        end = _arg(w, "End", "u", True)
        mode = _arg(w, "Mode", "s", True)
        if mode not in modes:
            raise UspError(dm.E_CMD_ARGS, "%sMode must be one of %s" % (pre, dm.ENUMS["Mode"]))
        retries = _arg(w, "MaxRetries", "i", default=0)
        if not -1 <= retries <= 10:
            raise UspError(dm.E_CMD_ARGS, "%sMaxRetries must be -1..10" % pre)
        if end <= start:
            raise UspError(dm.E_CMD_ARGS, "%sEnd must be after its Start" % pre)
        msg = w.get("UserMessage", "")
        if too_long(msg, MESSAGE_MAX):
            raise UspError(dm.E_RESOURCES, "%sUserMessage of %d characters exceeds the %d bytes this agent can keep" % (
                pre, len(msg), MESSAGE_MAX))
        out.append([start, end, modes.index(mode), retries, msg])
    out.sort(key=lambda w: w[0])
    for a, b in zip(out, out[1:]):
        if b[0] < a[1]:
            raise UspError(dm.E_CMD_ARGS, "time windows overlap: one starts at %d before another ends at %d" % (
                b[0], a[1]))
    return out


def activate(agent, keys, key, args):
    mgr = agent.mgr
    slot = keys[0] - 1
    windows = parse_windows(args)
    st = mgr.status_code(slot)
    if st not in (slots.AVAILABLE, slots.ACTIVE) or not mgr.info(slot)["Available"]:
        raise UspError(dm.E_CMD_FAILURE, "FirmwareImage.%d is %s%s: nothing to activate" % (
            slot + 1, mgr.status(slot), "" if mgr.info(slot)["Available"] else " and not Available"))
    _busy(agent, slot)
    st = {"t": "a", "sl": slot, "w": windows, "t0": int(agent.platform.now_s()), "ph": 0}
    return _request(agent, keys, "Activate()", key, st)


# ---------------------------------------------------------------- execution (poll)
def _finish(agent, i, err=None, tc=None):
    """Report request i (OperationComplete, then TransferComplete!) and drop its row."""
    r = agent.la.reqs[i]
    path = r["c"]
    cut = path.rfind(".") + 1
    if agent.la.subs:  # no Subscription, no one to tell: a Download() never loads usp.notify
        from firmware_slots.usp import notify
        notify.oper_complete(agent, path[:cut], path[cut:], r.get("k", ""), {}, err)
        if tc is not None:
            notify.event(agent, "Device.LocalAgent.", "TransferComplete!", tc)
    agent.la.drop_request(i)
    agent.la.flush()


def _activate_now(agent, i, why):
    """Point BootFirmwareImage at the request's slot, persist, reboot."""
    la = agent.la
    r = la.reqs[i]
    x = dict(r["x"])
    try:
        agent.mgr.set_boot(x["sl"])
    except slots.SlotError as e:
        return _finish(agent, i, (dm.E_CMD_FAILURE, "activation refused: %s" % e), _saved_tc(agent, r, x))
    x["ph"] = 1
    la.update_request(i, 1, x)
    la.flush()
    agent.mgr.meta.agent_update({A_BOOT_CAUSE: {"c": "RemoteReboot", "r": why, "k": r.get("k", "")}})
    agent.platform.reboot("RemoteReboot", why)


# TransferComplete! FaultCode / FaultString. TR-369 (1.4 error table) defines no file-transfer
# codes (7028-7031 are Register/Deregister), so a failed transfer is 7022 Command failure
# and FaultString says what failed ("<what>: <detail>"); the one better fit is 7005:
#   image larger than the slot                    7005 Resources exceeded  "image too large"
#   CheckSum differs                              7022  "checksum mismatch"
#   image format refused (manifest, littlefs)     7022  "invalid image"
#   flash read-back differs                       7022  "flash read-back mismatch"
#   fewer bytes than FileSize/Size2               7022  "image truncated"
#   4.04 / HTTP 404 / no such file                7022  "not found"
#   other 4.xx/5.xx, HTTP 401/403                 7022  "server refused", "access denied"
#   no answer / ECONNREFUSED / unreachable        7022  "timeout", "connection refused", ...
#   reboots interrupted it _MAX_RESUMES times      7022  "interrupted by N reboots"
def fault(e):
    """(FaultCode, FaultString) for the exception that ended a Download(): slots.SlotError and
    transfer.TransferError both say what failed in `.why` (the table above)."""
    why = getattr(e, "why", None) or "download failed"
    code = dm.E_RESOURCES if why == slots.TOO_LARGE else dm.E_CMD_FAILURE
    return code, ("%s: %s" % (why, e))[:256]


def run_download(agent, i):
    """The whole Download() of request i at once (an agent nobody polls cooperatively)."""
    start_download(agent, i)
    while i in agent.tasks:
        t = agent.tasks[i][0]
        if not step_download(agent, i) and hasattr(t, "wait"):
            t.wait(50)


# agent.tasks[i] = [transfer task, writer, start time, restarted once, Username, Password]: a Download() in
# flight, stepped by step_download() from the MTP's loop between USP messages.
def start_download(agent, i):
    la = agent.la
    mgr = agent.mgr
    x = la.reqs[i]["x"]
    la.update_request(i, 1)
    la.flush()
    t0 = agent.platform.now_s()
    w = None
    try:
        # continues from the last checkpoint when a reset interrupted this same URL
        w, resumed = transfer.writer_for(mgr, x["sl"], x["u"], x.get("z", 0), x.get("ca", ""), _cs(x))
        us, pw = agent.creds.pop(i, ("", ""))  # a reset forgets them: the server then refuses
        agent.tasks[i] = [transfer.start(x["u"], w, us, pw, x.get("rt", 0)), w, t0, False, us, pw]
        agent.task_gen += 1
    except (slots.SlotError, transfer.TransferError, ValueError, OSError) as e:
        agent.tasks[i] = [None, w, t0, True, "", ""]
        _done(agent, i, e)


def _cs(x):
    import binascii
    return binascii.unhexlify(x["cs"]) if x.get("cs") else b""


def step_download(agent, i, ready=False):
    """Advance request i's transfer; -> True once it is over (and reported)."""
    task = agent.tasks[i]
    t = task[0]
    if not (t.step(ready) if ready else t.step()):
        return False
    e = t.error
    if isinstance(e, transfer.Restart) and not task[3]:
        # the remote image changed since the checkpoint: start over, once
        x = agent.la.reqs[i]["x"]
        try:
            w = agent.mgr.install(x["sl"], x.get("z", 0), x.get("ca", ""), _cs(x), extra={"u": x["u"]})
            task[0] = transfer.start(x["u"], w, task[4], task[5], x.get("rt", 0))
            task[1] = w
            task[3] = True
            agent.task_gen += 1
            return False
        except (slots.SlotError, transfer.TransferError, ValueError, OSError) as e2:
            e = e2
    _done(agent, i, e)
    return True


def _done(agent, i, e):
    la = agent.la
    mgr = agent.mgr
    task = agent.tasks.pop(i)
    agent.task_gen += 1
    w = task[1]
    r = la.reqs[i]
    x = dict(r["x"])
    slot = x["sl"]
    failed = None
    code = 0
    info = None
    try:
        if e is not None:
            raise e
        info = w.finish()
    except (slots.SlotError, transfer.TransferError, ValueError, OSError) as e:
        code, failed = fault(e)
        if w is not None and not w.done:
            mgr.fail(slot, getattr(e, "status", None) or slots.DOWNLOAD_FAILED, failed)
    times = [int(task[2]), int(agent.platform.now_s())]
    tc = _tc(r, x, times, code, failed or "", x.get("ca") or ("SHA-256" if info else "Unknown"),
             x.get("cs") or (info["SHA256"] if info else ""))
    if failed:
        return _finish(agent, i, (code, "download failed: " + failed), tc)
    if not x.get("a"):
        return _finish(agent, i, None, tc)
    x["tc"] = times  # the rest is rebuilt from the row and the slot after the boot
    la.update_request(i, 1, x)
    _activate_now(agent, i, "Download() with AutoActivate")


def _tc(r, x, times, code, failed, alg, checksum):
    """TransferComplete! arguments of Download() request row r (state x)."""
    return {"Command": r["c"], "CommandKey": r.get("k", ""), "Requestor": r.get("o", ""),
            "TransferType": "Download", "Affected": fw.row_ref(x["sl"]), "TransferURL": x.get("u", ""),
            "StartTime": dm.iso_time(times[0]), "CompleteTime": dm.iso_time(times[1]),
            "FaultCode": str(code), "FaultString": failed, "CheckSumAlgorithm": alg, "CheckSum": checksum}


def _saved_tc(agent, r, x):
    """The TransferComplete! a successful Download() left for after the boot (None: none)."""
    t = x.get("tc")
    if t is None or isinstance(t, dict):  # a dict: the whole arguments, as older agents kept them
        return t
    return _tc(r, x, t, 0, "", x.get("ca") or "SHA-256", x.get("cs") or agent.mgr.info(x["sl"])["SHA256"])


def run_activate(agent, i, now_s):
    """Drive the time windows of Activate request i; activates, waits or fails."""
    la = agent.la
    r = la.reqs[i]
    x = r["x"]
    el = now_s - x.get("t0", now_s)
    tries = agent.tries.setdefault(i, {})
    for n in range(len(x["w"])):
        start, end, mode, retries, msg = x["w"][n]
        if el < start:
            return
        if el >= end:
            continue
        if r.get("s") != 1:
            la.update_request(i, 1)
            la.flush()
        m = dm.ENUMS["Mode"].split()[mode]
        if m == "WhenIdle" and not agent.platform.is_idle():
            return
        if m == "ConfirmationNeeded":
            asked, last = tries.get(n, (0, None))
            allowed = 1 + (_DEFAULT_RETRIES if retries < 0 else retries)
            if asked >= allowed:
                continue
            if last is not None and now_s - last < _CONFIRM_INTERVAL_S:
                return
            ans = agent.platform.confirm({"Start": start, "End": end, "Mode": m, "UserMessage": msg,
                                          "MaxRetries": retries})
            if ans is None:
                if last is None:
                    tries[n] = (asked, now_s)
                return
            if not ans:
                tries[n] = (asked + 1, now_s)
                if asked + 1 >= allowed:
                    continue
                return
        return _activate_now(agent, i, "Activate() in time window %d (%s)" % (n + 1, m))
    agent.tries.pop(i, None)
    _finish(agent, i, (dm.E_CMD_FAILURE, "no time window allowed the activation"))


def after_boot(agent):
    """Report requests that were waiting for this boot; fail the ones a reboot interrupted."""
    la = agent.la
    mgr = agent.mgr
    for i in sorted(la.reqs):
        r = la.reqs[i]
        x = r.get("x", {})
        slot = x.get("sl")
        if x.get("ph") == 1:
            if mgr.running == slot:
                _finish(agent, i, None, _saved_tc(agent, r, x))
            else:
                log = mgr.info(slot)["BootFailureLog"] if slot is not None else ""
                _finish(agent, i, (dm.E_CMD_FAILURE, "FirmwareImage.%d did not become active (%s); running %s%s" % (
                    slot + 1, mgr.status(slot), fw.row_ref(mgr.running), ": " + log if log else "")),
                    _saved_tc(agent, r, x))
        elif x.get("t") == "d":
            # a reset or power cut interrupted the download: pick it up again from its
            # last checkpoint, a bounded number of times (a download that keeps killing
            # the device must not loop forever)
            n = x.get("rs", 0) + 1
            if n <= _MAX_RESUMES and (slot not in mgr.protected()):
                x = dict(x)
                x["rs"] = n
                la.update_request(i, 0, x)
                la.flush()
                continue
            why = "interrupted by %d reboots" % (n - 1) if n > 1 else "interrupted by a reboot"
            if mgr.status_code(slot) == slots.DOWNLOADING:
                mgr.fail(slot, slots.DOWNLOAD_FAILED, why)
            tc = {"Command": r["c"], "CommandKey": r.get("k", ""), "Requestor": r.get("o", ""),
                  "TransferType": "Download", "Affected": fw.row_ref(slot), "TransferURL": x.get("u", ""),
                  "FaultCode": str(dm.E_CMD_FAILURE), "FaultString": "download " + why}
            _finish(agent, i, (dm.E_CMD_FAILURE, "download " + why), tc)
