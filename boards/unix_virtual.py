"""unix-virtual: the MicroPython unix port run by hil/virtual.py.

The launcher passes, in the environment:
  FWSLOTS_FLASH        flash file (a NorFlash in file mode: a killed process keeps what it wrote)
  FWSLOTS_RESET_CAUSE  why this process started: power | reset | wdt
  FWSLOTS_WDT          file the confirm deadline is written to (absolute time.time_ns());
                       the launcher SIGKILLs and restarts the process when it passes
  FWSLOTS_CUT_AT       optional: SIGKILL this process just before its k-th program/erase
reset() sends SIGTERM to its own process (sys.exit would be caught by `micropython -i`,
which the launcher uses to get a REPL after boot.py); the launcher restarts the process
whenever it ends: SIGTERM or any exit = reset, SIGKILL = power cut, deadline = watchdog.
"""

import os
import sys
import time

from firmware_slots.sim.norsim import NorFlash
from firmware_slots.core.layout import windows as carve

RESET_EXIT = 75


class CutFlash(NorFlash):
    """NorFlash that can kill its own process (a power cut) before a given mutating op."""

    cut_at = -1

    def _tick(self, kind, sector):
        if self.ops == self.cut_at:
            os.system("kill -9 $PPID")  # the shell's parent is this interpreter
            time.sleep(5)
        return NorFlash._tick(self, kind, sector)

    def arm_cut(self, more_ops):
        """Cut power just before the `more_ops`-th next program/erase (0 = the next one)."""
        self.cut_at = self.ops + more_ops


class Deadline:
    def __init__(self, path, ms):
        self.path = path
        with open(path, "w") as f:
            f.write("%d %d" % (time.time_ns() + ms * 1000000, ms))

    def cancel(self):
        try:
            os.remove(self.path)
        except OSError:
            pass


class Board:
    mode = "app"

    def __init__(self, profile):
        self.profile = profile
        fl = profile["flash"]
        self.write_size = fl.get("write_size", 1)
        path = fl.get("path") or os.getenv("FWSLOTS_FLASH") or "fwslots.flash"
        self.flash = CutFlash(fl["sector"], fl["sectors"], self.write_size, path, fl.get("erased", 255))
        cut = os.getenv("FWSLOTS_CUT_AT")
        if cut:
            self.flash.cut_at = int(cut)

    def devices(self):
        j, s = carve(self.flash, self.profile)
        return j, s

    def reset(self):
        os.system("kill -TERM $PPID")
        time.sleep(5)
        sys.exit(RESET_EXIT)  # only if kill failed

    def reset_cause(self):
        return os.getenv("FWSLOTS_RESET_CAUSE") or "power"

    def deadline(self, ms):
        return Deadline(os.getenv("FWSLOTS_WDT") or "fwslots.wdt", ms)

    def confirmed(self):
        pass

    def reads(self):
        return sum(self.flash.reads)
