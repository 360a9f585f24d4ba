"""A fleet of simulated devices in ONE CPython process: the real agent over loopback CoAP.

    fleet = Fleet(100, v1_image, fail=lambda n, version: n % 50 == 7).start()
    fleet.devices[0].uri, fleet.devices[0].endpoint_id     # coap://127.0.0.1:P/usp, os::F1EE70-00000
    fleet.write_fleet_file("fleet.json"); ...; fleet.stop()

    python -m hil.fleet --agents 1000 --image v1.img --fleet-file fleet.json \
        [--fail-ratio 0.02 --fail-version 2.0] [--seconds N]      # prints READY <n> when serving

Each device is what a board runs, minus the hardware: a RAM NOR flash (sim.norsim) carved
by sim.simdev, a SlotManager whose format check is the app-image manifest, the USP agent
(UspAgent) and the TR-369 CoAP MTP on its own UDP port (a fixed one below the ephemeral
range, kept across reboots), built by firmware_slots.app.agent exactly as on a board. Each
device runs its own poll loop in its own thread (one socket per agent, not one shared
endpoint); threads wait in poll(2) and cost nothing idle.

A reboot (Platform.reboot raising Rebooting, as on the unix port) closes the MTP and runs
the device's boot again over the same flash: mgr.boot() counts the trial attempt, then the
"application" runs its self-test. `fail(n, version)` says which devices' self-test fails on
which version (a hardware variant the new image does not support): such a trial boot
records `crashed: SelfTestError: ...` as the boot stub does for a crashing app and resets;
after max_attempts the boot decision falls back to last-known-good and the agent of the
old image reports it (Boot! FirmwareUpdated=false, the slot ActivationFailed).

This is the one host file that imports device modules (they are being moved: see
/work/wt/notes/COMMON.md); keep it that way so a rename is a one-file fix.
"""
import json
import os
import sys
import threading
import time

from firmware_slots import app
from firmware_slots.host import appimage
from firmware_slots.sim import simdev
from firmware_slots.usp.platform import Platform, Rebooting
from bootstub import stub as _stub

EID_FMT = "os::F1EE70-%05d"   # OUI-style prefix: "fleet"; serial = device number
REBOOT_S = 0.2                 # a simulated reset takes this long (port closed meanwhile)
STEP_MS = 1000                 # idle wake-up of a device: Activate() windows have 1 s grain
STACK = 512 * 1024             # per-device thread stack (virtual; RSS is what is touched)
MAX_ATTEMPTS = 3


class SelfTestError(Exception):
    pass


class _Board:
    """What bootstub.stub.explain_failed_trials asks of a board after a failed trial."""

    def __init__(self, dev):
        self.dev = dev

    def reset_cause(self):
        return self.dev.last_cause


class SimDevice:
    def __init__(self, n, image, fail=None, host="127.0.0.1", sector=4096, nslots=2, trust=None):
        self.n = n
        self.endpoint_id = EID_FMT % n
        self.host = host
        # trust: a board profile's "trust" entry ({"keys": [PEM], "controllers": [EndpointID]})
        self.controllers = (trust or {}).get("controllers")
        keys, min_sc = app.trust({"trust": trust}) if trust else ([], 0)
        blocks = -(-len(image) // sector) + 2  # + the MCUboot header sector of a signed image
        self.flash, mgr = simdev.sim_device(sector_size=sector, journal_blocks=2, slot_blocks=blocks,
                                            nslots=nslots, max_attempts=MAX_ATTEMPTS,
                                            inspect=appimage.inspect_device, keys=keys, min_sc=min_sc)
        w = mgr.install(0, len(image))
        w.write(image)
        w.finish()
        mgr.set_boot(0)
        mgr.boot()
        mgr.confirm()
        self.fail = fail
        self.port = 0
        self.boots = 0
        self.reboots = []       # (cause, reason) of every reset asked by USP
        self.crashes = 0        # failed self-tests
        self.last_cause = "power"
        self.mtp = None
        self.stop_flag = False
        self.thread = None
        self.ready = threading.Event()
        self.error = None

    @property
    def uri(self):
        return "coap://%s:%d/usp" % (self.host, self.port)

    def boot(self):
        """One power-up: boot decision, the app's self-test; -> SlotManager once confirmed, or None."""
        mgr = simdev.reopen(self.flash)
        prev = mgr.running
        d = mgr.boot()
        _stub.explain_failed_trials(mgr, _Board(self), d, prev, {})
        self.boots += 1
        if d.slot is None:
            raise RuntimeError("device %d: no bootable image" % self.n)
        if d.trial:
            version = mgr.info(d.slot)["Version"]
            if self.fail and self.fail(self.n, version):
                e = SelfTestError("self-test of %s failed on device %d" % (version, self.n))
                mgr.note_trial_failure(d.slot, "crashed: %s: %s" % (type(e).__name__, e))  # as the stub does
                self.crashes += 1
                self.last_cause = "reset"
                return None
            mgr.confirm()
        return mgr

    def run(self):
        try:
            while not self.stop_flag:
                mgr = self.boot()
                if mgr is None:
                    time.sleep(REBOOT_S)
                    continue
                self.mtp = app.agent(mgr, self.endpoint_id, self.host, self.port, platform=Platform(),
                                     controllers=self.controllers)
                self.port = self.mtp.endpoint.transport.local_port
                try:
                    self.mtp.startup()
                    self.ready.set()
                    while not self.stop_flag:
                        self.mtp.step(STEP_MS)
                except Rebooting as e:
                    self.reboots.append(str(e))
                    self.last_cause = "reset"
                finally:
                    self.mtp.close()
                    self.mtp = None
                if not self.stop_flag:
                    time.sleep(REBOOT_S)
        except Exception as e:  # a device that dies is reported, the fleet goes on
            self.error = "%s: %s" % (type(e).__name__, e)
            self.ready.set()

    def start(self):
        self.thread = threading.Thread(target=self.run, name="dev%d" % self.n, daemon=True)
        self.thread.start()
        return self

    def state(self):
        mgr = simdev.reopen(self.flash)
        return {"n": self.n, "running": mgr.running, "boot": mgr.boot_slot,
                "slots": [mgr.info(i) for i in range(mgr.n)], "boots": self.boots,
                "crashes": self.crashes, "error": self.error}


def ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = f.read().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(n, host="127.0.0.1", start=None):
    """n UDP ports below the ephemeral range, free now: a device keeps its port across
    reboots, and no ephemeral socket (a download's client) can take it while it reboots."""
    import socket
    lo = ephemeral_range()[0]
    p = start or max(1024, lo - 12000 + (os.getpid() % 40) * 200)  # spread parallel fleets apart
    out = []
    while len(out) < n:
        if p >= lo:
            raise OSError("no %d free UDP ports below the ephemeral range %d" % (n, lo))
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((host, p))
            out.append(p)
        except OSError:
            pass
        finally:
            s.close()
        p += 1
    return out


class Fleet:
    def __init__(self, n, image, fail=None, host="127.0.0.1", base_port=None, trust=None):
        self.devices = [SimDevice(i, image, fail, host, trust=trust) for i in range(n)]
        for d, p in zip(self.devices, free_ports(n, host, base_port)):
            d.port = p

    def start(self, timeout=120):
        old = threading.stack_size(STACK)
        try:
            for d in self.devices:
                d.start()
        finally:
            threading.stack_size(old)
        end = time.monotonic() + timeout
        for d in self.devices:
            if not d.ready.wait(max(0.0, end - time.monotonic())):
                raise TimeoutError("device %d did not start" % d.n)
            if d.error:
                raise RuntimeError("device %d: %s" % (d.n, d.error))
        return self

    def stop(self):
        for d in self.devices:
            d.stop_flag = True
        for d in self.devices:
            if d.thread:
                d.thread.join(5)

    def fleet(self):
        """The campaign's fleet file content (uri + endpoint_id per device)."""
        return {"devices": [{"uri": d.uri, "endpoint_id": d.endpoint_id} for d in self.devices]}

    def write_fleet_file(self, path):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.fleet(), f, indent=1)
        os.replace(tmp, path)


def app_image(version, name="fleetapp", pad=0):
    """A minimal app image (littlefs2 + manifest, 4 KiB blocks) reporting `version`."""
    from firmware_slots.host import appimage
    return appimage.build(files={"main.py": b"# fleet app\n" + b"#" * pad, "manifest.json": b"{}"},
                          name=name, version=version)


def fail_ratio(ratio, version):
    """fail(n, v): device n's self-test fails on `version` for a `ratio` share of the fleet
    (every round(1/ratio)-th device, so the count is exact and reproducible)."""
    if not ratio:
        return None
    step = max(1, int(round(1 / ratio)))
    return lambda n, v: v == version and n % step == step // 2


def _dump_stacks(path):
    import traceback
    frames = sys._current_frames()
    with open(path, "w") as f:
        for t in threading.enumerate():
            fr = frames.get(t.ident)
            if fr is not None:
                f.write("%s: %s\n" % (t.name, " < ".join("%s:%d %s" % (os.path.basename(e.filename), e.lineno, e.name)
                                                        for e in reversed(traceback.extract_stack(fr)))))


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description="N simulated USP agents over loopback CoAP, one process")
    p.add_argument("--agents", type=int, default=100)
    p.add_argument("--image", required=True, help="the image every device starts with (app image)")
    p.add_argument("--fleet-file", required=True)
    p.add_argument("--fail-ratio", type=float, default=0.0)
    p.add_argument("--fail-version", default="")
    p.add_argument("--seconds", type=float, default=0, help="stop after N s (0: until stdin closes)")
    p.add_argument("--state", default="", help="on exit, write every device's slot table here (JSON)")
    a = p.parse_args(argv)
    import faulthandler
    import signal
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: the first 100 stacks
    signal.signal(signal.SIGUSR2, lambda *_: _dump_stacks(a.fleet_file + ".stacks"))  # all, by device
    with open(a.image, "rb") as f:
        image = f.read()
    r0 = rss_kib()
    t0 = time.monotonic()
    fleet = Fleet(a.agents, image, fail_ratio(a.fail_ratio, a.fail_version)).start()
    fleet.write_fleet_file(a.fleet_file)
    print("READY %d %.1fs rss_per_agent_kib=%d" % (a.agents, time.monotonic() - t0,
                                                   (rss_kib() - r0) // max(1, a.agents)), flush=True)
    try:
        if a.seconds:
            time.sleep(a.seconds)
        else:
            sys.stdin.read()
    except KeyboardInterrupt:
        pass
    fleet.stop()
    if a.state:
        with open(a.state, "w") as f:
            json.dump([d.state() for d in fleet.devices], f, default=lambda o: bytes(o).hex())
    return 0


if __name__ == "__main__":
    sys.exit(main())
