"""Serial install benchmark on the virtual board; prints ONE JSON object.

For a 64 KiB and a 256 KiB app image, on the same virtual board in the same run:
  wire_bytes_per_image_byte   bytes the host wrote to the port for `Dut.install` (the
                              command set: base64 frames read straight from stdin) / image bytes
  flash_throughput_kib_s      image KiB / seconds from install_begin to install_end's reply
                              (written, hashed, read back and format-checked on the device)
  mpremote_cp_kib_s           `mpremote connect PORT resume fs cp -f IMAGE :image.bin`, same file
  mpremote_wire_bytes_per_image_byte
  ratio                       flash_throughput_kib_s / mpremote_cp_kib_s
  device_read_calls           read() system calls of the device process during a second,
                              untimed install (strace -c; null without strace)
Goals (issue 12): wire_bytes_per_image_byte <= 1.4, ratio >= 10.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from hil.apps import app_image  # noqa: E402
from hil.device import Dut  # noqa: E402
from hil.virtual import PROFILES, VirtualBoard  # noqa: E402

SIZES = {"64KiB": 64 * 1024, "256KiB": 256 * 1024}


def big_profile(d):
    """unix-virtual with two 320 KiB slots: room for the 256 KiB image."""
    with open(os.path.join(PROFILES, "unix-virtual.json")) as f:
        p = json.load(f)
    p["flash"]["sectors"] = 4 + 2 * 80
    p["slots"] = [{"first": 4, "blocks": 80}, {"first": 84, "blocks": 80}]
    p["nslots"] = 2
    path = os.path.join(d, "bench-profile.json")
    with open(path, "w") as f:
        json.dump(p, f)
    return path


def image_of(size):
    """An app image of exactly `size` bytes (littlefs grows in 4 KiB blocks)."""
    for pad in range(max(0, size - 40 * 1024), size, 1024):
        img = app_image("bench", "1.0", pad=pad)
        if len(img) == size:
            return img
    raise SystemExit("no app image of %d bytes" % size)


def strace_reads(pid):
    exe = shutil.which("strace")
    if not exe:
        return None
    p = subprocess.Popen([exe, "-c", "-e", "trace=read", "-p", str(pid)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    return p


def count_reads(p):
    if p is None:
        return None
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=10)[1]
    m = re.search(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?read$", err, re.M)
    return int(m.group(1)) if m else None


def one(b, dut, name, img, tmp):
    w0 = b.host_bytes
    t = time.monotonic()
    info = dut.install(dut.pick_target(), img)
    dt = time.monotonic() - t
    assert info["Status"] == "Available", info
    wire = b.host_bytes - w0
    st = strace_reads(b.pid)  # a second install, traced (strace slows it: not timed)
    dut.install(dut.pick_target(), img)
    reads = count_reads(st)
    dut.close()  # mpremote needs the port to itself
    path = os.path.join(tmp, name + ".img")
    with open(path, "wb") as f:
        f.write(img)
    w0 = b.host_bytes
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "mpremote", "connect", b.link, "resume", "fs", "cp", "-f", path,
                        ":image.bin"], capture_output=True, text=True, timeout=600)
    mdt = time.monotonic() - t
    if p.returncode:
        raise SystemExit("mpremote failed: " + p.stderr)
    with open(os.path.join(b.fs_path, "image.bin"), "rb") as f:
        assert f.read() == img
    mwire = b.host_bytes - w0
    kib = len(img) / 1024.0
    ours, theirs = kib / dt, kib / mdt
    return {"image_bytes": len(img), "wire_bytes_per_image_byte": round(wire / len(img), 4),
            "flash_throughput_kib_s": round(ours, 1), "mpremote_cp_kib_s": round(theirs, 1),
            "mpremote_wire_bytes_per_image_byte": round(mwire / len(img), 4),
            "ratio": round(ours / theirs, 1), "device_read_calls": reads}


def main():
    tmp = tempfile.mkdtemp(prefix="fwslots-bench-hil-")
    out = {}
    try:
        b = VirtualBoard(os.path.join(tmp, "board"), profile=big_profile(tmp)).start()
        try:
            for name, size in SIZES.items():
                dut = Dut(b.link, b)
                dut.exec("pass")
                out[name] = one(b, dut, name, image_of(size), tmp)
        finally:
            b.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res = {"board": "unix-virtual (MicroPython unix port behind a pty)", "sizes": out,
           "goals": {"wire_bytes_per_image_byte_max": 1.4, "ratio_min": 10},
           "goals_met": all(v["wire_bytes_per_image_byte"] <= 1.4 and v["ratio"] >= 10 for v in out.values())}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
