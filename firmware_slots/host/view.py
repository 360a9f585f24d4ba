"""One view of a device's slots, whichever way it was read: `fwslots inspect`.

A flash file (SlotManager rows), a serial console (the boot stub's rows) and a USP agent
(a Get of Device.DeviceInfo.) all become this one JSON object. Slots are numbered from 1
and named as TR-181 names them; a field a transport cannot know is null.

    key                               TR-181 / meaning                     null over
    schema                            "fwslots.inspect/1"
    target, via                       what was read, and how: file | serial | usp
    SoftwareVersion                   Device.DeviceInfo.SoftwareVersion
    BootFirmwareImage                 row number of ...BootFirmwareImage
    ActiveFirmwareImage               row number of ...ActiveFirmwareImage (null: none)
    LastKnownGoodFirmwareImage        the confirmed fallback row            usp
    FirmwareImage[].Index             the row (1-based)
    FirmwareImage[].Alias Name Version Available Status BootFailureLog   TR-181 params
    FirmwareImage[].Size              image length, bytes                   usp
    FirmwareImage[].CheckSum          SHA-256 of the image, hex             usp
    FirmwareImage[].BootAttempts      unconfirmed boots of this image       usp
    FirmwareImage[].Capacity          slot size, bytes                      usp
    FirmwareImage[].Error             why the last install failed           usp
"""
import click

SCHEMA = "fwslots.inspect/1"
FW = "Device.DeviceInfo.FirmwareImage."
USP_UNKNOWN = ("LastKnownGoodFirmwareImage", "Size", "CheckSum", "BootAttempts", "Capacity", "Error")


def _row_no(i):
    return None if i is None or i < 0 else i + 1


def _image(r):
    """A SlotManager.info() row (0-based 'slot') -> a FirmwareImage entry."""
    return {"Index": r["slot"] + 1, "Alias": r["Alias"], "Name": r["Name"], "Version": r["Version"],
            "Available": bool(r["Available"]), "Status": r["Status"], "BootFailureLog": r["BootFailureLog"],
            "Size": r["Length"], "CheckSum": r["SHA256"], "BootAttempts": r["Attempts"],
            "Capacity": r["Capacity"], "Error": r["Error"]}


def _view(target, via, rows, boot, running, lkg):
    imgs = [_image(r) for r in rows]
    sw = next((x["Version"] for x in imgs if running is not None and x["Index"] == running + 1), "")
    return {"schema": SCHEMA, "target": target, "via": via, "SoftwareVersion": sw,
            "BootFirmwareImage": _row_no(boot), "ActiveFirmwareImage": _row_no(running),
            "LastKnownGoodFirmwareImage": _row_no(lkg), "FirmwareImage": imgs}


def from_manager(target, m):
    return _view(target, "file", [m.info(i) for i in range(m.n)], m.boot_slot, m.running, m.lkg)


def from_status(target, st):
    """hil.device.Dut.status() -> the view."""
    run = st.get("running")
    return _view(target, "serial", st["slots"], st["boot"], run if run is not None else -1, st["lkg"])


def _ref(v):
    if not v or not v.startswith(FW):
        return None
    n = v[len(FW):].rstrip(".")
    return int(n) if n.isdigit() else None


def from_params(target, p):
    """{full path: value} of a Get of Device.DeviceInfo. -> the view."""
    di = "Device.DeviceInfo."
    rows = {}
    for k, v in p.items():
        if k.startswith(FW):
            n, _, name = k[len(FW):].partition(".")
            if n.isdigit() and "." not in name:
                rows.setdefault(int(n), {})[name] = v
    imgs = []
    for n in sorted(rows):
        r = rows[n]
        imgs.append({"Index": n, "Alias": r.get("Alias", ""), "Name": r.get("Name", ""),
                     "Version": r.get("Version", ""), "Available": str(r.get("Available", "")).lower() in ("true", "1"),
                     "Status": r.get("Status", ""), "BootFailureLog": r.get("BootFailureLog", ""),
                     "Size": None, "CheckSum": None, "BootAttempts": None, "Capacity": None, "Error": None})
    return {"schema": SCHEMA, "target": target, "via": "usp",
            "SoftwareVersion": p.get(di + "SoftwareVersion", ""),
            "BootFirmwareImage": _ref(p.get(di + "BootFirmwareImage")),
            "ActiveFirmwareImage": _ref(p.get(di + "ActiveFirmwareImage")),
            "LastKnownGoodFirmwareImage": None, "FirmwareImage": imgs}


def comparable(v):
    """The view without what differs by transport: target, via and USP_UNKNOWN fields."""
    out = {k: x for k, x in v.items() if k not in ("target", "via") and k not in USP_UNKNOWN}
    out["FirmwareImage"] = [{k: x for k, x in r.items() if k not in USP_UNKNOWN} for r in v["FirmwareImage"]]
    return out


def human(n):
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return ("%d %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0


COLOURS = {"Active": "green", "Available": None, "NoImage": None, "Downloading": "yellow", "Validating": "yellow"}


def print_table(v, out=None):
    """The one slot table: what every read of a device prints."""
    out = out or click.echo
    hdr = "%-2s %-12s %-12s %-10s %-9s %-17s %-12s %-8s %s" % (
        "#", "Alias", "Name", "Version", "Size", "Status", "SHA-256", "Attempts", "Roles")
    out(click.style(hdr, bold=True))
    for r in v["FirmwareImage"]:
        n = r["Index"]
        roles = [name for name, key in (("boot", "BootFirmwareImage"), ("active", "ActiveFirmwareImage"),
                                        ("last-known-good", "LastKnownGoodFirmwareImage")) if v[key] == n]
        cs = r["CheckSum"]
        out("%-2d %-12s %-12s %-10s %-9s %s %-12s %-8s %s" % (
            n, r["Alias"][:12], r["Name"][:12] or "-", r["Version"][:10] or "-",
            human(r["Size"]) if r["Size"] else ("?" if r["Size"] is None else "-"),
            click.style("%-17s" % r["Status"], fg=COLOURS.get(r["Status"], "red")),
            (cs[:12] or "-") if cs is not None else "?",
            "?" if r["BootAttempts"] is None else str(r["BootAttempts"]), ",".join(roles) or "-"))
    for r in v["FirmwareImage"]:
        if r["BootFailureLog"]:
            out("BootFailureLog %d: %s" % (r["Index"], r["BootFailureLog"]))
        if r["Error"] and r["Error"] != r["BootFailureLog"]:
            out("Error %d: %s" % (r["Index"], r["Error"]))
    if v["via"] == "usp":
        out(click.style("(over USP: ? = not in TR-181: size, checksum, attempts, last-known-good)", dim=True))


class HelpGroup(click.Group):
    """A click group whose command list shows each command's whole first sentence,
    wrapped, instead of cutting it off with '...' at the terminal width."""

    group_class = type  # sub-groups made with @group.group() are HelpGroups too

    def format_commands(self, ctx, formatter):
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=1000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
