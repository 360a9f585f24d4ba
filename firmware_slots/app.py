"""The composition root: a board profile -> flash devices, SlotManager, USP agent, MTPs.

Every place that needs these objects builds them here: the boot stub, the stub's agent
app (bootstub/agentapp.py), agent_main, and the host's flash-file tools. The rules that
must not differ between them live here once:

| decision                      | where it comes from                                  |
| ----------------------------- | ---------------------------------------------------- |
| flash devices, journal/slots  | the board adapter (boards/), windows from the profile |
| image format check (inspect)  | profile "mode": app -> littlefs manifest (appimage),  |
|                               | native -> the adapter's own inspect, raw -> none      |
| boot attempts                 | profile "boot"."max_attempts" (default 3)             |
| trust keys, rollback floor    | profile "trust" {"keys": [PEM...], "min_security_counter"} |
|                               | (absent: checksum-only installs, as before)           |
| trusted controllers           | profile "trust" {"controllers": [EndpointID...]}: the |
|                               | rest get the untrusted role (absent: all trusted)     |
| layout of a flash file FILE   | FILE.json beside it: a board profile (see below)      |

A flash file's layout file is a board profile with "flash": {"device": "file", "sector",
"sectors", "write_size"}, "journal": {"first", "blocks"}, "slots": [{"first", "blocks"}...],
"boot", "mode"; the CLI, the virtual board and agent_main all read and write that one
format. The first wave's sidecar ({"sector_size", "journal_blocks", "slot_blocks",
"nslots", "write_size", "max_attempts"}) is still read (profile_from_numbers).
"""

RESET_EXIT = 75  # agent_main's exit code for a USP reboot: the launcher restarts = a reset


def profile_from_numbers(sector=4096, sectors=None, write_size=1, journal_blocks=None,
                         slot_blocks=64, nslots=2, max_attempts=3, mode="app", erased=255):
    """A profile dict for one flash carved [journal][slot 1][slot 2]... (journal_blocks
    None: core.layout.journal_blocks(sector), 2 for sectors of 4 KiB and more)."""
    if not journal_blocks:
        from firmware_slots.core.layout import journal_blocks as default
        journal_blocks = default(sector)
    slots = [{"first": journal_blocks + i * slot_blocks, "blocks": slot_blocks} for i in range(nslots)]
    need = journal_blocks + slot_blocks * nslots
    return {"name": "flash-file", "mode": mode, "adapter": "unix_virtual",
            "flash": {"device": "file", "sector": sector, "sectors": sectors or need,
                      "write_size": write_size, "erased": erased},
            "journal": {"first": 0, "blocks": journal_blocks}, "slots": slots,
            "boot": {"max_attempts": max_attempts}}


def read_profile(path):
    """The layout file of flash file `path` (path + ".json") as a profile; None if absent."""
    import json
    try:
        f = open(path + ".json")
    except OSError:
        return None
    with f:
        p = json.load(f)
    if "flash" not in p:  # first-wave sidecar
        p = profile_from_numbers(p.get("sector_size", 4096), None, p.get("write_size", 1),
                                 p.get("journal_blocks", 2), p.get("slot_blocks", 64),
                                 p.get("nslots", 2), p.get("max_attempts", 3), p.get("mode", "app"))
    n = p.get("nslots")
    if n:
        p["slots"] = p["slots"][:n]
    fl = p["flash"]
    if not fl.get("sectors"):  # the file ends with the last region it holds
        fl["sectors"] = max([p["journal"]["first"] + p["journal"]["blocks"]] +
                            [x["first"] + x["blocks"] for x in p["slots"]])
    return p


def inspector(profile, board=None):
    """The format check an image must pass in this board's mode (None: raw slots)."""
    mode = profile.get("mode", "app")
    if mode == "raw":
        return None
    insp = getattr(board, "inspect", None)
    if insp is not None:
        return insp
    if mode == "app":
        from firmware_slots.core.appimage import inspect
        return inspect
    return None


def board(profile):
    import boards
    return boards.board(profile)


def slot_manager(profile, b=None):
    """The SlotManager of `profile` over board `b` (default: the profile's adapter)."""
    from firmware_slots.core.slots import SlotManager
    b = b or board(profile)
    j, slots = b.devices()
    bp = profile.get("boot", {})
    keys, floor = trust(profile)
    m = SlotManager(slots, j, b.write_size, bp.get("max_attempts", 3), inspector(profile, b), keys, floor,
                    profile["flash"].get("erased"))  # erased None: what the device says, else 0xFF
    return m


def controllers(profile):
    """The provisioned controller EndpointIDs of `profile` (None: no policy, the open door)."""
    return (profile.get("trust") or {}).get("controllers")


def trust(profile):
    """(keys, min_security_counter) of the profile's "trust" entry; ([], 0) without one."""
    t = profile.get("trust") or {}
    ks = t.get("keys") or []
    if not ks:
        return [], t.get("min_security_counter", 0)
    from firmware_slots.core.image import load_key  # only provisioned boards pay for it
    return [load_key(k) for k in ks], t.get("min_security_counter", 0)


def open_flash_file(path, profile=None):
    """(flash, SlotManager) over flash file `path`, laid out by `profile` or path.json."""
    p = profile or read_profile(path)
    if p is None:
        raise OSError("%s has no layout file %s.json" % (path, path))
    p = dict(p)
    p["flash"] = dict(p["flash"], path=path)
    p["adapter"] = "unix_virtual"  # a file is the file-backed flash, whatever board it came from
    b = board(p)
    return b.flash, slot_manager(p, b)


def agent(mgr, endpoint_id, host="127.0.0.1", port=5683, path="usp", reply_host=None,
          dtls_client=None, platform=None, controllers=None):
    """-> CoapMtp serving `mgr`'s USP agent on host:port (port 0: any free one).
    controllers: the profile's trust policy (app.controllers(profile)); None: everyone trusted."""
    from firmware_slots.coap.protocol import CoapEndpoint
    from firmware_slots.coap.transport import UdpTransport
    from firmware_slots.usp.agent import UspAgent
    from firmware_slots.mtp.coap import CoapMtp
    a = UspAgent(mgr, endpoint_id, platform, controllers=controllers)
    ep = CoapEndpoint(UdpTransport(host, port))
    if reply_host is None and host not in ("0.0.0.0", "::"):
        reply_host = host
    mtp = CoapMtp(a, ep, path, reply_host=reply_host, dtls_client=dtls_client)
    mtp.serve_images(mgr)
    return mtp


def serve(mgr, endpoint_id, host="127.0.0.1", port=5683, path="usp", seconds=0, coaps=None, **kw):
    """Serve until `seconds` pass (0 = forever). Returns RESET_EXIT when USP asked for a reboot.

    coaps=(port, cert, key, ca): also listen for DTLS sessions (mtp.coaps) on that port.
    """
    from firmware_slots.usp.platform import Rebooting
    mtp = agent(mgr, endpoint_id, host, port, path, **kw)
    lst = None
    if coaps:
        from firmware_slots.mtp.coaps import CoapsListener
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
        if mtp._outbox is not None:  # what the outbound path sent and dropped, for benches
            print("STATS", mtp._outbox.stats)
        mtp.close()
    return 0
