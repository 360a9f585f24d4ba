"""USP agent benchmark under the MicroPython unix port; prints one JSON object.

get_all_firmware_params_us: median over --runs of agent.handle() for a Get of
  Device.DeviceInfo.FirmwareImage.*. on a 2-slot simulated device (record decode,
  path resolution, values, response encode), timed with time.ticks_us.
agent_heap_peak_bytes: for a Get, a Set and an Operate (Reboot(), sync) the peak heap
  the agent needs while handling the message. Method: gc.collect(), note gc.mem_alloc(),
  disable the GC (gc.disable(): nothing is freed, so every allocation made during
  handle() stays counted), handle, note gc.mem_alloc() again; the difference is the
  total allocated during handle(), an upper bound on the live peak. The agent itself
  (modules imported, model, state) is reported as agent_resident_bytes.

Usage: python bench/usp.py [--runs N]
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

MP_CODE = r"""
import gc, time
gc.collect()
base = gc.mem_alloc()
from firmware_slots.sim import simdev
from firmware_slots.usp import codec, schema
from firmware_slots.usp.agent import UspAgent
from firmware_slots.usp.platform import Platform

def inspect(dev, length):
    return "app", "1.0"

flash, mgr = simdev.sim_device(slot_blocks=2, inspect=inspect)
data = b"z" * 2000
w = mgr.install(0, len(data))
w.write(data)
w.finish()
mgr.boot()
mgr.confirm()
agent = UspAgent(mgr, "os::agent", Platform(wall_s=1700000000))
agent.startup()

def rec(kind, mt, body):
    return codec.make_record("os::agent", "self::ctl", codec.encode_msg(codec.new_msg("b1", mt, "request", kind, body)))

get = rec("get", schema.GET, {"param_paths": ["Device.DeviceInfo.FirmwareImage.*."]})
st = rec("set", schema.SET, {"update_objs": [{"obj_path": "Device.DeviceInfo.FirmwareImage.2.",
     "param_settings": [{"param": "Alias", "value": "spare", "required": True}]}]})
op = rec("operate", schema.OPERATE, {"command": "Device.Reboot()", "send_resp": True, "input_args": {"Reason": "bench"}})
agent.handle(get)  # first contact creates the Controller row
gc.collect()
resident = gc.mem_alloc() - base
ts = []
for i in range(RUNS):
    t = time.ticks_us()
    agent.handle(get)
    ts.append(time.ticks_diff(time.ticks_us(), t))
ts.sort()
def peak(r):
    gc.collect()
    a = gc.mem_alloc()
    gc.disable()
    out = agent.handle(r)
    b = gc.mem_alloc()
    gc.enable()
    assert out
    return b - a
res = {"get": peak(get), "set": peak(st), "operate": peak(op)}
print("RESULT", ts[len(ts) // 2], res["get"], res["set"], res["operate"], resident)
"""


def main():
    runs = 200
    if "--runs" in sys.argv:
        runs = int(sys.argv[sys.argv.index("--runs") + 1])
    from mpy import micropython_exe, ROOT as R
    exe = micropython_exe()
    if exe is None:
        sys.stderr.write("micropython not found\n")
        sys.exit(1)
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join([R, ".frozen"])
    p = subprocess.run([exe, "-c", MP_CODE.replace("RUNS", str(runs))], capture_output=True, text=True,
                       env=env, cwd=R, timeout=300)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        sys.exit(1)
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT")][-1].split()
    med, g, s, o, resident = (int(x) for x in line[1:])
    print(json.dumps({
        "get_all_firmware_params_us": med,
        "runs": runs,
        "agent_heap_peak_bytes": {"get": g, "set": s, "operate": o},
        "agent_resident_bytes": resident,
        "interpreter": "micropython",
    }))


if __name__ == "__main__":
    main()
