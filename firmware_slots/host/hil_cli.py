"""`fwslots deploy` and `fwslots hil list`: putting the device code on a board, finding boards.

Wired into cli.py by add_to(main); the work is in hil/deploy.py and hil/hwmap.py.
"""
import json
import sys

import click


def _fail(msg):
    raise click.ClickException(msg)


@click.command()
@click.option("--port", "-p", required=True, envvar="FWSLOTS_PORT",
              help="serial port, rfc2217://host:port, or a virtual board console (env FWSLOTS_PORT)")
@click.option("--profile", required=True, help="board profile (boards/profiles/NAME.json) or a .json path")
@click.option("--tier", "tiers", multiple=True, default=("slots",), show_default=True,
              help="device code tier to deploy (repeat for more; lower tiers come along)")
@click.option("--source", is_flag=True, help="copy .py sources instead of compiling with mpy-cross")
@click.option("--baud", type=int, default=None, envvar="FWSLOTS_BAUD", help="console baud (default 115200)")
@click.option("--no-reset", is_flag=True, help="leave the board running; the stub starts at its next reset")
@click.option("--firmware", type=click.Path(exists=True, dir_okay=False), default=None,
              help="first write this MicroPython firmware .bin with esptool (esp32 profiles)")
def deploy(port, profile, tiers, source, baud, no_reset, firmware):
    """Put the boot stub, the chosen tiers and the profile on a board, check each file's
    SHA-256 on the board and reboot into the stub. With --firmware, the base MicroPython
    firmware is flashed first (esptool, at the profile's offset)."""
    import hil
    from firmware_slots.host.cli import _on_device  # one mapping of device errors to messages
    from hil import deploy as dp
    if firmware:
        try:
            dp.flash_firmware(port, profile, firmware, log=click.echo)
        except dp.DeployError as e:
            _fail(str(e))
    try:
        dut = hil.connect(port, baud=baud)
    except (OSError, ValueError) as e:
        raise click.UsageError("cannot open %s: %s" % (port, e))
    try:
        _on_device(lambda: dp.deploy(dut, profile, tiers, source=source, log=click.echo, reset=not no_reset))
    except dp.DeployError as e:
        _fail(str(e))
    finally:
        dut.close()


@click.group()
def hil():
    """Boards for hardware-in-the-loop tests: discovery and hardware maps."""


@hil.command("list")
@click.option("--hw-map", type=click.Path(exists=True, dir_okay=False), envvar="FWSLOTS_HW_MAP",
              help="hardware map YAML (env FWSLOTS_HW_MAP)")
@click.option("--json", "as_json", is_flag=True)
def hil_list(hw_map, as_json):
    """Connected serial ports matched to hardware-map boards and to profiles by USB VID:PID."""
    from hil import hwmap
    try:
        boards = hwmap.load(hw_map) if hw_map else []
    except hwmap.MapError as e:
        _fail(str(e))
    rows = hwmap.listing(boards)
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo("no serial ports found%s" % ("" if hw_map else " (and no --hw-map)"), err=True)
        return
    click.echo("%-22s %-10s %-18s %-12s %s" % ("PORT", "USB", "SERIAL", "BOARD", "PROFILES"))
    for r in rows:
        click.echo("%-22s %-10s %-18s %-12s %s" % (r["port"], r["usb"], r["serial_number"][:18], r["board"],
                                                   ",".join(r["profiles"]) or "-"))


def add_to(main):
    main.add_command(deploy)
    main.add_command(hil)


if __name__ == "__main__":
    sys.exit(hil())
