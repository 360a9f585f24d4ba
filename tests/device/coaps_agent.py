"""The agent with a coaps listener, for device-side test scripts (MicroPython): a device with
image 1.0 confirmed (usp_loopback), its USP agent, optionally the plain-CoAP MTP on `plain`,
and a CoapsListener on `port`. Scripts add tests/device to sys.path and run their own loop."""
from usp_loopback import device, AGENT_ID  # noqa: F401 (AGENT_ID: for the scripts)

from firmware_slots.mtp.coaps import CoapsListener
from firmware_slots.usp.agent import UspAgent


def rd(p):
    with open(p, "rb") as f:
        return f.read()


def start(port, cert, key, ca, plain=None, controllers=None):
    """-> (mgr, agent, plain-CoAP MTP or None, listener); cert/key/ca are DER file paths."""
    flash, mgr = device("1.0")
    agent = UspAgent(mgr, AGENT_ID, controllers=controllers)
    mtp = None
    if plain is not None:
        from firmware_slots.coap.protocol import CoapEndpoint
        from firmware_slots.coap.transport import UdpTransport
        from firmware_slots.mtp.coap import CoapMtp
        mtp = CoapMtp(agent, CoapEndpoint(UdpTransport("127.0.0.1", plain)), reply_host="127.0.0.1")
        mtp.startup()
    else:
        agent.startup()
    return mgr, agent, mtp, CoapsListener(agent, "127.0.0.1", port, rd(cert), rd(key), cadata=rd(ca))
