"""The device command set the host speaks (hil/device.py), versioned; one reply line each.

The host runs `from bootstub import cmd as C;C.<command>(...)` in the raw REPL and reads
one line: "ok <json>" or "er <ErrorName>: <message>". It asks version() first and refuses
a board whose VERSION differs from its own. Commands reach the slot manager only through
SlotManager's public methods, so renaming journal keys never breaks the host.

| command (VERSION 1)                          | reply (json after "ok ")                         |
|----------------------------------------------|--------------------------------------------------|
| version()                                    | [VERSION, sys.implementation._mpy, sys.platform] |
| status()                                     | {"s": [info rows], "b": boot, "k": lkg, "r": running or null, "c": confirmed, "w": boot reason, "t": pick_target() or -1} |
| install_begin(slot, size, sha256hex, nm, vr) | slot                                             |
| install_chunk(n)                             | bytes received so far; first reads n image bytes from stdin as base64 frames of FRAME bytes (4/3 the text), writing "." after each frame |
| install_end()                                | the slot's info row                              |
| set_boot(slot) / verify(slot) / confirm()    | slot / true|false / true if the journal changed  |
| reset()                                      | none: the board restarts                         |
"""

import sys

import bootstub as api

VERSION = 1
FRAME = 3072  # image bytes per base64 frame (a multiple of 3: frames decode on their own)

_w = None     # the ImageWriter between install_begin and install_end
_txt = None   # one frame of base64 text, allocated at the first install


def _ok(v):
    import json
    print("ok", json.dumps(v))


def _er(e):
    print("er %s: %s" % (type(e).__name__, e))


def _mgr():
    m = api.mgr
    if m is None:
        raise RuntimeError("the boot stub has no slot manager (see the boot log)")
    return m


def version():
    _ok([VERSION, getattr(sys.implementation, "_mpy", 0), sys.platform])


def status():
    try:
        m = _mgr()
        try:
            t = m.pick_target()
        except Exception:
            t = -1
        d = api.decision
        _ok({"s": [m.info(i) for i in range(m.n)], "b": m.boot_slot, "k": m.lkg, "r": api.slot,
             "c": api.confirmed, "w": d.reason if d else "", "t": t})
    except Exception as e:
        _er(e)


def install_begin(slot, size, sha256hex, nm="", vr=""):
    global _w
    try:
        import binascii
        _w = None
        _w = _mgr().install(slot, size=size, algorithm="SHA-256" if sha256hex else "",
                            checksum=binascii.unhexlify(sha256hex), name=nm, version=vr)
        _ok(slot)
    except Exception as e:
        _er(e)


def install_chunk(n):
    global _txt
    import binascii
    w = _w
    if _txt is None:
        _txt = bytearray(FRAME // 3 * 4)
    mv = memoryview(_txt)
    rd = sys.stdin.buffer.readinto
    err = None
    while n > 0:
        k = FRAME if n > FRAME else n
        t = (k + 2) // 3 * 4
        got = 0
        while got < t:  # always consume the whole frame, so the console stays in step
            got += rd(mv[got:t])
        n -= k
        if err is None:
            try:
                if w is None:
                    raise RuntimeError("install_chunk before install_begin")
                # the one allocation per frame: MicroPython has no base64 decode-into
                w.write(binascii.a2b_base64(mv[:t]))
            except Exception as e:
                err = e
        sys.stdout.write(".")
    if err is not None:
        _er(err)
    else:
        _ok(w.received)


def install_end():
    global _w
    try:
        if _w is None:
            raise RuntimeError("install_end before install_begin")
        w, _w = _w, None
        _ok(w.finish())
    except Exception as e:
        _er(e)


def set_boot(slot):
    try:
        _mgr().set_boot(slot)
        _ok(slot)
    except Exception as e:
        _er(e)


def verify(slot):
    try:
        _ok(_mgr().verify(slot))
    except Exception as e:
        _er(e)


def confirm():
    try:
        _ok(api.confirm())
    except Exception as e:
        _er(e)


def reset():
    api.reset()
