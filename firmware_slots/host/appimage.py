"""Build app-mode images on the host: a littlefs2 image holding an application and its manifest.

The device mounts such an image read-only, straight from the slot's block device
(firmware_slots/core/appimage.py), so the littlefs block size must equal the device's block
size (4096 on SPI NOR, esp32 and rp2; 512 on stm32 internal flash through pyb.Flash).

Manifest (`manifest.json` at the image root):
    {"name": "blinky", "version": "1.2.0",         required
     "entry": "main",                               module the boot stub imports (default main)
     "confirm": "explicit" | "on_return" | "health" who confirms the boot (default explicit)}

    python -m firmware_slots.host.appimage build APPDIR -o app.img [--name N --version V]
prints the image size and its SHA-256.
"""
import argparse
import hashlib
import json
import os
import sys

from littlefs import LittleFS, errors

MANIFEST = "manifest.json"
DISK_VERSION = 0x00020000   # lfs2 on-disk 2.0: readable by every MicroPython with VfsLfs2
READ_SIZE = PROG_SIZE = 32  # MicroPython's VfsLfs2 defaults (readsize, progsize)
LOOKAHEAD = 32
CONFIRM_MODES = ("explicit", "on_return", "health")


class AppImageError(Exception):
    pass


def read_manifest(folder):
    p = os.path.join(folder, MANIFEST)
    if not os.path.exists(p):
        return {}
    try:
        with open(p) as f:
            m = json.load(f)
    except ValueError as e:
        raise AppImageError("%s is not valid JSON: %s" % (p, e))
    if not isinstance(m, dict):
        raise AppImageError("%s must be a JSON object like {\"name\": ..., \"version\": ...}" % p)
    return m


def _files(folder):
    out = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for n in sorted(names):
            if n.endswith((".pyc",)) or n.startswith("."):
                continue
            full = os.path.join(root, n)
            out.append((os.path.relpath(full, folder).replace(os.sep, "/"), full))
    return out


def manifest_for(folder, name=None, version=None, entry=None, confirm=None):
    m = dict(read_manifest(folder))
    for k, v in (("name", name), ("version", version), ("entry", entry), ("confirm", confirm)):
        if v:
            m[k] = v
    m.setdefault("entry", "main")
    m.setdefault("confirm", "explicit")
    if not m.get("name") or not m.get("version"):
        raise AppImageError("an app image needs a name and a version (manifest.json or options)")
    if m["confirm"] not in CONFIRM_MODES:
        raise AppImageError("confirm must be one of %s" % (CONFIRM_MODES,))
    for k in ("name", "version"):
        if not isinstance(m[k], str) or len(m[k]) > 64:
            raise AppImageError("%s is a string of at most 64 characters (TR-181)" % k)
    return m


def build(folder=None, files=None, name=None, version=None, entry=None, confirm=None,
          block_size=4096, block_count=0):
    """Return the image bytes for `folder` (or `files`: {path: bytes} plus a manifest).

    block_count 0 picks the smallest count that holds everything (plus one spare block).
    """
    if files is None:
        if folder is None or not os.path.isdir(folder):
            raise AppImageError("no such application folder: %r" % (folder,))
        manifest = manifest_for(folder, name, version, entry, confirm)
        content = {}
        for rel, full in _files(folder):
            if rel == MANIFEST:
                continue
            with open(full, "rb") as f:
                content[rel] = f.read()
    else:
        content = {k: (v.encode() if isinstance(v, str) else bytes(v)) for k, v in files.items()}
        manifest = json.loads(content.pop(MANIFEST, b"{}") or b"{}")
        if not isinstance(manifest, dict):
            raise AppImageError("%s must be a JSON object" % MANIFEST)
        for k, v in (("name", name), ("version", version), ("entry", entry), ("confirm", confirm)):
            if v:
                manifest[k] = v
        manifest.setdefault("entry", "main")
        manifest.setdefault("confirm", "explicit")
        if not manifest.get("name") or not manifest.get("version"):
            raise AppImageError("an app image needs a name and a version")
    entry_mod = manifest["entry"]
    if entry_mod + ".py" not in content and entry_mod + ".mpy" not in content \
            and entry_mod + "/__init__.py" not in content:
        raise AppImageError("entry module %r is not in the image" % entry_mod)
    content[MANIFEST] = json.dumps(manifest, sort_keys=True).encode()
    if block_count:
        return _format(content, block_size, block_count)
    est = 4 + sum(-(-len(v) // block_size) + 1 for v in content.values())
    n = max(4, est // 2)
    while n <= 16 * est + 64:
        try:
            return _format(content, block_size, n + 1)
        except errors.LittleFSError:
            n += 1
    raise AppImageError("could not fit the application")


def _format(content, block_size, block_count):
    fs = LittleFS(block_size=block_size, block_count=block_count, read_size=READ_SIZE,
                  prog_size=PROG_SIZE, lookahead_size=LOOKAHEAD, disk_version=DISK_VERSION,
                  block_cycles=-1)
    for rel in sorted(content):
        parts = rel.split("/")
        for i in range(1, len(parts)):
            d = "/".join(parts[:i])
            try:
                fs.mkdir(d)
            except errors.LittleFSError as e:
                if e.code != errors.LittleFSError.Error.LFS_ERR_EXIST:
                    raise
        with fs.open(rel, "wb") as f:
            f.write(content[rel])
    return bytes(fs.context.buffer)


def inspect(image, block_size=4096):
    """(manifest dict, [file paths]) of an image built by build() (host-side check).
    AppImageError when `image` is not a littlefs2 image with a readable manifest."""
    if not image or len(image) % block_size:
        raise AppImageError("%d bytes is not a whole number of %d-byte blocks: not an app image"
                            % (len(image), block_size))
    fs = LittleFS(block_size=block_size, block_count=len(image) // block_size, mount=False,
                  read_size=READ_SIZE, prog_size=PROG_SIZE, lookahead_size=LOOKAHEAD)
    fs.context.buffer = bytearray(image)
    try:
        fs.mount()
    except errors.LittleFSError as e:
        raise AppImageError("no littlefs2 file system (%s): not an app image" % e)
    try:
        with fs.open(MANIFEST, "r") as f:
            manifest = json.loads(f.read())
    except (errors.LittleFSError, ValueError) as e:
        raise AppImageError("unreadable %s: %s" % (MANIFEST, e))
    if not isinstance(manifest, dict):
        raise AppImageError("%s is not a JSON object" % MANIFEST)
    paths = []
    for root, dirs, names in fs.walk("/"):
        for n in names:
            paths.append((root.rstrip("/") + "/" + n).lstrip("/"))
    return manifest, sorted(paths)


def inspect_device(dev, length):
    """SlotManager's format check on CPython, the rules of firmware_slots/appimage.inspect
    (the device's, which needs MicroPython's vfs): whole blocks, littlefs2, a manifest with
    name and version, the entry module present. -> (Name, Version)."""
    from firmware_slots.core.flash import IOCTL_BLOCK_SIZE
    bs = dev.ioctl(IOCTL_BLOCK_SIZE, 0)
    if length <= 0 or length % bs:
        raise AppImageError("image length %d is not a whole number of %d-byte blocks" % (length, bs))
    buf = bytearray(length)
    for b in range(length // bs):
        dev.readblocks(b, memoryview(buf)[b * bs:(b + 1) * bs])
    m, paths = inspect(bytes(buf), bs)
    if not m.get("name") or not m.get("version"):
        raise AppImageError("manifest needs name and version")
    entry = m.get("entry", "main")
    if not any(p in paths for p in (entry + ".py", entry + ".mpy", entry + "/__init__.py")):
        raise AppImageError("entry module %r missing" % entry)
    return m["name"], m["version"]


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m firmware_slots.host.appimage")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build a littlefs2 app image from a folder")
    b.add_argument("folder")
    b.add_argument("-o", "--output", required=True)
    b.add_argument("--name")
    b.add_argument("--version")
    b.add_argument("--entry")
    b.add_argument("--confirm", choices=CONFIRM_MODES)
    b.add_argument("--block-size", type=int, default=4096)
    b.add_argument("--block-count", type=int, default=0)
    s = sub.add_parser("show", help="print an image's manifest and files")
    s.add_argument("image")
    s.add_argument("--block-size", type=int, default=4096)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "build":
            img = build(a.folder, name=a.name, version=a.version, entry=a.entry, confirm=a.confirm,
                        block_size=a.block_size, block_count=a.block_count)
            with open(a.output, "wb") as f:
                f.write(img)
            m, _ = inspect(img, a.block_size)
            print("%s %s %s: %d bytes sha256 %s" % (a.output, m["name"], m["version"], len(img),
                                                     hashlib.sha256(img).hexdigest()))
        else:
            with open(a.image, "rb") as f:
                img = f.read()
            m, paths = inspect(img, a.block_size)
            print(json.dumps({"manifest": m, "files": paths, "size": len(img),
                              "sha256": hashlib.sha256(img).hexdigest()}, indent=1))
    except (AppImageError, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
