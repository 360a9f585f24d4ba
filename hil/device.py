"""Device operations over the serial console: what the CLI and the tests do to a board.

Every operation is a small snippet run in the raw REPL against the boot stub's
SlotManager (bootstub.mgr), so it works on any board running the stub, virtual or real.
Images travel base64-encoded in chunks and are written by the device's streaming
ImageWriter (hashed on the fly, verified by read-back, format-checked by the manifest).
"""
import base64
import hashlib
import json
import time

from hil.serialdev import PROMPT, DeviceError, DeviceReset, DeviceTimeout, SerialDevice

INFO = ("import bootstub,json\n"
        "m=bootstub.mgr\n"
        "d=bootstub.decision\n"
        "print(json.dumps({'slots':[m.info(i) for i in range(m.n)] if m else [],"
        "'boot':m.boot_slot if m else -1,'lkg':m.lkg if m else -1,"
        "'running':bootstub.slot,'confirmed':bootstub.confirmed,"
        "'reason':d.reason if d else ''}))")


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

    def __init__(self, port, board=None, baud=115200, timeout=10.0):
        self.board = board  # a hil.virtual.VirtualBoard, or None for real hardware
        self._gen = board.generation if board else 0
        watch = (lambda: board.generation != self._gen) if board else None
        self.serial = SerialDevice(port, baud, timeout, watch)

    def close(self):
        self.serial.close()

    def exec(self, code, timeout=None):
        return self.serial.exec(code, timeout)

    def eval_json(self, code, timeout=None):
        return json.loads(self.exec(code, timeout).strip().splitlines()[-1])

    # -- state ------------------------------------------------------------------------
    def status(self):
        """{'slots': [TR-181 row dicts], 'boot', 'lkg', 'running', 'confirmed', 'reason'}."""
        return self.eval_json(INFO)

    def info(self):
        return self.status()["slots"]

    def verify(self, slot):
        return self.exec("import bootstub\nprint(bootstub.mgr.verify(%d))" % slot).strip() == "True"

    # -- changes ----------------------------------------------------------------------
    def install(self, slot, image, progress_cb=None, chunk=4096, name="", version=""):
        """Write `image` (bytes) into `slot`; returns the slot's info dict after finish()."""
        digest = hashlib.sha256(image).hexdigest()
        self.exec("import bootstub,binascii\nw=bootstub.mgr.install(%d,size=%d,algorithm='SHA-256',"
                  "checksum=binascii.unhexlify('%s'),name=%r,version=%r)" % (slot, len(image), digest, name, version))
        done = 0
        per_exec = chunk * 4
        while done < len(image):
            lines = []
            end = min(len(image), done + per_exec)
            for off in range(done, end, chunk):
                b64 = base64.b64encode(image[off:min(off + chunk, end)]).decode()
                lines.append("w.write(binascii.a2b_base64('%s'))" % b64)
            self.exec("\n".join(lines))
            done = end
            if progress_cb:
                progress_cb(done, len(image))
        return self.eval_json("import json\nprint(json.dumps(w.finish()))", timeout=30)

    def set_boot(self, slot):
        self.exec("import bootstub\nbootstub.mgr.set_boot(%d)" % slot)

    def confirm(self):
        return self.exec("import bootstub\nprint(bootstub.confirm())").strip() == "True"

    def reset(self):
        """Ask the device to reset itself (the stub runs again). Follow with wait_boot()."""
        self.serial.send("import bootstub\nbootstub.reset()")

    def wait_boot(self, timeout=30.0):
        """Read the console until the REPL prompt after a boot; returns a BootReport."""
        try:
            text = self.serial.read_until(PROMPT, timeout, watch=False)
        finally:
            if self.board:
                self._gen = self.board.generation
            self.serial.raw = False
        return BootReport(text.decode(errors="replace"))

    def reboot(self, timeout=30.0):
        self.reset()
        return self.wait_boot(timeout)


__all__ = ["Dut", "BootReport", "DeviceError", "DeviceReset", "DeviceTimeout", "SerialDevice"]
