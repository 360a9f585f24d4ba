"""sim.ramflash: the board-like flash the heap bench measures on (block protocol, no allocation)."""
from mpy import requires_micropython, run_mp

from firmware_slots.sim.ramflash import RamFlash

CHECK = r'''
import gc
from firmware_slots.sim.ramflash import RamFlash
def check(path):  # a function: locals, unlike new globals, take no heap
    f = RamFlash(512, 8, erased=0x00, path=path)
    buf = bytearray(64)
    f.ioctl(6, 2)
    f.writeblocks(2, b"\xa5" * 64, 100)
    gc.collect()
    a = gc.mem_alloc()
    for i in range(200):  # the hot path: read, program, erase
        f.readblocks(2, buf, 100)
        f.writeblocks(3, buf, 7)
        f.ioctl(6, 4)
    grew = gc.mem_alloc() - a
    f.readblocks(2, buf, 68)
    print("RF", path is None, grew, f.ioctl(4, 0), f.ioctl(5, 0), bytes(buf[:32]) == bytes(32), bytes(buf[32:]) == b"\xa5" * 32)
check(None)
check(%r)
'''


def test_block_protocol_and_erased_value(tmp_path):
    for path in (None, str(tmp_path / "f.bin")):
        f = RamFlash(4096, 4, path=path)
        assert (f.ioctl(4, 0), f.ioctl(5, 0)) == (4, 4096)
        f.writeblocks(1, b"abc", 10)
        buf = bytearray(16)
        f.readblocks(1, buf, 8)
        assert bytes(buf) == b"\xff\xffabc" + b"\xff" * 11
        assert f.ioctl(6, 1) == 0
        f.readblocks(1, buf, 8)
        assert bytes(buf) == b"\xff" * 16
    # a file keeps what was written (a killed process leaves it there)
    RamFlash(4096, 4, path=path).writeblocks(3, b"kept")
    buf = bytearray(4)
    RamFlash(4096, 4, path=path).readblocks(3, buf)
    assert bytes(buf) == b"kept"


@requires_micropython
def test_no_heap_grows_per_operation_under_micropython(tmp_path):
    out = run_mp(CHECK % str(tmp_path / "mp.bin"))
    rows = [line.split()[1:] for line in out.splitlines() if line.startswith("RF")]
    assert rows == [["True", "0", "8", "512", "True", "True"], ["False", "0", "8", "512", "True", "True"]], out
