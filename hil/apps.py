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


AGENT_MAIN = """import bootstub
print('APP %s %s boot_us=%d' % ({name!r}, {version!r}, bootstub.elapsed_us()))
from bootstub import agentapp
{health}agentapp.serve({eid!r}, {port!r}, health={hname})
"""

AGENT_HEALTH = {
    "confirm": None,
    # the agent binds and starts, then the app's self-test fails before the confirm
    "crash": "def self_test(mtp):\n    raise RuntimeError('self-test failed in %s')\n",
    # serves but never confirms: the watchdog resets the trial boot
    "noconfirm": "def self_test(mtp):\n    mtp.serve()\n",
}


def agent_app(name="agent", version="1.0", port=5683, endpoint_id="os::000000-fwslots",
              behaviour="confirm", pad=0, block_size=4096):
    """An app image whose main.py runs the USP agent over CoAP on 127.0.0.1:`port` with the
    stub's SlotManager (bootstub.agentapp.serve) and confirms once serving.
    behaviour: "confirm"; "crash" (raises after the agent started, before confirming);
    "noconfirm" (serves without confirming, for the watchdog)."""
    h = AGENT_HEALTH[behaviour]
    health = "" if h is None else (h % version if "%s" in h else h)
    main = AGENT_MAIN.format(name=name, version=version, eid=endpoint_id, port=int(port),
                             health=health, hname="self_test" if health else "None")
    files = {"main.py": main}
    if pad:
        files["data.bin"] = bytes((i * 7 + len(version)) & 0xFF for i in range(pad))
    return build(files=files, name=name, version=version, confirm="explicit", block_size=block_size)
