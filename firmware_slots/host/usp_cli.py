"""`fwslots usp ...`: a USP controller over the TR-369 CoAP binding (host only, aiocoap).

Each command opens a UspCoapController (its own reply-to endpoint, bound with --bind),
sends its requests and prints the answers. Exit codes:

    0  done
    1  the agent answered with a USP error or refused (one line: "USP error CODE: message")
    2  bad usage (unknown option, a value that cannot be right)
    3  transport failure: bad URI, unresolvable host, nothing listening, no answer in
       --timeout, a CoAP error instead of 2.04 (e.g. 4.04: wrong path)

--timeout bounds every exchange end to end (CoAP retransmissions included).
"""
import asyncio
import hashlib
import json
import os
import sys
import time

import click

from firmware_slots.host import controller as C
from firmware_slots.host.progress import progress, waiting
from firmware_slots.host.view import HelpGroup

DEFAULT_AGENT_ID = "os::000000-fwslots"
FW = "Device.DeviceInfo.FirmwareImage."
SUB = "Device.LocalAgent.Subscription."


class UspFailure(click.ClickException):
    exit_code = 1


class TransportFailure(click.ClickException):
    exit_code = 3


class Target:
    """The options every verb takes: who we talk to and as whom."""

    def __init__(self, uri, agent_id, controller_id, bind, timeout, cert=None, key=None, ca=None):
        self.uri, self.agent_id, self.controller_id, self.timeout = uri, agent_id, controller_id, timeout
        bad = C.check_uri(uri)
        if bad:
            raise click.BadParameter(bad, param_hint="AGENT_URI")
        self.host, self.port = parse_bind(bind)
        self.cert, self.key, self.ca = cert, key, ca

    def controller(self):
        if self.uri.startswith("coaps:"):
            from firmware_slots.host.coaps import CoapsController
            return CoapsController(self.controller_id, self.uri, self.ca, self.cert, self.key, self.host, self.timeout)
        ctl = C.UspCoapController(self.controller_id, self.host, self.port)
        if self.host in ("", "0.0.0.0", "::"):
            ctl.advertise = route_to(self.uri)  # reply-to names the address the agent can reach us at
        return ctl


def route_to(uri):
    """Our local address on the route to the agent of `uri` (None if it cannot be told)."""
    import socket
    from urllib.parse import urlsplit
    u = urlsplit(uri)
    try:
        info = socket.getaddrinfo(u.hostname, u.port or 5683, 0, socket.SOCK_DGRAM)[0]
        s = socket.socket(info[0], socket.SOCK_DGRAM)
        try:
            s.connect(info[4])  # UDP connect sends nothing: it only picks the route
            return s.getsockname()[0]
        finally:
            s.close()
    except (OSError, IndexError):
        return None


def parse_bind(spec):
    if not spec:
        return "127.0.0.1", 0
    host, _, port = spec.rpartition(":")
    if not host:
        host, port = port, "0"
    host = host.strip("[]")
    try:
        p = int(port)
        if not 0 <= p <= 65535:
            raise ValueError
    except ValueError:
        raise click.BadParameter("%r is not HOST:PORT (e.g. 0.0.0.0:5684)" % spec, param_hint="--bind")
    return host, p


def run(coro):
    try:
        return asyncio.run(coro)
    except C.TransportError as e:
        raise TransportFailure(str(e))
    except C.UspFailure as e:
        raise UspFailure(str(e))
    except asyncio.TimeoutError as e:
        raise TransportFailure("no answer from the agent in time%s" % (": %s" % e if str(e) else ""))
    except OSError as e:
        raise TransportFailure("network: %s" % (e.strerror or e))
    except KeyboardInterrupt:
        raise click.Abort()


def error_of(msg):
    """A reply Msg -> its response body; a USP Error -> UspFailure (one line, exit 1)."""
    try:
        return C.error_of(msg)
    except C.UspFailure as e:
        raise UspFailure(str(e))


def params_of(msg):
    """A GetResp Msg -> {path: value}; any path's error -> UspFailure."""
    try:
        return C.get_params(msg)
    except C.UspFailure as e:
        raise UspFailure(str(e))


async def get_params(ctl, t, paths):
    return params_of(await ctl.get(t.uri, t.agent_id, paths, timeout=t.timeout))


def get_params_sync(t, paths):
    async def go():
        async with t.controller() as ctl:
            return await get_params(ctl, t, paths)
    return run(go())


def split_param(path):
    """'Device.DeviceInfo.BootFirmwareImage' -> ('Device.DeviceInfo.', 'BootFirmwareImage')."""
    i = path.rstrip(".").rfind(".")
    if i <= 0 or path.endswith("."):
        raise click.BadParameter("%r is not a parameter path (Object.Param)" % path)
    return path[:i + 1], path[i + 1:]


def pairs(items, what="NAME=VALUE"):
    out = []
    for a in items:
        if "=" not in a:
            raise click.BadParameter("%r is not %s" % (a, what))
        out.append(tuple(a.split("=", 1)))
    return out


async def add_sub(ctl, t, notif_type, refs, persistent=False):
    """Add a Device.LocalAgent.Subscription. row; -> its path."""
    m = await ctl.request(t.uri, t.agent_id, "add", C.subscription(notif_type, refs, persistent), t.timeout)
    return C.added_path(m, "subscribing to %s" % refs)


async def drop_subs(ctl, t, paths):
    if paths:
        try:
            await ctl.request(t.uri, t.agent_id, "delete", {"allow_partial": True, "obj_paths": list(paths)},
                              t.timeout)
        except (C.TransportError, asyncio.TimeoutError):
            pass  # the agent may be rebooting; non-persistent rows go with it


def describe(msg):
    """A Notify Msg -> (kind, detail dict), or None: OperationComplete, Boot!, TransferComplete!, ValueChange..."""
    n = msg.get("body", {}).get("request", {}).get("notify")
    if n is None:
        return None
    if "oper_complete" in n:
        oc = n["oper_complete"]
        d = {"path": oc.get("obj_path", "") + oc.get("command_name", ""), "key": oc.get("command_key", "")}
        if "cmd_failure" in oc:
            d["failure"] = oc["cmd_failure"]
        else:
            d["output"] = oc.get("req_output_args", {}).get("output_args", {})
        return "OperationComplete", d
    if "event" in n:
        ev = n["event"]
        return ev.get("event_name", "?"), dict(ev.get("params", {}))
    if "value_change" in n:
        vc = n["value_change"]
        return "ValueChange", {vc.get("param_path", ""): vc.get("param_value", "")}
    for k in n:
        if k not in ("subscription_id", "send_resp"):
            return k, n[k]
    return "?", n


def note_line(kind, d, as_json):
    if as_json:
        return json.dumps({"time": round(time.time(), 3), "kind": kind, "detail": d}, sort_keys=True)
    s = ", ".join("%s=%s" % (k, v) for k, v in sorted(d.items()) if k not in ("ParameterMap",))
    return "%-18s %s" % (kind, s)


async def next_note(ctl, left):
    m = await ctl.expect(lambda m: describe(m) is not None, left)
    return describe(m)


# -- options shared by every verb ----------------------------------------------------
def common(f):
    for deco in reversed([
        click.argument("agent_uri", metavar="AGENT_URI"),
        click.option("--agent-id", envvar="FWSLOTS_AGENT_ID", default=DEFAULT_AGENT_ID, show_default=True,
                     help="the agent's USP EndpointID (env FWSLOTS_AGENT_ID)"),
        click.option("--controller-id", envvar="FWSLOTS_CONTROLLER_ID", default=C.DEFAULT_ID, show_default=True,
                     help="our EndpointID, as the agent knows its controller (env FWSLOTS_CONTROLLER_ID)"),
        click.option("--bind", metavar="HOST:PORT", envvar="FWSLOTS_BIND", default="127.0.0.1:0", show_default=True,
                     help="where our reply-to endpoint listens (port 0: any free port)"),
        click.option("--timeout", type=click.FloatRange(0.1, 3600), default=10, show_default=True,
                     help="seconds for each exchange, end to end"),
        click.option("--ca", type=click.Path(exists=True, dir_okay=False),
                     help="coaps: the CA the agent's certificate must chain to (PEM or DER)"),
        click.option("--cert", type=click.Path(exists=True, dir_okay=False),
                     help="coaps: our certificate, for agents that require one (PEM or DER)"),
        click.option("--key", "key_file", type=click.Path(exists=True, dir_okay=False),
                     help="coaps: the private key of --cert (PEM or DER)"),
    ]):
        f = deco(f)
    return f


def target(kw):
    return Target(kw.pop("agent_uri"), kw.pop("agent_id"), kw.pop("controller_id"), kw.pop("bind"),
                  kw.pop("timeout"), kw.pop("cert"), kw.pop("key_file"), kw.pop("ca"))


@click.group("usp", cls=HelpGroup)
def usp():
    """Manage a device over USP (TR-369) on its CoAP MTP: coap://HOST:5683/usp.

    \b
    Exit codes: 0 ok, 1 USP error or refusal, 2 bad usage, 3 transport failure
    (bad URI, no route, nothing listening, no reply within --timeout).
    """


@usp.command("get")
@common
@click.argument("paths", nargs=-1, required=True, metavar="PATH...")
@click.option("--json", "as_json", is_flag=True, help="print {path: value} as JSON")
def usp_get(paths, as_json, **kw):
    """Get parameters: full or partial paths (ending in '.'), * wildcards."""
    out = get_params_sync(target(kw), list(paths))
    if as_json:
        click.echo(json.dumps(out, indent=1))
    else:
        for k, v in out.items():
            click.echo("%s = %s" % (k, v))


@usp.command("set")
@common
@click.argument("assignments", nargs=-1, required=True, metavar="PATH=VALUE...")
def usp_set(assignments, **kw):
    """Set parameters atomically, all or nothing, from PATH=VALUE pairs.

    e.g. Device.DeviceInfo.BootFirmwareImage=Device.DeviceInfo.FirmwareImage.2"""
    objs = {}
    for path, value in pairs(assignments, "PATH=VALUE"):
        obj, param = split_param(path)
        objs.setdefault(obj, []).append({"param": param, "value": value, "required": True})
    t = target(kw)
    body = {"allow_partial": False,
            "update_objs": [{"obj_path": o, "param_settings": ps} for o, ps in objs.items()]}

    async def go():
        async with t.controller() as ctl:
            return await ctl.request(t.uri, t.agent_id, "set", body, t.timeout)
    resp = error_of(run(go()))["set_resp"]
    for r in resp.get("updated_obj_results", []):
        st = r.get("oper_status", {})
        if "oper_failure" in st:
            f = st["oper_failure"]
            raise UspFailure("USP error %s: %s" % (f.get("err_code"), f.get("err_msg")))
        for u in st.get("oper_success", {}).get("updated_inst_results", []):
            for k, v in sorted(u.get("updated_params", {}).items()):
                click.echo("%s%s = %s" % (u.get("affected_path", ""), k, v))


@usp.command("add")
@common
@click.argument("obj_path", metavar="OBJECT.")
@click.argument("settings", nargs=-1, metavar="[PARAM=VALUE]...")
def usp_add(obj_path, settings, **kw):
    """Add a row to the table OBJECT names, with PARAM=VALUE settings.

    \b
    e.g. fwslots usp add URI Device.LocalAgent.Subscription. Enable=true \\
           NotifType=Event ReferenceList=Device.Boot!"""
    if not obj_path.endswith("."):
        raise click.BadParameter("%r is not an object path (it ends with '.')" % obj_path)
    ps = [{"param": k, "value": v, "required": True} for k, v in pairs(settings, "PARAM=VALUE")]
    t = target(kw)
    body = {"allow_partial": False, "create_objs": [{"obj_path": obj_path, "param_settings": ps}]}

    async def go():
        async with t.controller() as ctl:
            return await ctl.request(t.uri, t.agent_id, "add", body, t.timeout)
    r = error_of(run(go()))["add_resp"]["created_obj_results"][0]["oper_status"]
    if "oper_failure" in r:
        f = r["oper_failure"]
        raise UspFailure("USP error %s: %s" % (f.get("err_code"), f.get("err_msg")))
    ok = r["oper_success"]
    click.echo(ok["instantiated_path"])
    for k, v in sorted(ok.get("unique_keys", {}).items()):
        click.echo("  %s = %s" % (k, v))


@usp.command("delete")
@common
@click.argument("obj_paths", nargs=-1, required=True, metavar="OBJECT.N....")
def usp_delete(obj_paths, **kw):
    """Delete the rows named by their paths, all or nothing (Device.LocalAgent.Subscription.3)."""
    t = target(kw)

    async def go():
        async with t.controller() as ctl:
            return await ctl.request(t.uri, t.agent_id, "delete",
                                     {"allow_partial": False, "obj_paths": list(obj_paths)}, t.timeout)
    resp = error_of(run(go()))["delete_resp"]
    for r in resp.get("deleted_obj_results", []):
        st = r.get("oper_status", {})
        if "oper_failure" in st:
            f = st["oper_failure"]
            raise UspFailure("USP error %s: %s (%s)" % (f.get("err_code"), f.get("err_msg"), r.get("requested_path")))
        done = st.get("oper_success", {}).get("affected_paths", [])
        for p in done:
            click.echo("deleted %s" % p)
        if not done:
            click.echo("nothing to delete at %s" % r.get("requested_path"))


def _cmd_failure(what, f):
    return UspFailure("%s: USP error %s: %s" % (what, f.get("err_code"), f.get("err_msg")))


async def operate(ctl, t, command, inputs, key="", wait=0, persistent=False, until=None, echo=None, wait_bar=True):
    """Operate `command`; with wait, subscribe first and follow it to OperationComplete (and,
    with until, further notifications until until(kind, detail)). -> (result, [(kind, detail)])."""
    subs = []
    notes = []
    try:
        if wait:
            subs.append(await add_sub(ctl, t, "OperationComplete", command, persistent))
            if until:
                subs.append(await add_sub(ctl, t, "Event", "Device.LocalAgent.TransferComplete!,Device.Boot!",
                                          persistent))
        resp = error_of(await ctl.operate(t.uri, t.agent_id, command, inputs, key=key, timeout=t.timeout))
        res = resp["operate_resp"]["operation_results"][0]
        if "cmd_failure" in res:
            raise _cmd_failure(command, res["cmd_failure"])
        if echo and "req_obj_path" in res:
            echo("started %s" % res["req_obj_path"])
        if wait and "req_obj_path" in res:
            loop = asyncio.get_running_loop()
            end = loop.time() + wait
            done = False
            bar = waiting(wait, "waiting for %s" % command, root_progress() if wait_bar else False)
            tick = asyncio.ensure_future(_tick(bar))
            try:
                while True:
                    left = end - loop.time()
                    if left <= 0:
                        raise C.TransportError("%s: no %s within --wait %g s" % (
                            command, "OperationComplete" if not done else "end of the sequence", wait))
                    try:
                        kind, d = await next_note(ctl, left)
                    except asyncio.TimeoutError:
                        continue  # the limit has passed: say what did not come
                    notes.append((kind, d))
                    bar.clear()
                    if echo:
                        echo(note_line(kind, d, False))
                    if kind == "OperationComplete" and d["path"] == command:
                        if "failure" in d:
                            raise _cmd_failure(command + " failed", d["failure"])
                        done = True
                    if done and (until is None or until(kind, d)):
                        break
            finally:
                tick.cancel()
                bar.clear()
        return res, notes
    finally:
        await drop_subs(ctl, t, subs)


def root_progress():
    """The global --progress/--no-progress (None: only on a terminal)."""
    ctx = click.get_current_context(silent=True)
    return ((ctx.find_root().obj or {}).get("progress")) if ctx else None


async def _tick(bar):
    while True:
        bar.draw()
        await asyncio.sleep(0.2)


@usp.command("operate")
@common
@click.argument("command")
@click.argument("args", nargs=-1, metavar="[NAME=VALUE]...")
@click.option("--command-key", "key", default="", help="CommandKey (echoed in OperationComplete)")
@click.option("--wait", type=click.FloatRange(0, 3600), default=0,
              help="seconds to follow an async command to its OperationComplete (subscribes for it)")
def usp_operate(command, args, key, wait, **kw):
    """Run a USP command with NAME=VALUE inputs, optionally following it to OperationComplete.

    COMMAND is a full path, e.g. Device.DeviceInfo.FirmwareImage.2.Download()."""
    inputs = dict(pairs(args))
    t = target(kw)

    async def go():
        async with t.controller() as ctl:
            return await operate(ctl, t, command, inputs, key, wait)
    res, notes = run(go())
    if "req_obj_path" in res:
        click.echo("started %s" % res["req_obj_path"])
    for k, v in sorted(res.get("req_output_args", {}).get("output_args", {}).items()):
        click.echo("%s = %s" % (k, v))
    if notes:
        click.echo("completed %s" % command)


def pick_row(p):
    """The row a Download() should go to when --slot is not given: not the active or boot
    image, emptiest first (the agent still refuses a protected row, e.g. last-known-good)."""
    from firmware_slots.host import view
    v = view.from_params("", p)
    free = [r for r in v["FirmwareImage"] if r["Index"] not in (v["ActiveFirmwareImage"], v["BootFirmwareImage"])]
    if not free:
        raise UspFailure("no FirmwareImage row is free (all are active or the boot image); give --slot")
    order = {"NoImage": 0, "DownloadFailed": 1, "ValidationFailed": 1, "InstallationFailed": 1,
             "ActivationFailed": 1}
    return min(free, key=lambda r: (order.get(r["Status"], 2), r["Index"]))["Index"]


@usp.command("download")
@common
@click.argument("source", metavar="URL|FILE")
@click.option("--slot", type=click.IntRange(1, 64), default=None, help="FirmwareImage row (default: a free one)")
@click.option("--auto-activate", is_flag=True, help="activate and reboot into it once validated")
@click.option("--checksum", metavar="[ALG:]HEX", default=None,
              help="expected digest of a URL (computed for a local FILE)")
@click.option("--command-key", default="", help="CommandKey (default: fwslots-<time>)")
@click.option("--wait", type=click.FloatRange(0, 3600), default=120, show_default=True,
              help="seconds to follow it (0: start it and return)")
@click.option("--progress/--no-progress", "show_progress", default=None,
              help="progress bar on stderr (default: when stderr is a terminal)")
def usp_download(source, slot, auto_activate, checksum, command_key, wait, show_progress, **kw):
    """Download() an image into a FirmwareImage row, from a URL or a local FILE served here.

    A FILE is served by this command itself over CoAP Block2 from the --bind address (the
    agent must reach it); its size and SHA-256 go with the request. With --auto-activate
    it follows OperationComplete, TransferComplete! and Boot! of the new image (TP-469).
    """
    t = target(kw)
    from firmware_slots.host.cli import parse_checksum
    local = "://" not in source
    data = None
    if local:
        try:
            with open(source, "rb") as f:
                data = f.read()
        except OSError as e:
            raise click.BadParameter("cannot read %s: %s" % (source, e.strerror), param_hint="FILE")
    key = command_key or "fwslots-%d" % time.time()
    args = {"AutoActivate": "true" if auto_activate else "false"}
    if data is not None:
        args.update(FileSize=str(len(data)), CheckSumAlgorithm="SHA-256", CheckSum=hashlib.sha256(data).hexdigest())
    if checksum:
        alg, digest = parse_checksum(checksum)
        if data is not None and hashlib.new(alg.replace("-", "").lower(), data).digest() != digest:
            raise UspFailure("%s does not match --checksum %s: nothing was sent" % (source, alg))
        if data is None:
            args.update(CheckSumAlgorithm=alg, CheckSum=digest.hex())

    async def go():
        async with t.controller() as ctl:
            row = slot
            if row is None:
                row = pick_row(await get_params(ctl, t, ["Device.DeviceInfo."]))
            bar = progress(len(data) if data is not None else 0, "FirmwareImage.%d" % row,
                           show_progress if show_progress is not None else root_progress())
            if data is not None:
                args["URL"] = ctl.serve_bytes(os.path.basename(source) or "image", data,
                                              lambda done, total: bar.to(done))
            else:
                args["URL"] = source
            cmd = "%s%d.Download()" % (FW, row)
            until = (lambda kind, d: kind == "Boot!") if auto_activate else None
            with bar:
                res, notes = await operate(ctl, t, cmd, args, key, wait, persistent=auto_activate, until=until,
                                           echo=lambda s: (bar.clear(), click.echo(s)), wait_bar=False)
            return row, res, notes
    row, res, notes = run(go())
    if not wait:
        return
    boot = [d for k, d in notes if k == "Boot!"]
    if boot and boot[-1].get("FirmwareUpdated") != "true":
        raise UspFailure("FirmwareImage.%d did not come up: the device rebooted into its previous image "
                         "(Boot! FirmwareUpdated=%s)" % (row, boot[-1].get("FirmwareUpdated")))
    click.echo("FirmwareImage.%d: downloaded%s" % (row, ", activated and booted" if boot else ""))


@usp.command("activate")
@common
@click.argument("slot", type=click.IntRange(1, 64))
@click.option("--window", "windows", multiple=True, metavar="START-END[:MODE]",
              help="a TimeWindow in seconds from now, e.g. 0-3600:AnyTime (Mode: AnyTime, Immediately, "
                   "WhenIdle, ConfirmationNeeded); repeat for more; default 0-3600:Immediately")
@click.option("--command-key", default="", help="CommandKey")
@click.option("--wait", type=click.FloatRange(0, 3600), default=0,
              help="seconds to follow it to OperationComplete and the Boot! that follows")
def usp_activate(slot, windows, command_key, wait, **kw):
    """Activate() FirmwareImage.SLOT: make it the boot image and reboot into it."""
    args = {}
    for i, w in enumerate(windows or ["0-3600:Immediately"], 1):  # TR-181 requires a window: now
        span, _, mode = w.partition(":")
        a, _, b = span.partition("-")
        if not (a.isdigit() and b.isdigit()) or int(b) < int(a):
            raise click.BadParameter("%r is not START-END[:MODE] in seconds" % w, param_hint="--window")
        args["TimeWindow.%d.Start" % i] = a
        args["TimeWindow.%d.End" % i] = b
        args["TimeWindow.%d.Mode" % i] = mode or "AnyTime"
    t = target(kw)
    cmd = "%s%d.Activate()" % (FW, slot)

    async def go():
        async with t.controller() as ctl:
            return await operate(ctl, t, cmd, args, command_key, wait, persistent=True,
                                 until=(lambda k, d: k == "Boot!"), echo=click.echo)
    res, notes = run(go())
    if not wait:
        click.echo("started %s" % res.get("req_obj_path", cmd))


@usp.command("reboot")
@common
@click.option("--wait", type=click.FloatRange(0, 3600), default=0, help="seconds to wait for its Boot!")
def usp_reboot(wait, **kw):
    """Device.Reboot(): the device restarts (its boot stub decides which image runs)."""
    t = target(kw)

    async def go():
        async with t.controller() as ctl:
            subs = [await add_sub(ctl, t, "Event", "Device.Boot!", True)] if wait else []
            try:
                error_of(await ctl.operate(t.uri, t.agent_id, "Device.Reboot()", {}, key="fwslots-reboot",
                                           timeout=t.timeout))
                if wait:
                    loop = asyncio.get_running_loop()
                    end = loop.time() + wait
                    while True:
                        kind, d = await next_note(ctl, max(0.01, end - loop.time()))
                        if kind == "Boot!":
                            click.echo(note_line(kind, d, False))
                            return
            finally:
                await drop_subs(ctl, t, subs)
    run(go())
    if not wait:
        click.echo("rebooting")


# one subscription per notification type (ReferenceList is a comma list): 3 of the agent's few rows
WATCHED = (("OperationComplete", ",".join((FW + "*.Download()", FW + "*.Activate()", "Device.Reboot()"))),
           ("Event", "Device.Boot!,Device.LocalAgent.TransferComplete!"),
           ("ValueChange", "Device.DeviceInfo.SoftwareVersion"))


@usp.command("watch")
@common
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line: time, kind, detail")
@click.option("--for", "seconds", type=click.FloatRange(0, 10 ** 7), default=0,
              help="stop after this many seconds (default: until Ctrl-C)")
@click.option("--count", type=click.IntRange(0, 10 ** 6), default=0, help="stop after this many notifications")
def usp_watch(as_json, seconds, count, **kw):
    """Subscribe and print Boot!, TransferComplete!, OperationComplete and ValueChange as they arrive.

    The subscriptions are persistent (they survive the device's reboots) and are deleted
    when watch ends."""
    t = target(kw)

    async def go():
        async with t.controller() as ctl:
            subs = []
            try:
                for kind, ref in WATCHED:
                    subs.append(await add_sub(ctl, t, kind, ref, True))
                click.echo("watching %s as %s (reply-to %s)" % (t.uri, t.controller_id, ctl.reply_to), err=True)
                loop = asyncio.get_running_loop()
                end = loop.time() + seconds if seconds else None
                seen = 0
                while end is None or loop.time() < end:
                    try:
                        kind, d = await next_note(ctl, (end - loop.time()) if end else 3600)
                    except asyncio.TimeoutError:
                        continue
                    click.echo(note_line(kind, d, as_json))
                    sys.stdout.flush()
                    seen += 1
                    if count and seen >= count:
                        break
            finally:
                await drop_subs(ctl, t, subs)
    try:
        run(go())
    except click.Abort:
        pass


@usp.command("serve")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--bind", metavar="HOST:PORT", default="127.0.0.1:5690", show_default=True,
              help="where to listen (0.0.0.0 for every interface)")
@click.option("--for", "seconds", type=click.FloatRange(0, 10 ** 7), default=0,
              help="stop after this many seconds (default: until Ctrl-C)")
def usp_serve(folder, bind, seconds):
    """Serve the files of FOLDER over CoAP (Block2) for devices to Download() from.

    Prints each file's URL, size and SHA-256 (what Download() wants as CheckSum), then one
    line per completed transfer."""
    host, port = parse_bind(bind)
    files = {}
    for n in sorted(os.listdir(folder)):
        p = os.path.join(folder, n)
        if os.path.isfile(p):
            with open(p, "rb") as f:
                files[n] = f.read()
    if not files:
        raise click.UsageError("%s holds no files to serve" % folder)

    async def go():
        ctl = C.UspCoapController(C.DEFAULT_ID, host, port)
        await ctl.start()
        try:
            for n, data in files.items():
                def done(off, total, n=n):
                    if off >= total:
                        click.echo("served %s (%d bytes)" % (n, total))
                url = ctl.serve_bytes(n, data, done)
                click.echo("%s  %d bytes  SHA-256:%s" % (url, len(data), hashlib.sha256(data).hexdigest()))
            sys.stdout.flush()
            await asyncio.sleep(seconds if seconds else 10 ** 7)
        finally:
            await ctl.close()
    try:
        run(go())
    except click.Abort:
        pass
