"""The boot stub: decide, count the attempt, arm the confirm deadline, start the slot.

Never raises (except SystemExit, which is how the unix port resets): a failure inside
the stub falls back to the last-known-good slot without touching the journal, and a
failure of that leaves the console for recovery.
"""

import sys

import bootstub as api

MOUNT = "/app"


def main(t0):
    api.t0 = t0
    try:
        _boot()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        api.cancel_deadline()
        print("fwslots: interrupted; console only")
    except BaseException as e:
        _rescue(e)


def _boot():
    import boards
    from firmware_slots import app
    p = api.profile = boards.load()
    b = api.board = app.board(p)
    bp = p.get("boot", {})
    m = api.mgr = app.slot_manager(p, b)
    prev = m.running
    if b.mode == "native":
        d = m.decide()
        if d.slot is not None and d.slot != b.running_slot():
            print("fwslots: switching firmware to image", d.slot + 1)
            b.switch(d.slot)  # set_boot + reset: the stub of that firmware counts the attempt
    d = api.decision = m.boot()
    explain_failed_trials(m, b, d, prev, bp)
    print("fwslots:", d.reason)
    s = d.slot
    if s is None:
        print("fwslots: no bootable image; console only")
        return
    api.slot = s
    if d.trial:
        api.deadline = b.deadline(bp.get("confirm_ms", 10000))
    if b.mode == "native":
        return  # this firmware is the application; main.py runs next
    _run(m, b, s, d.trial)


def explain_failed_trials(m, b, d, prev, bp):
    """Add why the last attempt failed to the BootFailureLog of a slot out of attempts."""
    from firmware_slots.core.bootdecision import ATTEMPTS
    for i, cause in d.failed:
        if cause != ATTEMPTS:
            continue
        why = m.trial_failure(i)
        if prev == i and not why:
            c = b.reset_cause()
            why = ("watchdog reset: not confirmed within %d ms" % bp.get("confirm_ms", 10000)
                   if c == "wdt" else "%s before confirm" % ("power lost" if c == "power" else c + " reset"))
        m.log_last_attempt(i, why or "no confirm")


def _run(m, b, s, trial):
    from firmware_slots.core.appimage import mount
    man = api.manifest = mount(*m.payload(s), point=MOUNT)
    if MOUNT not in sys.path:
        sys.path.insert(0, MOUNT)
    api.reads_at_start = b.reads()
    print("fwslots: run image %d %s %s" % (s + 1, man["name"], man["version"]))  # 1-based, like TR-181
    try:
        mod = __import__(man.get("entry", "main"))
        mode = man.get("confirm", "explicit")
        if mode == "on_return" or (mode == "health" and mod.health()):
            api.confirm()
        elif mode == "health":
            raise RuntimeError("health check failed")
    except KeyboardInterrupt:
        api.cancel_deadline()
        print("fwslots: app interrupted; console only")
    except Exception as e:
        sys.print_exception(e)
        if trial and not api.confirmed:
            m.note_trial_failure(s, "crashed: %s: %s" % (type(e).__name__, e))
            print("fwslots: trial app crashed; reset")
            b.reset()
        print("fwslots: app crashed; console only")


def _rescue(e):
    api.cancel_deadline()
    print("fwslots: stub error: %s: %s" % (type(e).__name__, e))
    m, b = api.mgr, api.board
    k = -1
    try:
        k = m.lkg
        if k < 0 or not m.verify(k):
            raise ValueError("no verified last-known-good slot")
        print("fwslots: falling back to last-known-good image", k + 1)
        m.running = api.slot = k
        if b.mode == "native":
            if b.running_slot() != k:
                b.switch(k)
            return
        _run(m, b, k, False)
    except SystemExit:
        raise
    except BaseException as e2:
        print("fwslots: no fallback (%s: %s); console only" % (type(e2).__name__, e2))
