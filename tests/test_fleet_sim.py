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
    import hashlib
    import aiocoap
    import aiocoap.resource as resource
    from firmware_slots.host.campaign.budget import TokenBucket
    from firmware_slots.host.campaign.imageserver import ImageResource
    v2 = app_image("2.0")
    fleet = Fleet(1, app_image("1.0"), lambda n, v: v == "2.0").start()
    dev = fleet.devices[0]

    async def go():
        site = resource.Site()
        site.add_resource(["fw"], ImageResource(v2, TokenBucket(10 ** 7), hashlib.sha256(v2).digest()))
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
