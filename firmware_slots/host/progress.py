"""Progress on stderr for installs, downloads and waits: bytes, rate and ETA.

Shown when stderr is a terminal, or when asked (--progress); never mixed into stdout,
so scripts parsing the output see only results.
"""
import sys
import time


class Progress:
    def __init__(self, total, label, out=None):
        self.total, self.label, self.out = total, label, out or sys.stderr
        self.done = 0
        self.t0 = time.monotonic()
        self.last = 0.0
        self.shown = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.shown:
            self.draw(force=True)
            self.out.write("\n")
            self.out.flush()
        return False

    def update(self, n):
        self.to(self.done + n)

    def to(self, done):
        self.done = done
        self.draw()

    def clear(self):
        if self.shown:
            self.out.write("\r\x1b[K")
            self.out.flush()

    def line(self):
        dt = max(time.monotonic() - self.t0, 1e-6)
        rate = self.done / dt
        s = "%s %s" % (self.label, size(self.done))
        if self.total:
            pct = 100.0 * self.done / self.total
            left = (self.total - self.done) / rate if rate > 0 else 0
            s += " of %s %3.0f%%" % (size(self.total), pct)
        s += " %s/s" % size(rate)
        if self.total and self.done < self.total:
            s += " ETA %ds" % round(left)
        elif self.total:
            s += " in %.1fs" % dt
        return s

    def draw(self, force=False):
        now = time.monotonic()
        if not force and now - self.last < 0.1:
            return
        self.last = now
        self.shown = True
        self.out.write("\r" + self.line() + "\x1b[K")
        self.out.flush()


class NoProgress(Progress):
    def draw(self, force=False):
        pass

    def clear(self):
        pass


def size(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0


def progress(total, label, show=None):
    """A Progress on stderr when show is True, or show is None and stderr is a terminal."""
    if show is None:
        show = sys.stderr.isatty()
    return Progress(total, label) if show else NoProgress(total, label)


class Waiting(Progress):
    """A wait with a limit: elapsed seconds and what is left of the limit."""

    def line(self):
        dt = time.monotonic() - self.t0
        return "%s %.1fs (gives up in %ds)" % (self.label, dt, max(0, round(self.total - dt)))


def waiting(limit, label, show=None):
    if show is None:
        show = sys.stderr.isatty()
    return Waiting(limit, label) if show else NoProgress(limit, label)
