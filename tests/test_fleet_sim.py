"""The fleet simulator itself (hil/fleet.py) and the CoAP port rule it relies on."""
import asyncio

from firmware_slots.coap.transport import UdpTransport
from firmware_slots.host.campaign.agentctl import FW, FleetController
from hil.fleet import Fleet, app_image, free_ports, ephemeral_range


def test_ephemeral_ports_are_never_shared():
    """Port 0 must give every socket its own port (SO_REUSEADDR made Linux hand out ports
    that another socket held: two devices then answered each other's requests)."""
    ts = [UdpTransport("127.0.0.1", 0) for _ in range(1500)]
    try:
        ports = [t.local_port for t in ts]
        assert len(set(ports)) == len(ports)
    finally:
        for t in ts:
            t.close()
    ps = free_ports(20)
    assert len(set(ps)) == 20 and max(ps) < ephemeral_range()[0]


def test_a_failing_self_test_falls_back_and_reports_it():
    """2.0's self-test fails on this device: three trial boots, then the old image runs again."""
    import aiocoap
    import aiocoap.resource as resource
    from firmware_slots.host.campaign.budget import TokenBucket
    from firmware_slots.host.campaign.imageserver import ImageResource
    v2 = app_image("2.0")
    fleet = Fleet(1, app_image("1.0"), lambda n, v: v == "2.0").start()
    dev = fleet.devices[0]

    async def go():
        site = resource.Site()
        site.add_resource(["fw"], ImageResource(v2, TokenBucket(10 ** 7)))
        port = free_ports(1)[0]
        srv = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", port))
        try:
            async with FleetController("self::t") as ctl:
                await ctl.operate(dev.uri, dev.endpoint_id, FW + "2.Download()",
                                  {"URL": "coap://127.0.0.1:%d/fw?d=1" % port, "AutoActivate": "true"})
                for _ in range(100):
                    await asyncio.sleep(0.2)
                    try:
                        p = await ctl.get_params(dev.uri, dev.endpoint_id, [
                            FW + "2.Status", FW + "2.BootFailureLog", "Device.DeviceInfo.SoftwareVersion"], 1)
                    except Exception:
                        continue  # rebooting
                    if p[FW + "2.Status"] == "ActivationFailed":
                        return p
        finally:
            await srv.shutdown()

    try:
        p = asyncio.run(go())
        assert p["Device.DeviceInfo.SoftwareVersion"] == "1.0"
        assert "not confirmed after 3 boot attempts" in p[FW + "2.BootFailureLog"]
        assert "crashed: SelfTestError" in p[FW + "2.BootFailureLog"]
        assert dev.crashes == 3 and len(dev.reboots) == 1
        truth = dev.state()
        assert truth["running"] == 0 and truth["boot"] == 1  # a fallback never rewrites BootFirmwareImage
    finally:
        fleet.stop()


def test_rebooted_endpoint_reusing_a_mid_is_not_stuck():
    """After a reboot on the same port a device may draw a MID that aiocoap still holds in
    its dedup cache: it answers with the cached ACK of our previous life (another token).
    The device must resend under a new MID, not wait for a 'separate response' (it did:
    one agent in a thousand hung its boot notifications for minutes)."""
    import threading
    import time
    import aiocoap
    import aiocoap.resource as resource
    from firmware_slots.coap import numbers as N
    from firmware_slots.coap.client import CoapClient
    from firmware_slots.coap.protocol import CoapEndpoint

    class Sink(resource.Resource):
        async def render_post(self, request):
            return aiocoap.Message(code=aiocoap.CHANGED)

    srv_port, dev_port = free_ports(2)
    ready, stop = threading.Event(), threading.Event()

    async def serve():
        site = resource.Site()
        site.add_resource(["usp"], Sink())
        ctx = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", srv_port))
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await ctx.shutdown()

    t = threading.Thread(target=lambda: asyncio.run(serve()))
    t.start()
    try:
        assert ready.wait(10)
        for life in range(2):  # two boots, same port, same first MID
            ep = CoapEndpoint(UdpTransport("127.0.0.1", dev_port))
            ep._mid = 4242
            t0 = time.monotonic()
            try:
                r = CoapClient(ep, timeout_ms=5000).request(N.POST, "coap://127.0.0.1:%d/usp" % srv_port, b"x")
            finally:
                ep.close()
            assert r.code == N.CHANGED and time.monotonic() - t0 < 2.0, life
    finally:
        stop.set()
        t.join(10)
