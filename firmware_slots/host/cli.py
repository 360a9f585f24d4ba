"""fwslots: inspect and drive firmware slots.

Slots are numbered from 1 everywhere in this CLI, exactly like the TR-181 rows
Device.DeviceInfo.FirmwareImage.1, .2, ... that a USP controller sees.

Exit codes: 0 success; 1 the device refused or the operation failed (the reason is
printed on one line); 2 bad usage (unknown option, missing file, value out of range).
"""
import binascii
import hashlib
import json
import sys

import click

from firmware_slots import slots as S
from firmware_slots.host import flashfile


def fail(msg):
    raise click.ClickException(msg)


def slot_arg(m, n):
    if not 1 <= n <= m.n:
        raise click.BadParameter("slot %d does not exist (this device has slots 1..%d)" % (n, m.n))
    return n - 1


def open_flash(path, boot=False):
    try:
        return flashfile.open_manager(path, boot=boot)
    except flashfile.FlashFileError as e:
        raise click.UsageError(str(e))


def human(n):
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False

    def update(self, n):
        pass


def _progress(total, label):
    """A progress bar on a terminal; nothing when stderr is a pipe (scripts, CI logs)."""
    if sys.stderr.isatty():
        return click.progressbar(length=total, label=label, file=sys.stderr)
    return _NoBar()


def slot_rows(m):
    return [m.info(i) for i in range(m.n)]


def print_table(m, out=None):
    print_rows(slot_rows(m), out)


def print_rows(rows, out=None):
    """The slot table from SlotManager.info() rows (a flash file's or a board's)."""
    out = out or click.echo
    hdr = "%-4s %-17s %-12s %-10s %-9s %-12s %-14s %s" % (
        "#", "Status", "Name", "Version", "Size", "SHA-256", "Role", "Why")
    out(click.style(hdr, bold=True))
    for r in rows:
        roles = []
        if r["Boot"]:
            roles.append("boot")
        if r["Running"]:
            roles.append("active")
        if r["LastKnownGood"]:
            roles.append("lkg")
        if r["Status"] not in ("NoImage",) and r["Attempts"]:
            roles.append("try%d" % r["Attempts"])
        why = r["BootFailureLog"] or r["Error"]
        status = r["Status"]
        color = {"Active": "green", "Available": None, "NoImage": None}.get(status, "red")
        if status in ("Downloading", "Validating"):
            color = "yellow"
        out("%-4d %s %-12s %-10s %-9s %-12s %-14s %s" % (
            r["slot"] + 1, click.style("%-17s" % status, fg=color), r["Name"][:12], r["Version"][:10],
            human(r["Length"]) if r["Length"] else "-", r["SHA256"][:12] or "-",
            ",".join(roles) or "-", why))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="firmware-slots")
def main():
    """Inspect and drive N-slot firmware images (TR-181 FirmwareImage) on devices and flash files.

    \b
    Quick start:
      fwslots demo                        run the whole story on a simulated device
      fwslots flash init dev.flash        make a simulated 2-slot flash
      fwslots install dev.flash app.img   write an image into a free slot
      fwslots slots dev.flash             show the slot table
    """


# -- flash files --------------------------------------------------------------------
@main.group()
def flash():
    """Create simulated flash files (a layout sidecar FILE.json goes with each)."""


@flash.command("init")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--slots", "nslots", type=click.IntRange(2, 16), default=2, show_default=True, help="number of image slots")
@click.option("--slot-kib", type=click.IntRange(4, 64 * 1024), default=256, show_default=True, help="size of each slot")
@click.option("--sector-size", type=click.Choice(["4096", "16384", "65536", "131072"]), default="4096",
              show_default=True, help="erase sector size in bytes")
@click.option("--write-size", type=click.Choice(["1", "4", "8", "16", "32"]), default="1", show_default=True,
              help="program granularity in bytes")
@click.option("--journal-sectors", type=click.IntRange(2, 64), default=2, show_default=True)
@click.option("--max-attempts", type=click.IntRange(1, 100), default=3, show_default=True,
              help="unconfirmed boots before falling back")
def flash_init(path, nslots, slot_kib, sector_size, write_size, journal_sectors, max_attempts):
    """Create PATH, an erased simulated NOR flash holding a journal and N slots."""
    sector = int(sector_size)
    blocks = max(1, (slot_kib * 1024 + sector - 1) // sector)
    try:
        _, m = flashfile.create(path, sector_size=sector, write_size=int(write_size), journal_blocks=journal_sectors,
                                slot_blocks=blocks, nslots=nslots, max_attempts=max_attempts)
    except flashfile.FlashFileError as e:
        fail(str(e))
    click.echo("created %s: %d slots of %s, journal %d x %d B sectors" % (
        path, nslots, human(blocks * sector), journal_sectors, sector))


@main.command("slots")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the table as JSON")
def show_slots(path, as_json):
    """Show the slot table of a flash file (what FirmwareImage.{i} reports)."""
    _, m = open_flash(path)
    if as_json:
        click.echo(json.dumps({"boot": m.boot_slot + 1, "active": m.running + 1 if m.running >= 0 else None,
                               "last_known_good": m.lkg + 1 if m.lkg >= 0 else None,
                               "slots": slot_rows(m)}, indent=1))
    else:
        print_table(m)


def parse_checksum(spec):
    """'SHA-256:hex' (or just hex, taken as SHA-256) -> (algorithm, digest bytes)."""
    from firmware_slots import hashes
    alg, _, hx = spec.rpartition(":")
    alg = alg or "SHA-256"
    try:
        return alg, hashes.parse_checksum(alg, hx)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--checksum")


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.argument("image", type=click.File("rb"))
@click.option("--slot", type=int, default=None, help="target slot (default: a free one)")
@click.option("--checksum", default=None, metavar="[ALG:]HEX",
              help="expected digest, e.g. SHA-256:ab12... (SHA-1/224/256/384/512)")
@click.option("--name", default="", help="Name when the image has no manifest")
@click.option("--version", "version", default="", help="Version when the image has no manifest")
@click.option("--set-boot", is_flag=True, help="make it the BootFirmwareImage once Available")
def install(path, image, slot, checksum, name, version, set_boot):
    """Write IMAGE into a slot of a flash file, validating as the device does."""
    _, m = open_flash(path)
    data = image.read()
    alg, digest = parse_checksum(checksum) if checksum else ("", b"")
    try:
        i = slot_arg(m, slot) if slot else m.pick_target()
        w = m.install(i, size=len(data), algorithm=alg, checksum=digest, name=name, version=version)
        with _progress(len(data), "slot %d" % (i + 1)) as bar:
            for p in range(0, len(data), 4096):
                w.write(data[p:p + 4096])
                w.checkpoint()
                bar.update(min(4096, len(data) - p))
        info = w.finish()
        if set_boot:
            m.set_boot(i)
    except (S.SlotError, ValueError) as e:
        fail(str(e))
    click.echo("slot %d: %s %s %s, %s, sha256 %s" % (i + 1, info["Status"], info["Name"], info["Version"],
                                                     human(info["Length"]), info["SHA256"]))


@main.command("set-boot")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.argument("slot", type=int)
def set_boot(path, slot):
    """Point BootFirmwareImage at SLOT (it must be Available)."""
    _, m = open_flash(path)
    try:
        m.set_boot(slot_arg(m, slot))
    except S.SlotError as e:
        fail(str(e))
    click.echo("BootFirmwareImage -> slot %d" % slot)


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--confirm", is_flag=True, help="confirm the booted slot as healthy")
def boot(path, confirm):
    """Simulate a reset: run the boot decision on a flash file and print it."""
    _, m = open_flash(path)
    d = m.boot()
    if d.slot is None:
        fail("no bootable image: " + d.reason)
    if confirm:
        m.confirm()
    click.echo("booted slot %d: %s%s" % (d.slot + 1, d.reason, "; confirmed" if confirm else ""))


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def confirm(path):
    """Confirm the slot the last boot chose: it becomes last-known-good."""
    _, m = open_flash(path)
    try:
        changed = m.confirm()
    except S.SlotError as e:
        fail(str(e))
    click.echo("slot %d confirmed%s" % (m.running + 1, "" if changed else " (already)"))


@main.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def journal(path, as_json):
    """Decode the metadata journal of a flash file (independently, with cbor2)."""
    from firmware_slots.host import journal as hj
    try:
        lay = flashfile.load_layout(path)
    except flashfile.FlashFileError as e:
        raise click.UsageError(str(e))
    with open(path, "rb") as f:
        raw = f.read(lay["sector_size"] * lay["journal_blocks"])
    recs = hj.records(raw, lay["sector_size"], lay["write_size"])

    def plain(v):
        if isinstance(v, bytes):
            return binascii.hexlify(v).decode()
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list):
            return [plain(x) for x in v]
        return v
    if as_json:
        click.echo(json.dumps([plain(r) for r in recs], indent=1))
        return
    for r in recs:
        click.echo("sector %d +%-5d %-8s seq %-6s %s %s" % (
            r["sector"], r["offset"], r["kind"], r["seq"], "ok " if r["valid"] else "BAD",
            json.dumps(plain(r["body"]))[:100] if r["body"] is not None else ""))


# -- app images ----------------------------------------------------------------------
@main.group()
def image():
    """Build and inspect app-mode images (littlefs2 with a manifest)."""


@image.command("build")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), required=True, help="image file to write")
@click.option("--name", default=None, help="overrides manifest.json name")
@click.option("--version", "version", default=None, help="overrides manifest.json version")
@click.option("--block-size", type=click.Choice(["512", "4096"]), default="4096", show_default=True,
              help="must equal the device's flash block size")
def image_build(folder, output, name, version, block_size):
    """Build an image from FOLDER (its manifest.json gives name, version, entry)."""
    from firmware_slots.host import appimage
    try:
        data = appimage.build(folder, name=name, version=version, block_size=int(block_size))
    except (appimage.AppImageError, ValueError) as e:
        fail(str(e))
    with open(output, "wb") as f:
        f.write(data)
    m = appimage.inspect(data, int(block_size))
    click.echo("%s: %s %s, %d bytes, sha256 %s" % (output, m.get("name"), m.get("version"), len(data),
                                                    hashlib.sha256(data).hexdigest()))


# -- boards over serial --------------------------------------------------------------
@main.group()
def board():
    """Run a virtual board (MicroPython unix port behind a pseudo-terminal)."""


@board.command("start")
@click.option("--dir", "workdir", type=click.Path(file_okay=False), default=None,
              help="where flash.bin, the console link and logs live (default: a temp folder)")
@click.option("--slots", type=click.IntRange(2, 8), default=None, help="number of slots (default: profile)")
def board_start(workdir, slots):
    """Start a virtual board and keep it running until Ctrl-C; prints its console port."""
    from hil import virtual
    args = (["--dir", workdir] if workdir else []) + (["--slots", str(slots)] if slots else [])
    sys.exit(virtual.main(args))


def _dut(port):
    import hil
    from hil.serialdev import DeviceError, DeviceTimeout
    try:
        return hil.connect(port)
    except (OSError, DeviceError, DeviceTimeout) as e:
        raise click.UsageError("cannot open %s: %s" % (port, e))


def _on_device(fn):
    from hil.serialdev import DeviceError, DeviceReset, DeviceTimeout
    try:
        return fn()
    except DeviceError as e:
        fail("device: %s" % e)
    except DeviceTimeout as e:
        fail("device did not answer: %s" % e)
    except DeviceReset:
        fail("device reset during the operation")


port_option = click.option("--port", "-p", required=True, envvar="FWSLOTS_PORT",
                           help="serial port or virtual board console (env FWSLOTS_PORT)")


@main.group()
def dev():
    """Drive a board (real or virtual) through its serial console."""


@dev.command("slots")
@port_option
@click.option("--json", "as_json", is_flag=True)
def dev_slots(port, as_json):
    """Show the board's slot table."""
    st = _on_device(lambda: _dut(port).status())
    if as_json:
        click.echo(json.dumps(st, indent=1))
        return
    print_rows(st["slots"])


@dev.command("install")
@port_option
@click.argument("image_file", type=click.File("rb"))
@click.option("--slot", type=int, default=None, help="target slot (default: the first one not protected)")
@click.option("--set-boot", is_flag=True, help="make it BootFirmwareImage once Available")
def dev_install(port, image_file, slot, set_boot):
    """Stream IMAGE_FILE to the board over serial (hashed and validated on the device)."""
    data = image_file.read()
    d = _dut(port)
    st = _on_device(d.status)
    n = len(st["slots"])
    if slot is not None and not 1 <= slot <= n:
        raise click.BadParameter("slot %d does not exist (this device has slots 1..%d)" % (slot, n))
    if slot is None:  # the device's own rule for which slots are protected
        slot = _on_device(lambda: d.eval_json("import bootstub\nprint(bootstub.mgr.pick_target())")) + 1
    with _progress(len(data), "slot %d" % slot) as bar:
        last = [0]

        def progress(done, total):
            bar.update(done - last[0])
            last[0] = done
        info = _on_device(lambda: d.install(slot - 1, data, progress))
    if set_boot:
        _on_device(lambda: d.set_boot(slot - 1))
    click.echo("slot %d: %s %s %s sha256 %s" % (slot, info["Status"], info["Name"], info["Version"], info["SHA256"]))


@dev.command("set-boot")
@port_option
@click.argument("slot", type=int)
def dev_set_boot(port, slot):
    """Point the board's BootFirmwareImage at SLOT."""
    _on_device(lambda: _dut(port).set_boot(slot - 1))
    click.echo("BootFirmwareImage -> slot %d" % slot)


@dev.command("reset")
@port_option
@click.option("--timeout", type=click.FloatRange(1, 300), default=30, show_default=True)
def dev_reset(port, timeout):
    """Reset the board and report what the boot stub chose."""
    d = _dut(port)
    _on_device(d.reset)
    rep = _on_device(lambda: d.wait_boot(timeout))
    click.echo(rep.text.strip().splitlines()[-2] if rep.text.strip() else "booted")


@dev.command("confirm")
@port_option
def dev_confirm(port):
    """Confirm the running image on the board (it becomes last-known-good)."""
    changed = _on_device(lambda: _dut(port).confirm())
    click.echo("confirmed" if changed else "already confirmed")


# -- the demo ------------------------------------------------------------------------
@main.command()
@click.option("--dir", "workdir", type=click.Path(file_okay=False), default=None,
              help="where to keep the flash file (default: a temporary folder)")
@click.option("--virtual", is_flag=True,
              help="tell it on a virtual board instead: serial install, USP Download over CoAP, reboots")
def demo(workdir, virtual):
    """Run the whole story: install, upgrade, bad input, failed upgrade and fallback, power cut.

    By default on a simulated flash (fast, no extra tools); with --virtual on a virtual board
    (the MicroPython unix port behind a pty) driven by a USP controller over CoAP.
    """
    if virtual:
        from firmware_slots.host import demo_virtual as d
    else:
        from firmware_slots.host import demo as d
    sys.exit(d.run(workdir))


def _add_usp():
    from firmware_slots.host.usp_cli import usp
    main.add_command(usp)


_add_usp()
from firmware_slots.host.campaign.cli import campaign as _campaign  # noqa: E402  fleet campaigns (issue 13)
main.add_command(_campaign)

if __name__ == "__main__":
    main()
