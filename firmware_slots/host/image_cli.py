"""`fwslots image sign` and `fwslots image show`: MCUboot-signed images from the CLI.

Kept out of cli.py so the two commands wire in with one line (`register(image)`).
Exit codes: 0 done / signature verified, 1 bad input or a signature that fails.
"""

import json

import click

from firmware_slots.host import signing


def _int(text):
    try:
        return int(text, 0)
    except ValueError:
        raise click.BadParameter("%r is not a number (decimal or 0x hex)" % text)


@click.command("sign")
@click.argument("infile", type=click.File("rb"))
@click.argument("outfile", type=click.Path(dir_okay=False))
@click.option("-k", "--key", "key", required=True, type=click.Path(dir_okay=False),
              help="private key PEM (imgtool keygen -t ecdsa-p256 | ed25519)")
@click.option("-v", "--version", "version", required=True, help="image version major.minor.revision+build")
@click.option("-s", "--security-counter", "counter", type=click.IntRange(0, 0xFFFFFFFF), default=None,
              help="anti-rollback counter (protected TLV); the device refuses lower ones than it confirmed")
@click.option("-H", "--header-size", "header_size", default="0x1000", show_default=True,
              help="MCUboot header size = payload offset; app-mode images need one flash sector")
@click.option("--align", type=click.Choice(["1", "2", "4", "8"]), default="4", show_default=True)
def sign_cmd(infile, outfile, key, version, counter, header_size, align):
    """Sign INFILE (an image from `fwslots image build`, or native firmware) into OUTFILE.

    Same bytes as `imgtool sign --header-size 0x1000 --pad-header --align 4
    --version V --security-counter N -k KEY INFILE OUTFILE`.
    """
    hs = _int(header_size)
    if not 32 <= hs <= 0xFFFF:
        raise click.BadParameter("header size must be 32..65535", param_hint="--header-size")
    try:
        out = signing.sign(infile.read(), key, version, counter, hs, int(align))
    except signing.SigningError as e:
        raise click.ClickException(str(e))
    with open(outfile, "wb") as f:
        f.write(out)
    info = signing.show(out)
    click.echo("%s: version %s, security counter %s, %s signature, %d bytes" % (
        outfile, info["version"], info["security_counter"], info["signatures"][0]["kind"], len(out)))


@click.command("show")
@click.argument("imagefile", type=click.File("rb"))
@click.option("-k", "--key", "keys", multiple=True, type=click.Path(dir_okay=False),
              help="public (or private) key PEM to verify against; repeatable")
@click.option("--block-size", type=click.Choice(["512", "4096"]), default="4096", show_default=True,
              help="littlefs block size of an app image")
@click.option("--json", "as_json", is_flag=True, help="one JSON object")
def show_cmd(imagefile, keys, block_size, as_json):
    """Print an image: an MCUboot container's header, version, TLVs and, with --key, whether
    it verifies; an app image's manifest, files, size and SHA-256 (also inside a container).

    Checked by the device's own parser; exit 1 when the image is malformed or no key verifies.
    """
    data = imagefile.read()
    try:
        ks = [signing.load_public(k) for k in keys]
        info = signing.show(data, ks)
    except signing.SigningError as e:
        if not str(e).startswith("not an MCUboot image") or keys:
            raise click.ClickException(str(e))
        info = None  # a plain app image (unsigned): show its manifest
    app = _app_view(data[info["header_size"]:info["header_size"] + info["image_size"]] if info else data,
                    int(block_size), info is None)
    if as_json:
        out = dict(info or {}, app=app) if info else app
        click.echo(json.dumps(out, sort_keys=True, indent=None if info else 1))
    elif info is None:
        click.echo(json.dumps(app, indent=1))
    else:
        click.echo("version %s  security counter %s  header %d bytes  payload %d bytes  flags 0x%x" % (
            info["version"], info["security_counter"], info["header_size"], info["image_size"], info["flags"]))
        click.echo("sha256 %s (matches header+payload+protected TLVs)" % info["sha256"])
        click.echo("TLVs: " + ", ".join("%s(%d)" % (t["type"], t["len"]) for t in info["tlvs"]))
        for s in info["signatures"]:
            click.echo("signature %s by key hash %s" % (s["kind"], s["keyhash"]))
        if not info["signatures"]:
            click.echo("unsigned")
        if app:
            click.echo("payload: app image %s %s (%d files)" % (
                app["manifest"].get("name"), app["manifest"].get("version"), len(app["files"])))
        if keys:
            click.echo("verified with key hash %s" % info["key"] if info["verified"]
                       else "NOT verified: %s" % info["error"])
    if keys and not info["verified"]:
        raise SystemExit(1)


def _app_view(data, block_size, required):
    """{manifest, files, size, sha256} of an app image; None (or, when required, exit 1) if not one."""
    import hashlib
    from firmware_slots.host import appimage
    try:
        m, paths = appimage.inspect(data, block_size)
    except appimage.AppImageError as e:
        if required:
            raise click.ClickException("not an app image or an MCUboot image: %s" % e)
        return None  # native firmware inside a container
    return {"manifest": m, "files": paths, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def precheck(data, keys, min_sc):
    """The device's signature and rollback checks on image bytes before anything is written,
    so a refused image leaves the flash file's slot table exactly as it was."""
    from firmware_slots.core import image
    s = image.ImageStream()
    try:
        s.feed(data)
        image.accept(s, keys, min_sc)
    except image.ImageError as e:
        raise click.ClickException("untrusted image: %s" % e)


def trust_entry(paths):
    """The profile's "trust" entry for `fwslots flash init --trust-key` (None without keys)."""
    if not paths:
        return None
    pems = []
    for p in paths:
        with open(p, "rb") as f:
            try:
                pems.append(signing.public_pem(f.read()))
            except signing.SigningError as e:
                raise click.BadParameter("%s: %s" % (p, e), param_hint="--trust-key")
    return {"keys": pems, "min_security_counter": 0}


def register(group):
    group.add_command(sign_cmd)
    group.add_command(show_cmd)
