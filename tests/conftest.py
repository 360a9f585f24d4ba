import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:
    sys.path.insert(0, TESTS)

USP_REFERENCE = os.path.join(ROOT, "..", "shared", "reference", "usp")

# hardware-in-the-loop fixtures (dut, make_dut, --board, --port)
pytest_plugins = ["hil.pytest_plugin"]
