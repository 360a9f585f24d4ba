"""`fwslots usp ...`: talk to an agent over the TR-369 CoAP binding (host only).

Each command opens a UspCoapController (aiocoap) with its own reply-to resource, sends
one USP request and prints the answer. A USP Error becomes exit status 1 with
"USP error CODE: message" on one line.
"""
import asyncio
import json

import click

from firmware_slots.host.controller import UspCoapController

DEFAULT_AGENT_ID = "os::000000-fwslots"


class UspFailure(click.ClickException):
    pass


def _error_of(msg):
    body = msg.get("body", {})
    if "error" in body:
        e = body["error"]
        detail = "; ".join("%s: %s" % (p.get("param_path", ""), p.get("err_msg", ""))
                           for p in e.get("param_errs", []))
        raise UspFailure("USP error %s: %s%s" % (e.get("err_code"), e.get("err_msg", ""),
                                                 " (" + detail + ")" if detail else ""))
    return body.get("response", {})


def _run(coro):
    try:
        return asyncio.run(coro)
    except asyncio.TimeoutError:
        raise UspFailure("no answer from the agent in time (is the URI right, and the agent id?)")
    except OSError as e:
        raise UspFailure("network: %s" % e)


def split_param(path):
    """'Device.DeviceInfo.BootFirmwareImage' -> ('Device.DeviceInfo.', 'BootFirmwareImage')."""
    i = path.rstrip(".").rfind(".")
    if i <= 0 or path.endswith("."):
        raise click.BadParameter("%r is not a parameter path (Object.Param)" % path)
    return path[:i + 1], path[i + 1:]


def get_params(agent_uri, agent_id, paths, timeout):
    async def go():
        async with UspCoapController() as ctl:
            return await ctl.get(agent_uri, agent_id, paths, timeout=timeout)
    resp = _error_of(_run(go()))["get_resp"]
    out = {}
    for rp in resp.get("req_path_results", []):
        if rp.get("err_code"):
            raise UspFailure("USP error %s: %s (%s)" % (rp["err_code"], rp.get("err_msg", ""),
                                                        rp.get("requested_path")))
        for res in rp.get("resolved_path_results", []):
            for k, v in sorted(res.get("result_params", {}).items()):
                out[res["resolved_path"] + k] = v
    return out


agent_uri_arg = click.argument("agent_uri", metavar="AGENT_URI")
agent_id_opt = click.option("--agent-id", envvar="FWSLOTS_AGENT_ID", default=DEFAULT_AGENT_ID, show_default=True,
                            help="the agent's USP EndpointID (env FWSLOTS_AGENT_ID)")
timeout_opt = click.option("--timeout", type=click.FloatRange(0.5, 3600), default=10, show_default=True,
                           help="seconds to wait for the reply")


@click.group("usp")
def usp():
    """Manage a device over USP (TR-369) on its CoAP MTP, e.g. coap://192.0.2.7:5683/usp."""


@usp.command("get")
@agent_uri_arg
@click.argument("paths", nargs=-1, required=True)
@agent_id_opt
@timeout_opt
@click.option("--json", "as_json", is_flag=True)
def usp_get(agent_uri, paths, agent_id, timeout, as_json):
    """Get parameters (partial paths and * wildcards work): PATH..."""
    out = get_params(agent_uri, agent_id, list(paths), timeout)
    if as_json:
        click.echo(json.dumps(out, indent=1))
    else:
        for k, v in out.items():
            click.echo("%s = %s" % (k, v))


@usp.command("set")
@agent_uri_arg
@click.argument("assignments", nargs=-1, required=True, metavar="PATH=VALUE...")
@agent_id_opt
@timeout_opt
def usp_set(agent_uri, assignments, agent_id, timeout):
    """Set parameters atomically (all or nothing), e.g. Device.DeviceInfo.BootFirmwareImage=..."""
    objs = {}
    for a in assignments:
        if "=" not in a:
            raise click.BadParameter("%r is not PATH=VALUE" % a)
        path, value = a.split("=", 1)
        obj, param = split_param(path)
        objs.setdefault(obj, []).append({"param": param, "value": value, "required": True})
    body = {"allow_partial": False,
            "update_objs": [{"obj_path": o, "param_settings": ps} for o, ps in objs.items()]}

    async def go():
        async with UspCoapController() as ctl:
            return await ctl.request(agent_uri, agent_id, "set", body, timeout)
    resp = _error_of(_run(go()))["set_resp"]
    for r in resp.get("updated_obj_results", []):
        st = r.get("oper_status", {})
        if "oper_failure" in st:
            f = st["oper_failure"]
            raise UspFailure("USP error %s: %s" % (f.get("err_code"), f.get("err_msg")))
        for u in st.get("oper_success", {}).get("updated_inst_results", []):
            for k, v in sorted(u.get("updated_params", {}).items()):
                click.echo("%s%s = %s" % (u.get("affected_path", ""), k, v))


@usp.command("operate")
@agent_uri_arg
@click.argument("command")
@click.argument("args", nargs=-1, metavar="[NAME=VALUE]...")
@agent_id_opt
@timeout_opt
@click.option("--key", default="", help="CommandKey")
@click.option("--wait", type=click.FloatRange(0, 3600), default=0,
              help="seconds to wait for OperationComplete of an async command (subscribes for it)")
def usp_operate(agent_uri, command, args, agent_id, timeout, key, wait):
    """Run COMMAND (e.g. Device.DeviceInfo.FirmwareImage.2.Download()) with NAME=VALUE inputs."""
    inputs = {}
    for a in args:
        if "=" not in a:
            raise click.BadParameter("%r is not NAME=VALUE" % a)
        k, v = a.split("=", 1)
        inputs[k] = v

    async def go():
        async with UspCoapController() as ctl:
            sub = None
            if wait:
                # a non-persistent subscription so the agent knows to tell us
                add = {"allow_partial": False, "create_objs": [{
                    "obj_path": "Device.LocalAgent.Subscription.", "param_settings": [
                        {"param": "Enable", "value": "true", "required": True},
                        {"param": "NotifType", "value": "OperationComplete", "required": True},
                        {"param": "ReferenceList", "value": command, "required": True},
                        {"param": "Persistent", "value": "false", "required": True}]}]}
                r = _error_of(await ctl.request(agent_uri, agent_id, "add", add, timeout))
                sub = r["add_resp"]["created_obj_results"][0]["oper_status"]["oper_success"]["instantiated_path"]
            resp = await ctl.operate(agent_uri, agent_id, command, inputs, key=key, timeout=timeout)
            done = None
            res = _error_of(resp)["operate_resp"]["operation_results"][0]
            if wait and "req_obj_path" in res:
                done = await ctl.expect(lambda m: "oper_complete" in
                                        m.get("body", {}).get("request", {}).get("notify", {}), wait)
            if sub:
                await ctl.request(agent_uri, agent_id, "delete", {"obj_paths": [sub]}, timeout)
            return res, done
    res, done = _run(go())
    if "cmd_failure" in res:
        f = res["cmd_failure"]
        raise UspFailure("USP error %s: %s" % (f.get("err_code"), f.get("err_msg")))
    if "req_obj_path" in res:
        click.echo("started %s" % res["req_obj_path"])
    for k, v in sorted(res.get("req_output_args", {}).get("output_args", {}).items()):
        click.echo("%s = %s" % (k, v))
    if done is not None:
        oc = done["body"]["request"]["notify"]["oper_complete"]
        if "cmd_failure" in oc:
            f = oc["cmd_failure"]
            raise UspFailure("%s failed: USP error %s: %s" % (command, f.get("err_code"), f.get("err_msg")))
        click.echo("completed %s" % command)
