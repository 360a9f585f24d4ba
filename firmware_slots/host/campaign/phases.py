"""Running a campaign: distribute, switch, verify (TR-369 Appendix I, for a fleet).

distribute  every device gets Download() with AutoActivate=false into a row that is
            neither Active nor BootFirmwareImage; starts are spread over the window
            (budget.spread), at most `concurrency` at once, the image bytes paced by the
            fleet token bucket (imageserver). Done when its row is Available with the new
            Version (TransferComplete! wakes the waiter; a Get every POLL_S is the safety
            net, since agents send a notification once and never retry it).
switch      in waves (config "waves": sizes or percentages, the last one repeating):
            Activate() with TimeWindow.1 = [0, switch_window) AnyTime, or (method "reboot")
            Set BootFirmwareImage + Device.Reboot(). The wave is verified before the next.
verify      per device of the wave: updated when SoftwareVersion is the new one on the
            target row (Boot! FirmwareUpdated=true says so first); fell_back when it runs
            the old version and the target row is ActivationFailed (BootFailureLog kept);
            unreachable when no answer came within verify_timeout. A wave whose fell_back
            share exceeds halt_ratio halts the campaign: later waves are not switched.

Restart safety: a row's state is committed before the action it announces, and a
`run` after a crash re-asks every device in a non-final state what it holds before
sending anything, so no completed download is sent again and a half-sent wave resumes.
"""
import asyncio
import math
import time

from firmware_slots.host.campaign import CampaignError, budget, store as S
from firmware_slots.host.campaign.agentctl import FW, FleetController, UspFailure, describe, subscribe
from firmware_slots.host.campaign.imageserver import ImageResource, FLUSH_S

POLL_S = 3.0          # re-ask a busy device this often even without a notification
MAX_DL_TRIES = 3      # Download() attempts per device before download_failed
RESEND_S = 8.0        # a device still on the old image this long after its switch gets it again
GET_TRIES = 4         # unanswered Gets in a row before a device counts as unreachable
SV = "Device.DeviceInfo.SoftwareVersion"
ACTIVE = "Device.DeviceInfo.ActiveFirmwareImage"
BOOT = "Device.DeviceInfo.BootFirmwareImage"


def wave_sizes(spec, n):
    """'5,20%,50%' -> sizes covering n devices (the last size repeats)."""
    out = []
    parts = [p.strip() for p in str(spec).split(",") if p.strip()]
    if not parts:
        raise CampaignError("waves: give sizes like 5,20%%,100%%")
    sizes = []
    for p in parts:
        try:
            v = math.ceil(n * float(p[:-1]) / 100) if p.endswith("%") else int(p)
        except ValueError:
            raise CampaignError("waves: %r is not a count or a percentage" % p)
        if v <= 0 and n:
            raise CampaignError("waves: %r selects no device" % p)
        sizes.append(max(1, v))
    left, i = n, 0
    while left > 0:
        s = min(left, sizes[min(i, len(sizes) - 1)])
        out.append(s)
        left -= s
        i += 1
    return out


class Campaign:
    def __init__(self, st, log=None):
        self.st = st
        self.cfg = st.config
        if self.cfg is None:
            raise CampaignError("%s holds no campaign configuration" % st.path)
        self.log = log or (lambda s: None)
        with open(self.cfg["image"], "rb") as f:
            self.image = f.read()
        import hashlib
        if hashlib.sha256(self.image).hexdigest() != self.cfg["sha256"]:
            raise CampaignError("%s changed since the campaign was created (SHA-256 differs)" % self.cfg["image"])
        self.by_eid = {}
        self.pokes = {}
        self.faults = {}  # device -> the last failed TransferComplete!'s "FaultCode FaultString"
        self.inflight = 0
        self.ctl = None
        self.res = None

    # -- plumbing -----------------------------------------------------------------------
    def _on_notify(self, eid, msg):
        dev = self.by_eid.get(eid)
        kind, d = describe(msg)
        d = {k: v for k, v in d.items() if k not in ("ParameterMap", "Requestor", "StartTime", "CompleteTime")}
        self.st.event(dev, kind, d)
        if d.get("FaultCode") not in (None, "", "0"):  # why a Download() failed, for the device's detail
            self.faults[dev] = "%s %s" % (d["FaultCode"], d.get("FaultString", ""))
        ev = self.pokes.get(dev)
        if ev is not None:
            ev.set()

    async def _poke_or_timeout(self, dev, t):
        ev = self.pokes.setdefault(dev, asyncio.Event())
        try:
            await asyncio.wait_for(ev.wait(), t)
        except asyncio.TimeoutError:
            pass
        ev.clear()

    async def _get(self, d, paths):
        """Get with retries; -> params dict, or None once GET_TRIES attempts went unanswered."""
        for i in range(GET_TRIES):
            try:
                async with self.req_sem:
                    return await self.ctl.get_params(d["uri"], d["eid"], paths, self.cfg["usp_timeout"])
            except UspFailure:
                raise
            except Exception as e:  # timeouts and aiocoap's own errors (ICMP unreachable, retransmits)
                d["last_error"] = "%s %s" % (type(e).__name__, str(e)[:80])
                await asyncio.sleep(min(POLL_S, 0.5 * (i + 1)))
        return None

    async def _flusher(self):
        while True:
            await asyncio.sleep(FLUSH_S)
            self._flush()

    def _flush(self):
        if self.res is None:
            return
        ps, pd = self.res.take_counts()
        if ps or pd:
            self.st.add_bw(ps, pd)
        self.st.sample_inflight(time.time(), self.inflight)

    # -- the run --------------------------------------------------------------------------
    async def run(self):
        import aiocoap
        import aiocoap.resource as resource
        cfg = self.cfg
        for d in self.st.devices():
            self.by_eid[d["eid"]] = d["id"]
        self.req_sem = asyncio.Semaphore(cfg["requests"])
        self.dl_sem = asyncio.Semaphore(cfg["concurrency"])
        self.bucket = budget.TokenBucket(cfg["budget"])
        self.res = ImageResource(self.image, self.bucket)
        site = resource.Site()
        site.add_resource(["fw"], self.res)
        try:
            img_ctx = await aiocoap.Context.create_server_context(site, bind=(cfg["host"], cfg["image_port"]))
        except OSError as e:
            raise CampaignError("cannot serve the image on %s:%d: %s" % (cfg["host"], cfg["image_port"], e))
        self.ctl = FleetController(cfg["controller_id"], cfg["host"], cfg["controller_port"], self._on_notify)
        try:
            await self.ctl.start()
        except OSError as e:
            await img_ctx.shutdown()
            raise CampaignError("cannot listen on %s:%d: %s" % (cfg["host"], cfg["controller_port"], e))
        flusher = asyncio.ensure_future(self._flusher())
        try:
            phase = self.st.get("phase", "created")
            if phase in ("created", "distribute"):
                self.st.put("phase", "distribute")
                await self.distribute()
                self.st.put("phase", "switch")
                phase = "switch"
            if phase == "switch":
                halted = await self.switch()
                self.st.put("phase", "halted" if halted else "done")
        finally:
            flusher.cancel()
            self._flush()
            await self.ctl.close()
            await img_ctx.shutdown()
        return self.st.get("phase")

    # -- distribute -----------------------------------------------------------------------
    async def distribute(self):
        t0 = self.st.get("dist_t0")
        if t0 is None:
            t0 = time.time()
            self.st.put("dist_t0", t0)
        devs = self.st.devices()
        offs = budget.spread(len(devs), self.cfg["window"])
        jobs = []
        for d, off in zip(devs, offs):
            if d["state"] in ("pending", "downloading"):
                jobs.append(self._download(d, t0 + off))
        self.log("distribute: %d devices to go, window %.0f s, budget %d B/s, %d at once" % (
            len(jobs), self.cfg["window"], self.cfg["budget"], self.cfg["concurrency"]))
        await asyncio.gather(*jobs)

    def _url(self, d):
        c = self.cfg
        if c.get("url"):  # served elsewhere: no budget of ours, no block counts
            return c["url"]
        return "coap://%s:%d/fw?d=%d" % (c["host"], c["image_port"], d["id"])

    def _pick(self, p):
        """-> (row number holding the new image or None, free row number or None)."""
        new = self.cfg["version"]
        active, boot = p.get(ACTIVE, ""), p.get(BOOT, "")
        have = free = None
        i = 1
        while FW + "%d.Status" % i in p:
            row = FW + "%d" % i
            if p[row + ".Status"] == "Available" and p.get(row + ".Version") == new and row != active:
                have = i
            elif row not in (active, boot) and free is None:
                free = i
            i += 1
        return have, free

    async def _download(self, d, at):
        i = d["id"]
        wait = at - time.time()
        if wait > 0 and d["state"] == "pending":
            await asyncio.sleep(wait)
        async with self.dl_sem:
            self.inflight += 1
            try:
                await self._download_one(d)
            except UspFailure as e:
                self._final(i, "download_failed", detail=str(e)[:200])
            except Exception as e:  # one device's trouble never stops the fleet
                self._final(i, "unreachable", detail="%s: %s" % (type(e).__name__, str(e)[:150]))
            finally:
                self.inflight -= 1

    async def _download_one(self, d):
        i, cfg, st = d["id"], self.cfg, self.st
        paths = [SV, ACTIVE, BOOT, FW + "*.Status", FW + "*.Version"]
        tries = 0
        while True:
            p = await self._get(d, paths)
            if p is None:
                return self._final(i, "unreachable", detail="no answer to Get during distribution (%s)"
                                   % d.get("last_error"))
            if p.get(SV) == cfg["version"]:
                return self._final(i, "updated", version=p.get(SV), detail="already running the new version")
            have, free = self._pick(p)
            if have is not None:
                st.set_device(i, state="downloaded", slot=have, t_dl1=time.time())
                return
            row = d["slot"]
            if d["state"] == "downloading" and row and p.get(FW + "%d.Status" % row) in ("Downloading", "Validating"):
                pass  # resumed run: the agent is still pulling (it reconnects to our image port)
            else:
                if tries >= MAX_DL_TRIES:
                    why = p.get(FW + "%d.Status" % row, "?") if row else "no free row"
                    fault = self.faults.get(i)
                    return self._final(i, "download_failed", detail="gave up after %d tries (%s%s)" % (
                        tries, why, ": " + fault if fault else ""))
                if free is None:
                    return self._final(i, "download_failed", detail="no row that is neither Active nor Boot")
                if not d["subs"]:
                    try:  # notifications only speed things up: Gets decide
                        await self._subscribe(d)
                        st.set_device(i, subs=1)
                        d["subs"] = 1
                    except Exception as e:
                        st.event(i, "subscribe failed", "%s %s" % (type(e).__name__, str(e)[:150]))
                row = free
                # committed before the request: a crash now leaves a row that the next run re-checks
                st.set_device(i, state="downloading", slot=row, t_dl0=time.time())
                d["state"], d["slot"] = "downloading", row
                tries += 1
                st.bump(i, "dl_issued")
                try:
                    async with self.req_sem:
                        await self.ctl.operate(d["uri"], d["eid"], FW + "%d.Download()" % row, {
                            "URL": self._url(d), "AutoActivate": "false", "FileSize": str(len(self.image)),
                            "CheckSumAlgorithm": "SHA-256", "CheckSum": cfg["sha256"]},
                            key=cfg["key"] + "-dl", timeout=cfg["usp_timeout"])
                    st.event(i, "Download()", "FirmwareImage.%d" % row)
                except UspFailure:
                    raise
                except Exception as e:  # unanswered: it may have started; the row's Status tells
                    st.event(i, "Download() unanswered", type(e).__name__)
            if await self._wait_download(d, row):
                st.set_device(i, state="downloaded", t_dl1=time.time())
                return

    async def _wait_download(self, d, row):
        """-> True when `row` holds the new image, False when the download failed (retry)."""
        deadline = time.time() + self.cfg["dl_timeout"]
        path = FW + "%d." % row
        while time.time() < deadline:
            await self._poke_or_timeout(d["id"], POLL_S)
            p = await self._get(d, [path + "Status", path + "Version"])
            if p is None:
                continue
            s = p.get(path + "Status")
            if s == "Available" and p.get(path + "Version") == self.cfg["version"]:
                return True
            if s not in ("Downloading", "Validating"):
                return False
        return False

    async def _subscribe(self, d):
        ctl, uri, eid = self.ctl, d["uri"], d["eid"]
        async with self.req_sem:
            for nt, ref in (("OperationComplete", FW + "*."), ("Event", "Device.LocalAgent.TransferComplete!"),
                            ("Event", "Device.Boot!"), ("ValueChange", SV)):
                await asyncio.wait_for(subscribe(ctl, uri, nt, ref, agent_id=eid), self.cfg["usp_timeout"])

    def _final(self, i, state, **cols):
        self.st.set_device(i, state=state, t_done=time.time(), **cols)
        self.st.event(i, state, cols.get("detail", ""))

    # -- switch + verify ----------------------------------------------------------------
    async def switch(self):
        """-> True when a wave crossed the halt threshold."""
        cfg, st = self.cfg, self.st
        # a wave a crash interrupted comes first
        for w in st.waves():
            if w["t1"] is None:
                if await self._wave(w["n"], st.devices("switching")):
                    return True
        ready = sorted(st.devices("downloaded"), key=lambda d: (d["grp"] or "", d["id"]))
        sizes = wave_sizes(cfg["waves"], len(ready))
        n = len(st.waves())
        k = 0
        for size in sizes:
            n += 1
            batch = ready[k:k + size]
            k += size
            with st.tx():
                st.put_wave(n, t0=time.time(), size=len(batch))
                for d in batch:
                    st.set_device(d["id"], state="switching", wave=n, t_sw=time.time(), sent=0)
            for d in batch:
                d["state"], d["wave"], d["sent"] = "switching", n, 0
            if await self._wave(n, batch):
                return True
        return False

    async def _wave(self, n, batch):
        self.log("switch: wave %d, %d devices (%s)" % (n, len(batch), self.cfg["method"]))
        await asyncio.gather(*(self._switch_one(d) for d in batch))
        c = {"updated": 0, "fell_back": 0, "unreachable": 0}
        for d in batch:
            s = self.st.device(d["id"])["state"]
            if s in c:
                c[s] += 1
        size = max(1, len(batch))
        halted = c["fell_back"] / size > self.cfg["halt_ratio"]
        self.st.put_wave(n, t1=time.time(), halted=int(halted), **c)
        if halted:
            why = "wave %d: %d of %d devices fell back (> %.0f%%)" % (n, c["fell_back"], len(batch),
                                                                    100 * self.cfg["halt_ratio"])
            self.st.put("halt", why)
            self.log("HALT " + why)
        return halted

    async def _switch_one(self, d):
        path = FW + "%d" % d["slot"]
        if not d["sent"]:
            if not await self._still_ready(d, path):
                return
            await self._send_switch(d, path)
        await self._verify(d, path)

    async def _send_switch(self, d, path):
        """Activate() or Set + Reboot(); -> True once the agent accepted it."""
        i, cfg = d["id"], self.cfg
        try:
            async with self.req_sem:
                if cfg["method"] == "activate":
                    await self.ctl.operate(d["uri"], d["eid"], path + ".Activate()", {
                        "TimeWindow.1.Start": "0", "TimeWindow.1.End": str(int(cfg["switch_window"])),
                        "TimeWindow.1.Mode": "AnyTime", "TimeWindow.1.MaxRetries": "0"},
                        key=cfg["key"] + "-sw", timeout=cfg["usp_timeout"])
                else:
                    await self.ctl.set_param(d["uri"], d["eid"], "Device.DeviceInfo.", "BootFirmwareImage",
                                             path, cfg["usp_timeout"])
                    await self.ctl.operate(d["uri"], d["eid"], "Device.Reboot()", {
                        "Cause": "RemoteReboot", "Reason": "campaign " + cfg["key"]},
                        key=cfg["key"] + "-sw", timeout=cfg["usp_timeout"])
        except UspFailure as e:
            if "pending Activate" not in str(e):  # an earlier, unanswered Activate() did arrive
                self.st.event(i, "switch refused", str(e)[:200])
                return False
        except Exception as e:  # unanswered: _verify re-sends while the device stays on the old image
            self.st.event(i, "switch unanswered", "%s %s" % (type(e).__name__, str(e)[:150]))
            return False
        d["sent"] = 1
        self.st.set_device(i, sent=1)
        self.st.event(i, "switch", cfg["method"])
        return True

    async def _still_ready(self, d, path):
        p = await self._get(d, [SV, path + ".Status", path + ".Version"])
        if p is None:
            self._final(d["id"], "unreachable", detail="no answer before the switch")
            return False
        if p.get(SV) == self.cfg["version"]:
            self._final(d["id"], "updated", version=p[SV], detail="already on the new version")
            return False
        return True

    async def _verify(self, d, path):
        i = d["id"]
        new = self.cfg["version"]
        deadline = time.time() + self.cfg["verify_timeout"]
        resend_at = time.time() + (RESEND_S if d["sent"] else 0)
        resends = 0
        last = None
        while time.time() < deadline:
            await self._poke_or_timeout(i, POLL_S)
            try:
                async with self.req_sem:
                    p = await self.ctl.get_params(d["uri"], d["eid"], [SV, ACTIVE, path + ".Status",
                                                                       path + ".BootFailureLog"], 3)
            except Exception as e:  # rebooting: no answer yet
                last = "%s" % (type(e).__name__,)
                continue
            last = p
            if p.get(SV) == new and p.get(ACTIVE) == path:
                return self._final(i, "updated", version=new)
            if p.get(path + ".Status") == "ActivationFailed" and p.get(SV) != new:
                return self._final(i, "fell_back", version=p.get(SV), boot_log=p.get(path + ".BootFailureLog", ""))
            if p.get(path + ".Status") == "Available" and time.time() > resend_at and resends < 2:
                # answering, still on the old image, nothing failed: the switch was lost
                resends += 1
                resend_at = time.time() + RESEND_S
                await self._send_switch(d, path)
        self._final(i, "unreachable", detail="not classified within %.0f s (last: %s)" % (
            self.cfg["verify_timeout"], str(last)[:150]))
