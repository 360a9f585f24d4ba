"""file:// fetcher: streams a local file (tests, and images staged on the device's VFS)."""

from firmware_slots.transfer import TransferError

CHUNK = 1024


def path_of(url):
    return url[len("file://"):]


def fetch(url, writer, username="", password="", rate=0):
    path = path_of(url)
    try:
        f = open(path, "rb")
    except OSError as e:
        raise TransferError("cannot open %s: %s" % (path, e), "not found" if e.args and e.args[0] == 2 else None)
    buf = bytearray(CHUNK)
    mv = memoryview(buf)
    try:
        f.seek(writer.offset)
        since = 0
        while True:
            n = f.readinto(buf)
            if not n:
                break
            writer.write(mv[:n])
            since += n
            if since >= 4096:
                writer.checkpoint()
                since = 0
    except OSError as e:
        raise TransferError("reading %s failed: %s" % (path, e))
    finally:
        f.close()


CHUNKS_PER_STEP = 8


class _Task:
    """Cooperative file pull: CHUNKS_PER_STEP chunks per step()."""
    pollable = None

    def __init__(self, url, writer):
        self.path = path_of(url)
        self.w = writer
        self.error = None
        self.since = 0
        try:
            self.f = open(self.path, "rb")
        except OSError as e:
            raise TransferError("cannot open %s: %s" % (self.path, e), "not found" if e.args and e.args[0] == 2 else None)
        self.buf = bytearray(CHUNK)
        self.f.seek(writer.offset)

    def step(self, ready=False):
        try:
            for _ in range(CHUNKS_PER_STEP):
                n = self.f.readinto(self.buf)
                if not n:
                    self.close()
                    return True
                self.w.write(memoryview(self.buf)[:n])
                self.since += n
                if self.since >= 4096:
                    self.w.checkpoint()
                    self.since = 0
        except OSError as e:
            self.error = TransferError("reading %s failed: %s" % (self.path, e))
        except Exception as e:  # a SlotError from the writer ends the pull as it is
            self.error = e
        if self.error is not None:
            self.close()
            return True
        return False

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None


def start(url, writer, username="", password="", rate=0):
    return _Task(url, writer)
