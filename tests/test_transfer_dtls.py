"""coaps:// image pull (Certificate mode) under MicroPython from libcoap's
coap-server-openssl: server certificate verified against our CA, our client
certificate presented (R-COAP.16), Block2 over one DTLS session."""
import hashlib
import os
import shutil
import subprocess

import pytest

from mpy import ROOT, micropython_exe, requires_micropython, run_mp
from support.coap_peers import pattern

COAP_SERVER = shutil.which("coap-server-openssl")
COAP_CLIENT = shutil.which("coap-client-openssl")
pytestmark = pytest.mark.skipif(COAP_SERVER is None or COAP_CLIENT is None,
                                reason="libcoap openssl tools not installed")
SIZE = 64 * 1024


@pytest.fixture(scope="module")
def dtls_server(tmp_path_factory):
    pytest.importorskip("cryptography")
    import test_dtls as T
    d = str(tmp_path_factory.mktemp("pki"))
    g = T._write_pki(d, "ec", "", "Test CA ec")
    port = T._free_udp_pair()
    proc = subprocess.Popen([COAP_SERVER, "-A", "127.0.0.1", "-p", str(port), "-d", "10",
                             "-c", g["server.crt.pem"], "-j", g["server.key.pem"], "-C", g["ca.pem"], "-v", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        T._wait_bound(port + 1, proc)
        src = os.path.join(d, "img.bin")
        with open(src, "wb") as f:
            f.write(pattern(SIZE))
        subprocess.run([COAP_CLIENT, "-B", "20", "-m", "put", "-b", "1024", "-t", "42", "-f", src,
                        "coap://127.0.0.1:%d/fw/img" % port], check=True, capture_output=True, timeout=30)
        yield port + 1, g
    finally:
        T._stop(proc)


@requires_micropython
def test_coaps_pull_certificate_mode(dtls_server, tmp_path):
    port, g = dtls_server
    sha = hashlib.sha256(pattern(SIZE)).hexdigest()
    out = run_mp(r'''
import binascii
from firmware_slots.sim import simdev
from firmware_slots.transfer import coap as tc, pull
def rd(p):
    with open(p, "rb") as f:
        return f.read()
tc.set_dtls(rd(%r), rd(%r), rd(%r))
flash, mgr = simdev.sim_device(sector_size=4096, journal_blocks=2, slot_blocks=20, nslots=2, path=%r)
info = pull.pull(mgr, 1, "coaps://127.0.0.1:%d/fw/img", %d, "SHA-256", binascii.unhexlify(%r))
print("DONE", info["Length"], info["SHA256"], tc.STATS["blocks"])
''' % (g["ca.der"], g["client.crt.der"], g["client.key.der"], str(tmp_path / "f.flash"), port, SIZE, sha),
        timeout=60)
    assert "DONE %d %s 64" % (SIZE, sha) in out, out


@requires_micropython
def test_coaps_refuses_unknown_ca(dtls_server, tmp_path):
    port, g = dtls_server
    import test_dtls as T
    rogue = T._write_pki(str(tmp_path), "ec", "rogue-", "Rogue CA")
    out = run_mp(r'''
from firmware_slots.sim import simdev
from firmware_slots import transfer
from firmware_slots.transfer import coap as tc, pull
def rd(p):
    with open(p, "rb") as f:
        return f.read()
tc.set_dtls(rd(%r), rd(%r), rd(%r))
flash, mgr = simdev.sim_device(sector_size=4096, journal_blocks=2, slot_blocks=20, nslots=2, path=%r)
import time
t = time.ticks_ms()
try:
    pull.pull(mgr, 1, "coaps://127.0.0.1:%d/fw/img")
    print("PULLED")
except transfer.TransferError as e:
    print("REFUSED", e)
print("MS", time.ticks_diff(time.ticks_ms(), t))
''' % (rogue["ca.der"], g["client.crt.der"], g["client.key.der"], str(tmp_path / "f.flash"), port), timeout=60)
    assert "REFUSED" in out and "PULLED" not in out, out
    assert "DTLS to coaps://" in out and "certificate" in out.lower(), out  # the handshake's own reason
    assert int(out.split("MS")[1].split()[0]) < 10000, out  # at once, not after the CoAP timeout
