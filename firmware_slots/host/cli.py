"""fwslots: inspect and drive firmware slots on flash files, boards and USP agents.

Slots are numbered from 1 everywhere in this CLI, exactly like the TR-181 rows
Device.DeviceInfo.FirmwareImage.1, .2, ... that a USP controller sees.

Exit codes (README "Exit codes"):
    0  success
    1  the device refused, the operation failed, or the flash is damaged (one line says why)
    2  bad usage: unknown option, missing file, value out of range
    3  transport failure (USP over CoAP): bad URI, no route, no answer within --timeout
"""
import binascii
import hashlib
import json
import os
import sys

import click

from firmware_slots.core import slots as S
from firmware_slots.host import flashfile, view
from firmware_slots.host.progress import progress


def fail(msg):
    raise click.ClickException(msg)


def slot_arg(m, n):
    if not 1 <= n <= m.n:
        raise click.BadParameter("slot %d does not exist (this device has slots 1..%d)" % (n, m.n))
    return n - 1


def open_flash(path, boot=False, **kw):
    """(flash, manager) or a one-line error: usage (2) for a missing/unknown file, 1 for damage."""
    try:
        return flashfile.open_manager(path, boot=boot, **kw)
    except flashfile.FlashDamaged as e:
        fail(str(e))
    except flashfile.FlashFileError as e:
        raise click.UsageError(str(e))
    except OSError as e:
        fail("%s: %s" % (path, e.strerror or e))


human = view.human


def show_progress():
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx else None
    return (root.obj or {}).get("progress") if root else None


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(cls=view.HelpGroup, context_settings=CONTEXT)
@click.version_option(package_name="firmware-slots", prog_name="fwslots")
@click.option("--progress/--no-progress", "progress_", default=None,
              help="progress with rate and ETA on stderr (default: only when stderr is a terminal)")
@click.pass_context
def main(ctx, progress_):
    """Inspect and drive N-slot firmware images (TR-181 FirmwareImage) on flash files,
    boards on a serial console and USP agents over CoAP.

    \b
    Quick start:
      fwslots demo                         run the whole story on a simulated device
      fwslots flash init dev.flash         make a simulated 2-slot flash
      fwslots image build app/ -o app.img  build an app image from a folder
      fwslots install dev.flash app.img    write it into a free slot (checked as the device does)
      fwslots inspect dev.flash            the slot table (also: a serial port, coap://host/usp)
    """
    ctx.obj = {"progress": progress_}
    if os.environ.get("FWSLOTS_LOG"):  # e.g. FWSLOTS_LOG=debug: aiocoap's exchanges on stderr
        import logging
        logging.basicConfig(level=os.environ["FWSLOTS_LOG"].upper(), format="%(relativeCreated)6d %(name)s %(message)s")


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
@click.option("--mode", type=click.Choice(flashfile.MODES), default="app", show_default=True,
              help="what install accepts: app images (littlefs2 + manifest), native firmware, or raw blobs")
@click.option("--trust-key", "trust_keys", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="public key PEM: only images it signed install (repeatable)")
def flash_init(path, nslots, slot_kib, sector_size, write_size, journal_sectors, max_attempts, mode, trust_keys):
    """Create PATH, an erased simulated NOR flash holding a journal and N slots.

    Its layout goes to PATH.json, a board profile (boards/profiles/ schema) that the
    virtual board and the agent read as well."""
    sector = int(sector_size)
    blocks = max(1, (slot_kib * 1024 + sector - 1) // sector)
    from firmware_slots.host import image_cli
    trust = image_cli.trust_entry(trust_keys)
    try:
        _, m = flashfile.create(path, mode=mode, sector_size=sector, write_size=int(write_size),
                                journal_blocks=journal_sectors, slot_blocks=blocks, nslots=nslots,
                                max_attempts=max_attempts, trust=trust)
    except flashfile.FlashFileError as e:
        fail(str(e))
    except OSError as e:
        fail("cannot create %s: %s" % (path, e.strerror or e))
    click.echo("created %s: %d slots of %s, journal %d x %d B sectors, %s mode (layout %s)" % (
        path, nslots, human(blocks * sector), journal_sectors, sector, mode, flashfile.sidecar(path)))


def _is_serial(target):
    import re
    return target.startswith("/dev/") or re.match(r"(?i)^COM\d+$", target) is not None or os.path.islink(target) and \
        os.path.realpath(target).startswith("/dev/")


def read_view(target, profile=None, repair=False, agent_id=None, timeout=10.0, controller_id=None, bind=None,
              ca=None, cert=None, key=None):
    """The view (host/view.py) of TARGET: flash file, serial port or coap[s]:// agent."""
    if "://" in target:
        from firmware_slots.host import usp_cli as U
        from firmware_slots.host.controller import DEFAULT_ID
        t = U.Target(target, agent_id or U.DEFAULT_AGENT_ID, controller_id or DEFAULT_ID, bind, timeout,
                     cert, key, ca)
        return view.from_params(target, U.get_params_sync(t, ["Device.DeviceInfo."]))
    if os.path.isdir(target) and os.path.exists(os.path.join(target, "console")):
        target = os.path.join(target, "console")  # a virtual board's folder: its console
    if _is_serial(target):
        return view.from_status(target, _on_device(lambda: _dut(target, timeout).status()))
    if not os.path.exists(target):
        raise click.UsageError("%s: no such flash file, serial port or coap:// URI" % target)
    _, m = open_flash(target, layout=profile, repair=repair, readonly=not repair)
    return view.from_manager(target, m)


def inspect_options(f):
    for deco in reversed([
        click.option("--json", "as_json", is_flag=True, help="print the view as JSON (schema in the README)"),
        click.option("--profile", default=None, metavar="NAME|FILE.json",
                     help="layout of a raw dump without FILE.json: a boards/profiles name or a profile file"),
        click.option("--repair", is_flag=True, help="pad a truncated flash file and re-format a corrupt journal "
                                                    "(loses its metadata; slot contents stay)"),
        click.option("--agent-id", envvar="FWSLOTS_AGENT_ID", default=None, help="coap targets: the agent's EndpointID"),
        click.option("--controller-id", envvar="FWSLOTS_CONTROLLER_ID", default=None,
                     help="coap targets: our EndpointID"),
        click.option("--bind", metavar="HOST:PORT", default=None, help="coap targets: our reply-to address"),
        click.option("--ca", type=click.Path(exists=True, dir_okay=False), help="coaps targets: the agent's CA"),
        click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="coaps targets: our certificate"),
        click.option("--key", type=click.Path(exists=True, dir_okay=False), help="coaps targets: our private key"),
        click.option("--timeout", type=click.FloatRange(0.1, 3600), default=10, show_default=True,
                     help="serial and coap targets: seconds to wait for the device"),
    ]):
        f = deco(f)
    return f


def _inspect(target, as_json, **kw):
    v = read_view(target, **kw)
    if as_json:
        click.echo(json.dumps(v, indent=1))
    else:
        view.print_table(v)


@main.command("inspect")
@click.argument("target", metavar="TARGET")
@inspect_options
def inspect_cmd(target, as_json, **kw):
    """Show the slot table of TARGET: a flash file or raw dump, a serial port, or an agent URI.

    \b
    fwslots inspect dev.flash                       flash file (layout in dev.flash.json)
    fwslots inspect dump.bin --profile esp32-app    raw dump, layout from a board profile
    fwslots inspect /dev/ttyACM0                    a board running the boot stub
    fwslots inspect run/vb                          a virtual board (its folder or run/vb/console)
    fwslots inspect coap://192.0.2.7/usp --agent-id os::0044FF-dev1
    A damaged flash file (truncated, corrupt journal) is reported and never written."""
    _inspect(target, as_json, **kw)


@main.command("slots", hidden=False)
@click.argument("target", metavar="TARGET")
@inspect_options
def show_slots(target, as_json, **kw):
    """Same as inspect (kept for scripts)."""
    _inspect(target, as_json, **kw)


def parse_checksum(spec):
    """'SHA-256:hex' (or just hex, taken as SHA-256) -> (algorithm, digest bytes)."""
    from firmware_slots.core import hashes
    alg, _, hx = spec.rpartition(":")
    alg = alg or "SHA-256"
    canon = {a.replace("-", "").upper(): a for a in hashes.ALGORITHMS}
    alg = canon.get(alg.replace("-", "").upper(), alg)  # sha256, SHA256, sha-256 -> SHA-256
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
    """Write IMAGE into a slot of a flash file, validating as the device does.

    The checks are the device's own for the flash's mode (PATH.json): an app image must be
    littlefs2 with a manifest naming it; --checksum is compared; the slot is read back.
    A refused image leaves the slot with a failure status; no other slot changes."""
    alg, digest = parse_checksum(checksum) if checksum else ("", b"")
    _, m = open_flash(path)
    data = image.read()
    if not m.keys:
        click.echo("note: %s has no trust key: images are checked by checksum only" % path, err=True)
    else:
        from firmware_slots.host import image_cli
        image_cli.precheck(data, m.keys, m.min_counter())
    try:
        i = slot_arg(m, slot) if slot else m.pick_target()
        w = m.install(i, size=len(data), algorithm=alg, checksum=digest, name=name, version=version)
        with progress(len(data), "slot %d" % (i + 1), show_progress()) as bar:
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
@click.option("--json", "as_json", is_flag=True, help="print the records as JSON")
@click.option("--profile", default=None, metavar="NAME|FILE.json", help="layout of a raw dump without FILE.json")
def journal(path, as_json, profile):
    """Decode the metadata journal of a flash file (independently, with cbor2; read only).

    Exit 1 when a record is BAD (torn by a power cut, or corrupt) or no valid snapshot exists."""
    from firmware_slots.host import journal as hj
    try:
        lay = flashfile.load_layout(path, profile)
    except flashfile.FlashFileError as e:
        raise click.UsageError(str(e))
    fl = lay["flash"]
    raw = flashfile.journal_bytes(path, lay)
    recs = hj.records(raw, fl["sector"], fl["write_size"])

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
    else:
        for r in recs:
            click.echo("sector %d +%-5d %-8s seq %-6s %s %s" % (
                r["sector"], r["offset"], r["kind"], r["seq"], "ok " if r["valid"] else "BAD",
                json.dumps(plain(r["body"]))[:100] if r["body"] is not None else ""))
    bad = [r for r in recs if not r["valid"]]
    damage = flashfile.check(path, lay)
    if damage:
        fail(damage)
    if bad:
        fail("%d BAD record(s) (first: sector %d +%d): a write torn by a power cut or corruption; "
             "the device recovers the newest valid state" % (len(bad), bad[0]["sector"], bad[0]["offset"]))


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
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise click.UsageError("folder %s for --output does not exist (create it first)" % out_dir)
    try:
        data = appimage.build(folder, name=name, version=version, block_size=int(block_size))
        with open(output, "wb") as f:
            f.write(data)
    except (appimage.AppImageError, ValueError) as e:
        fail(str(e))
    except OSError as e:
        fail("cannot write %s: %s" % (output, e.strerror or e))
    m, _ = appimage.inspect(data, int(block_size))
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


def _dut(port, timeout=10.0):
    import hil
    from hil.serialdev import DeviceError, DeviceTimeout
    try:
        return hil.connect(port, timeout=timeout)
    except (OSError, DeviceError, DeviceTimeout) as e:
        why = getattr(e, "strerror", None) or str(e).split(":")[-1].strip() or type(e).__name__
        fail("cannot open serial port %s: %s (is the board plugged in? `fwslots board start` for a virtual one)"
             % (port, why))


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
    except OSError as e:
        fail("serial port: %s" % (e.strerror or e))


port_option = click.option("--port", "-p", required=True, envvar="FWSLOTS_PORT",
                           help="serial port or virtual board console (env FWSLOTS_PORT)")


@main.group()
def dev():
    """Drive a board (real or virtual) through its serial console."""


@dev.command("slots")
@port_option
@click.option("--json", "as_json", is_flag=True, help="print the view as JSON (as `fwslots inspect`)")
def dev_slots(port, as_json):
    """Show the board's slot table (same as `fwslots inspect PORT`)."""
    v = view.from_status(port, _on_device(lambda: _dut(port).status()))
    if as_json:
        click.echo(json.dumps(v, indent=1))
    else:
        view.print_table(v)


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
        slot = st["target"] + 1
        if slot == 0:
            fail("every slot is running, last-known-good or the boot target")
    with progress(len(data), "slot %d" % slot, show_progress()) as bar:
        info = _on_device(lambda: d.install(slot - 1, data, lambda done, total: bar.to(done)))
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
    click.echo("; ".join(rep.stub) if rep.stub else "booted (the console showed no boot stub lines)")


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
from firmware_slots.host import image_cli  # noqa: E402 (fwslots image sign / show)
image_cli.register(image)
from firmware_slots.host.campaign.cli import campaign as _campaign  # noqa: E402  fleet campaigns (issue 13)
main.add_command(_campaign)

from firmware_slots.host import hil_cli  # noqa: E402  deploy, hil list

hil_cli.add_to(main)

if __name__ == "__main__":
    main()
