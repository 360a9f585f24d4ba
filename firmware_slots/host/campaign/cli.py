"""`fwslots campaign create|run|status|report` (wired into host/cli.py as a group).

Exit codes as the rest of fwslots: 0 done, 1 the campaign failed or halted (one-line
reason), 2 bad usage.
"""
import asyncio
import hashlib
import json
import os
import socket
import sys
import time

import click

from firmware_slots.host.campaign import CampaignError, budget, fleetfile
from firmware_slots.host.campaign.store import Store, STATES

DEFAULTS = {"window": 8 * 3600.0, "budget": 50000, "concurrency": 50, "requests": 64, "waves": "10%",
            "method": "activate", "halt_ratio": 0.05, "switch_window": 600.0, "verify_timeout": 120.0,
            "dl_timeout": 3600.0, "usp_timeout": 10.0, "host": "127.0.0.1"}


def _free_port(host):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def image_version(data):
    """Version from an app image's manifest (the agent reports the same), also inside an MCUboot
    container (signed images: the manifest wins over the header's version, as on the device)."""
    from firmware_slots.host import appimage, signing
    try:
        info = signing.show(data)
        data = data[info["header_size"]:info["header_size"] + info["image_size"]]
    except signing.SigningError:
        pass  # not a container: the app image itself
    for bs in (4096, 512, 1024, 2048):
        if len(data) % bs:
            continue
        try:
            m, _ = appimage.inspect(data, bs)
            return m.get("version")
        except Exception:
            continue
    return None


def create(db, fleet, image, version=None, controller_port=0, image_port=0, key=None, **opts):
    """Write a new campaign database; -> its config dict. CampaignError on bad input."""
    if os.path.exists(db):
        raise CampaignError("%s exists: a campaign is created once (delete it to start over)" % db)
    devs = fleetfile.load(fleet)
    try:
        with open(image, "rb") as f:
            data = f.read()
    except OSError as e:
        raise CampaignError("cannot read image %s: %s" % (image, e.strerror))
    if not data:
        raise CampaignError("image %s is empty" % image)
    version = version or image_version(data)
    if not version:
        raise CampaignError("%s is not an app image with a manifest: give --version" % image)
    cfg = dict(DEFAULTS)
    cfg.update({k: v for k, v in opts.items() if v is not None})
    if cfg.get("url") and not str(cfg["url"]).startswith(("coap://", "coaps://", "http://", "https://")):
        raise CampaignError("--url must be a coap://, coaps://, http:// or https:// URL")
    if cfg["method"] not in ("activate", "reboot"):
        raise CampaignError("method must be activate or reboot")
    if not 0 <= cfg["halt_ratio"] <= 1:
        raise CampaignError("halt ratio must be within 0..1")
    if cfg["budget"] <= 0 or cfg["concurrency"] <= 0:
        raise CampaignError("budget and concurrency must be > 0")
    from firmware_slots.host.campaign.phases import wave_sizes
    wave_sizes(cfg["waves"], len(devs))
    cfg.update({"image": os.path.abspath(image), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                "version": version, "fleet": os.path.abspath(fleet), "created": time.time(),
                "key": key or "campaign-%d" % int(time.time()),
                "controller_port": controller_port or _free_port(cfg["host"]),
                "image_port": image_port or _free_port(cfg["host"])})
    cfg["controller_id"] = "self::fwslots-" + cfg["key"]
    st = Store(db, create=True)
    try:
        with st.tx():
            st.put("config", cfg)
            st.put("phase", "created")
        st.add_devices(devs)
    finally:
        st.close()
    return cfg


def run(db, log=None):
    """Run (or resume) the campaign to its end; -> final phase ('done' or 'halted')."""
    from firmware_slots.host.campaign.phases import Campaign
    st = Store(db)
    try:
        return asyncio.run(Campaign(st, log).run())
    finally:
        st.close()


def status(db):
    st = Store(db, readonly=True)
    try:
        snap = st.snapshot()
    finally:
        st.close()
    cfg = snap["config"] or {}
    out = {"phase": snap["phase"], "halt": snap["halt"], "version": cfg.get("version"),
           "counts": snap["counts"], "waves": snap["waves"],
           "blocks_served": sum(r[2] for r in snap["bw"]), "bytes_served": sum(r[1] for r in snap["bw"]),
           "devices": [{k: d[k] for k in ("id", "eid", "state", "slot", "wave", "dl_issued", "blocks",
                                          "version", "boot_log", "detail")} for d in snap["devices"]]}
    if snap["bw"] and cfg.get("budget"):
        out["max_bandwidth_ratio"] = round(budget.peak_ratio({r[0]: r[1] for r in snap["bw"]}, cfg["budget"]), 4)
    return out


def _fail(e):
    raise click.ClickException(str(e))


def _duration(ctx, param, value):
    if value is None:
        return None
    try:
        return budget.parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(str(e))


@click.group("campaign")
def campaign():
    """Fleet campaigns: download over a window, switch in waves, report who fell back."""


@campaign.command("create")
@click.argument("db")
@click.option("--fleet", "fleet", required=True, help="fleet file (JSON: uri + endpoint_id per device)")
@click.option("--image", required=True, help="the new image (app image; its manifest gives the Version)")
@click.option("--version", default=None, help="the Version the image reports (if it has no manifest)")
@click.option("--window", callback=_duration, default=None, help="distribute over this long (8h, 90m, 45s)")
@click.option("--budget", type=int, default=None, help="fleet bandwidth budget, bytes/s")
@click.option("--concurrency", type=int, default=None, help="devices downloading at once")
@click.option("--waves", default=None, help="switch wave sizes, e.g. 5,20%,100%")
@click.option("--method", type=click.Choice(["activate", "reboot"]), default=None,
              help="Activate() with a TimeWindow, or Set BootFirmwareImage + Device.Reboot()")
@click.option("--halt-ratio", type=float, default=None, help="halt when more than this share of a wave falls back")
@click.option("--switch-window", callback=_duration, default=None, help="Activate() TimeWindow length")
@click.option("--verify-timeout", callback=_duration, default=None, help="per wave device: unreachable after this")
@click.option("--url", default=None, help="agents pull the image from this URL instead of from the campaign")
@click.option("--controller-port", type=int, default=0, help="fixed UDP port of our USP endpoint")
@click.option("--image-port", type=int, default=0, help="fixed UDP port of the image server")
def create_cmd(db, fleet, image, version, window, budget, concurrency, waves, method, halt_ratio,
               switch_window, verify_timeout, url, controller_port, image_port):
    """Create campaign DB from a fleet file and an image."""
    try:
        cfg = create(db, fleet, image, version, controller_port, image_port, window=window, budget=budget,
                     concurrency=concurrency, waves=waves, method=method, halt_ratio=halt_ratio,
                     switch_window=switch_window, verify_timeout=verify_timeout, url=url)
    except CampaignError as e:
        _fail(e)
    st = Store(db, readonly=True)
    n = sum(st.counts().values())
    st.close()
    click.echo("campaign %s: %d devices, image %s %d bytes, budget %d B/s over %.0f s" % (
        cfg["key"], n, cfg["version"], cfg["size"], cfg["budget"], cfg["window"]))


@campaign.command("run")
@click.argument("db")
@click.option("-q", "--quiet", is_flag=True)
def run_cmd(db, quiet):
    """Run or resume the campaign until it is done or halted."""
    log = None if quiet else (lambda s: click.echo(s, err=True))
    try:
        phase = run(db, log)
    except CampaignError as e:
        _fail(e)
    s = status(db)
    c = s["counts"]
    click.echo("%s: updated %d, fell back %d, unreachable %d, download failed %d" % (
        phase, c["updated"], c["fell_back"], c["unreachable"], c["download_failed"]))
    if phase == "halted":
        _fail("halted: %s" % s["halt"])


@campaign.command("status")
@click.argument("db")
@click.option("--json", "as_json", is_flag=True)
def status_cmd(db, as_json):
    """Per-phase counts and per-device state."""
    try:
        s = status(db)
    except CampaignError as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps(s, indent=1))
        return
    click.echo("phase %s%s, new version %s, %d blocks served" % (
        s["phase"], " (%s)" % s["halt"] if s["halt"] else "", s["version"], s["blocks_served"]))
    click.echo("  " + "  ".join("%s %d" % (k, s["counts"][k]) for k in STATES))
    for w in s["waves"]:
        click.echo("  wave %d: %d devices, updated %d, fell back %d, unreachable %d%s" % (
            w["n"], w["size"], w["updated"], w["fell_back"], w["unreachable"], "  HALT" if w["halted"] else ""))
    for d in s["devices"]:
        click.echo("  %-5d %-22s %-15s %s" % (d["id"], d["eid"], d["state"], (d["boot_log"] or d["detail"] or "")[:80]))


@campaign.command("report")
@click.argument("db")
@click.option("-o", "--output", required=True, help="HTML file to write")
def report_cmd(db, output):
    """Write a self-contained HTML report (timeline chart, fallback table)."""
    from firmware_slots.host.campaign import report
    try:
        st = Store(db, readonly=True)
        try:
            html = report.render(st.snapshot())
        finally:
            st.close()
    except CampaignError as e:
        _fail(e)
    with open(output, "w") as f:
        f.write(html)
    click.echo("wrote %s (%d bytes)" % (output, len(html)))


def main(argv=None):
    campaign.main(args=argv, prog_name="fwslots campaign")


if __name__ == "__main__":
    sys.exit(main())
