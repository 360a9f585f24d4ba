"""Process-kill sweep on the virtual board (seeded): SIGKILL during image writing, boot
counting and confirm; the board must always boot a verified image and keep its
last-known-good image intact. FWSLOTS_KILL_POINTS (default 110) and FWSLOTS_KILL_SEED."""
import os

import pytest

from hil.virtual import micropython_exe


@pytest.mark.skipif(micropython_exe() is None, reason="MicroPython unix port not installed")
def test_kill_sweep_never_bricks(tmp_path, fwslots_board_name):
    if fwslots_board_name != "unix-virtual":
        pytest.skip("power cuts need the virtual board")
    from hil.killsweep import Sweep
    s = Sweep(str(tmp_path), seed=int(os.environ.get("FWSLOTS_KILL_SEED", "1")),
              points=int(os.environ.get("FWSLOTS_KILL_POINTS", "110")))
    summary = s.run()
    # a board that would not start (twice) is the harness's failure, not a brick; a few at most
    assert summary["harness_errors"] <= max(2, s.points // 20), summary["harness_failures"]
    assert summary["kill_points_tested"] >= min(100, s.points) - summary["harness_errors"]
    assert summary["power_cuts_landed"] >= 0.9 * summary["kill_points_tested"], summary
    assert summary["bricked"] == 0, summary["failures"]
