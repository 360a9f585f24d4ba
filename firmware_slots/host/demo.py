"""`fwslots demo`: the product's story end to end on a simulated device.

Every step runs the real device code (the same modules a board runs) against a
file-backed simulated NOR flash, and checks what it claims; exit status 1 if any
expectation fails.
"""
import hashlib
import os
import shutil
import tempfile

import click

from firmware_slots.core import slots as S
from firmware_slots import transfer
from firmware_slots.host import flashfile
from firmware_slots.host import view
from firmware_slots.sim.norsim import FaultPlan, PowerCut


def image(tag, size):
    seed = hashlib.sha256(tag.encode()).digest()
    out = bytearray()
    while len(out) < size:
        seed = hashlib.sha256(seed).digest()
        out += seed
    return bytes(out[:size])


class Story:
    def __init__(self, path):
        self.path = path
        self.ok = True

    def step(self, title):
        click.echo("")
        click.echo(click.style("== " + title, bold=True))

    def reset(self):
        flash, m = flashfile.open_manager(self.path)
        d = m.boot()
        click.echo("  reset -> %s" % d.reason)
        return flash, m, d

    def table(self, m):
        view.print_table(view.from_manager(self.path, m), lambda s: click.echo("  " + s))

    def expect(self, cond, what):
        mark = click.style("ok", fg="green") if cond else click.style("FAILED", fg="red")
        click.echo("  [%s] %s" % (mark, what))
        self.ok = self.ok and bool(cond)


def run(workdir=None):
    tmp = None
    if workdir is None:
        tmp = workdir = tempfile.mkdtemp(prefix="fwslots-demo-")
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "device.flash")
    for p in (path, flashfile.sidecar(path)):
        if os.path.exists(p):
            os.remove(p)
    st = Story(path)
    try:
        _story(st, workdir)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    click.echo("")
    click.echo(click.style("demo %s" % ("passed" if st.ok else "FAILED"), fg="green" if st.ok else "red", bold=True))
    return 0 if st.ok else 1


def _install(m, slot, data, url=None, checksum=None, version=""):
    w = m.install(slot, size=len(data), algorithm="SHA-256",
                  checksum=checksum if checksum is not None else hashlib.sha256(data).digest(),
                  name="blinky", version=version)
    if url:
        transfer.fetch(url, w)
    else:
        w.write(data)
    return w.finish()


def _story(st, workdir):
    st.step("A fresh device: 2 slots of 64 KiB on 4 KiB-sector NOR flash, journal in 2 sectors")
    flashfile.create(st.path, mode="raw", slot_blocks=16, nslots=2)  # raw blobs: no app-image format
    flash, m = flashfile.open_manager(st.path)
    v1, v2, v3 = image("v1", 40000), image("v2", 52000), image("v3", 47000)
    info = _install(m, 0, v1, version="1.0")
    m.set_boot(0)
    flash, m, d = st.reset()
    m.confirm()
    st.table(m)
    st.expect(m.lkg == 0 and m.status(0) == "Active", "v1.0 runs from slot 1 and is last-known-good")

    st.step("Good upgrade: v2.0 pulled through the device's file:// fetcher into slot 2")
    src = os.path.join(workdir, "v2.bin")
    with open(src, "wb") as f:
        f.write(v2)
    info = _install(m, 1, v2, url="file://" + src, version="2.0")
    st.expect(info["Status"] == "Available", "slot 2 validated: %s" % info["SHA256"][:16])
    m.set_boot(1)
    flash, m, d = st.reset()
    st.expect(d.slot == 1 and d.trial, "first boot of v2.0 is a trial (attempt counted)")
    m.confirm()
    st.table(m)
    st.expect(m.lkg == 1, "v2.0 confirmed: now last-known-good")

    st.step("Bad input: v3.0 arrives with the wrong SHA-256")
    try:
        _install(m, 0, v3, checksum=hashlib.sha256(b"not v3").digest(), version="3.0")
        st.expect(False, "checksum mismatch refused")
    except S.SlotError as e:  # why == S.CHECKSUM
        click.echo("  refused: %s" % e)
        st.expect(m.status(0) == "ValidationFailed" and m.status(1) == "Active", "slot 1 ValidationFailed, v2.0 untouched")

    st.step("Bad upgrade: v3.0 validates but never confirms (it crashes at start-up)")
    _install(m, 0, v3, version="3.0")
    m.set_boot(0)
    for _ in range(4):
        flash, m, d = st.reset()
    st.table(m)
    st.expect(d.slot == 1 and d.fallback, "after 3 unconfirmed boots the device runs v2.0 again")
    st.expect(m.boot_slot == 0, "BootFirmwareImage still points at slot 1 (a fallback never rewrites it)")
    st.expect(m.status(0) == "ActivationFailed", "slot 1 ActivationFailed: %s" % m.info(0)["BootFailureLog"])

    st.step("Power cut in the middle of a download of v1.1, then resume")
    v11 = image("v1.1", 44000)  # a new build: its own bytes and hash, not v1.0 again
    w = m.install(0, size=len(v11), algorithm="SHA-256", checksum=hashlib.sha256(v11).digest(),
                  name="blinky", version="1.1")
    flash.arm(FaultPlan(flash.ops + 9, "torn", seed=7))
    try:
        for p in range(0, len(v11), 1024):
            w.write(v11[p:p + 1024])
            if p % 4096 == 3072:
                w.checkpoint()
        st.expect(False, "power cut happened")
    except PowerCut as e:
        click.echo("  power lost: %s after %d bytes" % (e, w.offset))
    flash, m, d = st.reset()
    w = m.resume(0)
    click.echo("  resuming slot 1 at byte %d" % w.offset)
    w.write(v11[w.offset:])
    info = w.finish()
    st.expect(info["Status"] == "Available" and m.verify(0), "resumed image verifies (%s)" % info["SHA256"][:16])
    st.expect(m.status(1) == "Active" and m.verify(1), "v2.0 kept running throughout")
    st.table(m)
