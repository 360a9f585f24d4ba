"""Campaigns on a fleet that trusts: devices provisioned with a signing key and a controller
EndpointID (a board profile's "trust" entry). Only the provisioned controller's campaign gets
through, and only with a signed image; the others change nothing on any device."""
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from firmware_slots.host import signing
from firmware_slots.host.campaign import cli as ccli
from hil.fleet import Fleet, app_image

N = 4
KEY = "trusted"                     # campaign key -> its controller EndpointID
CONTROLLER = "self::fwslots-" + KEY


@pytest.fixture(scope="module")
def signed(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    k = ed25519.Ed25519PrivateKey.generate()
    (d / "key.pem").write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
    pub = k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    out = {"pub": pub.decode()}
    for v, sc in (("1.0", 1), ("2.0", 2)):
        out[v] = signing.sign(app_image(v), str(d / "key.pem"), v + ".0", sc)
    out["2.0-unsigned"] = app_image("2.0")
    return out


def _campaign(tmp_path, name, fleet, image, key):
    ff = str(tmp_path / ("fleet-%s.json" % name))
    fleet.write_fleet_file(ff)
    img = tmp_path / ("img-%s" % name)
    img.write_bytes(image)
    db = str(tmp_path / ("c-%s.db" % name))
    ccli.create(db, ff, str(img), window=1.0, budget=400000, concurrency=4, waves="100%", method="activate",
                halt_ratio=1.0, switch_window=30.0, verify_timeout=20.0, usp_timeout=2.5, key=key)
    phase = ccli.run(db)
    return phase, ccli.status(db)


def test_only_the_provisioned_controller_with_a_signed_image_updates(signed, tmp_path):
    fleet = Fleet(N, signed["1.0"], trust={"keys": [signed["pub"]], "controllers": [CONTROLLER]}).start()
    try:
        def versions():
            return sorted({dev.state()["slots"][dev.state()["running"]]["Version"] for dev in fleet.devices})

        # a campaign from a controller the devices were not provisioned with: 7006, nothing moves
        phase, s = _campaign(tmp_path, "a", fleet, signed["2.0"], "intruder")
        assert s["counts"]["updated"] == 0 and s["counts"]["download_failed"] == N, s["counts"]
        assert all("7006" in (d["detail"] or "") for d in s["devices"]), [d["detail"] for d in s["devices"]]
        assert versions() == ["1.0"]
        assert all(st["Status"] == "NoImage" for dev in fleet.devices for st in dev.state()["slots"][1:])
        # the provisioned controller with an unsigned image: every device refuses it
        phase, s = _campaign(tmp_path, "b", fleet, signed["2.0-unsigned"], KEY)
        assert s["counts"]["updated"] == 0 and s["counts"]["download_failed"] == N, s["counts"]
        # the agents' TransferComplete! says why, and the campaign keeps it per device
        assert all("untrusted image: not an MCUboot image" in d["detail"] for d in s["devices"]), \
            [d["detail"] for d in s["devices"]]
        assert versions() == ["1.0"]
        # ... and with the signed image: the whole fleet runs 2.0
        phase, s = _campaign(tmp_path, "c", fleet, signed["2.0"], KEY)
        assert phase == "done" and s["counts"]["updated"] == N, s["counts"]
        assert versions() == ["2.0"]
    finally:
        fleet.stop()
