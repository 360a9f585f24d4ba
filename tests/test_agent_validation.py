"""One validation path: the standalone agent (agent_main under MicroPython, flash file whose
layout file says mode "app") runs the slot manager's format check on a USP Download(): an
image whose checksum is right but whose littlefs is corrupt is refused (ValidationFailed,
TransferComplete! 7022 "invalid image"), never made Available, never activated; the same
image rebuilt intact goes through."""
import asyncio
import hashlib
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "device"))

from mpy import requires_micropython  # noqa: E402

aiocoap = pytest.importorskip("aiocoap")
pytest.importorskip("littlefs")

from support.agent_proc import AGENT_ID, AgentProc, run  # noqa: E402

from firmware_slots import app  # noqa: E402
from firmware_slots.host import appimage  # noqa: E402
from firmware_slots.host.controller import UspCoapController  # noqa: E402
from firmware_slots.usp import codec  # noqa: E402

FW = "Device.DeviceInfo.FirmwareImage."


def _app(version):
    return appimage.build(files={"main.py": b"print('v%s')\n" % version.encode()}, name="app",
                          version=version)


def _profile(mode):
    return app.profile_from_numbers(4096, None, 1, 2, 16, 2, mode=mode)


def _flash(path):
    # the host writes v1 without the check (core.appimage needs MicroPython's vfs); the agent
    # reads the layout file, which says "app"
    flash, mgr = app.open_flash_file(str(path), _profile("raw"))
    v1 = _app("1.0")
    w = mgr.install(0, len(v1), "SHA-256", hashlib.sha256(v1).digest())
    w.write(v1)
    w.finish()
    mgr.boot()
    mgr.confirm()
    flash.close()
    with open(str(path) + ".json", "w") as f:
        json.dump(_profile("app"), f)


def _events(ctl):
    out = []
    for rec, _ in ctl.received:
        p = codec.record_payload(rec)
        n = codec.decode_msg(p).get("body", {}).get("request", {}).get("notify") if p else None
        if n:
            out.append(n)
    return out


@requires_micropython
def test_agent_main_checks_app_format(tmp_path):
    _flash(tmp_path / "dev.flash")
    bad = bytearray(_app("2.0"))
    for blk in (0, 1):  # both littlefs superblock copies: no file system, same length
        bad[blk * 4096:blk * 4096 + 64] = bytes(64)
    (tmp_path / "bad.img").write_bytes(bad)
    good = _app("2.0")
    (tmp_path / "good.img").write_bytes(good)
    a = AgentProc(tmp_path / "dev.flash", seconds=60)

    async def download(ctl, name, data, key):
        ctl.received.clear()
        await ctl.operate(a.uri, AGENT_ID, FW + "2.Download()", {
            "URL": "file://%s" % (tmp_path / name), "AutoActivate": "true",
            "CheckSumAlgorithm": "SHA-256", "CheckSum": hashlib.sha256(data).hexdigest()}, key=key)
        for _ in range(200):
            ev = _events(ctl)
            if any("oper_complete" in n for n in ev) or not a.alive():
                return ev
            await asyncio.sleep(0.05)
        raise AssertionError("no OperationComplete")

    async def go():
        async with UspCoapController("self::val") as ctl:
            for nt, ref in (("OperationComplete", FW + "*.Download()"),
                            ("Event", "Device.LocalAgent.TransferComplete!")):
                await ctl.request(a.uri, AGENT_ID, "add", {"create_objs": [{
                    "obj_path": "Device.LocalAgent.Subscription.", "param_settings": [
                        {"param": k, "value": v, "required": True} for k, v in (
                            ("Enable", "true"), ("NotifType", nt), ("ReferenceList", ref))]}]})
            ev = await download(ctl, "bad.img", bad, "bad")
            oc = [n["oper_complete"] for n in ev if "oper_complete" in n][0]
            tc = [n["event"]["params"] for n in ev if "event" in n][0]
            assert oc["cmd_failure"]["err_code"] == 7022, oc
            assert tc["FaultCode"] == "7022" and tc["FaultString"].startswith("invalid image: "), tc
            m = await ctl.get(a.uri, AGENT_ID, ["Device.DeviceInfo."])
            res = m["body"]["response"]["get_resp"]["req_path_results"][0]["resolved_path_results"]
            v = {r["resolved_path"] + k: x for r in res for k, x in r["result_params"].items()}
            assert v[FW + "2.Status"] == "ValidationFailed" and v[FW + "2.Available"] == "false", v
            assert v["Device.DeviceInfo.ActiveFirmwareImage"] == FW + "1"
            assert v["Device.DeviceInfo.BootFirmwareImage"] == FW + "1"
            assert a.alive()  # AutoActivate did not reboot into it
            # the same image intact passes the same check: AutoActivate resets the agent
            await download(ctl, "good.img", good, "good")
    run(go())
    out, err = a.stop()
    assert "REBOOT" in out and "Traceback" not in err, (out, err)
    flash, mgr = app.open_flash_file(str(tmp_path / "dev.flash"), _profile("raw"))
    assert mgr.info(1)["Available"] and mgr.boot_slot == 1
    flash.close()
