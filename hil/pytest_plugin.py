"""pytest plugin: `dut` and `virtual_board` fixtures; options --board and --port.

--board unix-virtual (default) starts a fresh virtual board per test and kills it in
teardown; any other profile name means real hardware on --port (tests that need power
cuts or flash files skip there).
"""
import os

import pytest

from hil.device import Dut


def pytest_addoption(parser):
    g = parser.getgroup("fwslots hardware-in-the-loop")
    g.addoption("--board", default=os.environ.get("FWSLOTS_TEST_BOARD", "unix-virtual"),
                help="board profile (boards/profiles/*.json); default unix-virtual")
    g.addoption("--port", default=os.environ.get("FWSLOTS_TEST_PORT"),
                help="serial port of a real board")


@pytest.fixture
def board_name(request):
    return request.config.getoption("--board")


@pytest.fixture
def make_virtual_board(tmp_path, board_name):
    """Factory: make_virtual_board(nslots=.., confirm_ms=..) -> started VirtualBoard."""
    if board_name != "unix-virtual":
        pytest.skip("needs the virtual board")
    from hil.virtual import VirtualBoard, micropython_exe
    if micropython_exe() is None:
        pytest.skip("MicroPython unix port not installed")
    boards = []

    def make(**kw):
        b = VirtualBoard(str(tmp_path / ("board%d" % len(boards))), **kw).start()
        boards.append(b)
        return b
    yield make
    for b in boards:
        b.stop()


@pytest.fixture
def make_dut(make_virtual_board, request):
    """Factory: make_dut(**board_options) -> Dut on a fresh virtual board, booted."""
    duts = []

    def make(**kw):
        b = make_virtual_board(**kw)
        d = Dut(b.link, b)
        duts.append(d)
        d.first_boot = d.wait_boot(20)
        return d
    yield make
    for d in duts:
        d.close()


@pytest.fixture
def dut(request, board_name):
    """The device under test: a fresh virtual board, or the real board on --port."""
    if board_name == "unix-virtual":
        make = request.getfixturevalue("make_dut")
        return make()
    port = request.config.getoption("--port")
    if not port:
        pytest.skip("--board %s needs --port" % board_name)
    d = Dut(port)
    request.addfinalizer(d.close)
    return d
