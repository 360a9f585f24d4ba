"""The agent under stress (MicroPython unix port, loopback); prints ONE JSON object.

healthy_get_p99_ms         p99 (and _p50) of a healthy aiocoap controller's USP Get round trip
                           (POST, 2.04, reply POST) while `blackholes` other controllers' Gets
                           have reply-to addresses where nothing answers (their replies are
                           pending in the agent's outbox)
blackholes                 how many such reply-to addresses were pending
outbox_dropped             Records the agent's outbox dropped (its STATS line at exit), with
                           outbox_stats (sent / full / evicted / silent / failed)
get_during_download_p99_ms p99 Get round trip while the agent pulls a 1 MiB Download()
                           (coap://, libcoap coap-server-notls, 1024-byte blocks)
download_1mib_s_idle       Download() of 1 MiB, OperateResp to OperationComplete, nobody asking
                           (after a warm-up Download() that fails at its first block: modules
                           loaded and compiled, as frozen on a board)
download_1mib_s_serving    the same while a controller sends a Get every --get-interval-ms (20)
download_1mib_s_base       the same idle Download() with the code of --base REV (git archive),
                           same run: "today" for the 10% pull-speed goal; speed_ratio_vs_base
download_1mib_cpu_s_*      CPU seconds the agent process spent on that Download() (/proc/pid/stat):
                           its work, unlike wall time not inflated by a loaded machine;
                           cpu_ratio_vs_base
fuzz_datagrams             seeded fuzzed datagrams sent (tests/device/coapfuzz.py, --fuzz N,
                           default 200000), a CoAP ping every 200 waits for the agent to catch
                           up (fuzz_pings_unanswered: pings without RST in 2 s), then:
                           fuzz_get_after_ms, fuzz_rss_kb (before, after; and after each
                           eighth of the run: flat once the fixed-size heap is touched),
                           fuzz_state_unchanged (Device.DeviceInfo. values equal)

    python bench/usp_stress.py [--fuzz N] [--base REV] [--gets N] [--get-interval-ms 20] [--reps 5]

Idle Download() runs alternate new and base, --reps each; medians, and _min (the least
disturbed run: the machine is shared, so the minimum is the steadier figure).
"""
import asyncio
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "device"))

from coap import libcoap_server  # noqa: E402  (bench/coap.py: 1 MiB on coap-server-notls)
from mpy import micropython_exe  # noqa: E402
from support.coap_peers import free_udp_port, pattern  # noqa: E402

MIB = 1 << 20
AGENT_ID = "os::0044FF-stress"
FW = "Device.DeviceInfo.FirmwareImage."
LAYOUT = ["--sector", "4096", "--slot-blocks", "260", "--nslots", "2", "--journal-blocks", "4"]


def arg(name, default):
    return type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def make_flash(path):
    from firmware_slots import app
    with open(path + ".json", "w") as f:  # the agent reads its layout (and mode) from here
        json.dump(app.profile_from_numbers(4096, None, 1, 4, 260, 2, mode="raw"), f)
    flash, mgr = app.open_flash_file(path)
    data = (b"FWIMG:app:1.0\n" + pattern(30000))[:30000]
    w = mgr.install(0, len(data), "SHA-256", hashlib.sha256(data).digest(), "app", "1.0")
    w.write(data)
    w.finish()
    mgr.boot()
    mgr.confirm()


class Agent:
    def __init__(self, tmp, name, tree=ROOT, seconds=600):
        self.flash = os.path.join(tmp, name + ".flash")
        for f in (self.flash, self.flash + ".json"):
            if os.path.exists(f):
                os.unlink(f)  # a fresh device each time
        make_flash(self.flash)
        self.port = free_udp_port()
        env = dict(os.environ, MICROPYPATH=os.pathsep.join([tree, os.path.join(ROOT, ".frozen")]))
        self.p = subprocess.Popen([micropython_exe(), "-m", "firmware_slots.agent_main", "--flash", self.flash,
                                   "--port", str(self.port), "--endpoint-id", AGENT_ID,
                                   "--seconds", str(seconds)] + LAYOUT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tree)
        line = self.p.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError("agent did not start: %r %s" % (line, self.p.stderr.read()))
        self.uri = "coap://127.0.0.1:%d/usp" % self.port

    def rss_kb(self):
        with open("/proc/%d/status" % self.p.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])

    def cpu_s(self):
        """CPU seconds the agent process has used (user + system): its work, whatever the load."""
        with open("/proc/%d/stat" % self.p.pid) as f:
            v = f.read().rsplit(")", 1)[1].split()
        return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
        try:
            return self.p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            return self.p.communicate()


def p99(xs):
    xs = sorted(xs)
    return round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 2)


async def timed_gets(ctl, uri, n=None, until=None):
    out = []
    while (n is None or len(out) < n) and (until is None or not until()):
        t = time.perf_counter()
        await ctl.get(uri, AGENT_ID, ["Device.DeviceInfo.SoftwareVersion"])
        out.append((time.perf_counter() - t) * 1000)
    return out


def _oper_complete(ctl):
    from firmware_slots.usp import codec
    for rec, _ in ctl.received:
        p = codec.record_payload(rec)
        if p is None:
            continue
        m = codec.decode_msg(p)
        n = m.get("body", {}).get("request", {}).get("notify", {})
        if "oper_complete" in n:
            return n["oper_complete"]
    return None


async def warm_up(ctl, uri, url):
    """A Download() that fails at its first block (FileSize 1 against Size2): every module the
    pull needs is loaded (and, from .py source on the unix port, compiled) before the
    measured one, as on a board where they are frozen."""
    ctl.received.clear()
    await ctl.operate(uri, AGENT_ID, FW + "2.Download()", {"URL": url, "AutoActivate": "false",
                      "FileSize": "1"}, key="warm")
    end = time.perf_counter() + 30
    while _oper_complete(ctl) is None and time.perf_counter() < end:
        await asyncio.sleep(0.01)


async def download(ctl, uri, url, sha, serve, agent=None):
    """-> (seconds OperateResp..OperationComplete, [Get ms while it ran], agent CPU s)."""
    await ctl.request(uri, AGENT_ID, "add", {"create_objs": [{"obj_path": "Device.LocalAgent.Subscription.",
        "param_settings": [{"param": k, "value": v, "required": True} for k, v in (
            ("Enable", "true"), ("NotifType", "OperationComplete"), ("ReferenceList", FW + "*.Download()"))]}]})
    await warm_up(ctl, uri, url)
    ctl.received.clear()
    c0 = agent.cpu_s() if agent else 0
    t = time.perf_counter()
    await ctl.operate(uri, AGENT_ID, FW + "2.Download()", {"URL": url, "AutoActivate": "false",
                      "FileSize": str(MIB), "CheckSumAlgorithm": "SHA-256", "CheckSum": sha}, key="stress")
    end = t + 120
    gets = []
    while _oper_complete(ctl) is None and time.perf_counter() < end:
        if serve:
            gets += await timed_gets(ctl, uri, 1)
            await asyncio.sleep(serve / 1000)  # a controller asking every `serve` ms
        else:
            await asyncio.sleep(0.005)
    dt = time.perf_counter() - t
    cpu = agent.cpu_s() - c0 if agent else 0
    oc = _oper_complete(ctl)
    if oc is None or "cmd_failure" in oc:
        raise RuntimeError("download failed: %r" % (oc,))
    return dt, gets, cpu


def run(coro, timeout=300):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def blackhole_phase(a, holes, n_gets):
    from firmware_slots.host.controller import UspCoapController
    from firmware_slots.usp import codec, schema
    async with UspCoapController("self::healthy") as ctl:
        await timed_gets(ctl, a.uri, 3)  # first contact
        for i, h in enumerate(holes):
            rec = codec.make_record(AGENT_ID, "self::hole%d" % i, codec.encode_msg(codec.new_msg(
                "h%d" % i, schema.GET, "request", "get", {"param_paths": ["Device.DeviceInfo."]})))
            r = await ctl.post_record(a.uri, rec, reply_to="coap://127.0.0.1:%d/usp" % h.getsockname()[1])
            assert r.code.is_successful(), r
        return await timed_gets(ctl, a.uri, n_gets)


async def download_phase(a, url, sha, serve):
    """-> (wall s, [Get ms], agent CPU s) of one 1 MiB Download()."""
    from firmware_slots.host.controller import UspCoapController
    async with UspCoapController("self::dl") as ctl:
        return await download(ctl, a.uri, url, sha, serve, a)


async def state(a):
    from firmware_slots.host.controller import UspCoapController
    async with UspCoapController("self::state") as ctl:
        t = time.perf_counter()
        m = await ctl.get(a.uri, AGENT_ID, ["Device.DeviceInfo."])
        ms = (time.perf_counter() - t) * 1000
        res = m["body"]["response"]["get_resp"]["req_path_results"][0]["resolved_path_results"]
        return ms, {r["resolved_path"] + k: v for r in res for k, v in r["result_params"].items()}


async def reboot(a):
    from firmware_slots.host.controller import UspCoapController
    async with UspCoapController("self::end") as ctl:
        await ctl.operate(a.uri, AGENT_ID, "Device.Reboot()", {"Reason": "bench end"})


def fuzz(a, n):
    import coapfuzz
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setblocking(False)
    k = 0
    lost = 0
    rss = []
    for d in coapfuzz.datagrams(20261201, n, AGENT_ID, hole.getsockname()[1]):
        s.sendto(d, ("127.0.0.1", a.port))
        k += 1
        if k % 200 == 0:
            # CoAP ping, wait for its RST: the agent has caught up, so the datagrams are
            # handled by it rather than dropped by a full socket buffer (bounded wait)
            lost += not _ping(s, a.port, k & 0xffff)
        if k % max(1, n // 8) == 0:
            rss.append(a.rss_kb())
    s.close()
    hole.close()
    return k, lost, rss


def _ping(s, port, mid):
    s.sendto(bytes([0x40, 0, mid >> 8, mid & 255]), ("127.0.0.1", port))
    end = time.monotonic() + 2
    while time.monotonic() < end:
        try:
            d = s.recv(2048)
        except BlockingIOError:
            time.sleep(0.0005)
            continue
        if len(d) >= 4 and d[0] >> 4 == 7 and d[2:4] == bytes([mid >> 8, mid & 255]):
            return True
    return False


def base_tree(tmp, rev):
    d = os.path.join(tmp, "base")
    os.makedirs(d)
    paths = subprocess.run(["git", "-C", ROOT, "ls-tree", "--name-only", rev], check=True,
                           capture_output=True, text=True).stdout.split()
    arc = subprocess.run(["git", "-C", ROOT, "archive", rev] + [p for p in ("firmware_slots", "boards")
                                                                 if p in paths],
                         check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", d], input=arc, check=True)
    return d


def main():
    n_fuzz = arg("--fuzz", 200000)
    n_gets = arg("--gets", 300)
    base = arg("--base", "")
    tmp = tempfile.mkdtemp(prefix="bench-usp-stress-")
    sha = hashlib.sha256(pattern(MIB)).hexdigest()
    srv, url = libcoap_server(tmp)
    res = {}
    try:
        # 1. ten black-hole reply-to addresses pending, a healthy controller's Gets
        a = Agent(tmp, "holes")
        holes = []
        try:
            for _ in range(10):
                h = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                h.bind(("127.0.0.1", 0))  # bound, never read: CONs to it are never ACKed
                holes.append(h)
            lat = run(blackhole_phase(a, holes, n_gets))
            res["healthy_get_p99_ms"] = p99(lat)
            res["healthy_get_p50_ms"] = round(statistics.median(lat), 2)
            res["blackholes"] = len(holes)
            # 2. Gets while a 1 MiB Download() is pulled, then the same Download() idle
            dt, gets, cpu = run(download_phase(a, url, sha, arg("--get-interval-ms", 20)))
            res["download_1mib_cpu_s_serving"] = round(cpu, 3)
            res["get_during_download_p99_ms"] = p99(gets)
            res["gets_during_download"] = len(gets)
            res["download_1mib_s_serving"] = round(dt, 3)
            # 3. fuzz, then: still answering, RSS, state
            ms0, before = run(state(a))
            rss0 = a.rss_kb()
            t = time.perf_counter()
            res["fuzz_datagrams"], res["fuzz_pings_unanswered"], res["fuzz_rss_kb_each_eighth"] = fuzz(a, n_fuzz)
            res["fuzz_s"] = round(time.perf_counter() - t, 1)
            ms, after = run(state(a))
            res["fuzz_get_after_ms"] = round(ms, 2)
            res["fuzz_rss_kb"] = [rss0, a.rss_kb()]
            res["fuzz_state_unchanged"] = before == after
            try:
                run(reboot(a), 20)
            except Exception:
                pass  # the agent resets right after its OperateResp: a late ACK may be refused
            out, err = a.p.communicate(timeout=30)
            stats = [line for line in out.splitlines() if line.startswith("STATS")]
            st = eval(stats[-1][6:]) if stats else {}  # the agent's own dict repr
            res["outbox_dropped"] = st.get("dropped")
            res["outbox_stats"] = st
            res["agent_tracebacks"] = err.count("Traceback")
        finally:
            for h in holes:
                h.close()
            a.stop()
        # idle Download() now and (with --base) with the base revision's code, alternating
        # so machine load hits both alike
        tree = base_tree(tmp, base) if base else None
        idle, bs = [], []
        for r in range(arg("--reps", 5)):
            for t, out in ((ROOT, idle), (tree, bs)):
                if t is None:
                    continue
                a = Agent(tmp, "idle", tree=t)
                try:
                    out.append(run(download_phase(a, url, sha, False)))
                finally:
                    a.stop()
        res["download_1mib_s_idle"] = round(statistics.median(x[0] for x in idle), 3)
        res["download_1mib_s_idle_min"] = round(min(x[0] for x in idle), 3)
        res["download_1mib_cpu_s_idle"] = round(statistics.median(x[2] for x in idle), 3)
        if base:
            res["download_1mib_s_base"] = round(statistics.median(x[0] for x in bs), 3)
            res["download_1mib_s_base_min"] = round(min(x[0] for x in bs), 3)
            res["download_1mib_cpu_s_base"] = round(statistics.median(x[2] for x in bs), 3)
            res["base"] = base
            res["speed_ratio_vs_base"] = round(res["download_1mib_s_idle"] / res["download_1mib_s_base"], 3)
            res["speed_ratio_vs_base_min"] = round(res["download_1mib_s_idle_min"] / res["download_1mib_s_base_min"], 3)
            res["cpu_ratio_vs_base"] = round(res["download_1mib_cpu_s_idle"] / res["download_1mib_cpu_s_base"], 3)
        res["load_avg_1min"] = os.getloadavg()[0]
    finally:
        srv.terminate()
        srv.wait()
    print(json.dumps(res))


if __name__ == "__main__":
    main()
