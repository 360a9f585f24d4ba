"""tiers.json is the one table of what a board gets; the mip packages are generated from it."""
import json
import os

from mpy import ROOT
from firmware_slots.host import tiers as T

NOT_SHIPPED = ("boards/unix_virtual.py",)  # the virtual board's adapter runs on the norsim simulator


def device_files():
    out = []
    for top in ("firmware_slots", "bootstub", "boards"):
        for d, dirs, files in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [x for x in dirs if x not in T.NEVER]
            out += [os.path.relpath(os.path.join(d, f), ROOT).replace(os.sep, "/") for f in files
                    if f.endswith(".py")]
    return sorted(f for f in out if f not in NOT_SHIPPED)


def test_every_table_entry_exists_and_every_device_module_is_in_a_tier():
    tiers = T.load()
    shipped = T.files(list(tiers))  # raises FileNotFoundError naming a missing entry
    assert sorted(shipped) == device_files()


def test_tiers_never_hold_sim_or_host():
    for f in T.files(list(T.load())) + T.files(list(T.load()), key="data"):
        assert not set(f.split("/")[:-1]) & {"sim", "host"}, f


def test_deps_make_each_tier_a_superset_of_the_lower_ones():
    tiers = T.load()
    assert T.closure(tiers, ["dtls"]) == ["slots", "agent", "dtls"]
    assert T.closure(tiers, ["http", "dtls"]) == ["slots", "agent", "http", "dtls"]
    assert set(T.files(["slots"])) < set(T.files(["agent"])) < set(T.files(["agent", "dtls"]))


def test_unknown_tier_is_named():
    try:
        T.closure(T.load(), ["agnet"])
    except KeyError as e:
        assert "agnet" in str(e) and "slots" in str(e)
    else:
        raise AssertionError("no error")


def test_committed_mip_packages_match_the_table():
    assert T.main(["packages", "--check"]) == 0, "run: python -m firmware_slots.host.tiers packages"


def test_mip_packages_list_existing_files_and_chain_by_deps():
    tiers = T.load()
    for n in tiers:
        with open(os.path.join(ROOT, T.PACKAGE % n)) as f:
            pkg = json.load(f)
        for dest, src in pkg["urls"]:
            assert dest == src and os.path.isfile(os.path.join(ROOT, src)), src
        assert [d for d, _ in pkg["deps"]] == [T.PACKAGE % d for d in tiers[n]["deps"]]
        for dep, _ in pkg["deps"]:
            assert os.path.isfile(os.path.join(ROOT, dep)), dep


def test_url_base_for_remote_installs():
    pkg = T.package_json(T.load(), "agent", base="github:me/firmware-slots/")
    assert pkg["deps"] == [["github:me/firmware-slots/package-slots.json", "latest"]]
