"""Serial transport to a MicroPython board: console reads and raw-REPL exec over pyserial.

Works the same on a USB board and on the virtual board's pty. The raw REPL protocol
(what mpremote uses): Ctrl-C Ctrl-C, Ctrl-A -> "raw REPL; CTRL-B to exit\\r\\n>";
then code + Ctrl-D -> "OK", stdout, Ctrl-D, stderr, Ctrl-D, ">".
"""
import time

import serial

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
PROMPT = b">>> "


class DeviceError(Exception):
    """The code raised on the device; .stderr holds MicroPython's traceback."""

    def __init__(self, stderr, stdout=""):
        Exception.__init__(self, stderr.strip().splitlines()[-1] if stderr.strip() else "device error")
        self.stderr = stderr
        self.stdout = stdout


class DeviceTimeout(Exception):
    pass


class DeviceReset(Exception):
    """The device restarted while we waited (power cut, watchdog, reset)."""


class SerialDevice:
    """A board's console. `watch()` (optional) returns True once the device has restarted,
    so a wait ends at once instead of at its timeout (the virtual board provides it)."""

    def __init__(self, port, baud=115200, timeout=10.0, watch=None, log=None):
        self.port = port
        # a path, or a pyserial URL (rfc2217://host:port from ser2net or a labgrid exporter)
        url = "://" in port
        self.ser = serial.serial_for_url(port, baud, timeout=0.02,
                                         write_timeout=None if url else timeout)  # rfc2217: unsupported
        self.log = open(log, "ab") if log else None  # everything read, for the per-DUT log
        self.timeout = timeout
        self.watch = watch
        self.raw = False
        self.console = bytearray()  # everything read, for logs
        self._buf = bytearray()

    def close(self):
        self.ser.close()
        if self.log:
            self.log.close()

    def write(self, data):
        for i in range(0, len(data), 2048):
            self.ser.write(data[i:i + 2048])
        self.ser.flush()

    def _read(self):
        if self._buf:
            b, self._buf = bytes(self._buf), bytearray()
            return b
        return self.pull(False)

    def pull(self, keep=True):
        """Read what the port has now (into console and the log); keep=True leaves it for
        the next reader too (expect() looks at the console without consuming it)."""
        b = self.ser.read(max(1, self.ser.in_waiting))
        if keep and b:
            self._buf += b
        if b:
            self.console += b
            if self.log:
                self.log.write(b)
                self.log.flush()
        return b

    def read_until(self, marker, timeout=None, watch=True):
        """Bytes up to and including `marker`; DeviceTimeout/DeviceReset otherwise."""
        end = time.monotonic() + (timeout or self.timeout)
        buf = bytearray()
        while True:
            # checked before each read: after a restart nothing of the new boot is consumed here
            if watch and self.watch and self.watch():
                self.raw = False
                self._buf[:0] = buf
                raise DeviceReset(bytes(buf).decode(errors="replace"))
            chunk = self._read()
            if chunk:
                buf += chunk
                i = buf.find(marker)
                if i >= 0:
                    self._buf += buf[i + len(marker):]  # kept for the next read
                    return bytes(buf[:i + len(marker)])
                continue
            if time.monotonic() > end:
                raise DeviceTimeout("no %r within %.1fs; got %r" % (marker, timeout or self.timeout, bytes(buf[-300:])))

    def drain(self, quiet=0.05):
        """Read and return whatever arrives until the line is quiet for `quiet` seconds."""
        out = bytearray()
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            c = self._read()
            if c:
                out += c
                last = time.monotonic()
        return bytes(out)

    def enter_raw(self, timeout=None):
        self.write(b"\r\x03\x03")
        self.drain(0.02)
        self.write(b"\r\x01")
        self.read_until(RAW_BANNER, timeout)
        self.raw = True

    def exit_raw(self):
        self.write(b"\x02")
        self.raw = False

    def exec(self, code, timeout=None):
        """Run `code` in the raw REPL; return its stdout (str). DeviceError on an exception."""
        self.start(code, timeout)
        return self.finish(timeout)

    def start(self, code, timeout=None):
        """Send `code` and wait for the raw REPL's OK: the code now runs and reads our stdin."""
        if not self.raw:
            self.enter_raw(timeout)
        if isinstance(code, str):
            code = code.encode()
        self.write(code + b"\x04")
        ok = self.read_until(b"OK", timeout)
        if not ok.endswith(b"OK"):
            raise DeviceError(ok.decode(errors="replace"))

    def finish(self, timeout=None):
        """The rest of a start()ed run: its stdout (str); DeviceError with its stderr."""
        out = self.read_until(b"\x04", timeout)[:-1]
        err = self.read_until(b"\x04>", timeout)[:-2]
        if err:
            raise DeviceError(err.decode(errors="replace"), out.decode(errors="replace"))
        return out.decode(errors="replace")

    def send(self, code):
        """Start `code` and do not wait (for code that resets the device)."""
        if not self.raw:
            self.enter_raw()
        self.write(code.encode() + b"\x04")
        self.raw = False
