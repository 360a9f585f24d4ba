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
The wiring itself is firmware_slots.app (the composition root); this is only its command line.
"""
import sys



def usage_error(msg):
    """One line on stderr, exit 2 (bad usage): the same on MicroPython and CPython."""
    sys.stderr.write("agent_main: %s (see the module docstring for options)\n" % msg)
    sys.exit(2)


def parse_args(argv):
    opts = {"host": "127.0.0.1", "port": "5683", "path": "usp", "endpoint-id": "os::000000-fwslots",
            "flash": "fwslots.flash", "sector": "4096", "slot-blocks": "64", "nslots": "2",
            "journal-blocks": "2", "seconds": "0", "board": "", "reply-host": "",
            "dtls-cert": "", "dtls-key": "", "dtls-ca": "", "coaps-port": ""}
    i = 0
    while i < len(argv):
        a = argv[i]
        if not a.startswith("--"):
            usage_error("unexpected argument %r" % a)
        k = a[2:]
        if "=" in k:
            k, v = k.split("=", 1)
        else:
            i += 1
            if i >= len(argv):
                usage_error("option --%s needs a value" % k)
            v = argv[i]
        if k not in opts:
            usage_error("unknown option --%s" % k)
        opts[k] = v
        i += 1
    for k in ("port", "sector", "slot-blocks", "nslots", "journal-blocks", "seconds"):
        try:
            int(opts[k])
        except ValueError:
            usage_error("--%s wants a number, got %r" % (k, opts[k]))
    return opts


def manager(opts):
    """(SlotManager, profile) of the board profile (--board) or of the flash file and its layout file."""
    from firmware_slots import app
    if opts.get("board"):
        import boards
        try:
            p = boards.load(opts["board"])
        except OSError:
            usage_error("no board profile %r" % opts["board"])
        return app.slot_manager(p), p
    path = opts["flash"]
    p = app.read_profile(path)
    if p is None:
        p = app.profile_from_numbers(int(opts["sector"]), None, 1, int(opts["journal-blocks"]),
                                     int(opts["slot-blocks"]), int(opts["nslots"]))
        try:
            import json
            with open(path + ".json", "w") as f:
                json.dump(p, f)  # every later tool reads the same layout
        except OSError as e:
            sys.stderr.write("agent_main: cannot create %s.json: %s\n" % (path, e))
            sys.exit(1)
    return app.open_flash_file(path, p)[1], p


def _read(path):
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    mgr, profile = manager(opts)
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
            usage_error("--coaps-port needs --dtls-cert and --dtls-key (DER or PEM)")
        from firmware_slots.coap.dtls import pem_to_der
        der = lambda p: pem_to_der(_read(p))[0] if p else None  # noqa: E731
        coaps = (int(opts["coaps-port"]), der(opts["dtls-cert"]), der(opts["dtls-key"]), der(opts["dtls-ca"]))
    from firmware_slots import app
    return app.serve(mgr, opts["endpoint-id"], opts["host"], int(opts["port"]), opts["path"],
                     int(opts["seconds"]), coaps=coaps, reply_host=opts["reply-host"] or None, dtls_client=dc,
                     controllers=app.controllers(profile))


if __name__ == "__main__":
    rc = main()
    if rc:
        sys.exit(rc)
