"""Boards in a labgrid farm: `labgrid://PLACE` as a port for the pytest plugin.

acquire(PLACE) reserves the place through the labgrid coordinator (LG_COORDINATOR, like
labgrid-client), finds its serial port (a NetworkSerialPort: an exporter's ser2net in RFC 2217
mode) and, when a labgrid environment YAML (--lg-env / LG_ENV) gives the place's target a
power driver (e.g. ExternalPowerDriver calling `python -m hil.virtual power DIR cycle`), uses
it for power_cut(). release() gives the place back if acquire() took it.

    targets:
      main:
        resources: {RemotePlace: {name: vb}}
        drivers:
          ExternalPowerDriver: {cmd_on: "...", cmd_off: "...", cmd_cycle: "..."}
"""
import os
import shutil
import subprocess
import sys


class FarmError(Exception):
    pass


def _client():
    exe = os.path.join(os.path.dirname(sys.executable), "labgrid-client")
    return exe if os.path.exists(exe) else shutil.which("labgrid-client")


def _lg(args, timeout=30):
    exe = _client()
    if exe is None:
        raise FarmError("labgrid is not installed: pip install 'firmware-slots[labgrid]'")
    return subprocess.run([exe] + args, capture_output=True, text=True, timeout=timeout)


class Place:
    def __init__(self, name, url, power, acquired):
        self.name = name
        self.url = url
        self.power = power          # a labgrid PowerProtocol driver, or None
        self._acquired = acquired

    def power_cycle(self):
        if self.power is None:
            raise RuntimeError("labgrid place %s has no power driver in its environment YAML" % self.name)
        self.power.cycle()

    def release(self):
        if self._acquired:
            self._acquired = False
            _lg(["-p", self.name, "release"])


def acquire(name, env=None):
    """Reserve place `name`; a Place whose .url pyserial opens. FarmError says what is missing."""
    env = env or os.environ.get("LG_ENV")
    try:
        from labgrid import Environment, Target
        from labgrid.resource import NetworkSerialPort, RemotePlace
    except ImportError:
        raise FarmError("labgrid is not installed: pip install 'firmware-slots[labgrid]'")
    p = _lg(["-p", name, "acquire"])
    out = (p.stdout + p.stderr).strip()
    mine = p.returncode == 0
    if not mine and "already acquired by" not in out:
        raise FarmError("labgrid place %s: %s" % (name, out.splitlines()[-1] if out else "acquire failed"))
    try:
        power = None
        if env:
            target = Environment(env).get_target("main")
            if target is None:
                raise FarmError("labgrid environment %s has no target 'main'" % env)
            try:
                power = target.get_driver("PowerProtocol")
            except Exception:  # labgrid's NoDriverFoundError: no power control for this place
                power = None
        else:
            target = Target("fwslots-" + name)
            RemotePlace(target, name=name)
        port = target.get_resource(NetworkSerialPort)
        # a pty or a board without modem lines: ser2net cannot acknowledge DTR/RTS (labgrid does the same)
        url = "rfc2217://%s:%d?ign_set_control" % (port.host, port.port)
    except FarmError:
        if mine:
            _lg(["-p", name, "release"])
        raise
    except Exception as e:
        if mine:
            _lg(["-p", name, "release"])
        raise FarmError("labgrid place %s: %s: %s" % (name, type(e).__name__, e))
    return Place(name, url, power, mine)
