"""Bounded state on the smallest supported journal erase block (512 bytes); runs on CPython
and MicroPython (tests/test_state_budget_512.py runs both and compares the lines).

A 2-slot device on 512-byte blocks (the journal: 16 blocks = two 4 KiB ring sectors of 8)
gets every bounded text at its bound, the slot texts beyond it (clipped), and its agent
tables filled with the longest values until the budget refuses: a Download() request with
a 256-byte URL, a 64-byte CommandKey and a SHA-512 checksum, controllers with 64-byte
EndpointIDs and 256-byte reply-tos, persistent subscriptions, MTP and BootParameter rows.
Then one more addition of each kind is refused with 7005, each leaving the state, the
tables, the instance counters and every byte of flash as they were. With the state at its
fullest the device then reboots (a Reboot() whose 64-byte Reason and CommandKey the
reserved boot notes hold), resumes the download, installs, auto-activates, crashes its
trial boots (crash notes clipped to CRASH_MAX), falls back (BootFailureLog), reports, and
takes a failing install (its error clipped to LOG_MAX). Every record the journal wrote
fit; the largest whole state is printed next to the worst case the budget allows, and a
reopened device recovers exactly the state in RAM.

Prints "name value" lines; raises AssertionError on any broken promise.
"""
import hashlib

from firmware_slots.core import cbor, hashes
from firmware_slots.core import state as K
from firmware_slots.core.bootdecision import ATTEMPTS
from firmware_slots.sim import simdev
from firmware_slots.usp.agent import UspAgent
from firmware_slots.usp.platform import Platform, Rebooting
from usp_loopback import AGENT_ID as AGENT, Controller, notifications, names

from bootstub import stub

AGENT_ID = AGENT  # the loopback Controller addresses this one
FW = "Device.DeviceInfo.FirmwareImage."
LA = "Device.LocalAgent."
T0 = 1700000000
PEAK = [0, 0]  # largest whole state (CBOR bytes) after any journal write; writes seen


def _track():
    # instrument the real MetaStore: measure the state after every record it writes
    upd = K.MetaStore.update

    def update(self, changes):
        upd(self, changes)
        PEAK[0] = max(PEAK[0], len(cbor.dumps(self.state)))
        PEAK[1] += 1
    K.MetaStore.update = update
    return upd


def nbytes(s):
    return len(s.encode())


def pad(prefix, n, ch="x"):
    """`prefix` padded with `ch` to exactly n UTF-8 bytes."""
    return prefix + ch * (n - nbytes(prefix))


def eid(n):
    return pad("proto::ctl-%d-" % n, K.ID_MAX)


def reply(n):
    return pad("coap://192.0.2.%d:5683/usp/" % n, K.URL_MAX, "r")


def file_url(folder, name, n=K.URL_MAX):
    """A file:// URL of exactly n bytes naming folder/name ("./" segments pad it)."""
    head = "file://" + folder + "/"
    gap = n - nbytes(head) - nbytes(name)
    assert gap >= 0
    return head + "/" * (gap % 2) + "./" * (gap // 2) + name


def inspect(dev, length):
    buf = bytearray(512)
    dev.readblocks(0, buf, 0)
    head = bytes(buf).split(b"\n")[0].decode()
    assert head.startswith("FWIMG:"), head
    _, name, version = head.split(":")
    return name, version


def image(name, version, tag, size=6000):
    head = ("FWIMG:%s:%s\n" % (name, version)).encode()
    body = hashlib.sha256(tag.encode()).digest() * (size // 32 + 1)
    return head + body[:size - len(head)]


def sha512(data):
    h = hashes.new("SHA-512")
    h.update(data)
    return h.digest()


def hexs(b):
    return "".join("%02x" % x for x in b)


class LongVersions(Platform):
    """A board whose own SoftwareVersion is longer than the journal keeps."""

    def software_version_of(self, slot):
        return pad("fw-%d-" % slot, 100, "9")


class Board:
    """What bootstub.stub.explain_failed_trials asks of a board."""

    @staticmethod
    def reset_cause():
        return "power"


def frozen(flash, mgr, a):
    """Everything a refusal must leave as it was: state, tables, counters, every flash byte."""
    la = a.la
    return (cbor.dumps(mgr.meta.state), cbor.dumps(la.ctrls), cbor.dumps(la.subs), cbor.dumps(la.reqs),
            cbor.dumps(la.next), sorted(la.dirty), bytes(flash.snapshot()))


def code_of(r):
    """USP error code of a response (top-level error or an Operate's cmd_failure), else None."""
    if isinstance(r, tuple):
        return r[1]["err_code"]
    for x in r.get("operation_results", ()):
        if "cmd_failure" in x:
            return x["cmd_failure"]["err_code"]
    return None


def refused(what, flash, mgr, a, fn, code=7005):
    before = frozen(flash, mgr, a)
    r = fn()
    assert code_of(r) == code, (what, r)
    assert frozen(flash, mgr, a) == before, "%s: refused but something changed" % what
    return r


def boot(flash, platform=None, start_agent=True):
    """A reset: the stub's decision and notes, then (confirmed boots) the agent."""
    m = simdev.reopen(flash)
    prev = m.running
    d = m.boot()
    stub.explain_failed_trials(m, Board, d, prev, {"confirm_ms": 1000})
    a = None
    if start_agent:
        a = UspAgent(m, AGENT_ID, platform or LongVersions(wall_s=T0 + 600))
        a.startup()
    return m, d, a


def run(folder):
    PEAK[0] = PEAK[1] = 0
    orig = _track()
    try:
        return _run(folder)
    finally:
        K.MetaStore.update = orig


def _run(folder):
    lines = []

    def say(name, *v):
        s = name + " " + " ".join([str(x) for x in v])
        lines.append(s)
        print(s)

    flash, mgr = simdev.sim_device(sector_size=512, write_size=4, slot_blocks=24, nslots=2,
                                   inspect=inspect, max_attempts=3)
    j = mgr.meta.journal
    say("journal", "block", flash.sector_size, "blocks_per_sector", j.k, "sectors", j.sectors,
        "max_body", j.max_body, "bounded", mgr.meta.bounded(), "agent_budget", mgr.meta.agent_budget())
    assert j.k == 8 and j.sectors == 2 and j.max_body == 4000 and mgr.meta.bounded()

    # -- slot texts beyond their bounds: clipped at the owner, in bytes ---------------------------
    v1 = image(pad("", 80, "N"), "\u00e9" * 40, "v1")  # 80-byte name, 80-byte (40-char) version
    w = mgr.install(0, len(v1), name=pad("", 90, "h"), version=pad("", 90, "h"))
    w.write(v1)
    info = w.finish()
    assert nbytes(info["Name"]) == K.TEXT_MAX and info["Version"] == "\u00e9" * 32
    mgr.boot()
    mgr.confirm()
    try:
        mgr.set_alias(0, pad("", K.TEXT_MAX + 1, "a"))
        raise AssertionError("a 65-byte Alias was accepted")
    except ValueError:
        pass
    a = UspAgent(mgr, AGENT_ID, LongVersions(wall_s=T0))
    a.startup()
    a.take_outbox()
    assert nbytes(mgr.meta.agent(K.A_PREV_VERSION)) == K.TEXT_MAX  # the platform's 100 bytes, clipped

    # -- the first controller: both slot Aliases at their bound, a Download() at every bound ------
    c1 = Controller(a, eid(1), reply(1))
    r = c1.set([(FW + "1.", {"Alias": pad("", K.TEXT_MAX, "a")}), (FW + "2.", {"Alias": pad("", K.TEXT_MAX, "b")})])
    assert not isinstance(r, tuple), r
    refused("65-byte FirmwareImage Alias", flash, mgr, a,
            lambda: c1.set([(FW + "2.", {"Alias": pad("", K.TEXT_MAX + 1, "b")})]), 7012)
    # its notifications: persistent subscriptions, one with a 200-byte ReferenceList
    for nt, rl in (("OperationComplete", FW + "*.Download()"),
                   ("Event", pad("Device.LocalAgent.TransferComplete!,Device.Boot!,Device.", 200, "x"))):
        r = c1.add(LA + "Subscription.", {"Enable": "true", "NotifType": nt, "Persistent": "true", "ReferenceList": rl})
        assert not isinstance(r, tuple), r
    v2 = image(pad("", 70, "M"), pad("", 70, "V"), "v2")
    with open(folder + "/v2.img", "wb") as f:
        f.write(v2)
    url = file_url(folder, "v2.img")
    assert nbytes(url) == K.URL_MAX
    args = {"URL": url, "AutoActivate": "true", "CheckSumAlgorithm": "SHA-512",
            "CheckSum": hexs(sha512(v2)), "FileSize": str(len(v2))}
    key = pad("dl-", K.KEY_MAX, "k")
    refused("257-byte URL", flash, mgr, a,
            lambda: c1.operate(FW + "2.Download()", dict(args, URL=file_url(folder, "v2.img", K.URL_MAX + 1)), key))
    refused("65-byte CommandKey", flash, mgr, a, lambda: c1.operate(FW + "2.Download()", args, key + "k"))
    r = c1.operate(FW + "2.Download()", args, key)
    assert r["operation_results"][0].get("req_obj_path") == LA + "Request.1", r
    refused("65-byte EndpointID", flash, mgr, a,
            lambda: Controller(a, eid(9) + "x", reply(9)).call("get", {"param_paths": [LA + "EndpointID"]}))
    refused("257-byte reply-to", flash, mgr, a,
            lambda: Controller(a, eid(9), reply(9) + "r").call("get", {"param_paths": [LA + "EndpointID"]}))
    refused("64-character (128-byte) EndpointID", flash, mgr, a,
            lambda: Controller(a, "proto::" + "\u00e9" * 57, reply(9)).call("get", {"param_paths": [LA + "EndpointID"]}))

    # -- fill: controllers at their bounds, each pinned by a persistent subscription ----------------
    ctls = [c1]
    while len(a.la.ctrls) < 4:
        c = Controller(a, eid(len(ctls) + 1), reply(len(ctls) + 1))
        before = frozen(flash, mgr, a)
        r = c.call("get", {"param_paths": [LA + "EndpointID"]})
        if isinstance(r, tuple):
            assert r[1]["err_code"] == 7005 and frozen(flash, mgr, a) == before, r
            break
        r = c.add(LA + "Subscription.", {"Enable": "true", "NotifType": "Event", "Persistent": "true",
                                         "ReferenceList": "Device.Boot!"})
        if isinstance(r, tuple):
            assert r[1]["err_code"] == 7005, r
            break
        ctls.append(c)
    say("controllers", len(a.la.ctrls), "pinned", len(ctls))

    # then subscriptions (long ReferenceLists first), MTP and BootParameter rows, until refused
    long_rl = pad("Device.DeviceInfo.FirmwareImage.1.Status,Device.", 200, "x")
    adders = [
        ("subscription", lambda: c1.add(LA + "Subscription.", {"Enable": "true", "NotifType": "Event",
                                                             "Persistent": "true", "ReferenceList": long_rl})),
        ("mtp", lambda: c1.add(LA + "Controller.1.MTP.", {"Enable": "false"})),
        ("bootparameter", lambda: c1.add(LA + "Controller.1.BootParameter.",
                                        {"Enable": "true", "ParameterName": pad(FW + "1.", 120, "x")})),
        ("small-subscription", lambda: c1.add(LA + "Subscription.", {"Persistent": "true", "NotifType": "Event",
                                                                   "ReferenceList": "Device.Boot!"})),
        ("small-bootparameter", lambda: c1.add(LA + "Controller.1.BootParameter.", {})),
    ]
    for what, fn in adders:
        n = 0
        while True:
            before = frozen(flash, mgr, a)
            r = fn()
            if isinstance(r, tuple):
                assert r[1]["err_code"] == 7005, (what, r)
                assert frozen(flash, mgr, a) == before, "%s: refused but something changed" % what
                break
            n += 1
        say("filled", what, n)
    la = a.la
    say("tables", "controllers", len(la.ctrls), "subscriptions", len(la.subs), "requests", len(la.reqs),
        "agent_bytes", mgr.meta.agent_bytes(), "room_left", la.left())
    assert la.left() < 40  # the budget, not a row cap, stopped the filling

    # -- one more of everything: 7005, nothing changed ------------------------------------------
    get = {"param_paths": [LA + "EndpointID"]}
    refused("new controller", flash, mgr, a, lambda: Controller(a, eid(7), reply(7)).call("get", get))
    refused("new controller, short ids", flash, mgr, a,
            lambda: Controller(a, "self::z", "coap://h/u").call("get", get))
    refused("subscription", flash, mgr, a, lambda: c1.add(LA + "Subscription.", {"Persistent": "true"}))
    refused("controller row", flash, mgr, a, lambda: c1.add(LA + "Controller.", {"EndpointID": "self::q"}))
    refused("bootparameter", flash, mgr, a, lambda: c1.add(LA + "Controller.1.BootParameter.", {}))
    refused("activate request", flash, mgr, a, lambda: c1.operate(FW + "1.Activate()", {
        "TimeWindow.1.Start": "100000", "TimeWindow.1.End": "200000", "TimeWindow.1.Mode": "AnyTime"}, "ak"))
    r = refused("longer subscription ReferenceList", flash, mgr, a, lambda: c1.set([(
        LA + "Subscription.2.", {"ReferenceList": pad("Device.Boot!,Device.", 250, "y")})]))
    assert r[1]["param_errs"][0]["param_path"] == LA + "Subscription.2.ReferenceList", r
    refused("longer controller Alias", flash, mgr, a, lambda: c1.set([(
        LA + "Controller.1.", {"Alias": pad("c", 64, "c")})]))
    mgr.meta.compact()  # the full state as one snapshot record: it fits
    say("full_state_bytes", mgr.meta.state_bytes())

    # -- a Reboot() at full state: its boot notes are reserved (FIXED_MAX) --------------------------
    r = c1.operate("Device.Reboot()", {"Reason": pad("", K.TEXT_MAX, "R")}, pad("rb-", K.KEY_MAX, "b"))
    assert code_of(r) is None, r
    refused("65-byte Reason", flash, mgr, a, lambda: c1.operate("Device.Reboot()", {"Reason": pad("", 65, "R")}))
    try:
        a.poll(0)
        raise AssertionError("no reboot")
    except Rebooting:
        pass
    mgr, d, a = boot(flash)
    c1.agent = a
    assert d.slot == 0 and not d.trial
    boot_ev = [n for _, n in notifications(a) if n.get("event", {}).get("event_name") == "Boot!"]
    assert boot_ev and boot_ev[0]["event"]["params"]["CommandKey"] == pad("rb-", K.KEY_MAX, "b")
    assert a.la.reqs[1]["x"].get("rs") == 1  # the interrupted Download() resumes (a row that grew)

    # -- install, activate, fail three trial boots, fall back ------------------------------------
    try:
        a.poll(0)
        raise AssertionError("the Download() did not activate")
    except Rebooting:
        pass
    info = mgr.info(1)
    assert mgr.boot_slot == 1 and info["Status"] == "Available"
    assert nbytes(info["Name"]) == K.TEXT_MAX and nbytes(info["Version"]) == K.TEXT_MAX
    crash = "crashed: RuntimeError: " + pad("", 300, "z")
    for n in range(3):
        m, d, _ = boot(flash, start_agent=False)
        assert d.slot == 1 and d.trial, d
        m.note_trial_failure(1, crash)  # what the stub notes when the app raises
        assert nbytes(m.trial_failure(1)) == K.CRASH_MAX
        m.meta.compact()
    mgr, d, a = boot(flash)
    c1.agent = a
    assert d.slot == 0 and d.fallback and d.failed == [(1, ATTEMPTS)], d
    lg = mgr.info(1)["BootFailureLog"]
    assert mgr.status(1) == "ActivationFailed" and "last attempt: crashed: RuntimeError" in lg and nbytes(lg) <= K.LOG_MAX
    notes = notifications(a)
    assert names(notes)[:2] == ["OperationComplete", "TransferComplete!"], names(notes)
    tc = notes[1][1]["event"]["params"]
    assert tc["TransferURL"] == url and tc["CommandKey"] == key and tc["CheckSum"] == args["CheckSum"]
    assert a.la.reqs == {}
    say("fallback", mgr.status(0), mgr.status(1), "log_bytes", nbytes(lg))
    mgr.meta.compact()

    # -- a failing install at full state: its error clipped to LOG_MAX ----------------------------
    bad = dict(args, CheckSum="0" * 128, AutoActivate="false")
    r = c1.operate(FW + "2.Download()", bad, key)
    # the fill took the rest: the dropped row freed its bytes (617), less than a new row is charged
    # (651: its later 'rs' and 'tc' included), so the same request is refused until a shorter one fits
    assert code_of(r) == 7005, r
    r = c1.operate(FW + "2.Download()", bad, "bad")
    assert code_of(r) is None, r
    a.poll(0)
    er = mgr.info(1)["Error"]
    assert mgr.status(1) == "ValidationFailed" and nbytes(er) == K.LOG_MAX, er
    tc = [n for _, n in notifications(a) if n.get("event", {}).get("event_name") == "TransferComplete!"]
    assert tc and tc[0]["event"]["params"]["FaultString"].startswith("checksum mismatch")
    say("failed_install", mgr.status(1), "error_bytes", nbytes(er))

    # -- a reboot recovers exactly what RAM holds ------------------------------------------------
    again = simdev.reopen(flash)
    assert cbor.dumps(again.meta.state) == cbor.dumps(mgr.meta.state)
    worst = K.FRAME_MAX + K.DEVICE_MAX + 2 * K.SLOT_MAX + mgr.meta.agent_budget()
    say("peak_state_bytes", PEAK[0], "worst_case_bytes", worst, "max_body", j.max_body, "records", PEAK[1])
    assert PEAK[0] <= worst <= j.max_body
    LAST[0] = flash
    return lines


def capped():
    """Auto-created Controller rows stop at MAX_CONTROLLERS: a fifth sender is served, not kept."""
    from firmware_slots.datamodel.localagent import MAX_CONTROLLERS
    flash, mgr = simdev.sim_device(sector_size=512, write_size=4, slot_blocks=24, nslots=2, inspect=inspect)
    a = UspAgent(mgr, AGENT_ID, Platform(wall_s=T0))
    a.startup()
    get = {"param_paths": [LA + "EndpointID"]}
    for n in range(MAX_CONTROLLERS):
        c = Controller(a, eid(n + 1), "coap://h/%d" % n)
        r = c.add(LA + "Subscription.", {"Persistent": "true", "NotifType": "Event", "ReferenceList": "Device.Boot!"})
        assert not isinstance(r, tuple), r  # pinned: a row a subscription refers to never gives way
    assert len(a.la.ctrls) == MAX_CONTROLLERS
    before = frozen(flash, mgr, a)
    r = Controller(a, eid(9), "coap://h/9").call("get", get)
    assert not isinstance(r, tuple), r  # answered
    assert frozen(flash, mgr, a) == before  # and nothing kept
    print("capped", len(a.la.ctrls), "left", a.la.left())
    return len(a.la.ctrls)


LAST = [None]  # the flash of the last run(), for the host decoder's cross-check
