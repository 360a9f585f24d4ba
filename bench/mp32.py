"""Build the 32-bit MicroPython unix port with the device side frozen, cached outside the repo.

    python bench/mp32.py [--source DIR|TARBALL] [--tiers agent,dtls,http]   # prints the binary's path

Recipe: ../shared/micropython/README.md (SSL, FFI and btree off; no micropython-lib).
Source: --source, else $FWSLOTS_MP_SOURCE, else ../shared/micropython (a folder holding
one micropython-*.tar.gz, or an unpacked tree with py/ and ports/unix/).
Cache: $FWSLOTS_MP32_CACHE or ~/.cache/fwslots-mp32/
    src-<source hash>/micropython/      unpacked tree, mpy-cross and one incremental
                                        port build (a new manifest recompiles the frozen
                                        C file and relinks: seconds, not minutes)
    <key>/micropython                   the binary for key = hash(source, manifests,
                                        tier table, tiers, every frozen file)
A flock on the source folder serialises concurrent builds (tests, bench, other users).
"""
import fcntl
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from firmware_slots.host import tiers as T  # noqa: E402

ALL_TIERS = "agent,dtls,http"
# board-like flash for the bench (frozen too: on a board the flash driver is C, not heap)
BENCH_EXTRA = ("firmware_slots/sim/__init__.py", "firmware_slots/sim/ramflash.py")
MAKE_OPTS = ("VARIANT=standard", "MICROPY_FORCE_32BIT=1", "MICROPY_PY_FFI=0", "MICROPY_PY_BTREE=0",
             "MICROPY_PY_SSL=0", "MICROPY_SSL_MBEDTLS=0")


def cache_dir():
    d = os.environ.get("FWSLOTS_MP32_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "fwslots-mp32")
    os.makedirs(d, exist_ok=True)
    return d


def find_source(source=None):
    """-> a tarball or an unpacked tree, or None when there is none."""
    cands = [source] if source else [os.environ.get("FWSLOTS_MP_SOURCE"),
                                     os.path.join(ROOT, "..", "shared", "micropython")]
    for c in cands:
        if not c or not os.path.exists(c):
            continue
        if os.path.isfile(c):
            return os.path.abspath(c)
        if os.path.isdir(os.path.join(c, "ports", "unix")):
            return os.path.abspath(c)
        tars = sorted(glob.glob(os.path.join(c, "micropython-*.tar.gz")))
        if tars:
            return os.path.abspath(tars[-1])
    return None


def unavailable(source=None):
    """Why this machine cannot build (a one-line reason), or None."""
    if find_source(source) is None:
        return "no MicroPython source (../shared/micropython, $FWSLOTS_MP_SOURCE or --source)"
    for tool in ("make", "gcc"):
        if shutil.which(tool) is None:
            return "%s not installed" % tool
    p = subprocess.run(["gcc", "-m32", "-x", "c", "-", "-o", os.devnull], input="int main(void){return 0;}",
                       capture_output=True, text=True)
    if p.returncode:
        return "gcc -m32 cannot link (apt-get install gcc-multilib)"
    return None


def _hash_path(h, path):
    if os.path.isfile(path):
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return
    for d, dirs, files in os.walk(path):
        dirs[:] = sorted(x for x in dirs if not x.startswith("build") and x != "__pycache__")
        for f in sorted(files):
            p = os.path.join(d, f)
            h.update(os.path.relpath(p, path).encode() + b"\0")
            _hash_path(h, p)


def _source_tree(src, cache):
    h = hashlib.sha256()
    _hash_path(h, src)
    top = os.path.join(cache, "src-" + h.hexdigest()[:16])
    tree = os.path.join(top, "micropython")
    if not os.path.isdir(os.path.join(tree, "ports", "unix")):
        tmp = top + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        if os.path.isfile(src):
            with tarfile.open(src) as t:
                t.extractall(tmp)
            inner = [d for d in os.listdir(tmp) if os.path.isdir(os.path.join(tmp, d, "ports", "unix"))]
            os.rename(os.path.join(tmp, inner[0]), os.path.join(tmp, "micropython"))
        else:
            shutil.copytree(src, os.path.join(tmp, "micropython"), symlinks=True,
                            ignore=shutil.ignore_patterns("build*", "__pycache__"))
        os.makedirs(os.path.join(tmp, "nolib"))
        open(os.path.join(tmp, "nolib", "README.md"), "w").close()  # the Makefile only checks it exists
        shutil.rmtree(top, ignore_errors=True)
        os.rename(tmp, top)
    return top, tree


def frozen_files(tiers=ALL_TIERS, extra=BENCH_EXTRA):
    return T.files(tiers.split(","), missing=[]) + [f for f in extra if os.path.exists(os.path.join(ROOT, f))]


def build(source=None, tiers=ALL_TIERS, extra=BENCH_EXTRA, log=None):
    """-> path of a 32-bit micropython with `tiers` (+ `extra` files) frozen; builds when not cached."""
    src = find_source(source)
    if src is None:
        raise RuntimeError(unavailable(source))
    cache = cache_dir()
    key = hashlib.sha256()
    _hash_path(key, src)
    for f in ["manifest.py", "firmware_slots/host/tiers.py", os.path.relpath(T.table_path(), ROOT)] + \
            frozen_files(tiers, extra):
        key.update(f.encode() + b"\0")
        _hash_path(key, os.path.join(ROOT, f))
    key.update(tiers.encode() + b"\0" + " ".join(MAKE_OPTS).encode())
    out_dir = os.path.join(cache, key.hexdigest()[:20])
    exe = os.path.join(out_dir, "micropython")
    if os.path.exists(exe):
        return exe
    top, tree = _source_tree(src, cache)
    with open(os.path.join(top, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(exe):
            return exe
        manifest = os.path.join(top, "bench_manifest.py")
        with open(manifest, "w") as f:  # a board manifest includes ours, then adds its own files
            f.write("include(%r, tiers=%r)\n" % (os.path.join(ROOT, "manifest.py"), tiers))
            for e in extra:
                if os.path.exists(os.path.join(ROOT, e)):
                    f.write("module(%r, base_path=%r)\n" % (e, ROOT))
        env = dict(os.environ, FWSLOTS_TIERS=tiers)
        run = dict(stdout=log or subprocess.DEVNULL, stderr=subprocess.STDOUT, env=env, check=True)
        build_dir = os.path.join(tree, "ports", "unix", "build-32")
        # frozen .mpy files are named by module path, not by checkout: another checkout's older
        # files would look up to date to make, so the frozen part is always rebuilt
        shutil.rmtree(os.path.join(build_dir, "frozen_mpy"), ignore_errors=True)
        for f in ("frozen_content.c", "frozen_content.o"):
            if os.path.exists(os.path.join(build_dir, f)):
                os.unlink(os.path.join(build_dir, f))
        try:
            subprocess.run(["make", "-C", os.path.join(tree, "mpy-cross"), "-j2"], **run)
            subprocess.run(["make", "-C", os.path.join(tree, "ports", "unix"), "-j2", "BUILD=build-32",
                            "MPY_LIB_DIR=" + os.path.join(top, "nolib"), "FROZEN_MANIFEST=" + manifest]
                           + list(MAKE_OPTS), **run)
        except subprocess.CalledProcessError as e:
            raise RuntimeError("MicroPython build failed (%s); rerun: python bench/mp32.py" % e)
        os.makedirs(out_dir, exist_ok=True)
        shutil.copy2(os.path.join(tree, "ports", "unix", "build-32", "micropython"), exe + ".tmp")
        os.rename(exe + ".tmp", exe)
    return exe


def mpy_cross(source=None):
    """The mpy-cross of that source tree (built by build())."""
    _, tree = _source_tree(find_source(source), cache_dir())
    return os.path.join(tree, "mpy-cross", "build", "mpy-cross")


def main(argv):
    src = argv[argv.index("--source") + 1] if "--source" in argv else None
    tiers = argv[argv.index("--tiers") + 1] if "--tiers" in argv else ALL_TIERS
    why = unavailable(src)
    if why:
        print("cannot build: " + why, file=sys.stderr)
        return 1
    print(build(src, tiers, log=sys.stderr))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
