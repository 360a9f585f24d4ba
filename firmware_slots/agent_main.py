"""Agent process: USP agent + TR-369 CoAP MTP on one UDP port.

    micropython -m firmware_slots.agent_main --flash /tmp/dev.flash --port 5683 \
        --endpoint-id os::0044FF-dev1          (MICROPYPATH=<repo>:.frozen)
    python -m firmware_slots.agent_main ...    (same code on CPython: many agents, one host)

Options: --host 127.0.0.1 --port 5683 --path usp --endpoint-id ID --flash PATH
  --sector 4096 --slot-blocks 64 --nslots 2 --journal-blocks 2   (layout of a new flash file)
  --board NAME  (a boards/ profile: its flash and slot map instead of the file layout)
  --reply-host H (host in our reply-to URIs; default: the bound host)
  --seconds N   (stop after N s; default: run until killed)
  --dtls-cert F --dtls-key F --dtls-ca F  (DER/PEM; coaps reply-to POSTs, Certificate mode)
  --coaps-port P (also listen for coaps on P with that certificate; --dtls-ca makes
                 a client certificate chaining to it mandatory)
Prints "READY <port>" once serving. A reboot asked by USP (Reboot(), activation) ends
the process with exit code 75 (the unix-virtual launcher restarts it = a reset).
From a boot stub: run(mgr, endpoint_id, port=...) with the stub's SlotManager.
"""
import sys

RESET_EXIT = 75


def parse_args(argv):
    opts = {"host": "127.0.0.1", "port": "5683", "path": "usp", "endpoint-id": "os::000000-fwslots",
            "flash": "fwslots.flash", "sector": "4096", "slot-blocks": "64", "nslots": "2",
            "journal-blocks": "2", "seconds": "0", "board": "", "reply-host": "",
            "dtls-cert": "", "dtls-key": "", "dtls-ca": "", "coaps-port": ""}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--"):
            raise SystemExit("unexpected argument %r" % a)
        k = a[2:]
        if "=" in k:
            k, v = k.split("=", 1)
        else:
            i += 1
            v = argv[i] if i < len(argv) else ""
        if k not in opts:
            raise SystemExit("unknown option --%s" % k)
        opts[k] = v
        i += 1
    return opts


def manager(opts):
    """SlotManager over the file-backed simulated flash (or the board profile's flash)."""
    if opts.get("board") and opts["board"] != "unix-virtual-file":
        try:
            import boards
            b = boards.board(opts["board"])
            return b.manager() if hasattr(b, "manager") else _file_manager(opts)
        except ImportError:
            pass
    return _file_manager(opts)


def _file_manager(opts):
    from firmware_slots import layout
    flash, mgr = layout.sim_device(sector_size=int(opts["sector"]),
                                   journal_blocks=int(opts["journal-blocks"]),
                                   slot_blocks=int(opts["slot-blocks"]),
                                   nslots=int(opts["nslots"]), path=opts["flash"])
    return mgr


def _read(path):
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def build(mgr, endpoint_id, host="127.0.0.1", port=5683, path="usp", reply_host=None,
          dtls_client=None, platform=None):
    """-> CoapMtp serving `mgr`'s agent on host:port (port 0: any free one)."""
    from firmware_slots.coap.protocol import CoapEndpoint
    from firmware_slots.coap.transport import UdpTransport
    from firmware_slots.usp.agent import UspAgent
    from firmware_slots.mtp_coap import CoapMtp
    agent = UspAgent(mgr, endpoint_id, platform)
    ep = CoapEndpoint(UdpTransport(host, port))
    if reply_host is None and host not in ("0.0.0.0", "::"):
        reply_host = host
    mtp = CoapMtp(agent, ep, path, reply_host=reply_host, dtls_client=dtls_client)
    mtp.serve_images(mgr)
    return mtp


def run(mgr, endpoint_id, host="127.0.0.1", port=5683, path="usp", seconds=0, coaps=None, **kw):
    """Serve until `seconds` pass (0 = forever). Returns RESET_EXIT when USP asked for a reboot.

    coaps=(port, cert, key, ca): also listen for DTLS sessions (mtp_coaps) on that port.
    """
    from firmware_slots.usp.platform import Rebooting
    mtp = build(mgr, endpoint_id, host, port, path, **kw)
    lst = None
    if coaps:
        from firmware_slots.mtp_coaps import CoapsListener
        lst = CoapsListener(mtp.agent, host, coaps[0], coaps[1], coaps[2], coaps[3], path)
    print("READY", mtp.endpoint.transport.local_port)
    try:
        mtp.startup()
        if lst is None:
            mtp.serve(seconds * 1000 if seconds else None)
        else:
            from firmware_slots.coap._compat import ticks_add, ticks_diff, ticks_ms
            end = ticks_add(ticks_ms(), seconds * 1000) if seconds else None
            while end is None or ticks_diff(end, ticks_ms()) > 0:
                mtp.step(50)
                lst.step(20)
    except Rebooting as e:
        print("REBOOT", e)
        return RESET_EXIT
    finally:
        if lst:
            lst.close()
        mtp.close()
    return 0


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    mgr = manager(opts)
    mgr.boot()
    if mgr.running >= 0:
        try:
            mgr.confirm()  # no application here to confirm a trial image: the agent is the app
        except Exception:
            pass
    dc = None
    if opts["dtls-ca"]:
        dc = (_read(opts["dtls-ca"]), _read(opts["dtls-cert"]), _read(opts["dtls-key"]))
    coaps = None
    if opts["coaps-port"]:
        if not (opts["dtls-cert"] and opts["dtls-key"]):
            raise SystemExit("--coaps-port needs --dtls-cert and --dtls-key (DER or PEM)")
        from firmware_slots.dtls import pem_to_der
        der = lambda p: pem_to_der(_read(p))[0] if p else None  # noqa: E731
        coaps = (int(opts["coaps-port"]), der(opts["dtls-cert"]), der(opts["dtls-key"]), der(opts["dtls-ca"]))
    return run(mgr, opts["endpoint-id"], opts["host"], int(opts["port"]), opts["path"],
               int(opts["seconds"]), coaps=coaps, reply_host=opts["reply-host"] or None, dtls_client=dc)


if __name__ == "__main__":
    rc = main()
    if rc:
        sys.exit(rc)
