"""http:// fetcher (firmware_slots.transfer.http) under MicroPython against a loopback
HTTP server with Range, ETag, Basic auth: a full pull, a connection cut mid-way and
resumed with Range (only the rest is sent), a changed file restarts, 401 without
credentials, and the bandwidth cap."""
import base64
import hashlib
import http.server
import os
import subprocess
import threading
import time

import pytest

from mpy import ROOT, micropython_exe, requires_micropython
from support.coap_peers import pattern

SIZE = 300 * 1024

APP = r'''
import sys, binascii, time
from firmware_slots.sim import simdev
from firmware_slots import transfer
from firmware_slots.transfer import pull
A = dict(a.split("=", 1) for a in sys.argv[1:])
flash, mgr = simdev.sim_device(sector_size=4096, journal_blocks=4, slot_blocks=80, nslots=2, path=A["flash"])
w, resumed = pull.writer_for(mgr, 1, A["url"], int(A["size"]), "SHA-256", binascii.unhexlify(A["sha"]))
print("START", w.offset, resumed)
t = time.ticks_ms()
try:
    transfer.fetch(A["url"], w, A.get("user", ""), A.get("pw", ""), int(A.get("rate", "0")))
except transfer.Restart as e:
    print("RESTART", e)
    raise SystemExit(3)
except transfer.TransferError as e:
    print("FAIL", e)
    raise SystemExit(2)
info = w.finish()
print("DONE", info["Length"], info["SHA256"], time.ticks_diff(time.ticks_ms(), t))
'''


class State:
    body = pattern(SIZE)
    etag = '"v1"'
    cut_at = None        # close the connection after this many body bytes
    sent = 0
    ranges = []
    auth = None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        st = State
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/img.bin")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if st.auth and self.headers.get("Authorization") != "Basic " + base64.b64encode(st.auth.encode()).decode():
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="fw"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = st.body
        rng = self.headers.get("Range")
        start = 0
        if rng and (self.headers.get("If-Range") in (None, st.etag)):
            start = int(rng.split("=")[1].split("-")[0])
            st.ranges.append(start)
            self.send_response(206)
            self.send_header("Content-Range", "bytes %d-%d/%d" % (start, len(body) - 1, len(body)))
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("ETag", st.etag)
        self.end_headers()
        data = body[start:]
        if st.cut_at is not None:
            data = data[:st.cut_at]
            st.cut_at = None
        self.wfile.write(data)
        st.sent += len(data)
        self.wfile.flush()


@pytest.fixture
def server():
    State.body, State.etag, State.cut_at, State.sent, State.ranges, State.auth = \
        pattern(SIZE), '"v1"', None, 0, [], None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield "http://127.0.0.1:%d" % srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def pull(tmp_path, url, body=None, **kw):
    body = State.body if body is None else body
    app = tmp_path / "http_app.py"
    app.write_text(APP)
    args = [micropython_exe(), str(app), "flash=%s" % (tmp_path / "dev.flash"), "url=" + url,
            "size=%d" % len(body), "sha=" + hashlib.sha256(body).hexdigest()]
    args += ["%s=%s" % kv for kv in kw.items()]
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]))
    p = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    d = {}
    for line in p.stdout.splitlines():
        parts = line.split(None, 1)
        if parts:
            d[parts[0]] = parts[1] if len(parts) > 1 else ""
    d["rc"] = p.returncode
    d["err"] = p.stderr
    return d


@requires_micropython
def test_full_pull_with_basic_auth_and_redirect(server, tmp_path):
    State.auth = "ops:s3cret"
    d = pull(tmp_path, server + "/img.bin")
    assert d["rc"] == 2 and "401" in d["FAIL"], d
    d = pull(tmp_path, server + "/redirect", user="ops", pw="s3cret")
    assert d["rc"] == 0, d
    n, sha, _ = d["DONE"].split()
    assert int(n) == SIZE and sha == hashlib.sha256(State.body).hexdigest()


@requires_micropython
def test_cut_connection_resumes_with_range(server, tmp_path):
    State.cut_at = 100 * 1024 + 123
    d = pull(tmp_path, server + "/img.bin")
    assert d["rc"] == 2 and "closed" in d["FAIL"], d
    first = State.sent
    d = pull(tmp_path, server + "/img.bin")
    assert d["rc"] == 0, d
    start, resumed = d["START"].split()
    start = int(start)                          # the checkpoint taken as sector 25 began
    assert resumed == "True" and 102400 <= start <= 100 * 1024 + 123, start
    assert State.ranges == [start]
    assert State.sent - first == SIZE - start   # only the rest came again
    assert d["DONE"].split()[1] == hashlib.sha256(State.body).hexdigest()


@requires_micropython
def test_changed_file_restarts(server, tmp_path):
    State.cut_at = 50000
    d = pull(tmp_path, server + "/img.bin")
    assert d["rc"] == 2
    State.body = pattern(SIZE, 5)
    State.etag = '"v2"'
    d = pull(tmp_path, server + "/img.bin")
    assert d["rc"] == 3 and "RESTART" in d, d   # If-Range failed: 200, not 206


@requires_micropython
def test_rate_cap(server, tmp_path):
    State.body = pattern(64 * 1024)
    d = pull(tmp_path, server + "/img.bin", rate=128 * 1024)
    assert d["rc"] == 0, d
    ms = int(d["DONE"].split()[2])
    assert 450 <= ms <= 3000, ms                # 64 KiB at 128 KiB/s: about half a second


def test_pacer_holds_the_rate_on_both_interpreters():
    """The shared pacer (used by the coap and http fetchers) sleeps until bytes/elapsed <= rate;
    rate 0 is no pacer at all."""
    from mpy import run_mp
    code = ("import time\nfrom firmware_slots.transfer import pacer\n"
            "p = pacer(20000)\nt = time.ticks_ms()\nfor _ in range(10): p(1000)\n"
            "print(time.ticks_diff(time.ticks_ms(), t), pacer(0))\n")
    paced, free = run_mp(code).split()
    assert 450 <= int(paced) < 2000 and free == "None"  # 10 KB at 20 KB/s is at least half a second
    import time
    from firmware_slots.transfer import pacer
    p = pacer(40000)
    t = time.monotonic()
    for _ in range(10):
        p(1000)
    assert time.monotonic() - t >= 0.2
    assert pacer(0) is None


STEPS = r'''
import sys, binascii, time
from firmware_slots.sim import simdev
from firmware_slots import transfer
from firmware_slots.transfer import pull, http
A = dict(a.split("=", 1) for a in sys.argv[1:])
http.TIMEOUT_S = int(A["timeout"])
flash, mgr = simdev.sim_device(sector_size=4096, journal_blocks=4, slot_blocks=80, nslots=2, path=A["flash"])
w, _ = pull.writer_for(mgr, 1, A["url"], int(A["size"]), "SHA-256", binascii.unhexlify(A["sha"]))
t = transfer.start(A["url"], w)
t0 = time.ticks_ms()
longest = steps = 0
while True:
    s = time.ticks_ms()
    done = t.step()
    longest = max(longest, time.ticks_diff(time.ticks_ms(), s))
    steps += 1
    if done:
        break
    time.sleep_ms(5)  # the rest of the agent's loop turn
print("STEPS", steps, longest, time.ticks_diff(time.ticks_ms(), t0))
print("ERROR", t.error)
if t.error is None:
    print("SHA", w.finish()["SHA256"])
'''


def steps(tmp_path, url, timeout, body=None):
    body = State.body if body is None else body
    app = tmp_path / "steps_app.py"
    app.write_text(STEPS)
    args = [micropython_exe(), str(app), "flash=%s" % (tmp_path / "dev.flash"), "url=" + url,
            "size=%d" % len(body), "sha=" + hashlib.sha256(body).hexdigest(), "timeout=%d" % timeout]
    env = dict(os.environ, MICROPYPATH=os.pathsep.join([ROOT, ".frozen"]))
    p = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    d = dict(line.split(None, 1) for line in p.stdout.splitlines() if " " in line)
    n, longest, total = map(int, d["STEPS"].split())
    return n, longest, total, d["ERROR"], d.get("SHA")


@requires_micropython
def test_a_silent_server_never_holds_the_loop(tmp_path):
    """A server that accepts the connection and never answers: every step returns at once
    (the agent keeps serving USP), and the pull ends by itself after TIMEOUT_S."""
    import socket
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(4)  # the kernel completes the handshake; nobody ever reads or writes
    try:
        n, longest, total, error, _ = steps(tmp_path, "http://127.0.0.1:%d/img.bin" % lst.getsockname()[1], 1)
    finally:
        lst.close()
    assert "no answer from the server for 1 s" in error, error
    assert longest < 200 and n > 20, (n, longest)  # many short steps, not one long wait
    assert 900 <= total < 5000, total


@requires_micropython
def test_a_refused_connection_fails_at_once(tmp_path):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there
    n, longest, total, error, _ = steps(tmp_path, "http://127.0.0.1:%d/img.bin" % port, 30)
    assert "connection refused" in error or "ECONNREFUSED" in error or "111" in error, error
    assert total < 2000, total


@requires_micropython
def test_stepped_pull_completes(server, tmp_path):
    n, longest, total, error, sha = steps(tmp_path, server + "/redirect", 30)
    assert error == "None", error
    assert n >= SIZE // 1024  # about one chunk per step
    assert sha == hashlib.sha256(State.body).hexdigest()


@pytest.fixture
def tls_server(tmp_path):
    """The same handler behind TLS: a throwaway self-signed certificate for 127.0.0.1."""
    import datetime
    import ipaddress
    import ssl
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    pem = tmp_path / "srv.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    State.body, State.etag, State.cut_at, State.sent, State.ranges, State.auth = \
        pattern(64 * 1024), '"v1"', None, 0, [], None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pem))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield "https://127.0.0.1:%d" % srv.server_address[1]
    srv.shutdown()
    srv.server_close()


@requires_micropython
def test_https_pull_is_stepped_too(tls_server, tmp_path):
    """TLS over the non-blocking socket: the handshake and every read are steps as well."""
    n, longest, total, error, sha = steps(tmp_path, tls_server + "/img.bin", 30)
    assert error == "None", error
    assert sha == hashlib.sha256(State.body).hexdigest()
    assert n > 64 and longest < 500, (n, longest)


def test_https_pull_under_cpython(tls_server, tmp_path):
    """Host tools run the same fetcher under CPython, whose ssl says 'want read' its own way."""
    import binascii
    from firmware_slots import transfer
    from firmware_slots.sim import simdev
    from firmware_slots.transfer import pull
    flash, mgr = simdev.sim_device(sector_size=4096, journal_blocks=4, slot_blocks=80, nslots=2,
                                   path=str(tmp_path / "cpy.flash"))
    sha = hashlib.sha256(State.body).hexdigest()
    w, _ = pull.writer_for(mgr, 1, tls_server + "/img.bin", len(State.body), "SHA-256", binascii.unhexlify(sha))
    t = transfer.start(tls_server + "/img.bin", w)
    for _ in range(100000):
        if t.step():
            break
    assert t.error is None, t.error
    assert w.finish()["SHA256"] == sha
