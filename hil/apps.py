"""Tiny application images for tests, benchmarks and the demo (app mode, littlefs2)."""
from firmware_slots.host.appimage import build

BEHAVIOURS = {
    "confirm": "bootstub.confirm()\nprint('APP confirmed')\n",
    "crash": "raise RuntimeError('self-test failed in %s')\n",
    "hang": "while True:\n    time.sleep_ms(20)\n",
    "noconfirm": "",
}

MAIN = """import bootstub, time
_us = bootstub.elapsed_us()
print('APP %s %s boot_us=%d reads=%s' % ({name!r}, {version!r}, _us, bootstub.reads_at_start))
"""


def app_image(name="demo", version="1.0", behaviour="confirm", confirm="explicit", pad=0, block_size=4096):
    """An app image whose main.py prints 'APP name version boot_us=..' then does `behaviour`."""
    body = BEHAVIOURS[behaviour]
    if "%s" in body:
        body = body % version
    files = {"main.py": MAIN.format(name=name, version=version) + body}
    if pad:
        files["data.bin"] = bytes((i * 7 + len(version)) & 0xFF for i in range(pad))
    return build(files=files, name=name, version=version, confirm=confirm, block_size=block_size)
