"""The campaign report: one self-contained HTML page (no script, no external file).

    html = render(store.snapshot())

Sections (element ids, which the tests look for):
    #summary    per-state counts, image, budget, measured 10 s peak / budget
    #timeline   inline SVG: bandwidth (bytes/s, polyline .bw) against the budget line
                (.budget), downloads in flight (polyline .inflight, right axis), one band
                per switch wave (rect .wave, labelled with its counts)
    #waves      table: wave, size, updated, fell back, unreachable, halted
    #fallbacks  table: every device that fell back, with its BootFailureLog
    #unreachable  table: devices never classified, with the last thing seen
"""
import html
import time

from firmware_slots.host.campaign import budget
from firmware_slots.host.campaign.store import STATES

W, H, L, R, T, B = 960, 320, 70, 60, 20, 40   # chart size and margins (px)

CSS = """body{font-family:sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f0f0f0}.k{color:#666}svg text{font-size:11px;fill:#444}
.bw{fill:none;stroke:#1f77b4;stroke-width:1.5}.inflight{fill:none;stroke:#ff7f0e;stroke-width:1.5}
.budget{stroke:#d62728;stroke-dasharray:6 4}.wave{fill:#2ca02c;fill-opacity:.15;stroke:#2ca02c}
.wave.halted{fill:#d62728;stroke:#d62728}"""


def _e(s):
    return html.escape("" if s is None else str(s))


def _ts(t):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) + " UTC" if t else ""


def timeline(snap):
    cfg = snap["config"] or {}
    bw = snap["bw"]
    fl = snap["inflight"]
    waves = snap["waves"]
    ts = [r[0] for r in bw] + [r[0] for r in fl] + [w["t0"] for w in waves if w["t0"]] + \
         [w["t1"] for w in waves if w["t1"]]
    if not ts:
        return '<svg id="timeline-svg" xmlns="http://www.w3.org/2000/svg" width="%d" height="60">' \
               '<text x="10" y="30">nothing has run yet</text></svg>' % W
    t0, t1 = min(ts), max(ts) + 1
    span = max(1.0, t1 - t0)
    rate = cfg.get("budget", 1)
    ymax = max([rate * 1.2] + [r[1] for r in bw])
    nmax = max([1] + [r[1] for r in fl])
    pw, ph = W - L - R, H - T - B

    def x(t):
        return L + (t - t0) / span * pw

    def y(v):
        return T + ph - v / ymax * ph

    def y2(v):
        return T + ph - v / nmax * ph

    out = ['<svg id="timeline-svg" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
           'viewBox="0 0 %d %d">' % (W, H, W, H)]
    out.append('<rect x="%d" y="%d" width="%d" height="%d" fill="#fafafa" stroke="#999"/>' % (L, T, pw, ph))
    for w in waves:
        if not w["t0"]:
            continue
        a, b = x(w["t0"]), x(w["t1"] or t1)
        out.append('<rect class="wave%s" x="%.1f" y="%d" width="%.1f" height="%d"><title>wave %d: %d devices, '
                   '%d updated, %d fell back, %d unreachable</title></rect>' % (
                       " halted" if w["halted"] else "", a, T, max(2.0, b - a), ph, w["n"], w["size"],
                       w["updated"], w["fell_back"], w["unreachable"]))
        out.append('<text x="%.1f" y="%d">wave %d: %d/%d/%d</text>' % (a + 2, T + 12 + 12 * ((w["n"] - 1) % 3),
                                                                     w["n"], w["updated"], w["fell_back"],
                                                                     w["unreachable"]))
    out.append('<line class="budget" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/>' % (L, L + pw, y(rate), y(rate)))
    out.append('<text x="%d" y="%.1f">budget %d B/s</text>' % (L + 4, y(rate) - 4, rate))
    if bw:
        pts = " ".join("%.1f,%.1f" % (x(t + 0.5), y(b)) for t, b, n in bw)
        out.append('<polyline class="bw" points="%s"><title>image bytes served per second</title></polyline>' % pts)
    if fl:
        pts = " ".join("%.1f,%.1f" % (x(t), y2(n)) for t, n in fl)
        out.append('<polyline class="inflight" points="%s"><title>downloads in flight</title></polyline>' % pts)
    for k in range(5):  # axes: bytes/s left, downloads right, seconds below
        v = ymax * k / 4
        out.append('<text x="4" y="%.1f">%d B/s</text>' % (y(v) + 4, v))
        out.append('<text x="%d" y="%.1f">%s</text>' % (L + pw + 6, y2(nmax * k / 4) + 4,
                                                      "%g" % round(nmax * k / 4, 0 if nmax >= 8 else 2)))
        out.append('<text x="%.1f" y="%d">%ds</text>' % (x(t0 + span * k / 4) - 8, H - B + 16, span * k / 4))
    out.append('<text x="%d" y="%d">blue: bandwidth, orange: downloads in flight (right axis), '
               'bands: switch waves (updated/fell back/unreachable)</text>' % (L, H - 6))
    out.append("</svg>")
    return "\n".join(out)


def _table(tid, head, rows):
    h = "".join("<th>%s</th>" % _e(c) for c in head)
    body = "".join("<tr>%s</tr>" % "".join("<td>%s</td>" % _e(c) for c in r) for r in rows)
    return '<table id="%s"><thead><tr>%s</tr></thead><tbody>%s</tbody></table>' % (tid, h, body)


def render(snap):
    cfg = snap["config"] or {}
    c = snap["counts"]
    peak = budget.peak_ratio({r[0]: r[1] for r in snap["bw"]}, cfg.get("budget", 1)) if snap["bw"] else 0.0
    summary = [("campaign", cfg.get("key")), ("phase", snap["phase"] + (" — " + snap["halt"] if snap["halt"] else "")),
               ("image", "%s, %s bytes, SHA-256 %s" % (cfg.get("version"), cfg.get("size"), (cfg.get("sha256") or "")[:16])),
               ("budget", "%s B/s, %s downloads at once, window %s s" % (cfg.get("budget"), cfg.get("concurrency"),
                                                                       cfg.get("window"))),
               ("switch", "%s, waves %s, halt above %s%% fell back" % (cfg.get("method"), cfg.get("waves"),
                                                                     100 * cfg.get("halt_ratio", 0))),
               ("bandwidth peak (10 s) / budget", "%.3f" % peak),
               ("image bytes served", sum(r[1] for r in snap["bw"]))]
    summary += [(s, c.get(s, 0)) for s in STATES]
    devs = snap["devices"]
    fb = [(d["id"], d["eid"], d["wave"], d["version"], d["boot_log"]) for d in devs if d["state"] == "fell_back"]
    un = [(d["id"], d["eid"], d["wave"], d["detail"]) for d in devs if d["state"] in ("unreachable", "download_failed")]
    wv = [(w["n"], _ts(w["t0"]), w["size"], w["updated"], w["fell_back"], w["unreachable"],
           "HALT" if w["halted"] else "") for w in snap["waves"]]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>fwslots campaign %s</title><style>%s</style></head><body>" % (_e(cfg.get("key")), CSS),
             "<h1>Campaign %s</h1>" % _e(cfg.get("key")),
             '<section id="summary"><h2>Summary</h2>%s</section>' % _table("summary-table", ("what", "value"), summary),
             '<section id="timeline"><h2>Timeline</h2>%s</section>' % timeline(snap),
             '<section id="waves"><h2>Switch waves</h2>%s</section>' % _table(
                 "waves-table", ("wave", "start", "devices", "updated", "fell back", "unreachable", ""), wv),
             '<section id="fallbacks"><h2>Devices that fell back (%d)</h2>%s</section>' % (len(fb), _table(
                 "fallback-table", ("id", "EndpointID", "wave", "running", "BootFailureLog"), fb)),
             '<section id="unreachable"><h2>Unreachable or failed (%d)</h2>%s</section>' % (len(un), _table(
                 "unreachable-table", ("id", "EndpointID", "wave", "last seen"), un)),
             "</body></html>"]
    return "\n".join(parts)
