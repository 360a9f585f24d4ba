"""Every mistake issue 11 lists, against the real CLI: a one-line message, the right exit
code (1 refused/failed/damaged, 2 usage, 3 transport), never a traceback, nothing lost."""
import hashlib
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from firmware_slots.host.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line(r, code):
    """exit `code`, exactly one 'Error:' line, no traceback; -> that line."""
    out = r.output
    assert r.exit_code == code, (r.exit_code, out, r.exc_info)
    assert "Traceback" not in out and not (r.exception and not isinstance(r.exception, SystemExit)), out
    errs = [l for l in out.splitlines() if l.startswith("Error")]
    assert len(errs) == 1, out
    return errs[0]


@pytest.fixture
def app_dir(tmp_path):
    d = tmp_path / "app"
    d.mkdir()
    (d / "main.py").write_text("print('hello')\n")
    (d / "manifest.json").write_text(json.dumps({"name": "blinky", "version": "1.2"}))
    return d


def test_image_build_succeeds_and_its_mistakes_are_one_line(tmp_path, app_dir):
    r = cli("image", "build", app_dir, "-o", tmp_path / "app.img")
    assert r.exit_code == 0, r.output  # was AttributeError after every successful build
    assert "blinky 1.2" in r.output and (tmp_path / "app.img").stat().st_size % 4096 == 0
    (app_dir / "manifest.json").write_text("[1, 2]")
    assert "JSON object" in one_line(cli("image", "build", app_dir, "-o", tmp_path / "b.img"), 1)
    (app_dir / "manifest.json").write_text("{not json")
    assert "not valid JSON" in one_line(cli("image", "build", app_dir, "-o", tmp_path / "b.img"), 1)
    assert "does not exist" in one_line(cli("image", "build", app_dir, "-o", tmp_path / "no" / "x.img"), 2)


def test_image_show_of_a_non_image(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(8192))
    assert "not an app image" in one_line(cli("image", "show", junk), 1)
    p = subprocess.run([sys.executable, "-m", "firmware_slots.host.appimage", "show", str(junk)],
                       capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 1 and "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_flash_init_into_a_missing_folder(tmp_path):
    assert "does not exist" in one_line(cli("flash", "init", tmp_path / "nope" / "d.flash"), 1)
    assert not (tmp_path / "nope").exists()


@pytest.fixture
def appflash(tmp_path):
    p = tmp_path / "d.flash"
    r = cli("flash", "init", p, "--slot-kib", "64")
    assert r.exit_code == 0, r.output
    return p


def test_install_runs_the_device_checks(tmp_path, appflash, app_dir):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(12288))
    assert "not a valid image" in one_line(cli("install", appflash, junk), 1)
    v = json.loads(cli("inspect", appflash, "--json").output)
    assert v["FirmwareImage"][0]["Status"] == "ValidationFailed" and not v["FirmwareImage"][0]["Available"]
    cli("image", "build", app_dir, "-o", tmp_path / "app.img")
    data = (tmp_path / "app.img").read_bytes()
    r = cli("install", appflash, tmp_path / "app.img", "--checksum", "sha256:" + hashlib.sha256(data).hexdigest())
    assert r.exit_code == 0, r.output  # algorithm names are case-insensitive
    assert "Available blinky 1.2" in r.output  # Name/Version from the manifest, not unnamed/unknown
    r = cli("install", appflash, tmp_path / "app.img", "--checksum", "Sha-512:" + "00" * 64)
    assert "SHA-512 mismatch" in one_line(r, 1)


def test_corrupt_journal_is_reported_never_rewritten(appflash):
    raw = bytearray(appflash.read_bytes())
    raw[8:40] = os.urandom(32)  # inside the only snapshot: its CRC fails
    appflash.write_bytes(bytes(raw))
    for cmd in (["inspect"], ["slots"], ["install"], ["boot"], ["set-boot"], ["confirm"]):
        args = cmd + [appflash] + ({"install": [appflash], "set-boot": ["1"]}.get(cmd[0], []))
        r = cli(*args)
        assert "journal is corrupt" in one_line(r, 1), cmd
        assert appflash.read_bytes() == bytes(raw), "%s rewrote the evidence" % cmd
    r = cli("journal", appflash)
    assert r.exit_code == 1 and "BAD" in r.output and "Traceback" not in r.output
    assert appflash.read_bytes() == bytes(raw)
    r = cli("inspect", appflash, "--repair")
    assert r.exit_code == 0 and "NoImage" in r.output, r.output
    assert cli("journal", appflash).exit_code == 0


def test_truncated_flash_is_reported_never_rewritten(appflash):
    raw = appflash.read_bytes()
    appflash.write_bytes(raw[:len(raw) // 2])
    assert "truncated" in one_line(cli("inspect", appflash), 1)
    assert "truncated" in one_line(cli("install", appflash, appflash), 1)
    assert appflash.stat().st_size == len(raw) // 2
    assert cli("inspect", appflash, "--repair").exit_code == 0
    assert appflash.stat().st_size == len(raw)


def test_inspect_reads_without_writing(tmp_path, appflash):
    """A read never writes, not even the journal of an erased raw dump (--profile layout)."""
    dump = tmp_path / "dump.bin"
    dump.write_bytes(b"\xff" * (4096 * 52))
    r = cli("inspect", dump, "--profile", "unix-virtual", "--json")
    assert r.exit_code == 0, r.output
    v = json.loads(r.output)
    assert [x["Index"] for x in v["FirmwareImage"]] == [1, 2] and v["ActiveFirmwareImage"] is None
    assert dump.read_bytes() == b"\xff" * (4096 * 52)
    assert "no layout file" in one_line(cli("inspect", dump), 2)
    before = appflash.read_bytes()
    r = cli("inspect", appflash)
    assert r.exit_code == 0, r.output
    assert appflash.read_bytes() == before


def test_legacy_sidecar_still_opens(tmp_path):
    from firmware_slots.sim import simdev
    p = tmp_path / "old.flash"
    flash, mgr = simdev.sim_device(4096, 1, 2, 8, 2, path=str(p))
    w = mgr.install(0, 5000, name="old", version="0.9")
    w.write(b"x" * 5000)
    w.finish()
    (tmp_path / "old.flash.json").write_text(json.dumps(
        {"sector_size": 4096, "write_size": 1, "journal_blocks": 2, "slot_blocks": 8, "nslots": 2, "max_attempts": 3}))
    v = json.loads(cli("inspect", p, "--json").output)
    assert v["FirmwareImage"][0]["Name"] == "old" and v["FirmwareImage"][0]["Size"] == 5000


def test_dev_on_a_missing_port_is_exit_1(tmp_path):
    r = cli("dev", "slots", "-p", tmp_path / "ttyNONE")
    assert "cannot open serial port" in one_line(r, 1)
    assert "cannot open serial port" in one_line(cli("inspect", "/dev/ttyNONEXISTENT9"), 1)


def test_version_and_help_read_well():
    r = cli("--version")
    assert r.exit_code == 0 and r.output.startswith("fwslots, version ")
    for cmd in ([], ["usp"], ["inspect"], ["usp", "download"], ["usp", "watch"], ["flash", "init"]):
        r = cli(*(cmd + ["--help"]))
        assert r.exit_code == 0, cmd
        for line in r.output.splitlines():
            if line.startswith("  "):  # command and option lines: none cut off with "..."
                assert not line.rstrip().endswith("..."), (cmd, line)


@pytest.fixture
def silent_port():
    """A UDP port that receives and never answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    yield s.getsockname()[1]
    s.close()


def test_usp_transport_failures_are_exit_3(silent_port):
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    verbs = (["get", "Device."], ["set", "Device.DeviceInfo.BootFirmwareImage=x"],
             ["operate", "Device.Reboot()"], ["inspect"])
    for verb in verbs:
        pre = ["usp"] if verb[0] != "inspect" else []
        line = one_line(cli(*(pre + verb[:1] + ["coap://127.0.0.1:%d/usp" % port] + verb[1:] + ["--timeout", "2"])), 3)
        assert "Connection refused" in line, verb
        t0 = time.monotonic()
        line = one_line(cli(*(pre + verb[:1] + ["coap://127.0.0.1:%d/usp" % silent_port] + verb[1:]
                              + ["--timeout", "1"])), 3)
        assert time.monotonic() - t0 < 3, "the timeout is honoured end to end"
        assert "within 1 s" in line, verb
    assert "cannot resolve" in one_line(cli("usp", "get", "coap://host.invalid/usp", "Device.", "--timeout", "3"), 3)
    for bad in ("http://127.0.0.1/usp", "not-a-uri", "coap:///usp"):
        assert "coap://" in one_line(cli("usp", "get", bad, "Device."), 2)
    assert "HOST:PORT" in one_line(cli("usp", "get", "coap://127.0.0.1/usp", "Device.", "--bind", "x:y"), 2)


def test_usp_wrong_path_is_exit_3():
    """A CoAP server that is not a USP agent at that path answers 4.04: say so."""
    from hil.peers import ImageServer
    srv = ImageServer({"x.img": b"x" * 100})
    try:
        line = one_line(cli("usp", "get", "coap://127.0.0.1:%d/nope" % srv.port, "Device.", "--timeout", "3"), 3)
        assert "4.04" in line and "/usp" in line
    finally:
        srv.close()


def test_download_checks_a_local_file_before_sending(tmp_path):
    img = tmp_path / "v2.img"
    img.write_bytes(b"v2" * 1000)
    r = cli("usp", "download", "coap://127.0.0.1:9/usp", img, "--checksum", "SHA-256:" + "00" * 32)
    assert "does not match --checksum" in one_line(r, 1)
    assert "cannot read" in one_line(cli("usp", "download", "coap://127.0.0.1:9/usp", tmp_path / "none.img"), 2)


def test_wildcard_bind_advertises_the_route(silent_port):
    from firmware_slots.host import usp_cli
    assert usp_cli.route_to("coap://127.0.0.1:%d/usp" % silent_port) == "127.0.0.1"
    line = one_line(cli("usp", "get", "coap://127.0.0.1:%d/usp" % silent_port, "Device.", "--bind", "0.0.0.0:0",
                        "--timeout", "1"), 3)
    assert "within 1 s" in line


# -- agent_main (the agent's command line, both interpreters) --------------------------------

def _agent_main(interp, *args, timeout=30):
    from mpy import micropython_exe
    exe = micropython_exe() if interp == "micropython" else sys.executable
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]), PYTHONPATH=ROOT)
    return subprocess.run([exe, "-m", "firmware_slots.agent_main"] + [str(a) for a in args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.parametrize("interp", ["micropython", "cpython"])
def test_agent_main_usage_errors_are_one_line(tmp_path, interp):
    if interp == "micropython":
        from mpy import micropython_exe
        if micropython_exe() is None:
            pytest.skip("MicroPython unix port not installed")
    p = _agent_main(interp, "--no-such-option", "1")
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines() == ["agent_main: unknown option --no-such-option (see the module docstring for options)"]
    p = _agent_main(interp, "--port", "many")
    assert p.returncode == 2 and "--port wants a number" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    missing = tmp_path / "no" / "such" / "dev.flash"
    p = _agent_main(interp, "--flash", missing, "--port", "0", "--seconds", "1")
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("agent_main: cannot create %s.json: " % missing), lines
    assert not missing.parent.exists()


def test_agent_main_reads_the_layout_fwslots_wrote(tmp_path):
    """flash init --slots 3: the agent serves 3 rows and never grows the file."""
    from mpy import micropython_exe
    if micropython_exe() is None:
        pytest.skip("MicroPython unix port not installed")
    import asyncio
    from support.coap_peers import free_udp_port
    from firmware_slots.host.controller import UspCoapController
    f = tmp_path / "dev.flash"
    r = cli("flash", "init", f, "--slots", "3", "--slot-kib", "64")
    assert r.exit_code == 0, r.output
    size = f.stat().st_size
    port = free_udp_port()
    from mpy import micropython_exe
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]))
    agent = subprocess.Popen([micropython_exe(), "-m", "firmware_slots.agent_main", "--flash", str(f), "--port", str(port),
                              "--endpoint-id", "os::0044FF-layout", "--seconds", "20"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert agent.stdout.readline().startswith("READY"), agent.stderr.read()

        async def get():
            async with UspCoapController() as c:
                return await c.get("coap://127.0.0.1:%d/usp" % port, "os::0044FF-layout",
                                   ["Device.DeviceInfo.FirmwareImageNumberOfEntries"], timeout=10)
        res = asyncio.run(get())
    finally:
        agent.terminate()
        agent.communicate(timeout=10)
    assert "'FirmwareImageNumberOfEntries': '3'" in str(res), res
    assert f.stat().st_size == size
