"""DTLS 1.2 for the CoAP MTP (firmware_slots/coap/dtls.py) against libcoap + OpenSSL.

Everything runs on loopback with keys and certificates made here by `cryptography`:
a CA (EC P-256 or RSA-2048) with a server and a client certificate, plus a rogue CA
with its own server and client certificates. The device side runs under the real
MicroPython unix port (subprocess); the peer is coap-server-openssl /
coap-client-openssl (libcoap3-bin).
"""
import datetime
import ipaddress
import os
import shutil
import socket
import subprocess
import time

import pytest

from mpy import micropython_exe, mpy_cross_exe, requires_micropython, run_mp, ROOT

x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, rsa  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

COAP_SERVER = shutil.which("coap-server-openssl")
COAP_CLIENT = shutil.which("coap-client-openssl")
needs_coap_server = pytest.mark.skipif(COAP_SERVER is None, reason="coap-server-openssl not installed")
needs_coap_client = pytest.mark.skipif(COAP_CLIENT is None, reason="coap-client-openssl not installed")

PEM = serialization.Encoding.PEM
DER = serialization.Encoding.DER


# --- PKI ----------------------------------------------------------------------


def _key(kind):
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _cert(cn, pub, issuer_cn, issuer_key, ca=False, server=False):
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_cn)]))
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        b = b.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return b.sign(issuer_key, hashes.SHA256())


def _write_pki(d, kind, prefix, ca_cn):
    """{prefix}ca.{pem,der}, {prefix}{server,client}.{crt,key}.{pem,der} in d."""
    cak = _key(kind)
    ca = _cert(ca_cn, cak.public_key(), ca_cn, cak, ca=True)
    files = {}

    def put(name, data):
        p = os.path.join(d, prefix + name)
        with open(p, "wb") as f:
            f.write(data)
        files[name] = p

    put("ca.pem", ca.public_bytes(PEM))
    put("ca.der", ca.public_bytes(DER))
    for who in ("server", "client"):
        k = _key(kind)
        c = _cert(who, k.public_key(), ca_cn, cak, server=(who == "server"))
        put(who + ".crt.pem", c.public_bytes(PEM))
        put(who + ".crt.der", c.public_bytes(DER))
        # PKCS#8 PEM for libcoap; SEC1 / PKCS#1 DER for mbedTLS
        put(who + ".key.pem", k.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        put(
            who + ".key.der",
            k.private_bytes(DER, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()),
        )
    return files


@pytest.fixture(scope="module", params=["ec", "rsa"])
def pki(request, tmp_path_factory):
    d = str(tmp_path_factory.mktemp("pki-" + request.param))
    good = _write_pki(d, request.param, "", "Test CA " + request.param)
    rogue = _write_pki(d, "ec", "rogue-", "Rogue CA")
    return {"kind": request.param, "dir": d, "good": good, "rogue": rogue}


# --- helpers --------------------------------------------------------------------


def _free_udp_pair():
    """A port P with P and P+1 both free on 127.0.0.1 (libcoap: coap P, coaps P+1)."""
    for _ in range(50):
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind(("127.0.0.1", 0))
        port = a.getsockname()[1]
        b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            b.bind(("127.0.0.1", port + 1))
        except OSError:
            continue
        finally:
            a.close()
            b.close()
        return port
    raise RuntimeError("no free port pair")


def _udp_bound(port):
    try:
        with open("/proc/net/udp") as f:
            return (":%04X " % port) in f.read()
    except OSError:
        return None


def _wait_bound(port, proc, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError("server exited: %s" % proc.communicate()[0])
        state = _udp_bound(port)
        if state is None:  # no /proc: just give it a moment
            time.sleep(0.5)
            return
        if state:
            return
        time.sleep(0.05)
    raise AssertionError("nothing bound to udp port %d" % port)


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)


@pytest.fixture(scope="module")
def coap_server(pki):
    """coap-server-openssl: plain CoAP on P, DTLS on P+1, client certs verified."""
    if COAP_SERVER is None:
        pytest.skip("coap-server-openssl not installed")
    g = pki["good"]
    port = _free_udp_pair()
    proc = subprocess.Popen(
        [COAP_SERVER, "-A", "127.0.0.1", "-p", str(port),
         "-c", g["server.crt.pem"], "-j", g["server.key.pem"], "-C", g["ca.pem"], "-v", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        _wait_bound(port + 1, proc)
        yield port
    finally:
        _stop(proc)


# a MicroPython script's start: the dtls module and rd(path) -> the file's bytes
RD = r"""
from firmware_slots.coap import dtls
def rd(p):
    with open(p, "rb") as f:
        return f.read()
"""
# ... and a DTLS server on port %d with (cert, key, CA) files, READY once it listens
SERVE = RD + r"""srv = dtls.server("127.0.0.1", %d, rd(%r), rd(%r), cadata=rd(%r))
print("READY")
"""
# A CoAP GET /.well-known/core, built by hand (RFC 7252 section 3):
# ver 1, CON, TKL 2 | code 0.01 | MID 0x1234 | token 0xBEEF |
# Uri-Path(11) ".well-known" (delta 11, len 11 = 0xBB) | Uri-Path "core" (delta 0, len 4)
MP_PRELUDE = RD + r"""
GET_WK = bytes([0x42, 0x01, 0x12, 0x34, 0xBE, 0xEF, 0xBB]) + b".well-known" + bytes([0x04]) + b"core"
def check_205(r):
    assert r[0] & 0xC0 == 0x40, r            # version 1
    assert r[1] == 0x45, "not 2.05: %r" % r   # 2.05 Content
    assert r[2:4] == b"\x12\x34" and r[4:6] == b"\xbe\xef", r
    return r[r.index(b"\xff") + 1:]
"""


# --- tests ----------------------------------------------------------------------


@requires_micropython
@needs_coap_server
def test_client_get_well_known_core_mutual_auth(pki, coap_server):
    g = pki["good"]
    out = run_mp(
        MP_PRELUDE
        + r"""
# CA as PEM (converted by dtls.pem_to_der), own cert + key as DER
s = dtls.connect("127.0.0.1", %d, rd(%r), cert=rd(%r), key=rd(%r),
                 server_hostname="localhost", timeout=8)
print("CIPHER", s.cipher())
s.send(GET_WK)
payload = check_205(s.recv(1500, timeout=5))
assert b"</" in payload, payload
try:
    s.recv(1500, timeout=0.2)
    raise AssertionError("expected a timeout")
except OSError as e:
    assert e.errno == 110, e
s.send(GET_WK[:2] + b"\x12\x35" + GET_WK[4:])   # session still usable after a timeout
r = s.recv(1500, timeout=5)
assert r[1] == 0x45 and r[2:4] == b"\x12\x35", r
s.close()
# IP address as the expected name matches the IP SAN too
s = dtls.connect("127.0.0.1", %d, rd(%r), cert=rd(%r), key=rd(%r), timeout=8)
s.send(GET_WK); check_205(s.recv(1500, timeout=5)); s.close()
print("OK")
"""
        % (coap_server + 1, g["ca.pem"], g["client.crt.der"], g["client.key.der"],
           coap_server + 1, g["ca.der"], g["client.crt.pem"], g["client.key.pem"]),
        timeout=40,
    )
    assert "OK" in out
    assert "DTLSv1.2" in out
    assert ("ECDSA" if pki["kind"] == "ec" else "ECDHE-RSA") in out


@requires_micropython
@needs_coap_server
def test_client_rejects_bad_peers(pki, coap_server):
    g, r = pki["good"], pki["rogue"]
    out = run_mp(
        MP_PRELUDE
        + r"""
def fails(**kw):
    try:
        s = dtls.connect("127.0.0.1", %d, timeout=8, **kw)
    except (OSError, ValueError) as e:
        return e
    s.close()
    raise AssertionError("handshake should have failed: %%r" %% (kw,))
# server certificate signed by a CA we do not trust
e = fails(cadata=rd(%r), cert=rd(%r), key=rd(%r))
assert isinstance(e, ValueError) and "not correctly signed by the trusted CA" in str(e), repr(e)
print("WRONG_CA", repr(e))
# trusted CA but the name does not match the certificate
e = fails(cadata=rd(%r), cert=rd(%r), key=rd(%r), server_hostname="other.example")
assert isinstance(e, ValueError) and "CN" in str(e), repr(e)
print("WRONG_NAME", repr(e))
# our client certificate is from a CA the server does not trust: server alerts
e = fails(cadata=rd(%r), cert=rd(%r), key=rd(%r), server_hostname="localhost")
assert isinstance(e, OSError) and e.errno == dtls.FATAL_ALERT, repr(e)
print("CLIENT_REJECTED", repr(e))
print("OK")
"""
        % (coap_server + 1,
           r["ca.der"], g["client.crt.der"], g["client.key.der"],
           g["ca.der"], g["client.crt.der"], g["client.key.der"],
           g["ca.der"], r["client.crt.der"], r["client.key.der"]),
        timeout=40,
    )
    assert "OK" in out


@requires_micropython
@needs_coap_server
def test_nosec_is_plain_udp(pki, coap_server):
    out = run_mp(
        MP_PRELUDE
        + r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
s.connect(socket.getaddrinfo("127.0.0.1", %d)[0][-1])
s.send(GET_WK)
assert b"</" in check_205(s.recv(1500))
s.close()
print("OK")
"""
        % coap_server,
        timeout=20,
    )
    assert "OK" in out


@requires_micropython
def test_client_handshake_timeout_is_bounded(pki):
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        t = time.monotonic()
        out = run_mp(
            MP_PRELUDE
            + r"""
try:
    dtls.connect("127.0.0.1", %d, rd(%r), timeout=1.5, flight_timeout=0.4)
    raise AssertionError("connected to a silent peer?")
except OSError as e:
    assert e.errno == 110, repr(e)
print("OK")
"""
            % (silent.getsockname()[1], pki["good"]["ca.der"]),
            timeout=20,
        )
        assert "OK" in out
        assert time.monotonic() - t < 8
    finally:
        silent.close()


SERVER_SCRIPT = SERVE + r"""
done = 0
errors = []
while done < %d:
    try:
        s = srv.accept(timeout=8)
    except OSError as e:
        print("ACCEPT_TIMEOUT", repr(srv.last_error))
        break
    req = s.recv(1500, timeout=5)
    tkl = req[0] & 0x0F
    body = req[req.index(b"\xff") + 1:] if b"\xff" in req else b""
    # piggybacked ACK 2.05 echoing the payload
    s.send(bytes([0x60 | tkl, 0x45, req[2], req[3]]) + req[4:4 + tkl] + b"\xff" + b"echo:" + body)
    print("SESSION", s.cipher(), "LAST_ERROR", repr(srv.last_error))
    srv.last_error = None
    s.close()
    done += 1
srv.close()
print("DONE", done)
"""


@requires_micropython
@needs_coap_client
def test_micropython_dtls_server_with_coap_client(pki):
    """The server role works: cookie exchange + mutual auth, libcoap as the client."""
    g, r = pki["good"], pki["rogue"]
    port = _free_udp_pair()
    code = SERVER_SCRIPT % (port, g["server.crt.pem"], g["server.key.der"], g["ca.der"], 2)
    path = os.path.join(pki["dir"], "dtls_server.py")
    with open(path, "w") as f:
        f.write(code)
    env = dict(os.environ, MICROPYPATH=ROOT)
    proc = subprocess.Popen([micropython_exe(), path], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    try:
        _wait_bound(port, proc)
        uri = "coaps://127.0.0.1:%d/echo" % port

        def client(cert, key, payload):
            return subprocess.run(
                [COAP_CLIENT, "-B", "4", "-m", "put", "-e", payload,
                 "-c", cert, "-j", key, "-C", g["ca.pem"], uri],
                capture_output=True, text=True, timeout=15,
            )

        ok = client(g["client.crt.pem"], g["client.key.pem"], "hello1")
        assert ok.stdout.strip().endswith("echo:hello1"), (ok.stdout, ok.stderr)
        bad = client(r["client.crt.pem"], r["client.key.pem"], "evil")
        assert "echo:" not in bad.stdout
        # libcoap logs to stdout: our server sent a fatal "unknown CA" alert
        assert "unknown ca" in (bad.stdout + bad.stderr).lower(), (bad.stdout, bad.stderr)
        ok = client(g["client.crt.pem"], g["client.key.pem"], "hello2")
        assert ok.stdout.strip().endswith("echo:hello2"), (ok.stdout, ok.stderr)
        out = proc.communicate(timeout=20)[0]
    finally:
        _stop(proc)
    assert "DONE 2" in out, out
    # the rogue client was dropped with mbedTLS's verify error, between the two sessions
    assert "not correctly signed by the trusted CA" in out, out
    assert "DTLSv1.2" in out


@requires_micropython
def test_server_needs_client_id_root_cause():
    """Documents why the first attempt failed: no client_id -> BAD_INPUT_DATA."""
    out = run_mp(
        r"""
import sys
sys.path.append(".frozen")  # MICROPYPATH replaces the default path; ssl.py is frozen
import tls, ssl, socket
from firmware_slots.coap import dtls
assert dtls.supported() == (True, True), dtls.supported()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
ctx = tls.SSLContext(tls.PROTOCOL_DTLS_SERVER)
try:
    ctx.wrap_socket(s, server_side=True)
except OSError as e:
    assert e.errno == dtls.BAD_INPUT_DATA == -28928, repr(e)
    print("NO_CLIENT_ID", repr(e))
try:   # micropython-lib's ssl.SSLContext wrapper cannot pass it
    ssl.SSLContext(ssl.PROTOCOL_DTLS_SERVER).wrap_socket(
        s, server_side=True, do_handshake_on_connect=False, client_id=b"x")
except TypeError as e:
    print("SSL_WRAPPER", repr(e))
s.close()
print("OK")
""",
        timeout=20,
    )
    assert "NO_CLIENT_ID" in out and "SSL_WRAPPER" in out and "OK" in out


def test_cpython_raises_dtls_unsupported():
    from firmware_slots.coap import dtls

    assert dtls.supported() == (False, False)
    with pytest.raises(dtls.DtlsUnsupported, match="MicroPython"):
        dtls.connect("127.0.0.1", 5684, b"ca")
    with pytest.raises(dtls.DtlsUnsupported, match="PROTOCOL_DTLS_SERVER"):
        dtls.server("127.0.0.1", 5684, b"cert", b"key")
    assert issubclass(dtls.DtlsUnsupported, OSError)


def test_pem_to_der(pki):
    from firmware_slots.coap import dtls

    g = pki["good"]
    with open(g["ca.pem"], "rb") as f:
        pem = f.read()
    with open(g["ca.der"], "rb") as f:
        der = f.read()
    assert dtls.pem_to_der(pem) == [der]
    assert dtls.pem_to_der(pem.decode() + pem.decode()) == [der, der]
    assert dtls.pem_to_der(der) == [der]


def test_compiles_with_mpy_cross(tmp_path):
    exe = mpy_cross_exe()
    if exe is None:
        pytest.skip("mpy-cross not installed")
    subprocess.run(
        [exe, "-o", str(tmp_path / "dtls.mpy"), os.path.join(ROOT, "firmware_slots", "coap", "dtls.py")],
        check=True, timeout=30,
    )


class _SlowLink:
    """A UDP relay on loopback that holds every datagram `delay` seconds each way: a
    controller that far away (RTT = 2 * delay), for the handshake's flight timing."""

    def __init__(self, server_port, delay):
        import heapq
        import threading
        self.heapq, self.delay = heapq, delay
        self.front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the client talks to this
        self.front.bind(("127.0.0.1", 0))
        self.back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)   # this talks to the server
        self.back.bind(("127.0.0.1", 0))
        self.server = ("127.0.0.1", server_port)
        self.port = self.front.getsockname()[1]
        self.client = None
        self.queue = []
        self.stop = False
        self.lock = threading.Lock()
        for f in (self._rx_front, self._rx_back, self._tx):
            threading.Thread(target=f, daemon=True).start()

    def _put(self, sock, data, addr):
        with self.lock:
            self.heapq.heappush(self.queue, (time.monotonic() + self.delay, id(data), sock, data, addr))

    def _rx_front(self):
        self.front.settimeout(0.2)
        while not self.stop:
            try:
                data, self.client = self.front.recvfrom(4096)
            except OSError:
                continue
            self._put(self.back, data, self.server)

    def _rx_back(self):
        self.back.settimeout(0.2)
        while not self.stop:
            try:
                data, _ = self.back.recvfrom(4096)
            except OSError:
                continue
            self._put(self.front, data, self.client)

    def _tx(self):
        while not self.stop:
            with self.lock:
                due = self.queue and self.queue[0][0] <= time.monotonic()
                item = self.heapq.heappop(self.queue) if due else None
            if item is None:
                time.sleep(0.002)
                continue
            item[2].sendto(item[3], item[4])

    def close(self):
        self.stop = True
        time.sleep(0.25)
        self.front.close()
        self.back.close()


@requires_micropython
def test_server_handshakes_a_peer_far_away_while_polled_briefly(pki):
    """The agent's listener asks accept() for 20 ms at a time; a peer 60 ms away (RTT 120 ms)
    must still get its session: the handshake has its own time once the peer knocked."""
    g = pki["good"]
    port = _free_udp_pair()
    server = (SERVE + r"""
import time
end = time.ticks_add(time.ticks_ms(), 15000)
s = None
while s is None and time.ticks_diff(end, time.ticks_ms()) > 0:
    try:
        s = srv.accept(timeout=0.02)  # as mtp.coaps.CoapsListener.step(20) does
    except OSError as e:
        if srv.last_error is not None:
            print("DROPPED", srv.last_error)
            srv.last_error = None
print("SESSION", s is not None)
if s is not None:
    s.send(s.recv(100, timeout=5))
    time.sleep(1)
""") % (port, g["server.crt.der"], g["server.key.der"], g["ca.der"])
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]))
    proc = subprocess.Popen([micropython_exe(), "-c", server], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=ROOT)
    link = None
    try:
        assert proc.stdout.readline().strip() == "READY"
        link = _SlowLink(port, 0.06)
        out = run_mp(RD + r"""
s = dtls.connect("127.0.0.1", %d, rd(%r), cert=rd(%r), key=rd(%r), server_hostname="127.0.0.1", timeout=8)
s.send(b"far away")
print("ECHO", s.recv(100, timeout=5))
""" % (link.port, g["ca.der"], g["client.crt.der"], g["client.key.der"]), timeout=60)
        srv_out = proc.communicate(timeout=20)[0]
    finally:
        if link is not None:
            link.close()
        _stop(proc)
    assert "ECHO b'far away'" in out, (out, srv_out)
    assert "SESSION True" in srv_out, srv_out
