"""App-mode images on the device: a littlefs2 image in a slot, mounted read-only in place.

The image (built by firmware_slots/host/appimage.py) fills whole blocks, so the file
system lives in the first length // block_size blocks of the slot; VfsLfs2 reads it
through a BlockWindow with no copy in RAM. Mounting costs littlefs' caches (a few
hundred bytes with readsize/progsize 32) and reads only the metadata it walks.
"""

import json
import vfs

from firmware_slots.core.flash import BlockWindow, IOCTL_BLOCK_SIZE

MANIFEST = "manifest.json"
READSIZE = PROGSIZE = LOOKAHEAD = 32  # must match the host builder's read/prog sizes


class AppImageError(Exception):
    pass


def open_fs(dev, length):
    """A VfsLfs2 over the image's blocks of slot device `dev` (not yet in the VFS tree)."""
    bs = dev.ioctl(IOCTL_BLOCK_SIZE, 0)
    if length <= 0 or length % bs:
        raise AppImageError("image length %d is not a whole number of %d-byte blocks" % (length, bs))
    try:
        return vfs.VfsLfs2(BlockWindow(dev, 0, length // bs), readsize=READSIZE,
                           progsize=PROGSIZE, lookahead=LOOKAHEAD, mtime=False)
    except OSError as e:
        raise AppImageError("no littlefs2 file system (%s)" % e)


def manifest(fs):
    try:
        with fs.open(MANIFEST, "r") as f:
            m = json.loads(f.read())
    except (OSError, ValueError) as e:
        raise AppImageError("unreadable %s: %s" % (MANIFEST, e))
    if not isinstance(m, dict) or not m.get("name") or not m.get("version"):
        raise AppImageError("manifest needs name and version")
    return m


def inspect(dev, length):
    """SlotManager's format check: (Name, Version) from the image's manifest."""
    m = manifest(open_fs(dev, length))
    entry = m.get("entry", "main")
    fs = open_fs(dev, length)
    for p in (entry + ".py", entry + ".mpy", entry + "/__init__.py"):
        try:
            fs.stat(p)
            break
        except OSError:
            pass
    else:
        raise AppImageError("entry module %r missing" % entry)
    return m["name"], m["version"]


def mount(dev, length, point="/app"):
    """Mount the image read-only at `point`; returns its manifest."""
    fs = open_fs(dev, length)
    m = manifest(fs)
    try:
        vfs.umount(point)
    except OSError:
        pass
    vfs.mount(fs, point, readonly=True)
    return m
