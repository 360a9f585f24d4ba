"""stm32 adapter (app mode): journal and slots are pyb.Flash(start=, len=) windows.

pyb.Flash blocks are 512 bytes behind a RAM cache of the real 16/128 KiB sectors, and
its erase ioctl does nothing; Window gives NOR semantics (erase = write 0xFF) and syncs
after every write so a record is on flash before the next step. A cut during the
cache's sector rewrite can still lose that sector: the profile says so.
"""

from boards._common import AppBoard


class Window:
    def __init__(self, dev):
        self.dev = dev
        self.bs = dev.ioctl(5, 0)
        self.ff = None

    def readblocks(self, n, buf, off=0):
        self.dev.readblocks(n, buf, off)

    def writeblocks(self, n, buf, off=0):
        self.dev.writeblocks(n, buf, off)
        self.dev.ioctl(3, 0)  # sync: flush the flash cache

    def ioctl(self, op, arg):
        if op == 6:
            if self.ff is None:
                self.ff = b"\xff" * self.bs
            self.writeblocks(arg, self.ff, 0)
            return 0
        return self.dev.ioctl(op, arg)


class Board(AppBoard):
    def __init__(self, profile):
        AppBoard.__init__(self, profile)
        import pyb
        self.pyb = pyb

    def devices(self):
        F = self.pyb.Flash
        j = self.profile["journal"]
        return (Window(F(start=j["start"], len=j["len"])),
                [Window(F(start=s["start"], len=s["len"])) for s in self.profile["slots"]])
