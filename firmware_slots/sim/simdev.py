"""Simulated devices for tests and benchmarks: a NorFlash carved like a board, its SlotManager.

    flash, mgr = sim_device(sector_size=4096, slot_blocks=8, nslots=2)   # fresh flash
    mgr = reopen(flash)                                                  # a reboot
"""

from firmware_slots.core.layout import carve, journal_blocks as default_journal
from firmware_slots.core.slots import SlotManager
from firmware_slots.sim.norsim import NorFlash


def sim_device(sector_size=4096, write_size=1, journal_blocks=None, slot_blocks=8, nslots=2,
               path=None, erased=0xFF, **mgr_opts):
    """A SlotManager over a fresh (or file-backed) simulated NOR flash: (flash, manager).
    erased: the part's erased value (0xFF or 0x00); journal_blocks: default layout.journal_blocks."""
    journal_blocks = journal_blocks or default_journal(sector_size)
    flash = NorFlash(sector_size, journal_blocks + slot_blocks * nslots, write_size, path, erased)
    flash.layout = (journal_blocks, slot_blocks, nslots, mgr_opts)
    return flash, reopen(flash)


def reopen(flash, **mgr_opts):
    """A new SlotManager over the same flash, laid out as sim_device did: a reboot."""
    journal_blocks, slot_blocks, nslots, opts = flash.layout
    j, s = carve(flash, journal_blocks, slot_blocks, nslots)
    kw = dict(opts)
    kw.update(mgr_opts)
    return SlotManager(s, j, flash.write_size, **kw)
