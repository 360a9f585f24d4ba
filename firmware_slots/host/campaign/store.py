"""A campaign's state in one SQLite file (WAL journal).

Written by the one `run` process; every change is committed before the campaign acts on
it, so a kill -9 loses at most the step in flight, and the next `run` reconciles that
device by asking it (store.DOWNLOADING / SWITCHING rows are re-checked, never re-sent
blindly). WAL lets `status`/`report` readers run beside the writer; a reader takes one
read transaction (snapshot()) so its counts and rows agree.

Tables:

| table    | row                                                                  |
| -------- | -------------------------------------------------------------------- |
| meta     | k, v (JSON): "config" (create options, image facts), "phase", "halt" |
| devices  | id, eid, uri, grp, state, slot (1-based target row), dl_issued,      |
|          | blocks (served to it), wave, t_dl0, t_dl1, t_sw, t_done, version,    |
|          | boot_log, detail, subs (subscribed), sent (switch sent in its wave)  |
| bw       | t (whole second), bytes, blocks: image bytes served in that second   |
| inflight | t (whole second), n: downloads in flight, sampled once a second      |
| waves    | n, t0, t1, size, updated, fell_back, unreachable, halted             |
| events   | id, t, dev, kind, detail: notifications and decisions, for the report|

Device states, in campaign order:

| state           | meaning                                                        |
| --------------- | -------------------------------------------------------------- |
| pending         | nothing sent yet                                               |
| downloading     | Download() accepted (AutoActivate=false), waiting for the image|
| downloaded      | the target slot holds the new image, Available                 |
| download_failed | Download() failed MAX_DL_TRIES times (detail says why)         |
| switching       | Activate() or Set+Reboot() sent in wave `wave`                 |
| updated         | Boot! FirmwareUpdated / SoftwareVersion is the new version     |
| fell_back       | runs the old version, the target slot ActivationFailed         |
| unreachable     | no USP answer within the timeouts                              |
"""
import json
import sqlite3
import time

from firmware_slots.host.campaign import CampaignError

STATES = ("pending", "downloading", "downloaded", "download_failed", "switching",
          "updated", "fell_back", "unreachable")
FINAL = ("download_failed", "updated", "fell_back", "unreachable")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v TEXT);
CREATE TABLE IF NOT EXISTS devices (id INTEGER PRIMARY KEY, eid TEXT UNIQUE, uri TEXT, grp TEXT,
  state TEXT, slot INTEGER, dl_issued INTEGER DEFAULT 0, blocks INTEGER DEFAULT 0, wave INTEGER,
  t_dl0 REAL, t_dl1 REAL, t_sw REAL, t_done REAL, version TEXT, boot_log TEXT, detail TEXT,
  subs INTEGER DEFAULT 0, sent INTEGER DEFAULT 0);
CREATE TABLE IF NOT EXISTS bw (t INTEGER PRIMARY KEY, bytes INTEGER, blocks INTEGER);
CREATE TABLE IF NOT EXISTS inflight (t INTEGER PRIMARY KEY, n INTEGER);
CREATE TABLE IF NOT EXISTS waves (n INTEGER PRIMARY KEY, t0 REAL, t1 REAL, size INTEGER,
  updated INTEGER, fell_back INTEGER, unreachable INTEGER, halted INTEGER);
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, t REAL, dev INTEGER, kind TEXT, detail TEXT);
"""
DEV_COLS = ("id", "eid", "uri", "grp", "state", "slot", "dl_issued", "blocks", "wave", "t_dl0",
            "t_dl1", "t_sw", "t_done", "version", "boot_log", "detail", "subs", "sent")


class Store:
    def __init__(self, path, create=False, readonly=False):
        self.path = path
        if not create:
            import os
            if not os.path.exists(path):
                raise CampaignError("no campaign at %s (fwslots campaign create first)" % path)
        uri = "file:%s%s" % (path, "?mode=ro" if readonly else "")
        try:
            self.db = sqlite3.connect(uri, uri=True, timeout=10, isolation_level=None)
            if not readonly:
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process kill
                self.db.executescript(SCHEMA)
            self.db.execute("SELECT 1 FROM meta LIMIT 1")
        except sqlite3.DatabaseError as e:
            raise CampaignError("%s is not a campaign database: %s" % (path, e))

    def close(self):
        self.db.close()

    # -- meta ---------------------------------------------------------------------------
    def get(self, k, default=None):
        r = self.db.execute("SELECT v FROM meta WHERE k=?", (k,)).fetchone()
        return json.loads(r[0]) if r else default

    def put(self, k, v):
        self.db.execute("INSERT OR REPLACE INTO meta (k, v) VALUES (?, ?)", (k, json.dumps(v)))

    @property
    def config(self):
        return self.get("config")

    # -- devices ------------------------------------------------------------------------
    def add_devices(self, devs):
        with self.tx():
            for d in devs:
                self.db.execute("INSERT INTO devices (eid, uri, grp, state) VALUES (?, ?, ?, 'pending')",
                                (d["endpoint_id"], d["uri"], d.get("group", "")))

    def devices(self, state=None):
        q = "SELECT %s FROM devices" % ",".join(DEV_COLS)
        rows = self.db.execute(q + (" WHERE state=? ORDER BY id" if state else " ORDER BY id"),
                               (state,) if state else ()).fetchall()
        return [dict(zip(DEV_COLS, r)) for r in rows]

    def device(self, i):
        r = self.db.execute("SELECT %s FROM devices WHERE id=?" % ",".join(DEV_COLS), (i,)).fetchone()
        return dict(zip(DEV_COLS, r)) if r else None

    def set_device(self, i, **cols):
        for k in cols:
            if k not in DEV_COLS:
                raise KeyError(k)
        sets = ",".join("%s=?" % k for k in cols)
        self.db.execute("UPDATE devices SET %s WHERE id=?" % sets, tuple(cols.values()) + (i,))

    def bump(self, i, col, n=1):
        self.db.execute("UPDATE devices SET %s=%s+? WHERE id=?" % (col, col), (n, i))

    def counts(self):
        c = dict((s, 0) for s in STATES)
        for s, n in self.db.execute("SELECT state, COUNT(*) FROM devices GROUP BY state"):
            c[s] = n
        return c

    # -- time series and events ------------------------------------------------------
    def add_bw(self, per_second, per_device):
        """Merge {second: [bytes, blocks]} and {device id: blocks} in one transaction."""
        with self.tx():
            for t, (b, n) in per_second.items():
                self.db.execute("INSERT INTO bw (t, bytes, blocks) VALUES (?, ?, ?) ON CONFLICT(t) "
                                "DO UPDATE SET bytes=bytes+excluded.bytes, blocks=blocks+excluded.blocks",
                                (t, b, n))
            for i, n in per_device.items():
                self.bump(i, "blocks", n)

    def sample_inflight(self, t, n):
        self.db.execute("INSERT OR REPLACE INTO inflight (t, n) VALUES (?, ?)", (int(t), n))

    def event(self, dev, kind, detail=""):
        self.db.execute("INSERT INTO events (t, dev, kind, detail) VALUES (?, ?, ?, ?)",
                        (time.time(), dev, kind, detail if isinstance(detail, str) else json.dumps(detail)))

    def put_wave(self, n, **cols):
        row = dict(n=n, t0=None, t1=None, size=0, updated=0, fell_back=0, unreachable=0, halted=0)
        old = self.db.execute("SELECT n,t0,t1,size,updated,fell_back,unreachable,halted FROM waves WHERE n=?",
                              (n,)).fetchone()
        if old:
            row.update(zip(("n", "t0", "t1", "size", "updated", "fell_back", "unreachable", "halted"), old))
        row.update(cols)
        self.db.execute("INSERT OR REPLACE INTO waves VALUES (:n,:t0,:t1,:size,:updated,:fell_back,"
                        ":unreachable,:halted)", row)

    def waves(self):
        cols = ("n", "t0", "t1", "size", "updated", "fell_back", "unreachable", "halted")
        return [dict(zip(cols, r)) for r in self.db.execute("SELECT * FROM waves ORDER BY n")]

    def series(self, table):
        return self.db.execute("SELECT * FROM %s ORDER BY t" % {"bw": "bw", "inflight": "inflight"}[table]).fetchall()

    def events(self):
        return self.db.execute("SELECT t, dev, kind, detail FROM events ORDER BY id").fetchall()

    # -- consistency ------------------------------------------------------------------
    def tx(self):
        return _Tx(self.db)

    def snapshot(self):
        """Everything status/report show, read in ONE transaction (a consistent view)."""
        with _Tx(self.db, "BEGIN"):
            return {"config": self.config, "phase": self.get("phase", "created"), "halt": self.get("halt"),
                    "counts": self.counts(), "devices": self.devices(), "waves": self.waves(),
                    "bw": self.series("bw"), "inflight": self.series("inflight"), "events": self.events()}


class _Tx:
    def __init__(self, db, begin="BEGIN IMMEDIATE"):
        self.db = db
        self.begin = begin

    def __enter__(self):
        self.db.execute(self.begin)
        return self.db

    def __exit__(self, et, e, tb):
        self.db.execute("COMMIT" if et is None else "ROLLBACK")
        return False
