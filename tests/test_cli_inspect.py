"""`fwslots inspect`: one virtual board read three ways (its flash file, its serial console,
its USP agent over CoAP) gives the same JSON, apart from the fields USP cannot carry
(firmware_slots/host/view.py USP_UNKNOWN, listed in the README)."""
import json

from click.testing import CliRunner

from mpy import requires_micropython

from firmware_slots.host import view
from firmware_slots.host.appimage import build
from firmware_slots.host.cli import main
from hil.peers import free_udp_port, wait_console

EID = "os::0044FF-inspect-1"

# an agent app that serves USP for a while, then returns to the stub's REPL (console free again)
AGENT = """import bootstub
from firmware_slots import app
from bootstub.agentapp import StubPlatform
mtp = app.agent(bootstub.mgr, {eid!r}, "127.0.0.1", {port}, "usp", platform=StubPlatform())
mtp.startup()
bootstub.confirm()
print("APP serving")
mtp.serve({ms})
mtp.close()
print("APP served")
"""


def inspect(*args):
    r = CliRunner().invoke(main, ["inspect"] + list(args) + ["--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


@requires_micropython
def test_one_board_three_ways(fwslots_make_virtual_board):
    import hil
    from hil.apps import app_image
    port = free_udp_port()
    agent = build(files={"main.py": AGENT.format(eid=EID, port=port, ms=6000)}, name="agent", version="1.0")
    board = fwslots_make_virtual_board()
    dut = hil.connect(board)
    try:
        dut.wait_boot(30)
        dut.install(0, agent)
        dut.install(1, app_image("blinky", "2.0"))
        dut.set_boot(0)
        mark = len(board.transcript)
        dut.reset()
        wait_console(board, "APP serving", mark, 30)
        over_usp = inspect("coap://127.0.0.1:%d/usp" % port, "--agent-id", EID, "--timeout", "5")
        from_file = inspect(board.flash_path)
        wait_console(board, "APP served", mark, 30)
    finally:
        dut.close()
    from_serial = inspect(board.link, "--timeout", "20")
    assert (over_usp["via"], from_file["via"], from_serial["via"]) == ("usp", "file", "serial")
    assert over_usp["ActiveFirmwareImage"] == 1 and over_usp["SoftwareVersion"] == "1.0"
    assert [r["Status"] for r in from_file["FirmwareImage"]] == ["Active", "Available"]
    assert from_file["FirmwareImage"][1]["Name"] == "blinky" and from_file["FirmwareImage"][1]["Size"] > 0
    # file and serial know everything: identical apart from where they came from
    strip = lambda v: {k: x for k, x in v.items() if k not in ("target", "via")}  # noqa: E731
    assert strip(from_file) == strip(from_serial)
    # USP carries TR-181 only: identical once the fields it cannot know are left out
    assert view.comparable(over_usp) == view.comparable(from_file) == view.comparable(from_serial)
    assert all(over_usp["FirmwareImage"][0][k] is None for k in view.USP_UNKNOWN if k in over_usp["FirmwareImage"][0])
    # and the table is the same one table, with the BootFailureLog under its name when set
    r = CliRunner().invoke(main, ["inspect", board.flash_path])
    assert r.exit_code == 0 and "boot,active,last-known-good" in r.output
