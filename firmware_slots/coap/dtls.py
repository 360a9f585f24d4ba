"""DTLS 1.2 datagram transport for the CoAP MTP (TR-369 "Certificate" mode).

Device-side module, MicroPython only: it drives the `tls` module (mbedTLS) of
MicroPython >= 1.23. CPython's `ssl` has no DTLS at all, so on CPython every entry
point raises `DtlsUnsupported` (an OSError) saying so. It knows nothing about CoAP:
the CoAP layer uses a `DtlsSocket` as its transport (send / recv / close).

API
---
    sock = connect(host, port, cadata, cert=None, key=None,
                   server_hostname=None, timeout=10, flight_timeout=1, wait=True)
        DTLS client session to host:port. The peer certificate MUST chain to
        `cadata` (CERT_REQUIRED) and match `server_hostname` (default: host; DNS
        name or IP address SAN/CN). `cert` + `key` give our own certificate for
        mutual authentication (R-COAP.16). Raises OSError/ValueError on failure,
        see "errors" below. wait=False returns at once: the handshake then runs
        inside the session's own send()/recv() calls, each a short non-blocking
        step (a loop serving others never waits on the peer), the first datagram
        sent when it completes; a failure (another CA, or `timeout` seconds
        without completing) is raised by the send()/recv() that meets it.
    srv = server(host, port, cert, key, cadata=None, flight_timeout=1)
        DTLS server bound to host:port. With `cadata` the client must present a
        certificate chaining to it (CERT_REQUIRED); without, no client cert is
        asked for. Raises `DtlsUnsupported` if this port cannot do it.
    sock = srv.accept(timeout=None)
        Wait for the next peer, run the cookie exchange and handshake, return a
        `DtlsSocket` for that one peer. Peers whose handshake fails are dropped
        (the reason is kept in `srv.last_error`) and listening goes on; OSError
        ETIMEDOUT when `timeout` seconds pass without a session.
    sock = srv.poll_accept()
        The same without ever waiting (a loop serving others calls it each turn):
        answers a new peer's ClientHello with the cookie (HelloVerifyRequest; one
        peer at a time, COOKIE_MS to return it, no session before it does), and
        once the cookie is back returns a `DtlsSocket` whose handshake goes on in
        its own recv() steps (HANDSHAKE_MS; a failure is raised there). None
        otherwise. srv.wait(ms) waits for something it can use.
    srv.close()

    DtlsSocket: send(data) -> int; recv(n=2048, timeout=<default>) -> bytes
        (one datagram; b"" once the peer sent close_notify; OSError(ETIMEDOUT)
        after `timeout` seconds, and the session stays usable);
        settimeout(t); cipher() -> (suite, "DTLSv1.2"); peer; close();
        san_uris: on a server session with `cadata`, the subjectAltName URIs
        (x509.san_uris, [] when none) of the client certificate the handshake
        verified against `cadata`; None on every other socket.
    pem_to_der(data) -> [der, ...]: PEM text to DER blobs (see key formats).
    supported() -> (client_ok, server_ok)

Keys and certificates may be given as DER bytes or PEM text/bytes; PEM is
converted to DER here because this build's mbedTLS has no PEM parser.

Findings on the MicroPython 1.29 unix port (mbedTLS 3.6.6), checked against
libcoap 4.3.1 coap-server-openssl / coap-client-openssl (OpenSSL 3) on loopback
------------------------------------------------------------------------------
What works:
* Client role (PROTOCOL_DTLS_CLIENT): handshake over a *connected* UDP socket
  (the SSL socket's BIO is the plain stream read/write of the socket, i.e.
  recv()/send(): the UDP socket must be connect()ed to the peer, there is no
  sendto path). CERT_REQUIRED verifies the chain and the host name (DNS and
  IP-address SAN both match); mutual authentication with our own cert works.
  EC P-256 (TLS-ECDHE-ECDSA-WITH-AES-256-GCM-SHA384) and RSA-2048
  (TLS-ECDHE-RSA-WITH-AES-256-GCM-SHA384) both negotiate DTLSv1.2, ~30 ms on
  loopback. HelloVerifyRequest cookies from the server are handled inside mbedTLS.
* Server role (PROTOCOL_DTLS_SERVER) WORKS, with three conditions:
  1. `tls.SSLContext.wrap_socket(sock, server_side=True, client_id=<bytes>)`.
     Without `client_id` mbedTLS is never given a transport id
     (mbedtls_ssl_set_client_transport_id) and wrap_socket fails at once with
     OSError(-28928, 'MBEDTLS_ERR_SSL_BAD_INPUT_DATA') (-0x7100) -- that was the
     error first seen. The micropython-lib `ssl.SSLContext.wrap_socket` wrapper
     does NOT forward client_id (TypeError "unexpected keyword argument
     'client_id'"), so the C-level `tls.SSLContext` must be used.
  2. The UDP socket must be connect()ed to the client first: the address is
     learnt with `recvfrom(1, socket.MSG_PEEK)` so the ClientHello stays queued
     for mbedTLS.
  3. HelloVerifyRequest is always on (MBEDTLS_SSL_DTLS_HELLO_VERIFY): the first
     wrap_socket sends the cookie and raises OSError(-27264,
     'MBEDTLS_ERR_SSL_HELLO_VERIFY_REQUIRED') (-0x6A80); calling wrap_socket
     again on the same connected socket with the same client_id completes the
     handshake with the client's second ClientHello. accept() does this.
  One session per socket: as a peer's handshake starts, a fresh listener is bound
  with SO_REUSEADDR so further peers queue (rather than get ICMP "refused") while
  it runs and while the session lives (Linux prefers the connected socket for its
  own peer; two concurrent sessions on one port were checked). On lwIP ports that second bind
  needs SO_REUSE; if it fails, accept() re-binds once the session is closed.
Key/cert formats (load_cert_chain / load_verify_locations):
* DER only: certificates DER; keys DER as PKCS#8, SEC1 ("EC PRIVATE KEY") or
  PKCS#1 ("RSA PRIVATE KEY"), EC P-256 and RSA all accepted.
* Any PEM input is refused -- ValueError('invalid key') / ValueError('invalid
  cert') -- because this build lacks MBEDTLS_PEM_PARSE_C; hence pem_to_der().
  Encrypted keys are not supported. Only one own certificate (no intermediates:
  a second load_cert_chain re-parses the key and fails); several CA certs are fine.
Other limits of this port's API:
* No getpeercert() (built without MBEDTLS_SSL_KEEP_PEER_CERTIFICATE); cipher()
  must not be called before the handshake finished (NULL suite name). Instead,
  SSLContext.verify_callback(cert, depth) is called inside wrap_socket for each
  certificate of the peer's chain, the root first and the leaf (depth 0) last,
  with a memoryview of its DER valid only during the call; also for a chain that
  then fails (another CA: only depth 0), so what it saw counts only once the
  handshake succeeded. Return 0 keeps mbedTLS's verdict; non-zero aborts the
  chain walk at once and the handshake fails with that number as the error (the
  peer gets a fatal alert); an exception escapes through mbedTLS, skipping its
  cleanup (the handshake state leaks), so the callback here never raises.
* No way to set mbedTLS's handshake timer (1 s .. 60 s). With a non-blocking
  socket the handshake inside wrap_socket would retry for ~2 minutes, so the
  handshake runs on a socket with a per-flight receive timeout: a lost flight
  gives OSError(110 ETIMEDOUT) and the whole handshake is restarted until
  `timeout` is spent (the client restart of RFC 6347 4.2.8).
* wrap_socket(..., do_handshake_on_connect=False) on a non-blocking socket does
  work: every read()/write() then runs one step of the handshake and returns None
  until it is done (mbedTLS's timers are set, so its own flights are resent by a
  later step); a server's first step answers the ClientHello with the cookie and
  raises HELLO_VERIFY_REQUIRED, and a fresh wrap continues with the second one.
  The port shows no "handshake done" (cipher() before it would crash), so a server
  session knows it from the peer's first application datagram, and a client from
  its first write() that returns a length. connect(wait=False) and poll_accept()
  are built on this.
* After the handshake the socket is non-blocking: an ETIMEDOUT from the
  underlying socket is sticky in the SSL socket (last_error), EAGAIN is not.
Errors (codes as seen):
* server cert from another CA, or name mismatch -> ValueError('The certificate
  is not correctly signed by the trusted CA' / "...Common Name (CN) does not match
  with the expected CN") from the client handshake; the peer gets a fatal alert.
* client cert from an untrusted CA at our server -> accept() drops the peer
  with srv.last_error = ValueError('The certificate is not correctly signed by
  the trusted CA'); the client gets a fatal "unknown CA" alert.
* client cert rejected by a peer -> OSError(-30592,
  'MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE') (-0x7780) on the client.
* CERT_REQUIRED without server_hostname -> ValueError('CERT_REQUIRED requires
  server_hostname') (avoided here: host is the default).
"""

import socket

try:
    import errno

    _ETIMEDOUT = errno.ETIMEDOUT
except ImportError:  # pragma: no cover
    _ETIMEDOUT = 110

try:
    import time

    _ticks_ms = time.ticks_ms
    _ticks_diff = time.ticks_diff
except AttributeError:  # CPython
    import time

    def _ticks_ms():
        return int(time.monotonic() * 1000)

    def _ticks_diff(a, b):
        return a - b


_tls = None
try:
    import tls as _tls  # MicroPython >= 1.23: the C module behind ssl
except ImportError:
    try:
        import ssl as _ssl  # older MicroPython: ssl is the C module

        if hasattr(_ssl, "PROTOCOL_DTLS_CLIENT") and hasattr(_ssl.SSLContext, "wrap_socket"):
            _tls = _ssl
    except ImportError:
        pass
if _tls is not None and not hasattr(_tls, "PROTOCOL_DTLS_CLIENT"):
    _tls = None

HELLO_VERIFY_REQUIRED = -0x6A80  # MBEDTLS_ERR_SSL_HELLO_VERIFY_REQUIRED
COOKIE_MS = 1000     # poll_accept: how long a peer sent a cookie may take to return it
HANDSHAKE_MS = 5000  # poll_accept: how long a session may take over the rest of its handshake
BAD_INPUT_DATA = -0x7100  # MBEDTLS_ERR_SSL_BAD_INPUT_DATA
FATAL_ALERT = -0x7780  # MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE


class DtlsUnsupported(OSError):
    """This Python cannot do the requested DTLS role; the message says why."""


def _need_client():
    if _tls is None:
        raise DtlsUnsupported(
            "DTLS needs MicroPython's tls/ssl module with PROTOCOL_DTLS_CLIENT "
            "(mbedTLS built with MBEDTLS_SSL_PROTO_DTLS); CPython's ssl has no DTLS"
        )


_server_probe = None


def _server_problem():
    """None if the DTLS server role can work here, else the reason (a str)."""
    global _server_probe
    if _server_probe is not None:
        return _server_probe or None
    if _tls is None:
        _server_probe = (
            "DTLS needs MicroPython's tls module with PROTOCOL_DTLS_SERVER; "
            "CPython's ssl has no DTLS"
        )
    elif not hasattr(_tls, "PROTOCOL_DTLS_SERVER"):
        _server_probe = "tls.PROTOCOL_DTLS_SERVER is missing from this build"
    else:
        _server_probe = ""
        try:
            import io

            base = io.IOBase
        except (ImportError, AttributeError):
            base = None
        if base is not None:

            class _Null(base):
                def write(self, b):
                    return len(b)

                def readinto(self, b):
                    return None

                def ioctl(self, req, arg):
                    return 0 if req == 4 else -1  # 4 = MP_STREAM_CLOSE

            ctx = _tls.SSLContext(_tls.PROTOCOL_DTLS_SERVER)
            try:
                s = ctx.wrap_socket(
                    _Null(), server_side=True, do_handshake_on_connect=False, client_id=b"probe"
                )
                s.close()
            except TypeError:
                _server_probe = (
                    "tls.SSLContext.wrap_socket() has no client_id argument (MicroPython "
                    "built without MBEDTLS_SSL_DTLS_HELLO_VERIFY): every server handshake "
                    "fails with MBEDTLS_ERR_SSL_BAD_INPUT_DATA (-0x7100)"
                )
            except OSError as e:
                _server_probe = "DTLS server wrap_socket fails on this port: %r" % (e,)
    return _server_probe or None


def supported():
    """(client_ok, server_ok) for this interpreter."""
    return _tls is not None, _server_problem() is None


# --- key material -----------------------------------------------------------


def pem_to_der(data):
    """Return the DER blobs of every PEM block in `data` (str or bytes).

    DER input (no "-----BEGIN") is returned unchanged as a one-element list.
    """
    if isinstance(data, str):
        data = data.encode()
    data = bytes(data)
    if b"-----BEGIN " not in data:
        return [data]
    import binascii

    out = []
    body = None
    for line in data.split(b"\n"):
        line = line.strip()
        if line.startswith(b"-----BEGIN "):
            if b"ENCRYPTED" in line:
                raise ValueError("encrypted PEM keys are not supported")
            body = []
        elif line.startswith(b"-----END "):
            if body is not None:
                out.append(binascii.a2b_base64(b"".join(body)))
            body = None
        elif body is not None and line and b":" not in line:
            body.append(line)
    if not out:
        raise ValueError("no PEM block found")
    return out


def _der1(data):
    return pem_to_der(data)[0]


def _context(protocol, cadata, cert, key):
    ctx = _tls.SSLContext(protocol)
    if cert is not None or key is not None:
        if cert is None or key is None:
            raise ValueError("cert and key go together")
        ctx.load_cert_chain(_der1(cert), _der1(key))
    if cadata is not None:
        if isinstance(cadata, (list, tuple)):
            blobs = []
            for c in cadata:
                blobs += pem_to_der(c)
        else:
            blobs = pem_to_der(cadata)
        for der in blobs:
            ctx.load_verify_locations(der)
        ctx.verify_mode = _tls.CERT_REQUIRED
    else:
        ctx.verify_mode = _tls.CERT_NONE
    return ctx


def _addr(host, port):
    return socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]


def _remaining(deadline):
    if deadline is None:
        return None
    return _ticks_diff(deadline, _ticks_ms()) / 1000


def _deadline(timeout):
    if timeout is None:
        return None
    return _ticks_ms() + int(timeout * 1000)


def _timed_out():
    return OSError(_ETIMEDOUT)


def _readable(sock, ms):
    import select
    p = select.poll()
    p.register(sock, select.POLLIN)
    return bool(p.poll(ms))


# --- the session ------------------------------------------------------------


class DtlsSocket:
    """One DTLS session with one peer: datagram in, datagram out."""

    san_uris = None  # server sessions set it (DtlsServer.accept): a class default costs no RAM per socket
    _shaking = None  # ticks deadline while a non-blocking handshake runs, else None
    _srv = None  # poll_accept sessions while shaking: the DtlsServer whose callback sees the certificate
    _seen = None  # the SAN URIs that callback saw during this session's own steps

    def __init__(self, ssl_sock, peer, timeout=None, shaking=None):
        self._s = ssl_sock
        self.peer = peer
        self.timeout = timeout
        self._pending = None  # the datagram waiting for the handshake (or for room to send)
        if shaking is not None:
            self._shaking = shaking
        ssl_sock.setblocking(False)  # EAGAIN -> None, never a sticky error
        import select

        self._poll = select.poll()
        self._poll.register(ssl_sock, select.POLLIN)

    def settimeout(self, timeout):
        self.timeout = timeout

    def cipher(self):
        return self._s.cipher()

    def send(self, data):
        """Sends, or keeps the datagram (one: the newest, CoAP retransmits) for the next
        send()/recv() while the handshake runs or the port has no room. Never waits."""
        if self._s is None:
            raise OSError(9, "EBADF")
        self._pending = bytes(data)
        self._flush()
        return len(data)

    def _flush(self):
        if self._shaking is not None and _ticks_diff(self._shaking, _ticks_ms()) <= 0:
            raise OSError(_ETIMEDOUT, "DTLS handshake did not complete in time")
        if self._pending is not None and self._s.write(self._pending) is not None:
            self._pending = None
            self._shaking = None  # application data went out: the handshake is done

    def recv(self, n=2048, timeout=-1):
        """One datagram (up to n bytes); b"" when the peer closed the session."""
        if self._s is None:
            raise OSError(9, "EBADF")
        if timeout == -1:
            timeout = self.timeout
        deadline = _deadline(timeout)
        while True:
            if self._pending is not None or self._shaking is not None:
                self._flush()  # a step of the handshake, or the datagram it held back
            srv = self._srv
            if srv is not None:
                srv._leaf = None  # what the verify callback sees in this step is this peer's
                data = self._s.recv(n)
                if srv._leaf is not None:
                    self._seen = srv._leaf
            else:
                data = self._s.recv(n)
            if data is not None:
                if srv is not None:  # application data: the handshake (and its verification) is done
                    self._srv = None
                    if srv._verified():
                        self.san_uris = self._seen or []
                self._shaking = None
                return data
            left = _remaining(deadline)
            if left is not None and left <= 0:
                raise _timed_out()
            # bounded wait so mbedTLS retransmission timers still get serviced
            self._poll.poll(100 if left is None else max(1, min(100, int(left * 1000))))

    def close(self):
        if self._s is not None:
            try:
                self._s.close()  # closes the UDP socket too; sends no close_notify (the port only frees the context)
            finally:
                self._s = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _handshake(ctx, sock, flight_timeout, deadline, restart=True, **kw):
    """wrap_socket with a per-flight receive timeout, restarted until deadline."""
    while True:
        left = _remaining(deadline)
        if left is not None and left <= 0:
            raise _timed_out()
        ft = flight_timeout if left is None else max(0.05, min(flight_timeout, left))
        sock.settimeout(ft)
        try:
            return ctx.wrap_socket(sock, **kw)
        except OSError as e:
            if e.errno != _ETIMEDOUT or not restart:
                raise
            flight_timeout = min(flight_timeout * 2, 8)


def connect(
    host,
    port,
    cadata,
    cert=None,
    key=None,
    server_hostname=None,
    timeout=10,
    flight_timeout=1,
    wait=True,
):
    """Open a DTLS 1.2 client session (Certificate mode) to host:port (wait=False: see API)."""
    _need_client()
    if cadata is None:
        raise ValueError("Certificate mode needs cadata (CA to verify the peer)")
    ctx = _context(_tls.PROTOCOL_DTLS_CLIENT, cadata, cert, key)
    addr = _addr(host, port)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if not wait:
        # mbedTLS's own timers retransmit its flights; each call here is one step of it
        try:
            s.connect(addr)
            s.setblocking(False)
            d = ctx.wrap_socket(s, server_hostname=server_hostname or host, do_handshake_on_connect=False)
        except BaseException:
            s.close()
            raise
        out = DtlsSocket(d, addr, shaking=_ticks_ms() + int(timeout * 1000))
        out._ctx = ctx
        return out
    try:
        s.connect(addr)
        d = _handshake(
            ctx,
            s,
            flight_timeout,
            _deadline(timeout),
            server_hostname=server_hostname or host,
        )
    except BaseException:
        s.close()
        raise
    out = DtlsSocket(d, addr)
    out._ctx = ctx  # keep the context alive as long as the session
    return out


class DtlsServer:
    def __init__(self, ctx, addr, flight_timeout, names=None):
        self._ctx = ctx
        self._addr = addr
        self.flight_timeout = flight_timeout
        self.last_error = None
        self._sock = None
        self._names = names  # x509.san_uris when client certificates are verified, else None
        self._leaf = None  # SAN URIs of the leaf seen by the handshake step under way (one at a time)
        self._hv = None  # poll_accept's peer we sent a cookie to: [socket, None, peer, deadline]
        if names is not None:
            ctx.verify_callback = self._verify
        self._bind()

    def _verified(self):
        return self._names is not None and self._ctx.verify_mode == _tls.CERT_REQUIRED

    def poll_accept(self):
        """See the module API: one short step, never a wait; -> a shaking DtlsSocket or None."""
        p = self._hv
        if p is not None:
            if _ticks_diff(p[3], _ticks_ms()) <= 0:  # never came back (a spoofed source, a lost peer)
                self._hv = None
                self.last_error = OSError(HELLO_VERIFY_REQUIRED, "peer never returned the cookie")
                p[0].close()
                return None
            if not _readable(p[0], 0):
                return None
            self._hv = None  # its second ClientHello is there: the rest of the handshake is its own
            return self._session(p[0], p[2])
        if self._sock is None:
            self._bind()
        s = self._sock
        s.settimeout(0)
        try:
            peer = s.recvfrom(1, socket.MSG_PEEK)[1]
        except OSError:
            return None  # nobody knocked
        s.connect(peer)
        self._sock = None
        try:
            self._bind()  # the next listener (see accept)
        except OSError:
            self._sock = None
        s.setblocking(False)
        try:
            d = self._wrap(s, peer)
            d.recv(2048)  # processes the queued ClientHello: answers it with the cookie
        except OSError as e:
            if e.errno == HELLO_VERIFY_REQUIRED:
                self._hv = [s, None, peer, _ticks_ms() + COOKIE_MS]  # no session until it returns
                return None
            self.last_error = e
            s.close()
            return None
        except ValueError as e:
            self.last_error = e
            s.close()
            return None
        return self._shaking(d, peer)  # a build without cookies: the handshake is under way already

    def _wrap(self, s, peer):
        cid = peer if isinstance(peer, bytes) else repr(peer).encode()
        return self._ctx.wrap_socket(s, server_side=True, client_id=cid, do_handshake_on_connect=False)

    def _session(self, s, peer):
        try:
            d = self._wrap(s, peer)
        except (OSError, ValueError) as e:
            self.last_error = e
            s.close()
            return None
        return self._shaking(d, peer)

    def _shaking(self, d, peer):
        # the session goes on with its handshake in its own recv() steps; our callback names its peer
        out = DtlsSocket(d, peer, shaking=_ticks_ms() + HANDSHAKE_MS)
        out._srv = self
        return out

    def wait(self, ms):
        """Up to ms for something poll_accept() can use (a returning cookie, or a knock)."""
        if self._hv is None and self._sock is None:
            self._bind()
        return _readable(self._hv[0] if self._hv is not None else self._sock, ms)

    def _verify(self, cert, depth):
        # mbedTLS calls this inside wrap_socket: only that handshake's peer can be its source
        if depth == 0:
            try:
                self._leaf = self._names(cert)  # copies out the names: cert is only valid now
            except Exception:  # never raise through mbedTLS (see the module notes)
                self._leaf = []
        return 0  # mbedTLS's own verdict on the chain stands

    def _bind(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(self._addr)
        except BaseException:
            s.close()
            raise
        self._sock = s

    def _drop(self):
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def knocking(self):
        """True when a datagram from a peer without a session waits. Keeps the listening
        socket bound, so while every place is taken new peers queue instead of being refused."""
        if self._sock is None:
            self._bind()
        return _readable(self._sock, 0)

    def accept(self, timeout=None):
        deadline = _deadline(timeout)
        while True:
            if self._sock is None:
                self._bind()
            s = self._sock
            left = _remaining(deadline)
            if left is not None and left <= 0:
                raise _timed_out()
            s.settimeout(left)
            try:
                peer = s.recvfrom(1, socket.MSG_PEEK)[1]
            except OSError as e:
                if e.errno == 11:  # EAGAIN from a zero timeout
                    raise _timed_out()
                raise
            s.connect(peer)
            self._sock = None  # s is this peer's now
            try:
                # the next listener, bound before this handshake: a peer knocking while it runs
                # (or before this side has finished it) queues instead of being refused
                self._bind()
            except OSError:
                self._sock = None  # (lwIP without SO_REUSE) re-bound by the next accept()
            cid = peer if isinstance(peer, bytes) else repr(peer).encode()
            d = None
            # a peer that knocked gets its handshake's own time (each flight up to flight_timeout),
            # not what is left of the wait for a knock: a caller polling with 20 ms would
            # otherwise allow 50 ms per flight and refuse every controller more than 25 ms away
            shake = _deadline(3 * self.flight_timeout)
            try:
                for _ in range(3):  # 1st: HelloVerifyRequest sent, 2nd: handshake
                    self._leaf = None  # nothing seen before this wrap_socket is this peer's
                    try:
                        d = _handshake(
                            self._ctx,
                            s,
                            self.flight_timeout,
                            shake,
                            restart=False,  # a silent peer is dropped
                            server_side=True,
                            client_id=cid,
                        )
                        break
                    except OSError as e:
                        if e.errno != HELLO_VERIFY_REQUIRED:
                            raise
            except (OSError, ValueError) as e:
                self.last_error = e
                s.close()
                continue
            if d is None:
                self.last_error = OSError(HELLO_VERIFY_REQUIRED, "peer never returned the cookie")
                s.close()
                continue
            out = DtlsSocket(d, peer)
            if self._names is not None and self._ctx.verify_mode == _tls.CERT_REQUIRED:
                out.san_uris = self._leaf or []  # verified: the handshake would have failed otherwise
            self._leaf = None
            return out

    def close(self):
        if self._hv is not None:
            self._hv[0].close()
            self._hv = None
        self._drop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def server(host, port, cert, key, cadata=None, flight_timeout=1):
    """DTLS 1.2 server bound to host:port (see DtlsServer.accept)."""
    why = _server_problem()
    if why:
        raise DtlsUnsupported(why)
    ctx = _context(_tls.PROTOCOL_DTLS_SERVER, cadata, cert, key)
    names = None
    if cadata is not None:  # only a certificate verified against cadata may name its owner
        from firmware_slots.coap.x509 import san_uris as names
    return DtlsServer(ctx, _addr(host, port), flight_timeout, names)
