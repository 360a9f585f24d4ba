"""Board profiles (data, in boards/profiles/*.json) and their tiny per-port adapters.

load(name) returns a profile dict; board(profile) returns the port's Board, which gives
the boot stub what differs between ports: the flash devices, reset, reset cause, a
confirm deadline and (native mode) how to switch the running firmware.
"""

import json
import sys

ADAPTERS = {"unix_virtual": "boards.unix_virtual", "esp32": "boards.esp32",
            "rp2": "boards.rp2", "stm32": "boards.stm32"}
DEFAULTS = {"linux": "unix-virtual", "esp32": "esp32-app", "rp2": "rp2-pico-app",
            "pyboard": "stm32-pybv11-app"}


def _dir():
    f = __file__
    return f[:f.rfind("/")] if "/" in f else "."


def _env(k):
    try:
        import os
        return os.getenv(k)
    except (ImportError, AttributeError):
        return None


def load(name=None):
    """Profile `name` (a profile name or a .json path); default: $FWSLOTS_BOARD, /board.json, by port."""
    name = name or _env("FWSLOTS_BOARD")
    if not name:
        try:
            with open("/board.json") as f:
                return json.load(f)
        except OSError:
            name = DEFAULTS.get(sys.platform, "unix-virtual")
    path = name if name.endswith(".json") else _dir() + "/profiles/" + name + ".json"
    with open(path) as f:
        p = json.load(f)
    n = p.get("nslots")
    if n:
        p["slots"] = p["slots"][:n]
    return p


def board(profile=None):
    p = profile if isinstance(profile, dict) else load(profile)
    mod = __import__(ADAPTERS[p["adapter"]], None, None, ["Board"])
    return mod.Board(p)
