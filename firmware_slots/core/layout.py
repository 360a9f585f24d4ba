"""Layout: carve one flash device into the journal and N slots.

    blocks [0, journal)                      journal ring (>= 2 logical sectors)
    blocks [journal + i*slot, ... + slot)    slot i

The journal's ring sectors span >= journal.SPAN (4 KiB) of erase blocks, so a whole
state fits one of them (core/journal.py); the journal takes journal_blocks(block) blocks
unless a layout says otherwise:

| erase block       | journal blocks | journal bytes | note                                   |
| ----------------- | -------------- | ------------- | -------------------------------------- |
| >= 4 KiB          | 2              | 2 x block     | unchanged: one block per ring sector   |
| 2 KiB             | 4              | 8 KiB         | 2 ring sectors of 2 blocks             |
| 512 B (stm32)     | 16             | 8 KiB         | 2 ring sectors of 8 blocks (was 8: too |
|                   |                |               | small for the bounded state)           |

Board profiles (boards/profiles/*.json) give the numbers as block ranges
("journal": {"first", "blocks"}, "slots": [{"first", "blocks"}, ...]): windows(dev, profile).
A board whose slots live on separate devices (esp32 ota_0/ota_1) builds its windows itself.
"""

from firmware_slots.core.flash import BlockWindow, IOCTL_BLOCK_COUNT
from firmware_slots.core.journal import SPAN


def journal_blocks(block):
    """Erase blocks of `block` bytes a journal takes by default: two ring sectors of >= SPAN."""
    return 2 * ((SPAN + block - 1) // block)


def carve(dev, journal_blocks, slot_blocks, nslots, first=0):
    """Return (journal window, [slot windows]) over `dev`."""
    need = first + journal_blocks + slot_blocks * nslots
    have = dev.ioctl(IOCTL_BLOCK_COUNT, 0)
    if need > have:
        raise ValueError("layout needs %d blocks, device has %d" % (need, have))
    journal = BlockWindow(dev, first, journal_blocks)
    base = first + journal_blocks
    slots = [BlockWindow(dev, base + i * slot_blocks, slot_blocks) for i in range(nslots)]
    return journal, slots


def windows(dev, profile):
    """(journal window, [slot windows]) from a profile's block ranges over one device."""
    j = profile["journal"]
    need = max([j["first"] + j["blocks"]] + [x["first"] + x["blocks"] for x in profile["slots"]])
    have = dev.ioctl(IOCTL_BLOCK_COUNT, 0)
    if need > have:
        raise ValueError("layout needs %d blocks, device has %d" % (need, have))
    return BlockWindow(dev, j["first"], j["blocks"]), [BlockWindow(dev, x["first"], x["blocks"]) for x in profile["slots"]]
