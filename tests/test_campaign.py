"""Fleet campaigns against a simulated fleet: real agents (hil/fleet.py) over loopback CoAP.

One campaign (module fixture) over 60 agents, 2 of which fail the new image's self-test,
plus one device that does not exist: distribute under a budget, switch in two waves with
Activate(), verify; then a second small campaign whose first wave trips the halt threshold.
"""
import html.parser
import json
import os

import pytest
from click.testing import CliRunner

from firmware_slots.host.campaign import CampaignError, budget, cli as ccli, fleetfile
from firmware_slots.host.campaign.phases import wave_sizes
from firmware_slots.host.campaign.store import Store
from hil.fleet import Fleet, app_image, fail_ratio

N = 60
BUDGET = 150000          # bytes/s for the whole fleet: 60 x 20 KiB takes ~8 s
V1, V2 = "1.0", "2.0"


def _fleet_file(path, fleet, extra=()):
    doc = fleet.fleet()
    doc["devices"].extend(extra)
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("img")
    out = {}
    for v in (V1, V2):
        p = d / ("v%s.img" % v)
        p.write_bytes(app_image(v))
        out[v] = str(p)
    return out


@pytest.fixture(scope="module")
def done(images, tmp_path_factory):
    """A finished campaign: (db path, fleet, failing device numbers)."""
    d = tmp_path_factory.mktemp("campaign")
    fail = fail_ratio(1 / 30, V2)
    fleet = Fleet(N, open(images[V1], "rb").read(), fail).start()
    try:
        ghost = {"uri": "coap://127.0.0.1:9/usp", "endpoint_id": "os::F1EE70-ghost"}  # nobody listens
        ff = _fleet_file(str(d / "fleet.json"), fleet, [ghost])
        db = str(d / "c.db")
        ccli.create(db, ff, images[V2], window=3.0, budget=BUDGET, concurrency=12, waves="10,100%",
                    method="activate", halt_ratio=0.10, switch_window=60.0, verify_timeout=30.0,
                    usp_timeout=2.5)
        assert ccli.run(db) == "done"
        yield db, fleet, [n for n in range(N) if fail(n, V2)]
    finally:
        fleet.stop()


def test_every_device_classified_as_the_fleet_really_is(done):
    db, fleet, failing = done
    assert len(failing) == 2
    s = ccli.status(db)
    assert s["phase"] == "done"
    assert s["counts"]["updated"] == N - 2 and s["counts"]["fell_back"] == 2
    assert s["counts"]["unreachable"] == 1
    by_eid = {d["eid"]: d for d in s["devices"]}
    assert by_eid["os::F1EE70-ghost"]["state"] == "unreachable"
    for dev in fleet.devices:
        row = by_eid[dev.endpoint_id]
        truth = dev.state()
        running = truth["slots"][truth["running"]]
        target = truth["slots"][row["slot"] - 1]
        if dev.n in failing:
            # fell back: the old image runs, the new row failed, BootFirmwareImage untouched
            assert row["state"] == "fell_back", row
            assert running["Version"] == V1 and target["Status"] == "ActivationFailed"
            assert truth["boot"] == row["slot"] - 1
            assert "SelfTestError" in row["boot_log"] and row["boot_log"] == target["BootFailureLog"]
        else:
            assert row["state"] == "updated", row
            assert running["Version"] == V2 and truth["running"] == row["slot"] - 1
        # each real device was sent ONE Download() and pulled the image exactly once
        assert row["dl_issued"] == 1 and row["blocks"] == 20, row


def test_bandwidth_stays_within_the_budget(done):
    db = done[0]
    s = ccli.status(db)
    assert s["blocks_served"] == N * 20
    assert s["bytes_served"] == N * 20 * 1024
    assert 0.5 < s["max_bandwidth_ratio"] <= 1.05
    st = Store(db, readonly=True)
    peak_inflight = max(n for t, n in st.series("inflight"))
    st.close()
    assert 1 <= peak_inflight <= 12


def test_waves_and_notifications_recorded(done):
    db = done[0]
    s = ccli.status(db)
    w = s["waves"]
    assert [x["size"] for x in w] == [10, N - 10]
    assert sum(x["updated"] for x in w) == N - 2 and not any(x["halted"] for x in w)
    st = Store(db, readonly=True)
    kinds = {}
    for t, dev, kind, detail in st.events():
        kinds.setdefault(kind, set()).add(dev)
    st.close()
    # the agents told us themselves: TransferComplete! per download, Boot! per switch
    assert len(kinds["TransferComplete!"]) == N and len(kinds["Boot!"]) >= N


class _Parse(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags = []
        self.stack = []
        self.rows = {}
        self.text = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self.stack.append(a.get("id"))
        if tag == "tr" and self.stack:
            self.rows.setdefault(self.stack[-1], []).append([])
        if tag == "td" and self.stack:
            self.rows[self.stack[-1]][-1].append("")

    def handle_endtag(self, tag):
        if tag == "table":
            self.stack.pop()

    def handle_data(self, data):
        if self.stack and self.rows.get(self.stack[-1]) and self.rows[self.stack[-1]][-1]:
            self.rows[self.stack[-1]][-1][-1] += data


def test_report_html_has_timeline_and_fallback_table(done, tmp_path):
    db = done[0]
    out = str(tmp_path / "report.html")
    r = CliRunner().invoke(ccli.campaign, ["report", db, "-o", out])
    assert r.exit_code == 0, r.output
    text = open(out).read()
    assert "<script" not in text and "http://" not in text.replace("http://www.w3.org/2000/svg", "")
    p = _Parse()
    p.feed(text)
    classes = [(t, a.get("class", "")) for t, a in p.tags]
    assert ("svg", "") in classes
    assert ("polyline", "bw") in classes and ("polyline", "inflight") in classes
    assert ("line", "budget") in classes
    assert sum(1 for t, c in classes if t == "rect" and c.startswith("wave")) == 2
    for t, a in p.tags:
        if t == "polyline":
            assert len(a["points"].split()) >= 3
    fb = [r for r in p.rows["fallback-table"] if r]
    assert len(fb) == 2 and all("SelfTestError" in r[4] for r in fb)
    assert len([r for r in p.rows["waves-table"] if r]) == 2


def test_status_cli_text_and_json(done):
    db = done[0]
    r = CliRunner().invoke(ccli.campaign, ["status", db, "--json"])
    assert r.exit_code == 0
    s = json.loads(r.output)
    assert s["counts"]["fell_back"] == 2 and len(s["devices"]) == N + 1
    r = CliRunner().invoke(ccli.campaign, ["status", db])
    assert r.exit_code == 0 and "phase done" in r.output and "fell_back" in r.output


def test_halt_threshold_stops_later_waves(images, tmp_path):
    """Set BootFirmwareImage + Reboot(); 2 of the first 8 fall back (> 5%): nothing else switches."""
    fail = fail_ratio(0.25, V2)     # devices 2, 6, 10, 14
    fleet = Fleet(16, open(images[V1], "rb").read(), fail).start()
    try:
        ff = _fleet_file(str(tmp_path / "fleet.json"), fleet)
        db = str(tmp_path / "c.db")
        ccli.create(db, ff, images[V2], window=1.0, budget=400000, concurrency=16, waves="8,100%",
                    method="reboot", halt_ratio=0.05, verify_timeout=30.0)
        r = CliRunner().invoke(ccli.campaign, ["run", db, "-q"])
        assert r.exit_code == 1 and "halted: wave 1: 2 of 8 devices fell back" in r.output, r.output
        s = ccli.status(db)
        assert s["phase"] == "halted"
        assert s["counts"] == dict(s["counts"], updated=6, fell_back=2, downloaded=8)
        for dev in fleet.devices[8:]:
            truth = dev.state()
            assert truth["slots"][truth["running"]]["Version"] == V1 and truth["boot"] == 0
            assert dev.reboots == []
        for dev in fleet.devices[:8]:
            assert dev.reboots and "RemoteReboot" in dev.reboots[0]
    finally:
        fleet.stop()


def test_bad_input_is_one_line(images, tmp_path):
    run = CliRunner().invoke
    bad = tmp_path / "bad.json"
    bad.write_text('{"devices": [{"uri": "http://x/usp", "endpoint_id": "a"}]}')
    r = run(ccli.campaign, ["create", str(tmp_path / "c.db"), "--fleet", str(bad), "--image", images[V2]])
    assert r.exit_code == 1 and "device 1: uri must be a coap:// URI" in r.output
    assert not os.path.exists(tmp_path / "c.db")
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps([{"uri": "coap://127.0.0.1:1/usp", "endpoint_id": "a"}] * 2))
    with pytest.raises(CampaignError, match="appears twice"):
        fleetfile.load(str(dup))
    ok = tmp_path / "ok.json"
    ok.write_text(json.dumps([{"uri": "coap://127.0.0.1:1/usp", "endpoint_id": "a"}]))
    raw = tmp_path / "raw.bin"
    raw.write_bytes(b"\x01" * 1000)
    r = run(ccli.campaign, ["create", str(tmp_path / "c.db"), "--fleet", str(ok), "--image", str(raw)])
    assert r.exit_code == 1 and "give --version" in r.output
    r = run(ccli.campaign, ["create", str(tmp_path / "c.db"), "--fleet", str(ok), "--image", images[V2],
                            "--window", "soon"])
    assert r.exit_code == 2 and "not a duration" in r.output
    r = run(ccli.campaign, ["run", str(tmp_path / "none.db")])
    assert r.exit_code == 1 and "no campaign at" in r.output
    r = run(ccli.campaign, ["create", str(tmp_path / "c.db"), "--fleet", str(ok), "--image", images[V2]])
    assert r.exit_code == 0
    r = run(ccli.campaign, ["create", str(tmp_path / "c.db"), "--fleet", str(ok), "--image", images[V2]])
    assert r.exit_code == 1 and "exists" in r.output


def test_schedule_helpers():
    assert wave_sizes("10,100%", 61) == [10, 51]
    assert wave_sizes("5,20%", 30) == [5, 6, 6, 6, 6, 1]
    with pytest.raises(CampaignError):
        wave_sizes("ten", 5)
    assert budget.parse_duration("8h") == 28800 and budget.parse_duration("1.5m") == 90
    # 10 s windows over whole seconds: 13 kB in the first 10 s over a 1 kB/s budget: 1.3
    assert budget.peak_ratio({0: 1000, 1: 12000, 5: 0, 20: 1000}, 1000) == pytest.approx(1.3)


def test_image_from_a_url(images, tmp_path):
    """--url: the agents pull from another server (here demo_virtual's aiocoap one); the
    campaign serves nothing itself and still classifies every device."""
    from hil.peers import ImageServer
    v2 = open(images[V2], "rb").read()
    srv = ImageServer({"v2.img": v2})
    fleet = Fleet(4, open(images[V1], "rb").read()).start()
    try:
        ff = _fleet_file(str(tmp_path / "fleet.json"), fleet)
        db = str(tmp_path / "c.db")
        r = CliRunner().invoke(ccli.campaign, ["create", db, "--fleet", ff, "--image", images[V2], "--window", "1s",
                                               "--url", srv.uri("v2.img"), "--waves", "100%"])
        assert r.exit_code == 0, r.output
        r = CliRunner().invoke(ccli.campaign, ["run", db, "-q"])
        assert r.exit_code == 0 and "done: updated 4, fell back 0" in r.output, r.output
        s = ccli.status(db)
        assert s["blocks_served"] == 0 and len(srv.blocks["v2.img"]) == 4 * 20
    finally:
        fleet.stop()
        srv.close()
