# MicroPython freeze manifest for the device side (tiers.json says which files a tier holds).
#   make -C ports/<port> BOARD=... FROZEN_MANIFEST=$PWD/manifest.py FWSLOTS_TIERS=agent,dtls
# Tiers (cumulative, see tiers.json): slots | agent (default) | dtls | http; comma-separated.
# From another manifest: include("/path/to/firmware-slots/manifest.py", tiers="slots").
# The agent serves by polling (no asyncio), so no tier freezes extmod/asyncio.
import importlib.util
import os
import sys

_root = os.getcwd()  # manifestfile runs this file from its own folder
_spec = importlib.util.spec_from_file_location("_fwslots_tiers", os.path.join(_root, "firmware_slots", "host", "tiers.py"))
_tiers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tiers)

options.defaults(tiers=os.environ.get("FWSLOTS_TIERS") or "agent")
_missing = []
for _f in _tiers.files(options.tiers.split(","), root=_root, missing=_missing):
    module(_f, base_path=_root)
for _m in _missing:
    print("manifest.py: %s not in this checkout, not frozen" % _m, file=sys.stderr)
