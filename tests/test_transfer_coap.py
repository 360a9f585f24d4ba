"""coap:// image fetcher (firmware_slots.transfer.coap) under MicroPython: 1 MiB pulls
from libcoap's coap-server-notls and from aiocoap into a file-backed simulated slot,
a 10% drop/duplicate/reorder link, and SIGKILL at three points with resume from the
last programmed block (blocks counted: nothing programmed is fetched twice)."""
import hashlib
import os
import select
import shutil
import signal
import subprocess
import time

import pytest

from mpy import ROOT, micropython_exe, requires_micropython
from support.coap_peers import UdpProxy, free_udp_port, pattern

COAP_SERVER = shutil.which("coap-server-notls")
COAP_CLIENT = shutil.which("coap-client-notls")
MIB = 1 << 20

# Runs under MicroPython: pull URL into slot 1 of a file-backed flash, resuming if interrupted.
PULL_APP = r'''
import sys, binascii
from firmware_slots.sim import simdev
from firmware_slots.coap import numbers as N
from firmware_slots.transfer import coap as tc, pull
A = dict(a.split("=", 1) for a in sys.argv[1:])
tc.PARAMS = N.TransmissionParams(ack_timeout_ms=int(A.get("ack", "2000")))
flash, mgr = simdev.sim_device(sector_size=4096, journal_blocks=4, slot_blocks=int(A["slot_blocks"]),
                               nslots=2, path=A["flash"])
size = int(A["size"])
w, resumed = pull.writer_for(mgr, 1, A["url"], size, "SHA-256", binascii.unhexlify(A["sha"]))
print("START", w.offset, resumed)


class Tap:
    """Reports every block written (the parent counts them and pulls the plug)."""
    def __init__(self, w):
        self.w = w
    def __getattr__(self, k):
        return getattr(self.w, k)
    def write(self, data):
        self.w.write(data)
        print("B", self.w.received)


tc.fetch(A["url"], Tap(w) if A.get("tap") else w, rate=int(A.get("rate", "0")))
info = w.finish()
print("DONE", info["Length"], info["SHA256"], tc.STATS["blocks"], tc.STATS["resumed_at"])
'''


def start_pull(tmp_path, url, size, sha, slot_blocks=260, **kw):
    app = tmp_path / "pull_app.py"
    app.write_text(PULL_APP)
    args = [micropython_exe(), str(app), "flash=%s" % (tmp_path / "dev.flash"), "url=" + url,
            "size=%d" % size, "sha=" + sha, "slot_blocks=%d" % slot_blocks]
    args += ["%s=%s" % kv for kv in kw.items()]
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]))
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT,
                            text=True, bufsize=1)


def finish(p, timeout=120):
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, err[-3000:]
    done = [l for l in out.splitlines() if l.startswith("DONE")]
    assert done, out[-2000:]
    return done[0].split()[1:], out


@pytest.fixture(scope="module")
def libcoap_server(tmp_path_factory):
    if COAP_SERVER is None or COAP_CLIENT is None:
        pytest.skip("libcoap3-bin not installed")
    port = free_udp_port()
    p = subprocess.Popen([COAP_SERVER, "-A", "127.0.0.1", "-p", str(port), "-d", "10", "-v", "0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    src = tmp_path_factory.mktemp("lc") / "img.bin"
    src.write_bytes(pattern(MIB))
    uri = "coap://127.0.0.1:%d/" % port
    subprocess.run([COAP_CLIENT, "-B", "30", "-m", "put", "-b", "1024", "-t", "42", "-f", str(src),
                    uri + "fw/img"], check=True, capture_output=True, timeout=40)
    yield uri + "fw/img"
    p.terminate()
    p.wait(5)


@pytest.fixture(scope="module")
def aioserver():
    from test_coap_client import AioServer
    s = AioServer()
    yield s
    s.close()


SHA_MIB = hashlib.sha256(pattern(MIB)).hexdigest()


@requires_micropython
def test_pull_1mib_from_libcoap_server(libcoap_server, tmp_path):
    (n, sha, blocks, at), _ = finish(start_pull(tmp_path, libcoap_server, MIB, SHA_MIB))
    assert (int(n), sha, int(blocks), int(at)) == (MIB, SHA_MIB, 1024, 0)


@requires_micropython
def test_pull_1mib_from_aiocoap_server(aioserver, tmp_path):
    (n, sha, blocks, at), _ = finish(start_pull(tmp_path, aioserver.uri + "big1m", MIB, SHA_MIB))
    assert (int(n), sha, int(blocks)) == (MIB, SHA_MIB, 1024)


@requires_micropython
def test_wrong_checksum_fails_the_install(aioserver, tmp_path):
    p = start_pull(tmp_path, aioserver.uri + "mid", 20000, "00" * 32, slot_blocks=8)
    out, err = p.communicate(timeout=60)
    assert p.returncode != 0 and "DONE" not in out
    tail = (out + err)[-2000:]
    assert "Validation" in tail or "checksum" in tail.lower(), tail


@requires_micropython
def test_lossy_1mib_from_libcoap(libcoap_server, tmp_path):
    port = int(libcoap_server.split(":")[2].split("/")[0])
    proxy = UdpProxy(port, loss=0.034, dup=0.033, reorder=0.033, seed=11)
    try:
        url = "coap://127.0.0.1:%d/fw/img" % proxy.port
        (n, sha, blocks, at), _ = finish(start_pull(tmp_path, url, MIB, SHA_MIB, ack=100), timeout=170)
        assert (int(n), sha) == (MIB, SHA_MIB)
        s = proxy.stats  # 10% of datagrams: 3.4% dropped, 3.3% duplicated, 3.3% reordered
        assert s["dropped"] > 50 and s["duplicated"] > 50 and s["reordered"] > 50, s
    finally:
        proxy.close()


@requires_micropython
def test_sigkill_at_three_points_resumes_without_refetching(libcoap_server, tmp_path):
    """Power cut (SIGKILL) after 150, 480 and 800 blocks; each restart resumes at its
    last checkpoint (a sector boundary at most 4 KiB back) and the image completes."""
    fetched = 0
    starts = []
    for kill_at in (150, 480, 800):
        p = start_pull(tmp_path, libcoap_server, MIB, SHA_MIB, tap=1)
        seen = 0
        end = time.monotonic() + 60
        while time.monotonic() < end:
            line = p.stdout.readline()
            if line.startswith("START"):
                starts.append(int(line.split()[1]))
            elif line.startswith("B "):
                seen += 1
                if int(line.split()[1]) >= kill_at * 1024:
                    p.send_signal(signal.SIGKILL)
                    break
            elif not line:
                raise AssertionError(p.stderr.read())
        rest = p.stdout.read()  # blocks written before the kill landed count too
        seen += sum(1 for l in rest.splitlines() if l.startswith("B "))
        p.wait(5)
        assert p.returncode == -signal.SIGKILL
        fetched += seen
    p = start_pull(tmp_path, libcoap_server, MIB, SHA_MIB, tap=1)
    (n, sha, blocks, at), out = finish(p)
    starts.append(int(at))
    fetched += int(blocks)
    assert (int(n), sha) == (MIB, SHA_MIB)
    assert starts[0] == 0
    # every restart picks up where the previous run's programmed bytes end (sector rollback only)
    for k, kill_at in enumerate((150, 480, 800)):
        assert kill_at * 1024 - 4 * 4096 <= starts[k + 1] <= (kill_at + 8) * 1024, starts
    # blocks fetched in total: the image plus at most one partial sector per power cut
    print("resume offsets", starts, "blocks fetched", fetched)
    assert 1024 <= fetched <= 1024 + 3 * 8, (fetched, starts)

