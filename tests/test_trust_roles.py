"""ControllerTrust permission checks (firmware_slots/datamodel/trust.py), CPython and MicroPython."""
import pytest

from firmware_slots.datamodel import trust as T
from mpy import requires_micropython, run_mp

DL = "Device.DeviceInfo.FirmwareImage.2.Download()"


def test_full_access_may_do_everything_untrusted_only_reads():
    for op in T.NEEDS:
        assert T.allowed((T.FULL_ACCESS,), DL, op)
    assert T.allowed((T.UNTRUSTED,), "Device.DeviceInfo.FirmwareImage.1.Status", "get")
    assert T.allowed((T.UNTRUSTED,), "Device.DeviceInfo.FirmwareImage.1.", "get_instances")
    assert T.allowed((T.UNTRUSTED,), "Device.LocalAgent.EndpointID", "get")
    for path, op in ((DL, "operate"), ("Device.DeviceInfo.BootFirmwareImage", "set"),
                     ("Device.LocalAgent.Subscription.", "add"), ("Device.LocalAgent.Controller.1.", "delete"),
                     ("Device.LocalAgent.Controller.1.EndpointID", "get"), ("Device.Reboot()", "operate"),
                     ("Device.Boot!", "event"), ("Device.LocalAgent.EndpointIDx", "get")):
        assert not T.allowed((T.UNTRUSTED,), path, op), (path, op)
    assert T.denial(DL, "operate") == (7006, "permission denied: operate on %s needs CommandEvent 'x'" % DL)


def test_targets_partial_exact_and_wildcard():
    m = T._match
    assert m("Device.", "Device.DeviceInfo.FirmwareImage.1.Name")
    assert m("Device.DeviceInfo.FirmwareImage.*.Download()", DL)
    assert not m("Device.DeviceInfo.FirmwareImage.*.Download()", "Device.DeviceInfo.FirmwareImage.2.Activate()")
    assert m("Device.DeviceInfo.FirmwareImage.2.", "Device.DeviceInfo.FirmwareImage.2.")
    assert not m("Device.DeviceInfo.FirmwareImage.2.", "Device.DeviceInfo.FirmwareImage.")
    assert not m("Device.DeviceInfo.FirmwareImage.[Status==\"Active\"].", "Device.DeviceInfo.FirmwareImage.1.Name")
    assert not m("Device.DeviceInfo", "Device.DeviceInfo.SoftwareVersion")


def test_order_decides_within_a_role_union_across_roles():
    # operator role: read all, but Operate only Download() on slot 2; the higher Order row denies Reboot
    operator = ("Operator", (
        (0, ("Device.",), "r---", "r---", "r---", "r---"),
        (5, ("Device.DeviceInfo.FirmwareImage.2.Download()",), "----", "----", "----", "r-x-"),
        (9, ("Device.Reboot()",), "----", "----", "----", "----"),
        (1, ("Device.Reboot()",), "----", "----", "----", "--x-"),  # lower Order: overridden
    ))
    rebooter = ("Rebooter", ((0, ("Device.Reboot()",), "----", "----", "----", "--x-"),))
    table = T.ROLES + (operator, rebooter)
    assert T.allowed((3,), DL, "operate", table)
    assert not T.allowed((3,), "Device.DeviceInfo.FirmwareImage.1.Download()", "operate", table)
    assert not T.allowed((3,), "Device.Reboot()", "operate", table)
    assert T.allowed((3, 4), "Device.Reboot()", "operate", table)  # union with the second role
    assert not T.allowed((3,), "Device.DeviceInfo.BootFirmwareImage", "set", table)
    assert not T.allowed((7,), DL, "get", table) and not T.allowed((3,), DL, "frobnicate", table)
    tie = ("Tie", ((2, ("Device.",), "r---", "----", "----", "----"), (2, ("Device.",), "rw--", "----", "----", "----")))
    assert not T.allowed((1,), "Device.X", "set", (tie,))  # the first row wins a tie


def test_identity_provisioned_or_certificate_san():
    prov = ("proto::ctl-1",)
    assert T.roles_for("proto::ctl-1", prov) == (T.FULL_ACCESS,)
    assert T.roles_for("proto::evil", prov) == (T.UNTRUSTED,)
    assert T.roles_for("proto::ctl-2", prov, ["urn:bbf:usp:id:proto::ctl-2"]) == (T.FULL_ACCESS,)
    # a verified certificate for another EndpointID does not vouch for this one
    assert T.roles_for("proto::ctl-3", prov, ["urn:bbf:usp:id:proto::ctl-2"]) == (T.UNTRUSTED,)
    assert T.roles_for("proto::ctl-3", prov, ["proto::ctl-3"]) == (T.UNTRUSTED,)


def test_parse_rights():
    assert T.parse_rights("r--n") == "r--n"
    for bad in ("rwx", "rwxnn", "wr--", "R---", 5):
        with pytest.raises(ValueError):
            T.parse_rights(bad)


@requires_micropython
def test_same_decisions_under_micropython():
    out = run_mp("""
from firmware_slots.datamodel import trust as T
print(T.allowed((2,), "Device.DeviceInfo.FirmwareImage.2.Download()", "operate"),
      T.allowed((1,), "Device.DeviceInfo.FirmwareImage.2.Download()", "operate"),
      T.allowed((2,), "Device.DeviceInfo.FirmwareImage.1.Status", "get"),
      T.roles_for("a", ("a",)), T.roles_for("b", ("a",), ["urn:bbf:usp:id:b"]), T.roles_for("c", ()))
""")
    assert out.split() == ["False", "True", "True", "(1,)", "(1,)", "(2,)"]
