"""What the agent needs from the board: reboot, the wall clock, idle and confirmation hooks.

Platform is the default and the test double: reboot() records (cause, reason) in
`reboots` and raises Rebooting, so a test (or the unix-port launcher) sees exactly
where the device would have reset; everything after the call is "after power-off".
On a board the boot stub's StubPlatform (bootstub/agentapp.py) resets through the stub.

Hooks (override or assign): is_idle() -> bool for WhenIdle windows;
confirm(window) -> True (go) / False (declined) / None (no answer yet) for
ConfirmationNeeded windows, window being the dict {'Start','End','Mode','UserMessage',
'MaxRetries'}; optional software_version_of(slot) -> str or None (absent or None: the
slot's Version). No method the agent never calls: each costs heap on a board.
"""

import time


class Rebooting(Exception):
    """Raised by Platform.reboot(): the device is resetting now."""


class Platform:
    def __init__(self, wall_s=None):
        self.reboots = []
        self.wall_s = wall_s      # a fixed wall clock for tests (None = real time)
        self.idle = True
        self.answers = []         # queued confirm() answers for tests
        self.asked = []

    def reboot(self, cause, reason):
        self.reboots.append((cause, reason))
        raise Rebooting("%s: %s" % (cause, reason))

    def now_s(self):
        if self.wall_s is not None:
            return self.wall_s
        t = int(time.time())
        if t < 946684800 and time.gmtime(0)[0] == 2000:  # MicroPython epoch 2000
            t += 946684800
        return t

    def is_idle(self):
        return self.idle

    def confirm(self, window):
        self.asked.append(window)
        return self.answers.pop(0) if self.answers else None
