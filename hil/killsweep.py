"""Process-kill sweep on the virtual board: SIGKILL at seeded random moments during image
writing, boot counting and confirm; after each cut, check over the serial port that the
board boots a verified image and the last-known-good image is intact.

Kill points:
  write    exact: the device SIGKILLs itself before its k-th flash program/erase while an
           image streams in over the console and BootFirmwareImage is set (k uniform over
           the whole operation, measured in a calibration run);
  upgrade  timed: SIGKILL at a random moment of the reset -> trial boot -> confirm chain;
  failing  timed: SIGKILL at a random moment of the crash -> reset -> count -> fallback chain.
"""
import hashlib
import os
import random
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from hil.apps import app_image
from hil.device import Dut
from hil.serialdev import DeviceError, DeviceReset, DeviceTimeout
from hil.virtual import VirtualBoard

V1 = app_image("demo", "1.0")
V2 = app_image("demo", "2.0", pad=12000)
V2BAD = app_image("demo", "2.1", "crash")
KNOWN = {hashlib.sha256(x).hexdigest(): x for x in (V1, V2, V2BAD)}


class HarnessError(Exception):
    """The sweep's own machinery failed (a board would not start): not evidence of a brick."""


def _booted(d, timeout=30):
    """wait_boot, but a missed prompt is not fatal: a board that answers the raw REPL is up."""
    try:
        d.wait_boot(timeout)
    except DeviceTimeout:
        d.exec("pass", timeout=5)  # DeviceTimeout again: it really did not come back


class Sweep:
    def __init__(self, workdir=None, seed=1, points=110, workers=2):
        self.dir = workdir or tempfile.mkdtemp(prefix="fwslots-killsweep-")
        self.seed = seed
        self.points = points
        self.workers = workers
        self.results = []

    def _board(self, name, flash=None):
        """A started board on a copy of `flash`; a failed start is retried once (a loaded
        machine can miss a boot prompt), then it is a harness error, not a brick."""
        for attempt in (1, 2):
            d = os.path.join(self.dir, name)
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            path = os.path.join(d, "flash.bin")
            if flash:
                shutil.copyfile(flash, path)
            b = VirtualBoard(d, flash=path).start()
            dut = None
            try:
                dut = Dut(b.link, b)
                dut.wait_boot(20)
                return b, dut
            except Exception as e:
                if dut is not None:
                    dut.close()
                b.stop()
                if attempt == 2:
                    raise HarnessError("board start failed twice: %s: %s" % (type(e).__name__, e))

    def prepare(self):
        """Flash files for the three starting states, and the write phase's op count."""
        b, d = self._board("base")
        try:
            d.install(0, V1)
            d.set_boot(0)
            assert d.reboot().slot == 0
            d.exec("pass")
        finally:
            d.close()
            b.stop()
        self.s0 = os.path.join(self.dir, "s0.bin")
        shutil.copyfile(b.flash_path, self.s0)
        self.s1, self.write_ops = self._state("s1", V2)
        self.s2, _ = self._state("s2", V2BAD)
        self.t_upgrade = self._chain_time(self.s1)
        self.t_failing = self._chain_time(self.s2)

    def _state(self, name, image):
        b, d = self._board("prep-" + name, self.s0)
        try:
            before = int(d.exec("import bootstub\nprint(bootstub.board.flash.ops)"))
            d.install(1, image)
            d.set_boot(1)
            ops = int(d.exec("print(bootstub.board.flash.ops)")) - before
        finally:
            d.close()
            b.stop()
        path = os.path.join(self.dir, name + ".bin")
        shutil.copyfile(b.flash_path, path)
        return path, ops

    def _chain_time(self, flash):
        b, d = self._board("time", flash)
        try:
            t = time.monotonic()
            d.reboot(30)
            return time.monotonic() - t
        finally:
            d.close()
            b.stop()

    def plan(self):
        rng = random.Random(self.seed)
        kinds = ["write"] * (self.points // 2) + ["upgrade"] * (self.points // 4)
        kinds += ["failing"] * (self.points - len(kinds))
        out = []
        for i, k in enumerate(kinds):
            if k == "write":
                out.append((i, k, rng.randrange(self.write_ops)))
            else:
                t = self.t_upgrade if k == "upgrade" else self.t_failing
                out.append((i, k, round(rng.uniform(0, t), 4)))
        return out

    def run_point(self, point):
        i, kind, at = point
        start = self.s0 if kind == "write" else self.s1 if kind == "upgrade" else self.s2
        res = {"i": i, "kind": kind, "at": at}
        try:
            b, d = self._board("p%d" % (i % (self.workers * 2)), start)
        except HarnessError as e:
            res.update(ok=None, harness_error=str(e))
            return res
        try:
            gen = b.generation
            if kind == "write":
                try:
                    d.exec("import bootstub\nbootstub.board.flash.arm_cut(%d)" % at)
                    d.install(1, V2)
                    d.set_boot(1)
                except (DeviceReset, DeviceTimeout, DeviceError):
                    pass
                if b.wait_generation(gen, 2):
                    _booted(d)
            else:
                d.reset()
                cut = b.power_cut(at)
                _booted(d)
                g1 = b.generation
                cut.join(at + 10)
                # the cut came after that prompt: wait for its power-up and boot again
                if cut.killed is not None and cut.killed >= g1:
                    b.wait_generation(cut.killed, 10)
                    _booted(d)
            res["cut"] = any(e["cause"] == "power" for e in b.events)
            st = d.status()
            run = st["running"]
            rows = st["slots"]
            res["running"] = run
            res["boot_ok"] = run is not None and run >= 0 and d.verify(run) and \
                rows[run]["SHA256"] in KNOWN
            lkg = st["lkg"]
            res["lkg_ok"] = lkg >= 0 and d.verify(lkg) and rows[lkg]["SHA256"] in KNOWN
            res["v1_intact"] = lkg == 1 or (rows[0]["SHA256"] == hashlib.sha256(V1).hexdigest() and d.verify(0))
            res["boot_slot_ok"] = st["boot"] in (0, 1)
            res["ok"] = res["boot_ok"] and res["lkg_ok"] and res["v1_intact"] and res["boot_slot_ok"]
        except (DeviceTimeout, DeviceError, DeviceReset) as e:  # the board did not come back: bricked
            res.update(ok=False, error="%s: %s" % (type(e).__name__, e))
        except Exception as e:  # our side broke (pty, thread, file): counted apart from bricks
            res.update(ok=None, harness_error="%s: %s" % (type(e).__name__, e))
        finally:
            d.close()
            b.stop()
        return res

    def run(self):
        self.prepare()
        with ThreadPoolExecutor(self.workers) as ex:
            self.results = list(ex.map(self.run_point, self.plan()))
        return self.summary()

    def summary(self):
        rs = self.results
        return {
            "kill_points_tested": sum(1 for r in rs if r.get("ok") is not None),
            "power_cuts_landed": sum(1 for r in rs if r.get("cut")),
            "bricked": sum(1 for r in rs if r.get("ok") is False),
            "harness_errors": sum(1 for r in rs if r.get("ok") is None),
            "by_kind": {k: sum(1 for r in rs if r["kind"] == k) for k in ("write", "upgrade", "failing")},
            "write_ops": self.write_ops,
            "seed": self.seed,
            "failures": [r for r in rs if r.get("ok") is False][:5],
            "harness_failures": [r for r in rs if r.get("ok") is None][:5],
        }

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)
