"""coaps listener: the TR-369 CoAP binding over DTLS 1.2 in Certificate mode.

    lst = CoapsListener(agent, "0.0.0.0", 5684, cert_der, key_der, cadata=ca_der)
    while True:
        lst.step(50)        # a step of a new peer's cookie exchange at most, serve the open sessions

Each accepted DTLS session gets its own CoapEndpoint over the session and a CoapMtp
sharing the one agent; a controller's USP replies go back over the same session (its
reply-to must name the peer's own address: the MTP refuses reflection with 4.03).
With `cadata` the controller must present a certificate that chains to it, and the
subjectAltName URIs of that certificate go with each of the session's Records to
agent.handle(record, reply_to, san_uris): a controller whose URI is
"urn:bbf:usp:id:<its EndpointID>" is trusted (datamodel/trust.roles_for).

What the device pays: one DTLS context, MAX_SESSIONS sessions (mbedTLS keeps ~10-20 KB
per session on a board), no per-peer state beyond them. Notifications are not sent
from here: the plain-CoAP MTP (or its coaps client) delivers the outbox.
"""

from firmware_slots.coap import dtls
from firmware_slots.coap.coaps import recv_nb
from firmware_slots.mtp.coap import CoapMtp

MAX_SESSIONS = 2
IDLE_MS = 60000       # a session this quiet is closed (this port's tls sends no close_notify)
EVICT_IDLE_MS = 5000  # all places taken and a new peer knocks: a session this quiet gives way


def _hostport(addr):
    # the same conversion the UDP transport uses (bytes sockaddr on MicroPython)
    from firmware_slots.coap.transport import UdpTransport
    return UdpTransport.peer_hostport(None, addr)


class _SessionMtp(CoapMtp):
    # a coaps reply-to rides back on the session the request came in on: the session's
    # transport is "coaps", so _route() gives its own endpoint
    sock = None  # the session's DtlsSocket: its san_uris are known once its handshake is done

    def _handle(self, record, reply_to):
        # only here does the agent learn certificate names: TR-369's SAN rule for coaps
        return self.agent.handle(record, reply_to, self.sock.san_uris)


class _Session:
    def __init__(self, agent, sock, path, log):
        from firmware_slots.coap.protocol import CoapEndpoint
        from firmware_slots.coap.coaps import ConnectedTransport
        from firmware_slots.coap._compat import ticks_ms
        host, port = _hostport(sock.peer)
        sock.settimeout(0)
        tr = ConnectedTransport(sock, host, port, "coaps", pollable=sock._s, recv=self._rx)
        self.sock = sock
        self.closed = False
        self.peer = (host, port)
        self.mtp = _SessionMtp(agent, CoapEndpoint(tr), path, log=log)
        self.mtp.sock = sock
        self.ticks_ms = ticks_ms
        self.last = ticks_ms()

    def _rx(self):
        d = recv_nb(self.sock)
        if d == b"":  # close_notify: the peer ended the session, free its place
            self.closed = True
            return None
        return d

    def step(self, timeout_ms):
        ep = self.mtp.endpoint
        before = ep.stats["rx"]
        ep.poll(timeout_ms)
        self.mtp.flush()
        if ep.stats["rx"] != before:
            self.last = self.ticks_ms()

    def idle_ms(self):
        from firmware_slots.coap._compat import ticks_diff
        return ticks_diff(self.ticks_ms(), self.last)

    def close(self):
        self.mtp.endpoint.close()


class CoapsListener:
    def __init__(self, agent, host, port, cert, key, cadata=None, path="usp", log=None):
        self.agent = agent
        self.path = path
        self.log = log
        self.srv = dtls.server(host, port, cert, key, cadata)  # DtlsUnsupported on CPython
        self.sessions = []
        self.refused = 0

    def step(self, timeout_ms=50):
        if len(self.sessions) >= MAX_SESSIONS and self.srv.knocking():
            quiet = max(self.sessions, key=_Session.idle_ms)
            if quiet.idle_ms() >= EVICT_IDLE_MS:  # one silent controller cannot lock out the rest
                quiet.close()
                self.sessions.remove(quiet)
        if len(self.sessions) < MAX_SESSIONS:
            s = self.srv.poll_accept()  # a step of a cookie exchange at most: never waits on a peer
            if s is not None:
                self.sessions.append(_Session(self.agent, s, self.path, self.log))
            elif not self.sessions:
                self.srv.wait(max(timeout_ms, 1))  # nothing else to serve here
            if self.srv.last_error is not None:
                self.refused += 1
                if self.log:
                    self.log("coaps peer refused: %s" % (self.srv.last_error,))
                self.srv.last_error = None
        for s in list(self.sessions):
            try:
                s.step(10)
            except OSError:
                s.close()  # session broken (peer gone): forget it
                self.sessions.remove(s)
                continue
            err = s.mtp.endpoint.transport.error
            if err is not None:  # its handshake failed (another CA, too slow) or the peer went away
                if s.sock._srv is not None:
                    self.refused += 1
                    if self.log:
                        self.log("coaps peer refused: %s" % (err,))
                s.close()
                self.sessions.remove(s)
                continue
            if s.closed or s.idle_ms() > IDLE_MS:
                s.close()
                self.sessions.remove(s)

    def close(self):
        for s in self.sessions:
            s.close()
        self.sessions = []
        self.srv.close()
