"""Layout: carve one flash device into the journal and N slots.

    blocks [0, journal)                      journal ring (>= 2 sectors)
    blocks [journal + i*slot, ... + slot)    slot i

Board profiles (boards/) give the numbers; a board whose slots live on separate
devices (esp32 ota_0/ota_1) builds its windows itself and skips this helper.
"""

from firmware_slots.flash import BlockWindow, IOCTL_BLOCK_COUNT


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


def sim_device(sector_size=4096, write_size=1, journal_blocks=2, slot_blocks=8, nslots=2,
               path=None, **mgr_opts):
    """A SlotManager over a fresh (or file-backed) simulated NOR flash: (flash, manager)."""
    from firmware_slots.norsim import NorFlash
    from firmware_slots.slots import SlotManager
    flash = NorFlash(sector_size, journal_blocks + slot_blocks * nslots, write_size, path)
    flash.layout = (journal_blocks, slot_blocks, nslots, mgr_opts)
    return flash, reopen(flash)


def reopen(flash, **mgr_opts):
    """A new SlotManager over the same flash, laid out as sim_device did: a reboot."""
    from firmware_slots.slots import SlotManager
    journal_blocks, slot_blocks, nslots, opts = flash.layout
    j, s = carve(flash, journal_blocks, slot_blocks, nslots)
    kw = dict(opts)
    kw.update(mgr_opts)
    return SlotManager(s, j, flash.write_size, **kw)
