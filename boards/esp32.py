"""esp32 adapter: native mode (whole firmware images in ota_0/ota_1 through esp32.Partition)
and app mode (littlefs app images carved from one data partition).

Native mode: the slots are the OTA app partitions themselves. The stub runs inside
whichever firmware the ESP-IDF bootloader started; when the decision names another
slot it calls Partition.set_boot() and resets, and the firmware in that slot counts
the attempt. confirm() also calls Partition.mark_app_valid_cancel_rollback(), so the
bootloader's own single rollback attempt agrees with ours (profile max_attempts 1).
Name/Version come from the ESP-IDF app descriptor (esp_app_desc_t) in the image.
"""

from boards._common import AppBoard, carve
from firmware_slots.core.flash import BlockWindow

IMAGE_MAGIC = 0xE9
DESC_MAGIC = 0xABCD5432
DESC_OFF = 0x20  # 24-byte image header + 8-byte first segment header


def _cstr(b):
    n = bytes(b).find(b"\x00")
    return bytes(b if n < 0 else b[:n]).decode()


def app_descriptor(dev):
    """(project_name, version) from the esp_app_desc_t at the start of an app image."""
    buf = bytearray(0x70)
    dev.readblocks(0, buf, 0)
    if buf[0] != IMAGE_MAGIC:
        raise ValueError("not an ESP-IDF app image (magic 0x%02x)" % buf[0])
    m = buf[DESC_OFF] | buf[DESC_OFF + 1] << 8 | buf[DESC_OFF + 2] << 16 | buf[DESC_OFF + 3] << 24
    if m != DESC_MAGIC:
        raise ValueError("no app descriptor (0x%08x)" % m)
    return _cstr(buf[0x50:0x70]), _cstr(buf[0x30:0x50])


class Board(AppBoard):
    timer_id = 0  # esp32 machine.Timer needs a hardware timer id

    def __init__(self, profile):
        AppBoard.__init__(self, profile)
        import esp32
        self.esp32 = esp32
        self.mode = profile.get("mode", "app")
        P = esp32.Partition
        if self.mode == "native":
            self.parts = [P(s["partition"]) for s in profile["slots"]]
            self.inspect = self._inspect_native
        else:
            self.flash = P(profile["flash"]["partition"])

    def devices(self):
        if self.mode != "native":
            return carve(self.flash, self.profile)
        j = self.profile["journal"]
        jp = self.esp32.Partition(j["partition"])
        return BlockWindow(jp, j.get("first", 0), j["blocks"]), self.parts

    def _inspect_native(self, dev, length):
        return app_descriptor(dev)

    def _label(self, p):
        return p.info()[4]

    def running_slot(self):
        run = self._label(self.esp32.Partition(self.esp32.Partition.RUNNING))
        for i, p in enumerate(self.parts):
            if self._label(p) == run:
                return i
        return -1

    def switch(self, slot):
        self.parts[slot].set_boot()
        self.machine.reset()

    def confirmed(self):
        if self.mode == "native":
            try:
                self.esp32.Partition.mark_app_valid_cancel_rollback()
            except OSError:
                pass  # rollback not enabled in this bootloader: nothing to cancel

    def next_update(self):
        """The OTA partition ESP-IDF would write next (for cross-checking our choice)."""
        nxt = self._label(self.esp32.Partition(self.esp32.Partition.RUNNING).get_next_update())
        for i, p in enumerate(self.parts):
            if self._label(p) == nxt:
                return i
        return -1
