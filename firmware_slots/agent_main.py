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
            "dtls-cert": "", "dtls-key": "", "dtls-ca": ""}
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


def run(mgr, endpoint_id, host="127.0.0.1", port=5683, path="usp", seconds=0, **kw):
    """Serve until `seconds` pass (0 = forever). Returns RESET_EXIT when USP asked for a reboot."""
    from firmware_slots.usp.platform import Rebooting
    mtp = build(mgr, endpoint_id, host, port, path, **kw)
    print("READY", mtp.endpoint.transport.local_port)
    try:
        mtp.startup()
        mtp.serve(seconds * 1000 if seconds else None)
    except Rebooting as e:
        print("REBOOT", e)
        return RESET_EXIT
    finally:
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
    return run(mgr, opts["endpoint-id"], opts["host"], int(opts["port"]), opts["path"],
               int(opts["seconds"]), reply_host=opts["reply-host"] or None, dtls_client=dc)


if __name__ == "__main__":
    rc = main()
    if rc:
        sys.exit(rc)
