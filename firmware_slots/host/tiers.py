"""The device-side tiers (tiers.json at the repo root): which files a board gets.

    tier    adds                                                    needs
    slots   core/ (slot manager, journal), bootstub/ (the stub and  -
            its host command set cmd.py),
            boards/ (adapters; not unix_virtual, it needs sim/),
            app.py (the stub builds its SlotManager there)
    agent   datamodel/, usp/, coap/ (no DTLS), mtp/coap, transfer   slots
            coap/file/pull, agent_main.py, bootstub/agentapp.py
    dtls    coap/dtls.py, coap/coaps.py, mtp/coaps.py               agent
    http    transfer/http.py                                        agent

One table, three readers: manifest.py (freezing), the package-<tier>.json files
(`mpremote mip install`, written by `python -m firmware_slots.host.tiers packages`)
and `fwslots deploy`. $FWSLOTS_TIERS_FILE names another table (same schema).

    python -m firmware_slots.host.tiers files agent,dtls     # repo-relative paths, one a line
    python -m firmware_slots.host.tiers packages [--base github:owner/repo] [--check]
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NEVER = ("sim", "host", "__pycache__")  # host/test-only folders: never on a board
PACKAGE = "package-%s.json"


def table_path():
    return os.environ.get("FWSLOTS_TIERS_FILE") or os.path.join(ROOT, "tiers.json")


def load(path=None):
    with open(path or table_path()) as f:
        return json.load(f)["tiers"]


def closure(tiers, names):
    """Tier names with their deps, lowest first; KeyError names an unknown tier."""
    out = []

    def add(n):
        if n not in tiers:
            raise KeyError("unknown tier %r (tiers: %s)" % (n, ", ".join(tiers)))
        for d in tiers[n].get("deps", ()):
            add(d)
        if n not in out:
            out.append(n)
    for n in names:
        add(n)
    return out


def _walk(root, entry, ext):
    """Repo-relative files of one table entry (a file, or a folder ending in /)."""
    full = os.path.join(root, entry)
    if not entry.endswith("/"):
        return [entry] if os.path.isfile(full) else None
    if not os.path.isdir(full):
        return None
    found = []
    for d, dirs, files in os.walk(full):
        dirs[:] = sorted(x for x in dirs if x not in NEVER)
        found += [os.path.relpath(os.path.join(d, f), root).replace(os.sep, "/")
                  for f in sorted(files) if ext is None or f.endswith(ext)]
    return found


def tier_files(tiers, name, root=ROOT, key="files", missing=None):
    """Files one tier adds (not its deps). Missing entries go to `missing` (a list) or raise."""
    t = tiers[name]
    out = []
    for entry in t.get(key, ()):
        got = _walk(root, entry, ".py" if key == "files" else None)
        if got is None:
            if missing is None:
                raise FileNotFoundError("tiers: %s (tier %s) does not exist" % (entry, name))
            missing.append(entry)
            continue
        out += [f for f in got if f not in t.get("exclude", ()) and f not in out]
    return out


def files(names, root=ROOT, tiers=None, key="files", missing=None):
    """Every file of `names` and their deps (lowest tier first, no repeats)."""
    tiers = tiers or load()
    out = []
    for n in closure(tiers, names):
        out += [f for f in tier_files(tiers, n, root, key, missing) if f not in out]
    return out


def package_json(tiers, name, root=ROOT, base=""):
    """mip's package.json for one tier: its own files (.py and data) + deps on lower tiers.

    mip resolves `urls` against the package file's folder but `deps` as given, so a
    dep is a path (local install from the repo root) or base + "/" + file (URL install).
    """
    own = tier_files(tiers, name, root) + tier_files(tiers, name, root, "data")
    dep = lambda d: (base.rstrip("/") + "/" if base else "") + PACKAGE % d  # noqa: E731
    return {"urls": [[f, f] for f in own],
            "deps": [[dep(d), "latest"] for d in tiers[name].get("deps", ())],
            "version": "0.1.0"}


def render(obj):
    return json.dumps(obj, indent=1) + "\n"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["files"] and len(argv) == 2:
        print("\n".join(files(argv[1].split(","))))
        return 0
    if argv[:1] == ["packages"]:
        base = argv[argv.index("--base") + 1] if "--base" in argv else ""
        tiers = load()
        stale = []
        for n in tiers:
            path = os.path.join(ROOT, PACKAGE % n)
            text = render(package_json(tiers, n, base=base))
            if "--check" in argv:
                if not os.path.exists(path) or open(path).read() != text:
                    stale.append(PACKAGE % n)
                continue
            with open(path, "w") as f:
                f.write(text)
            print(path)
        if stale:
            print("stale (run python -m firmware_slots.host.tiers packages): " + " ".join(stale))
            return 1
        return 0
    print(__doc__.strip().splitlines()[-2].strip() + "\n" + __doc__.strip().splitlines()[-1].strip(),
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
