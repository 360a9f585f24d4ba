"""Device operations over the serial console: what the CLI and the tests do to a board.

The host speaks only the board's named command set (bootstub/cmd.py, VERSION below):
each operation is one short raw-REPL line `C.<command>(args)` answered by one line
"ok <json>" / "er <Error>: <message>". The first command on a connection checks the
board's command-set version and fails with a clear message on a mismatch, so a rename
on the device side can never silently break the host. Images travel base64 in frames
the device reads straight from its stdin (no per-frame compile), acknowledged with "."
so at most `window` frames are in flight (1 on a UART without flow control).
"""
import base64
import hashlib
import json

from hil.serialdev import PROMPT, DeviceError, DeviceReset, DeviceTimeout, SerialDevice

VERSION = 1          # bootstub/cmd.py VERSION this host speaks
FRAME = 3072         # bootstub/cmd.py FRAME
IMPORT = "from bootstub import cmd as C\n"


class CommandSetError(DeviceError):
    """The board has no command module, or one of another version."""

    def __init__(self, msg):
        Exception.__init__(self, msg)
        self.stderr = msg
        self.stdout = ""


class BootReport:
    """What the console showed from a reset to the REPL prompt."""

    def __init__(self, text):
        self.text = text
        self.lines = [l.strip() for l in text.replace("\r", "").split("\n")]
        self.stub = [l[len("fwslots: "):] for l in self.lines if l.startswith("fwslots: ")]
        self.runs = [l for l in self.stub if l.startswith("run image ")]
        self.resets = sum(1 for l in self.lines if l.startswith("[virtual board:"))

    @property
    def slot(self):
        """Slot (0-based) of the app that ran last, or None; the console names images 1-based."""
        return int(self.runs[-1].split()[2]) - 1 if self.runs else None

    def __repr__(self):
        return "BootReport(slot=%r, stub=%r)" % (self.slot, self.stub)


class Dut:
    """A device under test reached through its serial port."""

    def __init__(self, port, board=None, baud=115200, timeout=10.0, log=None, window=None):
        self.board = board  # a hil.virtual.VirtualBoard, or None for real hardware
        self._gen = board.generation if board else 0
        # restarts the host caused on hardware (reset, power cycle): ends waits like a virtual
        # board's generation does, and asks for a fresh version check
        self.restarts = 0
        watch = (lambda: board.generation != self._gen) if board else (lambda: self.restarts != self._gen)
        self.serial = SerialDevice(port, baud, timeout, watch, log)
        self.checked = None  # board generation whose command-set version was checked
        # frames in flight: a pty or USB CDC has flow control, a bare UART may not
        self.window = window or (4 if board else 1)
        self.log_path = log or (board.log_path if board else None)

    def close(self):
        self.serial.close()

    def exec(self, code, timeout=None):
        """Run Python source on the board (tests and deploy; the operations use cmd())."""
        return self.serial.exec(code, timeout)

    def eval_json(self, code, timeout=None):
        return json.loads(self.exec(code, timeout).strip().splitlines()[-1])

    # -- the command set ------------------------------------------------------------
    def check_version(self):
        """The board's [version, mpy, platform]; CommandSetError unless it speaks VERSION."""
        try:
            out = self.serial.exec(IMPORT + "C.version()")
        except DeviceError as e:
            if "ImportError" in e.stderr or "no module named" in e.stderr:
                raise CommandSetError("the board has no fwslots command module (bootstub/cmd.py): "
                                      "put the stub on it with `fwslots deploy`")
            raise
        v = _reply(out)
        if not isinstance(v, list) or v[0] != VERSION:
            raise CommandSetError("the board speaks fwslots device commands v%s, this host v%d: "
                                  "redeploy the stub with `fwslots deploy`" % (v[0] if isinstance(v, list) else v,
                                                                                VERSION))
        self.checked = self._gen_now()
        return v

    def _gen_now(self):
        return self.board.generation if self.board else self.restarts

    def cmd(self, name, *args, timeout=None):
        """Run one named command; its decoded reply. DeviceError carries an "er" reply."""
        if self.checked is None or self.checked != self._gen_now():
            self.check_version()
        return _reply(self.serial.exec(IMPORT + "C.%s(%s)" % (name, ",".join(repr(a) for a in args)), timeout))

    # -- state ------------------------------------------------------------------------
    def status(self):
        """{'slots': [TR-181 row dicts], 'boot', 'lkg', 'running', 'confirmed', 'reason', 'target'}."""
        r = self.cmd("status")
        return {"slots": r["s"], "boot": r["b"], "lkg": r["k"], "running": r["r"], "confirmed": r["c"],
                "reason": r["w"], "target": r["t"]}

    def info(self):
        return self.status()["slots"]

    def verify(self, slot):
        return self.cmd("verify", slot) is True

    def pick_target(self):
        """The slot the device would write a new image to (its own protection rule), or -1."""
        return self.status()["target"]

    # -- changes ----------------------------------------------------------------------
    def install(self, slot, image, progress_cb=None, name="", version="", window=None):
        """Write `image` (bytes) into `slot`; returns the slot's info dict after install_end."""
        window = window or self.window
        self.cmd("install_begin", slot, len(image), hashlib.sha256(image).hexdigest(), name, version)
        s = self.serial
        s.start(IMPORT + "C.install_chunk(%d)" % len(image))
        frames = [(o, min(o + FRAME, len(image))) for o in range(0, len(image), FRAME)]
        sent = acked = 0
        while acked < len(frames):
            while sent < len(frames) and sent - acked < window:
                o, e = frames[sent]
                s.write(base64.b64encode(image[o:e]))
                sent += 1
            s.read_until(b".")
            acked += 1
            if progress_cb:
                progress_cb(frames[acked - 1][1], len(image))
        _reply(s.finish())
        return self.cmd("install_end", timeout=30)

    def set_boot(self, slot):
        self.cmd("set_boot", slot)

    def confirm(self):
        return self.cmd("confirm") is True

    def reset(self):
        """Ask the device to reset itself (the stub runs again). Follow with wait_boot()."""
        if self.checked is None or self.checked != self._gen_now():
            self.check_version()
        self.serial.send(IMPORT + "C.reset()")
        self.restarts += 1

    def wait_boot(self, timeout=30.0):
        """Read the console until the REPL prompt after a boot; returns a BootReport."""
        try:
            text = self.serial.read_until(PROMPT, timeout, watch=False)
        finally:
            self._gen = self.board.generation if self.board else self.restarts
            self.serial.raw = False
        return BootReport(text.decode(errors="replace"))

    def reboot(self, timeout=30.0):
        self.reset()
        return self.wait_boot(timeout)


def _reply(out):
    """Decode the last "ok <json>" / "er <Error>: <msg>" line of a command's output."""
    lines = [l for l in out.replace("\r", "").split("\n") if l.startswith(("ok ", "er "))]
    if not lines:
        raise DeviceError("no reply from the command set: %r" % out[-200:])
    last = lines[-1]
    if last.startswith("er "):
        raise DeviceError(last[3:], out)
    try:
        return json.loads(last[3:])
    except ValueError:
        raise DeviceError("unreadable reply from the command set: %r" % last[:200], out)


__all__ = ["Dut", "CommandSetError", "BootReport", "DeviceError", "DeviceReset", "DeviceTimeout", "SerialDevice"]
