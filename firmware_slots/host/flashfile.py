"""Flash files on the host: a simulated device's flash plus a layout file next to it.

    FILE            raw flash bytes (what the virtual board, the agent and `fwslots` operate on)
    FILE.json       its layout: a board profile, the schema of boards/profiles/unix-virtual.json

Layout file (board profile) keys read here:

    key                     meaning                                          default
    flash.sector            erase sector size, bytes                         4096
    flash.sectors           sectors in the file (file size = sector*sectors) end of the last region
    flash.write_size        program granularity, bytes                       1
    flash.erased            value of an erased byte                          255
    journal.first, .blocks  the metadata journal ring, in sectors            required
    slots[i].first, .blocks slot i, in sectors (FirmwareImage.{i+1})         required
    nslots                  use only the first N entries of slots            all
    boot.max_attempts       unconfirmed boots before falling back            3
    mode                    app: littlefs2 image with a manifest (checked)   app
                            native: whole firmware (not checked on a file)
                            raw: any bytes (no format check; blob storage)

The old sidecar {"sector_size", "write_size", "journal_blocks", "slot_blocks", "nslots",
"max_attempts"} is still read (from_legacy(), the one place that knows it).

Before any manager opens a file, check() compares it with the layout: a file shorter
than the layout is "truncated", a journal holding records but no valid snapshot is
"corrupt". Either is reported, never rewritten (the device would format the journal and
destroy the evidence); only repair=True writes (pads with erased bytes, formats).

The device code itself (firmware_slots.core.slots over norsim's NorFlash) does every read and
write, so a flash file inspected here is byte-for-byte what a board would hold.
"""
import json
import os

from firmware_slots.sim.norsim import NorFlash

MODES = ("app", "native", "raw")


class FlashFileError(Exception):
    pass


class FlashDamaged(FlashFileError):
    """The file is truncated or its journal is corrupt: reported, never rewritten."""


def sidecar(path):
    return path + ".json"


def profile(sector_size=4096, write_size=1, journal_blocks=None, slot_blocks=64, nslots=2, max_attempts=3,
            mode="app", name="flash-file"):
    """A board profile for a flash file laid out journal first, then N equal slots
    (journal_blocks None: core.layout.journal_blocks, 2 for sectors of 4 KiB and more)."""
    if not journal_blocks:
        from firmware_slots.core.layout import journal_blocks as default
        journal_blocks = default(sector_size)
    slots = [{"first": journal_blocks + i * slot_blocks, "blocks": slot_blocks} for i in range(nslots)]
    return {"name": name, "mode": mode,
            "flash": {"device": "file", "sector": sector_size, "write_size": write_size, "erased": 255,
                      "sectors": journal_blocks + slot_blocks * nslots},
            "journal": {"first": 0, "blocks": journal_blocks}, "slots": slots,
            "boot": {"max_attempts": max_attempts}}


def from_legacy(old):
    """The sidecar written before board profiles -> a profile."""
    return profile(old.get("sector_size", 4096), old.get("write_size", 1), old.get("journal_blocks", 2),
                   old.get("slot_blocks", 64), old.get("nslots", 2), old.get("max_attempts", 3),
                   old.get("mode", "raw"))  # old flash files held raw blobs: keep them installable


def normalise(p, where="layout"):
    """Check a profile dict; -> a copy with defaults filled and `slots` cut to nslots."""
    if not isinstance(p, dict):
        raise FlashFileError("%s is not a JSON object" % where)
    if "sector_size" in p and "flash" not in p:
        p = from_legacy(p)
    try:
        fl = dict(p["flash"])
        fl.setdefault("write_size", 1)
        fl.setdefault("erased", 255)
        fl["sector"] = int(fl.get("sector", 4096))
        j = {"first": int(p["journal"]["first"]), "blocks": int(p["journal"]["blocks"])}
        slots = [{"first": int(s["first"]), "blocks": int(s["blocks"])} for s in p["slots"]]
        # hardware profiles (a partition) leave the size to the device: a dump ends with the last region
        fl["sectors"] = int(fl.get("sectors") or max(r["first"] + r["blocks"] for r in [j] + slots))
    except (KeyError, TypeError, ValueError) as e:
        raise FlashFileError("%s does not lay out one flash device (flash, journal and slots as first/blocks "
                             "sectors): bad or missing %s" % (where, e))
    n = p.get("nslots") or len(slots)
    slots = slots[:n]
    out = dict(p, flash=fl, journal=j, slots=slots)
    out.setdefault("mode", "app")
    out["boot"] = dict(p.get("boot") or {})
    out["boot"].setdefault("max_attempts", 3)
    out.pop("nslots", None)
    if out["mode"] not in MODES:
        raise FlashFileError("%s: mode must be one of %s, not %r" % (where, "/".join(MODES), out["mode"]))
    if len(slots) < 2:
        raise FlashFileError("%s: need at least 2 slots, got %d" % (where, len(slots)))
    if j["blocks"] < 2:
        raise FlashFileError("%s: the journal needs at least 2 sectors" % where)
    for what, r in [("journal", j)] + [("slot %d" % (i + 1), s) for i, s in enumerate(slots)]:
        if r["first"] < 0 or r["blocks"] < 1 or r["first"] + r["blocks"] > fl["sectors"]:
            raise FlashFileError("%s: %s (sectors %d..%d) lies outside the flash's %d sectors" % (
                where, what, r["first"], r["first"] + r["blocks"] - 1, fl["sectors"]))
    return out


def read_profile(spec):
    """A profile from a .json path or a boards/profiles name (for `--profile`)."""
    path = spec
    if not spec.endswith(".json"):
        path = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                            "boards", "profiles", spec + ".json")
    try:
        with open(path) as f:
            return normalise(json.load(f), path)
    except FileNotFoundError:
        raise FlashFileError("no board profile %s" % path)
    except ValueError as e:
        raise FlashFileError("board profile %s is not valid JSON: %s" % (path, e))


def load_layout(path, layout=None):
    """The layout of flash file `path`: `layout` (a --profile) or its FILE.json."""
    if layout is not None:
        return read_profile(layout) if isinstance(layout, str) else normalise(layout)
    try:
        with open(sidecar(path)) as f:
            lay = json.load(f)
    except FileNotFoundError:
        raise FlashFileError("%s has no layout file %s (make flash files with `fwslots flash init`, "
                             "or give a raw dump's layout with --profile)" % (path, sidecar(path)))
    except ValueError as e:
        raise FlashFileError("layout file %s is not valid JSON: %s" % (sidecar(path), e))
    return normalise(lay, sidecar(path))


def create(path, mode="app", **layout):
    """Write FILE.json and an erased FILE with a formatted journal; -> (flash, manager)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FlashFileError("folder %s does not exist (create it first)" % folder)
    if os.path.exists(path):
        raise FlashFileError("%s already exists (delete it first)" % path)
    trust = layout.pop("trust", None)  # the profile's "trust" entry (fwslots flash init --trust-key)
    prof = normalise(profile(mode=mode, **{k: v for k, v in layout.items() if v is not None}))
    if trust:
        prof["trust"] = trust
    with open(sidecar(path), "w") as f:
        json.dump(prof, f, indent=1)
    return open_manager(path, create=True)


def journal_bytes(path, prof):
    fl, j = prof["flash"], prof["journal"]
    with open(path, "rb") as f:
        f.seek(j["first"] * fl["sector"])
        return f.read(j["blocks"] * fl["sector"])


def check(path, prof):
    """None when `path` can be opened safely; else the one-line reason it is damaged."""
    fl = prof["flash"]
    size = os.path.getsize(path)
    want = fl["sector"] * fl["sectors"]
    if size < want:
        return "%s is truncated: %d bytes, its layout needs %d (%d x %d B sectors)" % (
            path, size, want, fl["sectors"], fl["sector"])
    from firmware_slots.host import journal as hj
    raw = journal_bytes(path, prof)
    if raw.count(bytes([fl["erased"]])) == len(raw):
        return None  # erased: a new device, the manager formats it
    try:
        state = hj.recover(raw, fl["sector"], fl["write_size"])
    except Exception as e:  # cbor2 refused a snapshot whose CRC held: still corrupt
        state = None
        why = " (%s)" % e
    else:
        why = ""
    if state is None:
        return "%s: the journal is corrupt (no valid snapshot in its %d sectors%s)" % (
            path, prof["journal"]["blocks"], why)
    return None


def inspector(mode):
    """The format check SlotManager runs on finish(): the device's own for `mode`.

    The one place on the host that picks it (app.slot_manager takes it from _FileBoard). Under CPython the device's appimage (VfsLfs2) is missing, so the host mirror
    with littlefs-python runs the same rules."""
    if mode != "app":
        return None  # raw blobs: no format; native firmware: checked by the board's adapter
    try:
        from firmware_slots.core.appimage import inspect
        return inspect
    except ImportError:
        from firmware_slots.host.appimage import inspect_device
        return inspect_device


class _FileBoard:
    """A flash file as the board app.slot_manager builds on: carved by the profile, with the
    host's format check (CPython has no VfsLfs2) standing in for the device's."""

    def __init__(self, flash, prof):
        self.flash = flash
        self.profile = prof
        self.write_size = prof["flash"]["write_size"]
        insp = inspector(prof["mode"])
        if insp is not None:
            self.inspect = insp

    def devices(self):
        from firmware_slots.core.layout import windows
        return windows(self.flash, self.profile)


def open_manager(path, boot=False, create=False, layout=None, repair=False, readonly=False):
    """(flash, SlotManager) over the file; boot=True runs the boot decision as a reset would.

    readonly: the manager works on a copy in RAM, so not even an erased journal is written.
    A damaged file raises FlashDamaged unless repair=True."""
    if not create and not os.path.exists(path):
        raise FlashFileError("no flash file at %s" % path)
    if not create and os.path.isdir(path):
        raise FlashFileError("%s is a folder, not a flash file" % path)
    prof = load_layout(path, layout)
    fl = prof["flash"]
    if not create:
        bad = check(path, prof)
        if bad and not repair:
            raise FlashDamaged(bad + "; nothing was written (--repair re-formats it)")
        if bad and repair:
            _repair(path, prof)
    if readonly:
        flash = NorFlash(fl["sector"], fl["sectors"], fl["write_size"], erased=fl.get("erased", 255))
        with open(path, "rb") as f:
            data = f.read(fl["sector"] * fl["sectors"])
        flash.store.mem[:len(data)] = data
    else:
        flash = NorFlash(fl["sector"], fl["sectors"], fl["write_size"], path=path, erased=fl.get("erased", 255))
    from firmware_slots import app  # the device's composition root builds the manager
    m = app.slot_manager(prof, _FileBoard(flash, prof))
    m.profile = prof
    if boot:
        m.boot()
    return flash, m


def _repair(path, prof):
    """Pad a truncated file with erased bytes; erase a corrupt journal (the manager formats it)."""
    fl, j = prof["flash"], prof["journal"]
    want = fl["sector"] * fl["sectors"]
    with open(path, "r+b") as f:
        f.seek(0, 2)
        if f.tell() < want:
            f.write(bytes([fl["erased"]]) * (want - f.tell()))
        f.flush()
        if check(path, prof):  # still damaged once padded: the journal is corrupt
            f.seek(j["first"] * fl["sector"])
            f.write(bytes([fl["erased"]]) * (j["blocks"] * fl["sector"]))
