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
