"""Fleet campaign at scale: 1,000 simulated agents (one process), one campaign controller.

    python bench/campaign.py [--agents 1000 --budget 200000 --concurrency 50 --window 20s]

The fleet (hil/fleet.py: real UspAgent + CoAP MTP per device, RAM flash) runs in its own
process; the campaign (distribute -> switch in waves -> verify) runs in this one, so
controller_rss_mib is the controller's peak RSS. 2% of the devices fail the new image's
self-test and must come back as fell_back, every other one as updated. Prints ONE JSON:
agents, updated, fell_back, unreachable, misclassified (against the fleet's own flash
state), distribute_s, switch_s, max_bandwidth_ratio (peak over any 10 s window of whole
seconds / budget), controller_rss_mib, fleet_rss_per_agent_kib, blocks_served (and, with
--keep, the folder holding the campaign DB: `fwslots campaign report DIR/c.db -o r.html`).
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from firmware_slots.host.campaign import cli as ccli  # noqa: E402
from firmware_slots.host.campaign.store import Store  # noqa: E402
from hil.fleet import app_image, fail_ratio  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--agents", type=int, default=1000)
    p.add_argument("--budget", type=int, default=200000)
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--window", default="20s")
    p.add_argument("--waves", default="2%,10%,100%")
    p.add_argument("--fail-ratio", type=float, default=0.02)
    p.add_argument("--keep", action="store_true", help="keep the work folder (campaign DB for `report`)")
    a = p.parse_args()
    tmp = tempfile.mkdtemp(prefix="fwslots-bench-campaign-")
    v1, v2 = os.path.join(tmp, "v1.img"), os.path.join(tmp, "v2.img")
    with open(v1, "wb") as f:
        f.write(app_image("1.0"))
    with open(v2, "wb") as f:
        f.write(app_image("2.0"))
    ff, state = os.path.join(tmp, "fleet.json"), os.path.join(tmp, "state.json")
    fleet = subprocess.Popen([sys.executable, "-m", "hil.fleet", "--agents", str(a.agents), "--image", v1,
                              "--fleet-file", ff, "--fail-ratio", str(a.fail_ratio), "--fail-version", "2.0",
                              "--state", state], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             text=True)
    try:
        ready = fleet.stdout.readline().split()
        if not ready or ready[0] != "READY":
            raise SystemExit("fleet did not start: %r" % ready)
        per_agent = int(ready[-1].split("=")[1])
        db = os.path.join(tmp, "c.db")
        from firmware_slots.host.campaign.budget import parse_duration
        ccli.create(db, ff, v2, window=parse_duration(a.window), budget=a.budget, concurrency=a.concurrency,
                    waves=a.waves, method="activate", halt_ratio=0.05, verify_timeout=120.0, usp_timeout=10.0)
        t0 = time.monotonic()
        phase = ccli.run(db)
        total = time.monotonic() - t0
        s = ccli.status(db)
        st = Store(db, readonly=True)
        t_dist0 = st.get("dist_t0")
        devs = st.devices()
        waves = st.waves()
        st.close()
        t_dist1 = max(d["t_dl1"] or 0 for d in devs)
        switch_s = max(w["t1"] for w in waves) - min(w["t0"] for w in waves) if waves else 0.0
    finally:
        fleet.stdin.close()
        fleet.wait(60)
    with open(state) as f:
        truth = json.load(f)
    fail = fail_ratio(a.fail_ratio, "2.0")
    by_eid = {d["eid"]: d for d in s["devices"]}
    wrong = 0
    for t in truth:
        want = "fell_back" if fail and fail(t["n"], "2.0") else "updated"
        row = by_eid["os::F1EE70-%05d" % t["n"]]
        ran = t["slots"][t["running"]]["Version"]
        if row["state"] != want or ran != ("1.0" if want == "fell_back" else "2.0"):
            wrong += 1
    c = s["counts"]
    print(json.dumps({
        "agents": a.agents, "phase": phase, "updated": c["updated"], "fell_back": c["fell_back"],
        "unreachable": c["unreachable"], "download_failed": c["download_failed"], "misclassified": wrong,
        "distribute_s": round(t_dist1 - t_dist0, 1), "switch_s": round(switch_s, 1), "total_s": round(total, 1),
        "max_bandwidth_ratio": s.get("max_bandwidth_ratio"), "budget_bytes_s": a.budget,
        "blocks_served": s["blocks_served"], "image_bytes": os.path.getsize(v2),
        "controller_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "fleet_rss_per_agent_kib": per_agent, "dir": tmp if a.keep else None}))
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
