"""What the boot stub offers the running application (import bootstub).

    bootstub.confirm()      this boot is healthy: the slot becomes last-known-good and
                            the confirm deadline is cancelled
    bootstub.elapsed_us()   microseconds since the stub's first line
    bootstub.reset()        reset the board (the stub runs again)
State for the console: profile (the board's), board, mgr (SlotManager), decision, slot, manifest.
"""

import time

t0 = 0
profile = {}
board = None
mgr = None
decision = None
slot = None
manifest = None
deadline = None
confirmed = False
reads_at_start = None


def elapsed_us():
    return time.ticks_diff(time.ticks_us(), t0)


def cancel_deadline():
    global deadline
    if deadline:
        deadline.cancel()
        deadline = None


def confirm():
    """Mark the running slot good; True when that changed the journal."""
    global confirmed
    cancel_deadline()
    if mgr is None or slot is None:
        return False
    r = mgr.confirm(slot)
    board.confirmed()
    confirmed = True
    return r


def reset():
    board.reset()
