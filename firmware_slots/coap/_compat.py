"""The few things MicroPython and CPython spell differently."""
import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"

try:
    from time import ticks_ms, ticks_diff, ticks_add
except ImportError:  # CPython
    import time as _time

    _PERIOD = 1 << 30

    def ticks_ms():
        return int(_time.monotonic() * 1000) & (_PERIOD - 1)

    def ticks_add(t, delta):
        return (t + delta) & (_PERIOD - 1)

    def ticks_diff(a, b):
        d = (a - b) & (_PERIOD - 1)
        return d - _PERIOD if d >= _PERIOD // 2 else d

try:
    from os import urandom
except ImportError:  # some ports only have it in random
    import random as _random

    def urandom(n):
        return bytes(_random.getrandbits(8) for _ in range(n))


def randint16():
    b = urandom(2)
    return (b[0] << 8) | b[1]
