# Runs first on power-up (copy to /boot.py on a board): pick a slot, count it, start it.
import time

_t0 = time.ticks_us()
try:
    from bootstub import stub
except Exception as e:  # a broken stub install must still leave a usable console
    print("fwslots: stub unavailable:", e)
else:
    stub.main(_t0)
