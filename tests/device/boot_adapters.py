"""Board adapters against fakes that follow the documented MicroPython APIs
(esp32.Partition, rp2.Flash, pyb.Flash(start=, len=), machine.Timer/reset/reset_cause).
Runs under MicroPython: run(profile, image_path) -> summary line."""
import os
import sys

from firmware_slots.sim.norsim import NorFlash


class Reset(SystemExit):
    pass


class FakeMachine:
    PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
    cause = 1
    timers = []

    class Timer:
        ONE_SHOT, PERIODIC = 0, 1

        def __init__(self, id=-1):
            self.id = id
            self.armed = False
            FakeMachine.timers.append(self)

        def init(self, mode=0, period=0, callback=None):
            self.armed, self.period, self.cb = True, period, callback

        def deinit(self):
            self.armed = False

    @staticmethod
    def reset():
        raise Reset("machine.reset")

    @staticmethod
    def reset_cause():
        return FakeMachine.cause


class FakePartition:
    """esp32.Partition: block device over a region of one NorFlash, plus OTA calls."""
    RUNNING, BOOT = 1, 2
    TYPE_APP, TYPE_DATA = 0, 1
    table = {}
    running = "ota_0"
    boot = "ota_0"
    valid = []

    def __init__(self, id, block_size=4096):
        if id == FakePartition.RUNNING:
            id = FakePartition.running
        self.label = id
        self.dev = FakePartition.table[id]

    def info(self):
        return (0, 0, 0, self.dev.size, self.label, False)

    def readblocks(self, n, buf, off=0):
        self.dev.readblocks(n, buf, off)

    def writeblocks(self, n, buf, off=0):
        self.dev.writeblocks(n, buf, off)

    def ioctl(self, op, arg):
        return self.dev.ioctl(op, arg)

    def set_boot(self):
        FakePartition.boot = self.label

    def get_next_update(self):
        return FakePartition("ota_1" if self.label == "ota_0" else "ota_0")

    @staticmethod
    def mark_app_valid_cancel_rollback():
        FakePartition.valid.append(FakePartition.running)


class FakePybFlash:
    """pyb.Flash(start=, len=): 512-byte blocks, rewrites allowed, erase ioctl a no-op."""
    mem = bytearray(b"\xff" * 131072)
    syncs = 0

    def __init__(self, start=-1, len=-1):
        self.start, self.len = start, len

    def readblocks(self, n, buf, off=0):
        a = self.start + n * 512 + off
        buf[:] = FakePybFlash.mem[a:a + len(buf)]

    def writeblocks(self, n, buf, off=0):
        a = self.start + n * 512 + off
        FakePybFlash.mem[a:a + len(buf)] = buf

    def ioctl(self, op, arg):
        if op == 4:
            return self.len // 512
        if op == 5:
            return 512
        if op == 3:
            FakePybFlash.syncs += 1
        return 0


class Mod:
    pass


def install_fakes(nor_sectors=256):
    m = Mod()
    for k in dir(FakeMachine):
        if not k.startswith("__"):
            setattr(m, k, getattr(FakeMachine, k))
    sys.modules["machine"] = m
    e = Mod()
    e.Partition = FakePartition
    sys.modules["esp32"] = e
    r = Mod()
    rflash = NorFlash(4096, nor_sectors, 256)
    r.Flash = lambda: rflash
    sys.modules["rp2"] = r
    p = Mod()
    p.Flash = FakePybFlash
    sys.modules["pyb"] = p
    FakePartition.table = {"ota_0": NorFlash(4096, 16), "ota_1": NorFlash(4096, 16),
                           "fwjournal": NorFlash(4096, 4), "slots": NorFlash(4096, 132)}


def boot(profile):
    """One power-up: fresh stub state, run bootstub.stub.main; returns 'reset' or 'ran'."""
    import bootstub as api
    api.mgr = api.board = api.decision = api.slot = api.manifest = api.deadline = None
    api.confirmed = False
    from bootstub import stub
    try:
        stub.main(0)
    except Reset:
        return "reset"
    return "ran"


def write(mgr, slot, data):
    import hashlib
    w = mgr.install(slot, size=len(data), algorithm="SHA-256", checksum=hashlib.sha256(data).digest())
    for i in range(0, len(data), 1000):
        w.write(data[i:i + 1000])
    return w.finish()


def run_app(profile, image_path):
    os.putenv("FWSLOTS_BOARD", profile)
    install_fakes()
    import bootstub as api
    import boards
    from firmware_slots.core import appimage
    from firmware_slots.core.slots import SlotManager
    with open(image_path, "rb") as f:
        img = f.read()
    b = boards.board(boards.load(profile))
    j, slots = b.devices()
    m = SlotManager(slots, j, b.write_size, inspect=appimage.inspect)
    info = write(m, 0, img)
    assert info["Name"] == "fake" and info["Version"] == "1.0", info
    m.set_boot(0)
    if "APPRAN" in sys.modules:
        del sys.modules["APPRAN"]
    assert boot(profile) == "ran"
    assert api.slot == 0 and api.confirmed, (api.slot, api.confirmed)
    t = FakeMachine.timers[-1]
    assert t.period == b.profile["boot"]["confirm_ms"] and not t.armed  # armed, then cancelled
    assert api.mgr.lkg == 0
    return "%s ok %s" % (profile, type(slots[0]).__name__)


def esp_image(project, version, n=6000):
    b = bytearray(n)
    b[0] = 0xE9
    b[0x20:0x24] = bytes([0x32, 0x54, 0xCD, 0xAB])
    b[0x30:0x30 + len(version)] = version.encode()
    b[0x50:0x50 + len(project)] = project.encode()
    for i in range(0x100, n):
        b[i] = (i * 13) & 0xFF
    return bytes(b)


def run_native():
    os.putenv("FWSLOTS_BOARD", "esp32-native")
    install_fakes()
    import bootstub as api
    import boards
    b = boards.board(boards.load("esp32-native"))
    from firmware_slots.core.slots import SlotManager
    j, slots = b.devices()
    m = SlotManager(slots, j, 1, max_attempts=1, inspect=b.inspect)
    info = write(m, 0, esp_image("micropython", "v1.29.0"))
    assert (info["Name"], info["Version"]) == ("micropython", "v1.29.0"), info
    m.set_boot(0)
    FakePartition.running = "ota_0"
    assert boot("esp32-native") == "ran" and api.slot == 0
    api.confirm()
    assert FakePartition.valid == ["ota_0"]
    # new firmware into ota_1 (ESP-IDF's next update partition), boot it
    assert b.next_update() == 1
    info = write(api.mgr, 1, esp_image("micropython", "v1.30.0"))
    api.mgr.set_boot(1)
    assert boot("esp32-native") == "reset" and FakePartition.boot == "ota_1"
    FakePartition.running = "ota_1"  # the bootloader starts ota_1
    assert boot("esp32-native") == "ran" and api.slot == 1 and api.decision.trial
    # it crashes before confirming; ESP-IDF rolls back to ota_0, our stub agrees
    FakePartition.running = "ota_0"
    FakePartition.boot = "ota_0"
    assert boot("esp32-native") == "ran" and api.slot == 0, api.decision
    assert api.mgr.status(1) == "ActivationFailed" and api.mgr.boot_slot == 1
    assert "not confirmed" in api.mgr.info(1)["BootFailureLog"]
    return "esp32-native ok"


if __name__ == "__main__":
    print(run_native())
