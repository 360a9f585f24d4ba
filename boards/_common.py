"""Pieces shared by the hardware adapters (esp32, rp2, stm32)."""

from firmware_slots.core.layout import windows as carve  # noqa: F401 (one carving rule for every board)

CAUSES = ("PWRON_RESET", "HARD_RESET", "WDT_RESET", "DEEPSLEEP_RESET", "SOFT_RESET")
NAMES = ("power", "reset", "wdt", "deepsleep", "soft")


def reset_cause(machine):
    c = machine.reset_cause()
    for k, n in zip(CAUSES, NAMES):
        if getattr(machine, k, None) == c:
            return n
    return "unknown"


class TimerDeadline:
    """Reset the board unless cancelled within `ms` (a soft timer: catches Python hangs)."""

    def __init__(self, machine, ms, timer_id=-1):
        self.machine = machine
        self.t = machine.Timer(timer_id)
        self.t.init(mode=machine.Timer.ONE_SHOT, period=ms, callback=self._fire)

    def _fire(self, t):
        self.machine.reset()

    def cancel(self):
        self.t.deinit()




class AppBoard:
    """App mode on a hardware port: subclasses set self.machine and build devices()."""

    mode = "app"
    timer_id = -1

    def __init__(self, profile):
        self.profile = profile
        self.write_size = profile["flash"].get("write_size", 1)
        self.flash = None
        import machine
        self.machine = machine

    def reset(self):
        self.machine.reset()

    def reset_cause(self):
        return reset_cause(self.machine)

    def deadline(self, ms):
        return TimerDeadline(self.machine, ms, self.timer_id)

    def confirmed(self):
        pass

    def reads(self):
        return None
