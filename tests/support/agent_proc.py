"""A real agent for tests: `micropython -m firmware_slots.agent_main` over a flash file
with a raw image installed, confirmed, on a free loopback port."""
import asyncio
import hashlib
import os
import subprocess

from mpy import ROOT, micropython_exe
from support.coap_peers import free_udp_port

from firmware_slots.sim import simdev

AGENT_ID = "os::0044FF-mtp-1"
LAYOUT = ["--sector", "4096", "--slot-blocks", "8", "--nslots", "2", "--journal-blocks", "2"]


def image(n=20000):
    return (b"FWIMG:app:1.0\n" + hashlib.sha256(b"x").digest() * (n // 32 + 1))[:n]


def make_flash(path, mode="raw", slot_blocks=8):
    """Flash file with image() installed in slot 0, booted and confirmed (agent_main's layout).

    Its layout file says mode "raw" (no format check): these tests are about the binding,
    and image() is not an app image; test_agent_main_checks_app_format covers "app"."""
    import json
    from firmware_slots import app
    with open(str(path) + ".json", "w") as f:
        json.dump(app.profile_from_numbers(4096, None, 1, 2, slot_blocks, 2, mode=mode), f)
    flash, mgr = simdev.sim_device(sector_size=4096, journal_blocks=2, slot_blocks=slot_blocks, nslots=2,
                                   path=str(path))
    data = image()
    w = mgr.install(0, len(data), "SHA-256", hashlib.sha256(data).digest(), "app", "1.0")
    w.write(data)
    w.finish()
    mgr.boot()
    mgr.confirm()
    return data


class AgentProc:
    """`micropython -m firmware_slots.agent_main` on a free port."""

    def __init__(self, flash, seconds=90, interp=None, extra=()):
        self.port = free_udp_port()
        exe = interp or micropython_exe()
        args = [exe, "-m", "firmware_slots.agent_main", "--flash", str(flash), "--port",
                str(self.port), "--endpoint-id", AGENT_ID, "--seconds", str(seconds)] + LAYOUT + list(extra)
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]), PYTHONPATH=ROOT)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                     cwd=ROOT, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError("agent did not start: %r %s" % (line, self.proc.stderr.read()))
        self.uri = "coap://127.0.0.1:%d/usp" % self.port

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.communicate()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))
