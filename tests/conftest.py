import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

USP_REFERENCE = os.path.join(ROOT, "..", "shared", "reference", "usp")



def _plugin_autoloaded():
    """True when pytest loads the fwslots plugin itself (pip install -e registered its pytest11
    entry point); loading it again here would register its options twice."""
    if os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        return False
    from importlib.metadata import entry_points
    return any(ep.value == "hil.pytest_plugin" for ep in entry_points(group="pytest11"))


# hardware-in-the-loop fixtures (fwslots_dut, fwslots_make_dut, --fwslots-board, --fwslots-port)
if not _plugin_autoloaded():
    pytest_plugins = ["hil.pytest_plugin"]
