"""The virtual board: the MicroPython unix port running the boot stub over a flash file,
its console on a pseudo-terminal that pyserial and mpremote open like a USB board.

    board = VirtualBoard(workdir).start()
    board.port        -> "/dev/pts/N" (also the symlink workdir/console)
    board.power_cut(delay=0.2)   SIGKILL at that moment; the board powers up again
    board.stop()

Two pty pairs and a relay thread: the client side (board.port) stays the same across
device restarts, like a USB-serial adapter whose board reboots behind it. The device
side is the child's stdin/stdout/stderr (`micropython -i bootstub/boot.py`, raw mode).
Console output while no host has the port open is kept (the last BACKLOG bytes) and
delivered once one opens it, like a USB CDC board's buffer; while a host has it open, a
slow reader slows the device down instead of losing output.

The board's filesystem is its own folder, workdir/fs (the process's cwd, so
`mpremote cp x :y` lands there). fs="repo" (default) runs the device code from this
checkout; fs="empty" starts with nothing on it: the power-up runs fs/boot.py only once
something (fwslots deploy) has put it there, and imports only from fs.

A supervisor thread plays the hardware around the chip:
- the process ends on its own (SIGTERM from boards.unix_virtual.reset(), any exit) -> reset;
- SIGKILL (power_cut(), or the device's own FWSLOTS_CUT_AT hook) -> power cut;
- the confirm deadline the stub writes to the watchdog file passes -> SIGKILL, watchdog reset.
Each start gets FWSLOTS_RESET_CAUSE = power | reset | wdt.
"""
import errno
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import termios
import threading
import time
import tty

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BOOT = os.path.join(ROOT, "bootstub", "boot.py")
PROFILES = os.path.join(ROOT, "boards", "profiles")
BACKLOG = 65536      # console bytes kept while the port is closed
OPEN_SETTLE = 0.05   # s after a host opens the port before output flows (pyserial flushes input on open)
# what a MicroPython board does at power-up with an empty or deployed filesystem
POWER_ON = ("import os\ntry:\n os.stat('boot.py')\nexcept OSError:\n pass\n"
            "else:\n exec(open('boot.py').read())\n")


def micropython_exe():
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    return here if os.path.exists(here) else shutil.which("micropython")


def _raw_pty():
    m, s = os.openpty()
    tty.setraw(s)
    attrs = termios.tcgetattr(s)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(s, termios.TCSANOW, attrs)
    fl = fcntl.fcntl(m, fcntl.F_GETFL)
    fcntl.fcntl(m, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    return m, s


class VirtualBoard:
    def __init__(self, workdir, profile="unix-virtual", nslots=None, confirm_ms=None,
                 max_attempts=None, flash=None, heapsize=None, log=None, fs="repo"):
        self.workdir = os.path.abspath(workdir)
        if fs not in ("repo", "empty"):
            raise ValueError("fs is 'repo' or 'empty', not %r" % (fs,))
        self.fs = fs
        self.fs_path = os.path.join(self.workdir, "fs")
        os.makedirs(self.fs_path, exist_ok=True)
        path = profile if profile.endswith(".json") else os.path.join(PROFILES, profile + ".json")
        with open(path) as f:
            p = json.load(f)
        if nslots:
            if nslots > len(p["slots"]):
                raise ValueError("profile %s has room for %d slots" % (p["name"], len(p["slots"])))
            p["nslots"] = nslots
        boot = p.setdefault("boot", {})
        if confirm_ms:
            boot["confirm_ms"] = confirm_ms
        if max_attempts:
            boot["max_attempts"] = max_attempts
        self.profile = p
        self.flash_path = os.path.abspath(flash) if flash else os.path.join(self.workdir, "flash.bin")
        # the layout file convention: FILE.json next to FILE, so `fwslots inspect flash.bin` reads it
        self.profile_path = self.flash_path + ".json"
        with open(self.profile_path, "w") as f:
            json.dump(p, f, indent=1)
        self.wdt_path = os.path.join(self.workdir, "wdt")
        self.pid_path = os.path.join(self.workdir, "device.pid")    # for `python -m hil.virtual power`
        self.off_path = os.path.join(self.workdir, "power.off")     # exists: held powered off
        self.link = os.path.join(self.workdir, "console")
        self.heapsize = heapsize
        self.log_path = log or os.path.join(self.workdir, "console.log")
        self.proc = None
        self.generation = 0          # process starts so far
        self.events = []             # one dict per process end: gen, pid, cause, how it ended
        self.cause = "power"
        self.cut_next = None         # FWSLOTS_CUT_AT for the next start only
        self.transcript = bytearray()
        self._cond = threading.Condition()
        self._stop = False
        self._killing = None         # why the launcher is killing the child: power | wdt
        self._to_dev = bytearray()
        self.host_bytes = 0          # bytes the host wrote to the port (wire bytes towards the board)
        self._threads = []

    # -- lifecycle ------------------------------------------------------------
    def start(self):
        self.cm, cs = _raw_pty()          # client side: the "USB serial" port
        self.dm, self.ds = _raw_pty()     # device side: the child's stdio
        self.port = os.ttyname(cs)
        os.close(cs)  # unopened until a host opens board.port: the relay sees POLLHUP
        self.cs = None
        try:
            os.unlink(self.link)
        except OSError:
            pass
        os.symlink(self.port, self.link)
        self._log = open(self.log_path, "ab")
        self._spawn()
        for fn in (self._relay, self._supervise):
            t = threading.Thread(target=fn, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop = True
        p = self.proc
        if p and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait(5)
        for t in self._threads:
            t.join(2)
        for fd in (self.cm, self.dm, self.ds):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.unlink(self.link)
        except OSError:
            pass
        self._log.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def info(self):
        return {"port": self.port, "link": self.link, "pid": self.pid, "flash": self.flash_path,
                "profile": self.profile_path, "generation": self.generation}

    def _env(self):
        e = dict(os.environ)
        if self.fs == "repo":
            e["MICROPYPATH"] = os.pathsep.join([self.fs_path, ROOT, ".frozen"])
            e["FWSLOTS_BOARD"] = self.profile_path
        else:  # only what is on the board; its profile is the deployed fs/board.json
            e["MICROPYPATH"] = os.pathsep.join([self.fs_path, ".frozen"])
            e["FWSLOTS_BOARD"] = "board.json"
        e["FWSLOTS_FLASH"] = self.flash_path
        e["FWSLOTS_WDT"] = self.wdt_path
        e["FWSLOTS_RESET_CAUSE"] = self.cause
        e.pop("FWSLOTS_CUT_AT", None)
        if self.cut_next is not None:
            e["FWSLOTS_CUT_AT"] = str(self.cut_next)
            self.cut_next = None
        return e

    def _spawn(self):
        try:
            os.unlink(self.wdt_path)  # a killed process leaves its deadline behind
        except OSError:
            pass
        termios.tcflush(self.ds, termios.TCIFLUSH)  # typed-ahead input dies with the chip
        self._to_dev.clear()
        args = [micropython_exe()]
        if self.heapsize:
            args += ["-X", "heapsize=%s" % self.heapsize]
        args += ["-i", BOOT] if self.fs == "repo" else ["-i", "-c", POWER_ON]
        self.proc = subprocess.Popen(args, stdin=self.ds, stdout=self.ds, stderr=self.ds,
                                     env=self._env(), cwd=self.fs_path, start_new_session=True,
                                     close_fds=True)
        with open(self.pid_path, "w") as f:
            f.write("%d\n" % self.proc.pid)
        with self._cond:
            self.generation += 1
            self._cond.notify_all()

    # -- the hardware around the chip -------------------------------------------
    def power_cut(self, delay=0.0):
        """SIGKILL the device after `delay` seconds (from now); it powers up again.
        Returns the cut's thread: after join(), .killed is the generation it killed (or None)."""
        def cut():
            if delay:
                time.sleep(delay)
            g = self.generation
            th.killed = g if self._kill(g, "power") else None  # whatever process is running then
        th = threading.Thread(target=cut, daemon=True)
        th.killed = None
        th.start()
        if not delay:
            th.join()
        return th

    def cut_at_op(self, k):
        """The next power-up cuts power just before its k-th flash program/erase."""
        self.cut_next = k

    def _kill(self, gen, why):
        with self._cond:
            p = self.proc
            if (gen is not None and self.generation != gen) or p is None or p.poll() is not None:
                return False
            self._killing = why
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except OSError:
            return False
        return True

    def wait_generation(self, gen, timeout=10.0):
        """Block until the device has started more than `gen` times; True if it has."""
        end = time.monotonic() + timeout
        with self._cond:
            while self.generation <= gen:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def _supervise(self):
        while not self._stop:
            p = self.proc
            rc = p.poll()
            if rc is None:
                self._check_wdt()
                time.sleep(0.01)
                continue
            if self._stop:
                break
            killing, self._killing = self._killing, None
            if killing:
                cause = killing
            elif rc == -signal.SIGKILL:
                cause = "power"   # the device cut itself (FWSLOTS_CUT_AT)
            else:
                cause = "reset"   # SIGTERM from reset(), or any other exit
            self.events.append({"gen": self.generation, "pid": p.pid, "rc": rc, "cause": cause})
            self._note(b"\n[virtual board: %s (rc %d), restarting]\n" % (cause.encode(), rc))
            self.cause = cause
            while os.path.exists(self.off_path) and not self._stop:  # held off by `power off`
                time.sleep(0.01)
            if self._stop:
                break
            self._spawn()

    def _check_wdt(self):
        try:
            with open(self.wdt_path) as f:
                deadline = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return
        if time.time_ns() > deadline:
            self._kill(self.generation, "wdt")

    # -- console relay ----------------------------------------------------------
    def _note(self, data):
        self.transcript += data
        self._log.write(data)
        self._log.flush()

    def _relay(self):
        """Copy the console both ways in large reads (never a byte per system call)."""
        out = bytearray()     # device output not yet written to the port
        opened = None         # when a host opened the port (None while it is closed)
        hup = select.poll()   # mask 0: reports only POLLHUP, i.e. no host has the port open
        hup.register(self.cm, 0)
        while not self._stop:
            try:
                closed = bool(hup.poll(0))
            except (OSError, ValueError):
                return
            now = time.monotonic()
            if closed:
                opened = None
                if len(out) > BACKLOG:
                    del out[:len(out) - BACKLOG]
            elif opened is None:
                opened = now
            flowing = opened is not None and now - opened >= OPEN_SETTLE
            p = select.poll()
            # back-pressure both ways: an open port with much unread output stops device reads,
            # a device with much unread input stops host reads (bounded buffers)
            p.register(self.dm, (select.POLLIN if closed or len(out) < 262144 else 0) |
                       (select.POLLOUT if self._to_dev else 0))
            if not closed:
                p.register(self.cm, (select.POLLIN if len(self._to_dev) < 65536 else 0) |
                           (select.POLLOUT if out and flowing else 0))
            try:
                ev = dict(p.poll(10 if opened is not None and not flowing else 50))
            except (OSError, ValueError):
                return
            if self._stop:
                return
            if ev.get(self.dm, 0) & (select.POLLIN | select.POLLHUP | select.POLLERR):
                try:
                    data = os.read(self.dm, 65536)
                except OSError as e:
                    data = b""
                    if e.errno not in (errno.EAGAIN, errno.EIO):
                        return
                if data:
                    self._note(data)
                    out += data
            if out and flowing:
                try:
                    n = os.write(self.cm, out[:65536])
                    del out[:n]
                except OSError:
                    pass  # the host's buffer is full: again on the next round
            if not closed and ev.get(self.cm, 0) & select.POLLIN:
                try:
                    data = os.read(self.cm, 65536)
                except OSError:
                    data = b""
                self.host_bytes += len(data)
                self._to_dev += data
            if self._to_dev:
                try:
                    n = os.write(self.dm, self._to_dev[:65536])
                    del self._to_dev[:n]
                except OSError:
                    pass


def power(workdir, action):
    """The board's power switch from outside its launcher (a labgrid power driver, a hardware
    map's power command): off = SIGKILL, held off until on; cycle = off then on."""
    workdir = os.path.abspath(workdir)
    off = os.path.join(workdir, "power.off")
    if action in ("off", "cycle"):
        open(off, "w").close()
        try:
            with open(os.path.join(workdir, "device.pid")) as f:
                os.killpg(int(f.read()), signal.SIGKILL)
        except (OSError, ValueError):
            pass  # already off
    if action == "cycle":
        time.sleep(0.1)
    if action in ("on", "cycle"):
        try:
            os.unlink(off)
        except OSError:
            pass


def main(argv=None):
    """python -m hil.virtual [--dir D] [--slots N] [--confirm-ms MS] [--fs repo|empty]: run a
    virtual board until Ctrl-C;  python -m hil.virtual power DIR off|on|cycle: its power switch."""
    import argparse
    import tempfile
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["power"]:
        ap = argparse.ArgumentParser(prog="python -m hil.virtual power")
        ap.add_argument("dir")
        ap.add_argument("action", choices=("off", "on", "cycle"))
        a = ap.parse_args(argv[1:])
        power(a.dir, a.action)
        return 0
    ap = argparse.ArgumentParser(prog="python -m hil.virtual")
    ap.add_argument("--dir", default=None, help="work directory (flash.bin, console link, logs)")
    ap.add_argument("--slots", type=int, default=None)
    ap.add_argument("--confirm-ms", type=int, default=None)
    ap.add_argument("--fs", choices=("repo", "empty"), default="repo")
    a = ap.parse_args(argv)
    d = a.dir or tempfile.mkdtemp(prefix="fwslots-virtual-")
    b = VirtualBoard(d, nslots=a.slots, confirm_ms=a.confirm_ms, fs=a.fs).start()

    def term(*_):  # SIGTERM stops the board too (its device process has its own session)
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, term)
    print(json.dumps(b.info()))
    print("console: mpremote connect %s resume repl   (Ctrl-C here stops the board)" % b.link)
    sys.stdout.flush()
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        b.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
