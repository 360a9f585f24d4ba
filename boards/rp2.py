"""rp2 adapter (app mode): no Python API writes the firmware region, so app images live
in rp2.Flash(), the user flash area, above a shrunken root file system."""

from boards._common import AppBoard, carve


class Board(AppBoard):
    def __init__(self, profile):
        AppBoard.__init__(self, profile)
        import rp2
        self.flash = rp2.Flash()

    def devices(self):
        return carve(self.flash, self.profile)
