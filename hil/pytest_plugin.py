"""pytest plugin `fwslots` (registered through the pytest11 entry point in pyproject.toml).

Options (namespaced, so they coexist with pytest-embedded's --port/--baud and labgrid's --lg-*):
| option             | env                | meaning                                                       |
|--------------------|--------------------|---------------------------------------------------------------|
| --fwslots-board    | FWSLOTS_TEST_BOARD | unix-virtual (default: a fresh virtual board per test), a profile name, or a hardware-map id |
| --fwslots-port     | FWSLOTS_TEST_PORT  | /dev/ttyACM0, rfc2217://host:port, or labgrid://PLACE          |
| --fwslots-hw-map   | FWSLOTS_HW_MAP     | hardware map YAML (hil/hwmap.py)                              |
| --fwslots-baud     |                    | console baud rate (default: map, profile, 115200)             |

Fixtures: fwslots_dut (the device under test), fwslots_make_dut (factory of virtual DUTs with
board options), fwslots_make_virtual_board, fwslots_board_name (the profile), fwslots_target.
A DUT offers expect(), exec_cmd(), reset(), reboot(), power_cut() and console_log (its log file);
a failing test's report names every DUT log; with --junitxml its JUnit name ends in [board id]
(and a fwslots_board property names it in any case).
"""
import os
import re
import time

import pytest

from hil.device import Dut

VIRTUAL = "unix-virtual"
_DUTS = pytest.StashKey()


def pytest_addoption(parser):
    g = parser.getgroup("fwslots", "fwslots hardware-in-the-loop")
    g.addoption("--fwslots-board", default=os.environ.get("FWSLOTS_TEST_BOARD", VIRTUAL),
                help="unix-virtual (default), a board profile, or a hardware-map board id")
    g.addoption("--fwslots-port", default=os.environ.get("FWSLOTS_TEST_PORT"),
                help="serial port of a real board: /dev/ttyACM0, rfc2217://host:port or labgrid://PLACE")
    g.addoption("--fwslots-hw-map", default=os.environ.get("FWSLOTS_HW_MAP"),
                help="hardware map YAML naming boards, ports, power and reset")
    g.addoption("--fwslots-baud", type=int, default=None, help="console baud rate")


def resolve(config):
    """The board the options name: {'id', 'profile', 'virtual', 'port', 'baud', 'entry'}."""
    t = getattr(config, "_fwslots_target", None)
    if t is not None:
        return t
    board = config.getoption("--fwslots-board")
    port = config.getoption("--fwslots-port")
    baud = config.getoption("--fwslots-baud")
    entry = None
    hw = config.getoption("--fwslots-hw-map")
    if hw:
        from hil import hwmap
        boards = hwmap.load(hw)
        if board != VIRTUAL and (any(b["id"] == board for b in boards) or board not in hwmap.profiles()):
            entry = hwmap.find(boards, board)  # MapError names the map's boards
    if entry:
        t = {"id": entry["id"], "profile": entry["profile"], "virtual": False,
             "port": port or entry.get("port") or "hwmap", "baud": baud or entry["baud"], "entry": entry}
    else:
        t = {"id": board if not port else "%s@%s" % (board, os.path.basename(port.rstrip("/"))),
             "profile": board, "virtual": board == VIRTUAL and not port, "port": port,
             "baud": baud or 115200, "entry": None}
        if port and port.startswith("labgrid://"):
            t["id"] = port[len("labgrid://"):]
    config._fwslots_target = t
    return t


class FwslotsDut(Dut):
    """A Dut with the pytest-embedded style helpers."""

    power_fn = None      # power cycle when no virtual board: hardware map command or labgrid
    reset_fn = None
    board_id = ""
    _cursor = 0

    @property
    def can_power_cut(self):
        return self.board is not None or self.power_fn is not None

    @property
    def console_log(self):
        return self.log_path

    def exec_cmd(self, code, timeout=None):
        return self.exec(code, timeout)

    def expect(self, pattern, timeout=10.0):
        """Wait until the console (since the last expect) matches `pattern` (regex str/bytes)."""
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        s = self.serial
        end = time.monotonic() + timeout
        while True:
            m = rx.search(bytes(s.console), self._cursor)
            if m:
                self._cursor = m.end()
                return m
            if time.monotonic() > end:
                raise AssertionError("console never matched %r within %.1fs (log: %s); tail %r" % (
                    rx.pattern, timeout, self.console_log, bytes(s.console[-200:])))
            s.pull()

    def reset(self):
        if self.reset_fn:
            self.reset_fn()
            self.restarts += 1
        else:
            Dut.reset(self)

    def power_cut(self, delay=0.0):
        """Cut power now (or after `delay` s) and restore it; follow with wait_boot()."""
        if self.board is not None:
            return self.board.power_cut(delay)
        if self.power_fn is None:
            raise RuntimeError("board %s has no power control: give it power: in the hardware map "
                               "or reach it through a labgrid place with a power driver" % self.board_id)
        if delay:
            time.sleep(delay)
        self.power_fn()
        self.restarts += 1


def _track(request, dut):
    request.node.stash.setdefault(_DUTS, []).append(dut)


@pytest.fixture
def fwslots_target(request):
    try:
        return resolve(request.config)
    except ValueError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture
def fwslots_board_name(fwslots_target):
    """The profile of the board under test ("unix-virtual" for virtual boards)."""
    return fwslots_target["profile"] if not fwslots_target["virtual"] else VIRTUAL


@pytest.fixture
def fwslots_make_virtual_board(tmp_path, fwslots_target):
    """Factory: fwslots_make_virtual_board(nslots=.., confirm_ms=.., fs=..) -> started VirtualBoard."""
    if not fwslots_target["virtual"]:
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
def fwslots_make_dut(fwslots_make_virtual_board, fwslots_target, request):
    """Factory: fwslots_make_dut(**board_options) -> booted FwslotsDut on a fresh virtual board."""
    duts = []

    def make(**kw):
        b = fwslots_make_virtual_board(**kw)
        d = FwslotsDut(b.link, b)
        d.board_id = fwslots_target["id"]
        duts.append(d)
        _track(request, d)
        d.first_boot = d.wait_boot(20)
        return d
    yield make
    for d in duts:
        d.close()


def _hardware_dut(request, t):
    """A FwslotsDut on real hardware: hardware-map entry, plain port, or labgrid place."""
    port, power, entry, window = t["port"], None, t["entry"], (t["entry"] or {}).get("window", 1)
    if not port:
        pytest.skip("--fwslots-board %s needs --fwslots-port or a hardware map entry" % t["id"])
    if port.startswith("labgrid://"):
        from hil import farm
        places = request.config.__dict__.setdefault("_fwslots_places", {})
        name = port[len("labgrid://"):]
        if name not in places:  # reserved once per session, released at its end
            try:
                places[name] = farm.acquire(name, getattr(request.config.option, "lg_env", None))
            except farm.FarmError as e:
                pytest.fail(str(e), pytrace=False)
        place = places[name]
        port, window = place.url, 4  # TCP to the exporter: flow control end to end
        power = place.power_cycle if place.power is not None else None
    elif entry is not None:
        from hil import hwmap
        try:
            port = hwmap.resolve_port(entry) if port == "hwmap" else port
        except hwmap.MapError as e:
            pytest.skip(str(e))
        if entry.get("power"):
            power = lambda: hwmap.power_cycle(entry)  # noqa: E731
    log = str(request.getfixturevalue("tmp_path") / ("%s.log" % t["id"].replace("/", "_")))
    d = FwslotsDut(port, None, t["baud"], log=log, window=window)
    d.board_id = t["id"]
    d.power_fn = power
    if entry is not None and entry["reset"] == "power" and power:
        d.reset_fn = power
    elif entry is not None and entry["reset"] not in ("console", "power"):
        import subprocess
        d.reset_fn = lambda: subprocess.run(entry["reset"], shell=True, check=True, timeout=60)  # noqa: E731
    _track(request, d)
    request.addfinalizer(d.close)
    return d


@pytest.fixture
def fwslots_dut(request, fwslots_target):
    """The device under test: a fresh virtual board, or the real board the options name."""
    if fwslots_target["virtual"]:
        m = request.node.get_closest_marker("fwslots_board")
        return request.getfixturevalue("fwslots_make_dut")(**(m.kwargs if m else {}))
    return _hardware_dut(request, fwslots_target)


_FIXTURES = ("fwslots_dut", "fwslots_make_dut")


def pytest_configure(config):
    config.addinivalue_line("markers", "fwslots_board(**options): virtual board options (nslots, confirm_ms, "
                            "max_attempts) a test needs; on hardware the test checks what it can")


def pytest_unconfigure(config):
    for place in getattr(config, "_fwslots_places", {}).values():
        place.release()


def pytest_collection_modifyitems(config, items):
    """Every DUT test records its board id (a JUnit XML <property>)."""
    try:
        bid = resolve(config)["id"]
    except ValueError:
        return
    for it in items:
        if any(f in getattr(it, "fixturenames", ()) for f in _FIXTURES):
            it.user_properties.append(("fwslots_board", bid))


def _with_board(nodeid, bid):
    """test_x -> test_x[BOARD]; test_x[a-b] -> test_x[a-b-BOARD]."""
    return nodeid[:-1] + "-" + bid + "]" if nodeid.endswith("]") else nodeid + "[" + bid + "]"


def _junit_name(item, bid):
    """With --junitxml, the testcase name carries the board id (what record_xml_attribute does,
    without its experimental-API warning); node ids stay pytest's own, so --lf keeps working."""
    try:
        from _pytest import junitxml
        xml = item.config.stash.get(junitxml.xml_key, None)
        if xml is not None:
            name = junitxml.mangle_test_address(item.nodeid)[-1]
            xml.node_reporter(item.nodeid).add_attribute("name", _with_board(name, bid))
    except (ImportError, AttributeError):  # another pytest: the fwslots_board property remains
        pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    duts = item.stash.get(_DUTS, [])
    if not duts:
        return
    if rep.when == "setup":
        _junit_name(item, duts[0].board_id)
    logs = ["%s: %s" % (d.board_id, d.console_log) for d in duts]
    if rep.when == "call":
        for line in logs:
            rep.user_properties.append(("fwslots_console_log", line))
    if rep.failed:
        rep.sections.append(("fwslots DUT console log", "\n".join(logs)))
        if isinstance(rep.longrepr, str):
            rep.longrepr += "\nDUT console log: " + "; ".join(logs)
