"""Hardware map: which board sits on which port (YAML, in the spirit of Zephyr twister's map).

    boards:
      - id: pico-1                 # names the board in test ids and JUnit XML
        profile: rp2-pico-app      # boards/profiles/<profile>.json
        serial_number: E6614C311B  # or vid_pid: "2e8a:0005", or port: /dev/ttyACM0
        baud: 115200
        power: "uhubctl -l 1-1 -p 2 -a {action}"   # {action} is off or on
        reset: console

| key           | required | meaning                                                            |
|---------------|----------|--------------------------------------------------------------------|
| id            | yes      | unique board id; `--fwslots-board ID` picks the entry              |
| profile       | yes      | board profile name (boards/profiles/*.json)                        |
| port          | one of   | /dev/ttyACM0, rfc2217://host:port, socket://host:port, labgrid://place |
| serial_number | these    | USB serial number, matched through pyserial's list_ports           |
| vid_pid       | three    | "vvvv:pppp" hex; the first port with that USB id                   |
| baud          | no       | default: the profile's serial.baud, else 115200                    |
| power         | no       | shell command, {action} = off / on; enables power_cut()            |
| reset         | no       | console (the stub's reset command, default), power (off+on), or a shell command |
"""
import json
import os
import shlex
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROFILES = os.path.join(ROOT, "boards", "profiles")
KEYS = ("id", "profile", "port", "serial_number", "vid_pid", "baud", "power", "reset", "window")


class MapError(ValueError):
    pass


def profiles():
    """{name: profile dict} of boards/profiles/*.json."""
    out = {}
    for f in sorted(os.listdir(PROFILES)):
        if f.endswith(".json"):
            with open(os.path.join(PROFILES, f)) as fh:
                out[f[:-5]] = json.load(fh)
    return out


def _vid_pid(s, where):
    try:
        v, p = str(s).split(":")
        return int(v, 16), int(p, 16)
    except ValueError:
        raise MapError("%s: vid_pid must look like \"2e8a:0005\", got %r" % (where, s))


def load(path):
    """The map's board entries (list of dicts), checked; MapError names the bad entry."""
    import yaml
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise MapError("hardware map %s: %s" % (path, e.strerror))
    except yaml.YAMLError as e:
        raise MapError("hardware map %s is not YAML: %s" % (path, str(e).splitlines()[0]))
    boards = doc.get("boards") if isinstance(doc, dict) else doc
    if not isinstance(boards, list):
        raise MapError("hardware map %s: expected a list under 'boards:'" % path)
    known = profiles()
    seen = set()
    for n, b in enumerate(boards):
        where = "hardware map %s, board %d" % (path, n + 1)
        if not isinstance(b, dict):
            raise MapError("%s: expected a mapping" % where)
        extra = [k for k in b if k not in KEYS]
        if extra:
            raise MapError("%s: unknown key %r (known: %s)" % (where, extra[0], ", ".join(KEYS)))
        if not b.get("id") or not b.get("profile"):
            raise MapError("%s: needs id and profile" % where)
        where = "hardware map %s, board %r" % (path, b["id"])
        if b["id"] in seen:
            raise MapError("%s: id used twice" % where)
        seen.add(b["id"])
        if b["profile"] not in known:
            raise MapError("%s: no profile %r (have %s)" % (where, b["profile"], ", ".join(known)))
        if not (b.get("port") or b.get("serial_number") or b.get("vid_pid")):
            raise MapError("%s: needs port, serial_number or vid_pid" % where)
        if b.get("vid_pid"):
            _vid_pid(b["vid_pid"], where)
        b.setdefault("baud", (known[b["profile"]].get("serial") or {}).get("baud") or 115200)
        b.setdefault("reset", "console")
        b.setdefault("window", 1)
    return boards


def find(boards, board_id):
    for b in boards:
        if b["id"] == board_id:
            return b
    raise MapError("no board %r in the hardware map (have %s)" % (board_id, ", ".join(b["id"] for b in boards)))


def ports():
    """Connected serial ports: pyserial list_ports as plain dicts."""
    from serial.tools import list_ports
    return [{"device": p.device, "vid": p.vid, "pid": p.pid, "serial_number": p.serial_number,
             "description": p.description} for p in list_ports.comports()]


def matches(entry, port):
    if entry.get("port"):
        return entry["port"] == port["device"]
    if entry.get("serial_number"):
        return entry["serial_number"] == port["serial_number"]
    return _vid_pid(entry["vid_pid"], entry["id"]) == (port["vid"], port["pid"])


def resolve_port(entry, found=None):
    """The port to open for a map entry; MapError when its board is not connected."""
    if entry.get("port"):
        return entry["port"]
    for p in ports() if found is None else found:
        if matches(entry, p):
            return p["device"]
    raise MapError("board %r is not connected (looked for %s)" % (
        entry["id"], "serial number %s" % entry["serial_number"] if entry.get("serial_number")
        else "USB id %s" % entry["vid_pid"]))


def profiles_for(port, known=None):
    """Profile names whose serial VID/PID equals the port's USB id."""
    known = profiles() if known is None else known
    return [n for n, p in known.items()
            if (p.get("serial") or {}).get("vid") is not None and port["vid"] is not None
            and ((p["serial"]["vid"], p["serial"].get("pid")) == (port["vid"], port["pid"]))]


def listing(boards=(), found=None):
    """Rows for `fwslots hil list`: every connected port with its map id and candidate profiles,
    then map entries whose board is not connected."""
    found = ports() if found is None else found
    known = profiles()
    rows, used = [], set()
    for p in found:
        ids = [b["id"] for b in boards if matches(b, p)]
        used.update(ids)
        rows.append({"port": p["device"], "usb": "%04x:%04x" % (p["vid"], p["pid"]) if p["vid"] is not None else "-",
                     "serial_number": p["serial_number"] or "-", "board": ",".join(ids) or "-",
                     "profiles": ([b["profile"] for b in boards if b["id"] in ids] or profiles_for(p, known)),
                     "description": p["description"] or ""})
    for b in boards:
        if b["id"] not in used and not b.get("port", "").startswith(("labgrid://", "rfc2217://", "socket://")):
            rows.append({"port": "(not connected)", "usb": b.get("vid_pid", "-"),
                         "serial_number": b.get("serial_number", "-"), "board": b["id"],
                         "profiles": [b["profile"]], "description": ""})
        elif b["id"] not in used:
            rows.append({"port": b["port"], "usb": "-", "serial_number": "-", "board": b["id"],
                         "profiles": [b["profile"]], "description": "network"})
    return rows


def run_power(entry, action):
    """Run the entry's power command with {action} = off | on; RuntimeError if it fails."""
    cmd = entry.get("power")
    if not cmd:
        raise RuntimeError("board %r has no power: command in the hardware map" % entry["id"])
    p = subprocess.run(cmd.replace("{action}", shlex.quote(action)), shell=True, capture_output=True,
                       text=True, timeout=60)
    if p.returncode:
        raise RuntimeError("power %s for %r failed (%d): %s" % (action, entry["id"], p.returncode,
                                                                (p.stderr or p.stdout).strip()[-200:]))


def power_cycle(entry, off_s=0.5):
    run_power(entry, "off")
    time.sleep(off_s)
    run_power(entry, "on")
