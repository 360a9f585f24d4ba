"""Device., Device.DeviceInfo. and the FirmwareImage.{i}. table over a SlotManager.

Slot i is row i+1 (TR-181 instance numbers are 1-based). BootFirmwareImage and
ActiveFirmwareImage are full path references without the trailing dot
("Device.DeviceInfo.FirmwareImage.2"), as the pathRef targetType="row" asks.
"""

from firmware_slots.core import slots
from firmware_slots.core.state import TEXT_MAX, too_long
from firmware_slots.datamodel import dm  # by attribute: no global per name in this module's dict

PREFIX = "Device.DeviceInfo.FirmwareImage."
MAX_WINDOWS = 5


def row_ref(slot):
    return "" if slot is None or slot < 0 else PREFIX + str(slot + 1)


def slot_of_ref(ref):
    """Slot for "Device.DeviceInfo.FirmwareImage.N" (trailing dot tolerated); None if not one."""
    if not ref.startswith(PREFIX):
        return None
    n = ref[len(PREFIX):]
    if n.endswith("."):
        n = n[:-1]
    if not n.isdigit() or n[0] == "0":
        return None
    return int(n) - 1


class Firmware:
    """Backend for Device., DeviceInfo. and the FirmwareImage table.

    `platform.software_version_of` may override slot versions."""

    PATHS = ("Device.", "Device.DeviceInfo.", dm.FW_PATH)

    def __init__(self, mgr, platform):
        self.mgr = mgr
        self.platform = platform

    def software_version(self):
        r = self.mgr.running
        if r is None or r < 0:
            return ""
        f = getattr(self.platform, "software_version_of", None)
        v = f(r) if f else None
        return v if v is not None else self.mgr.info(r)["Version"]

    def insts(self, idx, keys):
        return list(range(1, self.mgr.n + 1))

    def get(self, idx, keys, name):
        mgr = self.mgr
        if idx == dm.DEVINFO_ID:
            if name == "SoftwareVersion":
                return self.software_version()
            if name == "ActiveFirmwareImage":
                return row_ref(mgr.running)
            if name == "BootFirmwareImage":
                return row_ref(mgr.boot_slot)
            if name == "FirmwareImageNumberOfEntries":
                return mgr.n
            if name == "MaxNumberOfActivateTimeWindows":
                return MAX_WINDOWS
        elif idx == dm.FW_IDX:
            i = keys[0] - 1
            if name == "Status":
                return mgr.status(i)
            return mgr.param(i, name)
        raise dm.UspError(dm.E_INTERNAL, "no value for " + name)

    def set(self, idx, keys, name, value):
        mgr = self.mgr
        try:
            if idx == dm.DEVINFO_ID and name == "BootFirmwareImage":
                i = slot_of_ref(value)
                if i is None or not 0 <= i < mgr.n:
                    raise dm.UspError(dm.E_VALUE, "%r is not a FirmwareImage row" % value)
                mgr.set_boot(i)
            elif idx == dm.FW_IDX and name == "Available":
                mgr.set_available(keys[0] - 1, value)
            elif idx == dm.FW_IDX and name == "Alias":
                if not value or value[0].isdigit() or too_long(value, TEXT_MAX):
                    raise dm.UspError(dm.E_VALUE, "Alias must be 1..%d bytes, not starting with a digit" % TEXT_MAX)
                j = mgr.alias_owner(value)  # Alias is the table's unique key
                if j >= 0 and j != keys[0] - 1:
                    raise dm.UspError(dm.E_VALUE, "Alias %r is already used by FirmwareImage.%d" % (value, j + 1))
                mgr.set_alias(keys[0] - 1, value)
            else:
                raise dm.UspError(dm.E_INTERNAL, "cannot set " + name)
        except slots.SlotError as e:
            raise dm.UspError(dm.E_VALUE, str(e))
