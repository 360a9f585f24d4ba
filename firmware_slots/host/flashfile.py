"""Flash files on the host: a simulated device's flash plus a sidecar describing its layout.

    FILE            raw flash bytes (what the virtual board and `fwslots` operate on)
    FILE.json       {"sector_size", "write_size", "journal_blocks", "slot_blocks",
                     "nslots", "max_attempts"}

The device code itself (firmware_slots.core.slots over norsim's file-backed NorFlash) does
every read and write, so a flash file inspected here is byte-for-byte what a board
running the same layout would hold.
"""
import json
import os

from firmware_slots.core.layout import carve
from firmware_slots.sim.norsim import NorFlash
from firmware_slots.core.slots import SlotManager

DEFAULTS = dict(sector_size=4096, write_size=1, journal_blocks=2, slot_blocks=64, nslots=2, max_attempts=3)


class FlashFileError(Exception):
    pass


def sidecar(path):
    return path + ".json"


def create(path, **layout):
    lay = dict(DEFAULTS)
    lay.update({k: v for k, v in layout.items() if v is not None})
    if lay["nslots"] < 2:
        raise FlashFileError("need at least 2 slots, got %d" % lay["nslots"])
    if lay["journal_blocks"] < 2:
        raise FlashFileError("the journal needs at least 2 sectors")
    if os.path.exists(path):
        raise FlashFileError("%s already exists (delete it first)" % path)
    with open(sidecar(path), "w") as f:
        json.dump(lay, f, indent=1)
    return open_manager(path, create=True)


def load_layout(path):
    try:
        with open(sidecar(path)) as f:
            lay = json.load(f)
    except FileNotFoundError:
        raise FlashFileError("%s has no layout file %s (create flash files with `fwslots flash init`)"
                             % (path, sidecar(path)))
    except ValueError as e:
        raise FlashFileError("layout file %s is not valid JSON: %s" % (sidecar(path), e))
    out = dict(DEFAULTS)
    out.update(lay)
    return out


def open_manager(path, boot=False, create=False):
    """(flash, SlotManager) over the file; boot=True runs the boot decision as a reset would."""
    if not create and not os.path.exists(path):
        raise FlashFileError("no flash file at %s" % path)
    lay = load_layout(path)
    sectors = lay["journal_blocks"] + lay["slot_blocks"] * lay["nslots"]
    flash = NorFlash(lay["sector_size"], sectors, lay["write_size"], path=path)
    j, s = carve(flash, lay["journal_blocks"], lay["slot_blocks"], lay["nslots"])
    m = SlotManager(s, j, lay["write_size"], max_attempts=lay["max_attempts"])
    if boot:
        m.boot()
    return flash, m
