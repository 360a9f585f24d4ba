"""Host-side harness: serial transport (serialdev), device operations over the board's command
set (device), the virtual board (virtual), deploy, hardware maps (hwmap), labgrid places
(farm), the pytest plugin `fwslots` (pytest_plugin), the kill sweep.

For the CLI:
    board = start_virtual(workdir, nslots=2)   # VirtualBoard: .port .link .pid .flash_path, .stop()
    dut = connect(board)                       # or connect("/dev/ttyACM0") for real hardware
    dut.wait_boot(); dut.status(); dut.info(); dut.install(slot, image, progress_cb)
    dut.set_boot(slot); dut.reset(); dut.wait_boot(); dut.exec(code)
"""


def start_virtual(workdir, **options):
    from hil.virtual import VirtualBoard
    return VirtualBoard(workdir, **options).start()


def connect(target, baud=None, timeout=10.0):
    """A Dut on a VirtualBoard or on a serial port path (or pyserial URL); baud default
    $FWSLOTS_BAUD, else 115200 (so every `fwslots dev` verb honours it)."""
    import os
    from hil.device import Dut
    baud = baud or int(os.environ.get("FWSLOTS_BAUD") or 115200)
    if hasattr(target, "link"):
        return Dut(target.link, target, baud, timeout)
    return Dut(target, None, baud, timeout)
