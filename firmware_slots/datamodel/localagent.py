"""Device.LocalAgent.: EndpointID, Controller.{i}. (MTP.{i}.CoAP., BootParameter.{i}.),
Subscription.{i}. and Request.{i}., kept in state section AGENT.

Persisted through the state's agent handle (meta.agent / agent_update; which tables
exist is state.py's table), bounded so one journal record stays well under a sector:
every row and value is charged against left() (the journal's real record capacity less
the other sections' worst case, state.MetaStore.agent_budget, less what the tables take as
flush() would write them, RAM-only rows included) before it changes, and refused with
7005 when it does not fit, leaving the tables as they were.
The row formats are this module's own:
    'c' {inst: controller}  controller = {'al','e' EndpointID,'en','u' last reply-to,
                            't' 1: added by a trusted controller under a trust policy (vouched),
                            'm' {inst: {'al','en','p' Protocol,'h','po','pa'}},
                            'b' {inst: {'al','en','n' ParameterName}}}
    's' {inst: subscription} persistent ones only: {'al','en','r' controller inst,'id',
                            'cd' creation time,'nt','rl','p','tl','nr','ne'}
    'q' {inst: request}     {'al','o' originator,'c' command path,'k' command key,
                            's' status,'x' command state (commands.py)}
    'n' {obj idx: next instance number}
"""

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

from firmware_slots.core.state import (A_CONTROLLERS, A_SUBS, A_REQUESTS, A_NEXT,
                                       encoded_size, FIXED_MAX, ID_MAX, URL_MAX, too_long)
from firmware_slots.datamodel import dm  # its ids and error codes by attribute: no global per name here

# Row caps per table (the agent section's CBOR stays within state.AGENT_MAX besides):
# private consts, folded into the code (no module globals on the device)
MAX_CONTROLLERS = 4
_MAX_MTPS = const(2)
_MAX_BOOT_PARAMS = const(4)
_MAX_SUBSCRIPTIONS = const(8)
_MAX_REQUESTS = const(4)
# a Controller's EndpointID is bounded by state.ID_MAX (TR-181 string(64); TR-369 gives none)
_REQ_GROWTH = const(24)  # what a request row gains after its Add: 'rs' resumes, 'tc' times (usp/commands.py)
_STATUSES = const(("Requested", "Active", "Canceling", "Canceled", "Success", "Error"))  # Request Status
_CT_PATH = const("Device.LocalAgent.Controller.")

# TR-181 parameter name -> stored key, the same in every table that has it (Alias is 'al' in
# all, Protocol and Persistent are both 'p' in theirs): name, key, ... One ROM tuple, no dicts.
_KEYS = const((
    "Alias", "al", "Enable", "en", "EndpointID", "e", "USPNotifRetryMinimumWaitInterval", "rw",
    "USPNotifRetryIntervalMultiplier", "rm",                            # Controller
    "Protocol", "p", "Host", "h", "Port", "po", "Path", "pa",           # MTP, its CoAP.
    "ParameterName", "n",                                               # BootParameter
    "ID", "id", "CreationDate", "cd", "NotifType", "nt", "ReferenceList", "rl", "Persistent", "p",
    "TimeToLive", "tl", "NotifRetry", "nr", "NotifExpiration", "ne",    # Subscription
    "Originator", "o", "Command", "c", "CommandKey", "k",               # Request
))
# A new row's stored defaults (key, value, ...; TR-181's NotifRetry defaults for a
# Controller); a Controller row also gets its own empty 'm' and 'b' tables (_new_row)
_CT_DEFAULTS = const(("e", "", "en", True, "rw", 5, "rm", 2000))
_MTP_DEFAULTS = const(("en", True, "p", "CoAP", "h", "", "po", 5683, "pa", ""))
_BP_DEFAULTS = const(("en", False, "n", ""))
_SUB_DEFAULTS = const(("en", False, "nt", "", "rl", "", "p", False, "tl", 0, "nr", False, "ne", 0, "id", ""))


def _key(name):
    """The stored key of parameter `name` (_KEYS)."""
    for j in range(0, len(_KEYS), 2):
        if _KEYS[j] == name:
            return _KEYS[j + 1]
    raise dm.UspError(dm.E_INTERNAL, name)


def _defaults(idx):
    return (_CT_DEFAULTS if idx == dm.CT_ID else _MTP_DEFAULTS if idx == dm.MTP_ID else _BP_DEFAULTS if idx == dm.BP_ID
            else _SUB_DEFAULTS if idx == dm.SUB_ID else ())


def _default(idx, k):
    """Table idx's default for stored key k ("" when it has none)."""
    d = _defaults(idx)
    for j in range(0, len(d), 2):
        if d[j] == k:
            return d[j + 1]
    return ""


def _new_row(idx):
    d = _defaults(idx)
    row = {}
    for j in range(0, len(d), 2):
        row[d[j]] = d[j + 1]
    if idx == dm.CT_ID:
        row["m"] = {}
        row["b"] = {}
    return row


def _persistent(subs):
    # the Subscription rows the journal keeps: the Persistent ones
    ps = {}
    for i in subs:
        if subs[i].get("p"):
            ps[i] = subs[i]
    return ps


def _row_bytes(row):
    # a row's CBOR in its table: the row, its instance number (< 65536) and, the first
    # time its table numbers one, an A_NEXT entry
    return encoded_size(row) + 3 + 8


class LocalAgent:
    """Backend for Device.LocalAgent. and its tables (PATHS), and their persisted rows."""

    PATHS = ("Device.LocalAgent.", "Device.LocalAgent.Controller.{i}.",
             "Device.LocalAgent.Controller.{i}.MTP.{i}.", "Device.LocalAgent.Controller.{i}.MTP.{i}.CoAP.",
             "Device.LocalAgent.Controller.{i}.BootParameter.{i}.",
             "Device.LocalAgent.Subscription.{i}.", "Device.LocalAgent.Request.{i}.",
             "Device.LocalAgent.ControllerTrust.", "Device.LocalAgent.ControllerTrust.Role.{i}.",
             "Device.LocalAgent.ControllerTrust.Role.{i}.Permission.{i}.")
    KEYS = {dm.CT_ID: "Alias EndpointID"}  # unique keys besides Alias (dm.Model.unique_keys)

    def __init__(self, meta, endpoint_id, platform):
        self.meta = meta
        self.endpoint_id = endpoint_id
        self.platform = platform
        self.ctrls = meta.agent(A_CONTROLLERS) or {}
        self.subs = dict(meta.agent(A_SUBS) or {})  # persistent ones; the rest live only in RAM
        self.reqs = meta.agent(A_REQUESTS) or {}
        self.next = meta.agent(A_NEXT) or {}
        self.dirty = set()
        self.lazy = False  # a controller row or reply-to changed: persisted with the next real write
        self.current = None  # controller instance of the message being handled
        self.role_of = lambda eid: 1  # the agent's policy: EndpointID -> ControllerTrust role

    # -- persistence --------------------------------------------------------------
    def flush(self):
        """Write every changed table as one journal record."""
        if not self.dirty:
            return
        if self.lazy:
            self.dirty.add(A_CONTROLLERS)
            self.dirty.add(A_NEXT)
            self.lazy = False
        ch = {}
        for k in self.dirty:
            if k == A_SUBS:
                ch[A_SUBS] = _persistent(self.subs)
            else:
                ch[k] = self.ctrls if k == A_CONTROLLERS else self.reqs if k == A_REQUESTS else self.next
        self.dirty = set()
        self.meta.agent_update(ch)

    def left(self):
        """Bytes the tables may still grow by: the agent's budget (state.MetaStore.agent_budget:
        what one snapshot record holds less the worst case of the device and slot sections)
        less the boot notes' worst case (FIXED_MAX) less the tables as flush() would write
        them now, RAM-only (lazy) rows and this message's earlier changes included."""
        # that map's size counted by parts (its head and four 1-character keys: 9 bytes; at most
        # _MAX_SUBSCRIPTIONS < 24 rows, a 1-byte head): no dict built per check
        used = 10 + encoded_size(self.ctrls) + encoded_size(self.reqs) + encoded_size(self.next)
        for i in self.subs:
            if self.subs[i].get("p"):
                used += encoded_size(i) + encoded_size(self.subs[i])
        return self.meta.agent_budget() - FIXED_MAX - used

    def room(self, extra=0):
        """UspError 7005 when the persisted tables plus `extra` bytes would not fit (left())."""
        left = self.left()
        if extra > left:
            raise dm.UspError(dm.E_RESOURCES, "agent state is full: %d more bytes, %d left of %d" % (
                extra, max(left, 0), self.meta.agent_budget()))

    def mark(self):
        """The bookkeeping an Add changes besides its row (instance counters, pending writes)."""
        return dict(self.next), set(self.dirty), self.lazy

    def rollback(self, mark):
        """Put that bookkeeping back after the Add was taken back: a refused Add leaves
        nothing behind, not even a used instance number or a journal write."""
        self.next.clear()  # in place: the state's A_NEXT may be this very dict
        self.next.update(mark[0])
        self.dirty, self.lazy = set(mark[1]), mark[2]

    def new_inst(self, idx, scope=""):
        key = "%d%s" % (idx, scope)
        n = self.next.get(key, 1)
        self.next[key] = n + 1
        self.dirty.add(A_NEXT)
        return n

    # -- controllers ----------------------------------------------------------------
    def controller_by_eid(self, eid):
        for i in self.ctrls:
            if self.ctrls[i].get("e") == eid:
                return i
        return None

    def vouched(self, eid):
        """True when eid's row was added by a trusted controller under a trust policy (not
        auto-created on first contact, e.g. for a certificate's name, nor made while the door
        was open): only such a row trusts the EndpointID alone, on any MTP."""
        i = self.controller_by_eid(eid)
        return i is not None and bool(self.ctrls[i].get("t"))

    def seen(self, eid, reply_to):
        """Note a message from controller eid; creates its row on first contact (never vouched).

        UspError 7005, with nothing changed, when the EndpointID or reply-to is longer
        than its bound or the new row would not fit the state budget (room())."""
        if too_long(eid, ID_MAX):
            raise dm.UspError(dm.E_RESOURCES, "EndpointID of %d characters exceeds %d bytes" % (len(eid), ID_MAX))
        if reply_to and too_long(reply_to, URL_MAX):
            raise dm.UspError(dm.E_RESOURCES, "reply-to of %d characters exceeds %d bytes" % (len(reply_to), URL_MAX))
        i = self.controller_by_eid(eid)
        if i is None:
            if len(self.ctrls) >= MAX_CONTROLLERS:
                v = self._disposable()
                if v is None:
                    self.current = None
                    return None
            else:
                v = None
            c = _new_row(dm.CT_ID)
            c["e"] = eid
            c["al"] = "cpe-%d" % self.next.get(str(dm.CT_ID), 1)
            if reply_to:
                c["u"] = reply_to
            n = _row_bytes(c)
            if v is not None:  # the row that gives way frees its bytes
                n -= _row_bytes(self.ctrls[v])
            self.room(n)
            if v is not None:
                # a row nothing refers to gives way: the table is not first-come
                self._forget_next(v)
                self.ctrls.pop(v)
            n_dirty = A_NEXT in self.dirty
            i = self.new_inst(dm.CT_ID)
            if not n_dirty:
                self.dirty.discard(A_NEXT)
            self.ctrls[i] = c
            # RAM only until something else is written: a stream of new from_ids (a fuzzer,
            # a misconfigured fleet) costs no journal write each
            self.lazy = True
        c = self.ctrls[i]
        if reply_to and c.get("u") != reply_to:
            self.room(encoded_size(reply_to) - encoded_size(c.get("u") or ""))
            # RAM only until something else is written: a Get with a new reply-to port
            # (every aiocoap client, a fuzzer) must not cost a journal write each
            c["u"] = reply_to
            self.lazy = True
        self.current = i
        return i

    def _forget_next(self, ct):
        # the instance counters of a deleted controller's MTP and BootParameter rows go with it
        for idx in (dm.MTP_ID, dm.BP_ID):
            self.next.pop("%d.%d" % (idx, ct), None)

    def _disposable(self):
        """A Controller row made on first contact that nothing refers to (no MTP, no
        BootParameter, no Subscription, no Request): the oldest such, or None."""
        for i in sorted(self.ctrls):
            c = self.ctrls[i]
            if c.get("m") or c.get("b"):
                continue
            if any(s.get("r") == i for s in self.subs.values()):
                continue
            if any(r.get("o") == c.get("e") for r in self.reqs.values()):
                continue
            return i
        return None

    def controller_uri(self, eid):
        i = self.controller_by_eid(eid)
        if i is None:
            return None
        c = self.ctrls[i]
        m = c.get("m", {})
        for j in sorted(m):
            t = m[j]
            if t.get("en", True) and t.get("p", "CoAP") == "CoAP" and t.get("h"):
                path = t.get("pa", "")
                if path and not path.startswith("/"):
                    path = "/" + path
                host = t["h"]
                if ":" in host and not host.startswith("["):
                    host = "[" + host + "]"
                return "coap://%s:%d%s" % (host, t.get("po", 5683), path)
        return c.get("u")

    def controller_eid(self, inst):
        c = self.ctrls.get(inst)
        return c.get("e") if c else None

    # -- backend ----------------------------------------------------------------------
    def _row(self, idx, keys):
        """The stored dict of a row (KeyError -> 7016)."""
        try:
            if idx in (dm.CT_ID, dm.MTP_ID, dm.COAP_ID, dm.BP_ID):
                c = self.ctrls[keys[0]]
                if idx == dm.CT_ID:
                    return c
                if idx == dm.BP_ID:
                    return c["b"][keys[1]]
                return c["m"][keys[1]]
            if idx == dm.SUB_ID:
                return self.subs[keys[0]]
            if idx == dm.REQ_ID:
                return self.reqs[keys[0]]
        except KeyError:
            pass
        raise dm.UspError(dm.E_NO_OBJECT, "no such object")

    def insts(self, idx, keys):
        if idx == dm.CT_ID:
            return sorted(self.ctrls)
        if idx == dm.MTP_ID:
            return sorted(self.ctrls[keys[0]]["m"])
        if idx == dm.BP_ID:
            return sorted(self.ctrls[keys[0]]["b"])
        if idx == dm.SUB_ID:
            return sorted(self.subs)
        if idx == dm.REQ_ID:
            return sorted(self.reqs)
        if idx == dm.ROLE_ID or idx == dm.PERM_ID:
            from firmware_slots.datamodel import trust
            n = len(trust.ROLES) if idx == dm.ROLE_ID else len(trust.ROLES[keys[0] - 1][1])
            return list(range(1, n + 1))
        return []

    def get(self, idx, keys, name):
        if idx in (dm.TRUST_ID, dm.ROLE_ID, dm.PERM_ID) or (idx == dm.CT_ID and name == "AssignedRole"):
            return self._trust(idx, keys, name)
        if idx == dm.LA_ID:
            if name == "EndpointID":
                return self.endpoint_id
            if name == "SupportedProtocols":
                return "CoAP"
            if name == "ControllerNumberOfEntries":
                return len(self.ctrls)
            if name == "SubscriptionNumberOfEntries":
                return len(self.subs)
            if name == "RequestNumberOfEntries":
                return len(self.reqs)
            raise dm.UspError(dm.E_INTERNAL, name)
        r = self._row(idx, keys)
        if name == "MTPNumberOfEntries":
            return len(r["m"])
        if name == "BootParameterNumberOfEntries":
            return len(r["b"])
        if idx == dm.SUB_ID and name == "Recipient":
            return _CT_PATH + str(r["r"]) if r.get("r") else ""
        if idx == dm.SUB_ID and name == "CreationDate":
            return dm.iso_time(r.get("cd", 0))
        if idx == dm.REQ_ID and name == "Status":
            return _STATUSES[r.get("s", 0)]
        k = _key(name)
        if k == "al" and "al" not in r:
            return "cpe-%d" % keys[-1]
        return r[k] if k in r else _default(idx, k)

    def _trust(self, idx, keys, name):
        # ControllerTrust. read from trust.ROLES; AssignedRole from the agent's policy
        from firmware_slots.datamodel import trust
        role = "Device.LocalAgent.ControllerTrust.Role.%d"
        if idx == dm.CT_ID:
            return role % self.role_of(self._row(idx, keys).get("e", ""))
        if idx == dm.TRUST_ID:
            return role % trust.UNTRUSTED if name == "UntrustedRole" else len(trust.ROLES)
        r = trust.ROLES[keys[0] - 1]
        if idx == dm.ROLE_ID:
            if name == "PermissionNumberOfEntries":
                return len(r[1])
            return r[0] if name == "Name" else True if name == "Enable" else "cpe-role-%d" % keys[0]
        p = r[1][keys[1] - 1]
        if name == "Targets":
            return ",".join(p[1])
        if name == "Order":
            return p[0]
        if name == "Enable":
            return True
        if name == "Alias":
            return "cpe-perm-%d" % keys[1]
        return p[("Param", "Obj", "InstantiatedObj", "CommandEvent").index(name) + 2]

    def set(self, idx, keys, name, value):
        r = self._row(idx, keys)
        k = _key(name)
        if isinstance(value, str) and len(value) > 256:
            raise dm.UspError(dm.E_VALUE, "%s is longer than 256 characters" % name)
        if k == "al" or (idx == dm.CT_ID and k == "e") or (idx == dm.SUB_ID and k == "id"):
            if k == "al" and (not value or value[0].isdigit() or len(value) > 64):
                raise dm.UspError(dm.E_VALUE, "Alias must be 1..64 characters, not starting with a digit")
            if k != "al" and not value:
                raise dm.UspError(dm.E_VALUE, "%s cannot be empty" % name)
            table = self._table(idx, keys)
            for j in table:
                if j != keys[-1] and table[j].get(k) == value and (
                        k != "id" or table[j].get("r") == r.get("r")):
                    raise dm.UspError(dm.E_VALUE, "%s %r is already used" % (name, value))
        if idx == dm.CT_ID and k == "e" and too_long(value, ID_MAX):
            raise dm.UspError(dm.E_RESOURCES, "EndpointID of %d characters exceeds %d bytes" % (len(value), ID_MAX))
        if idx == dm.MTP_ID and k == "p" and value != "CoAP":
            raise dm.UspError(dm.E_VALUE, "only the CoAP MTP is supported")
        if idx == dm.COAP_ID and k == "po" and not 0 < value < 65536:
            raise dm.UspError(dm.E_VALUE, "Port must be 1..65535")
        if (k == "rw" and not 0 < value < 65536) or (k == "rm" and not 1000 <= value < 65536):
            raise dm.UspError(dm.E_VALUE, "%s must be %s..65535" % (name, "1" if k == "rw" else "1000"))
        if idx != dm.SUB_ID or r.get("p"):  # only persisted rows count against the journal
            self.room(encoded_size(value) - encoded_size(r.get(k, "")))
        elif k == "p" and value:  # a subscription made persistent: its whole row joins the journal
            self.room(_row_bytes(dict(r, p=True)))
        r[k] = value
        self.dirty.add(A_SUBS if idx == dm.SUB_ID else A_REQUESTS if idx == dm.REQ_ID else A_CONTROLLERS)

    def _table(self, idx, keys):
        if idx == dm.CT_ID:
            return self.ctrls
        if idx == dm.MTP_ID:
            return self.ctrls[keys[0]]["m"]
        if idx == dm.BP_ID:
            return self.ctrls[keys[0]]["b"]
        if idx == dm.SUB_ID:
            return self.subs
        return self.reqs

    def add(self, idx, keys, vouched=False):
        """Create a row with defaults under parent keys; returns its instance number.
        vouched: a Controller row a trusted controller adds under a trust policy (see vouched())."""
        if idx == dm.CT_ID:
            table, cap, scope = self.ctrls, MAX_CONTROLLERS, ""
        elif idx in (dm.MTP_ID, dm.BP_ID):
            table = self._table(idx, keys)
            cap, scope = (_MAX_MTPS if idx == dm.MTP_ID else _MAX_BOOT_PARAMS), ".%d" % keys[0]
        elif idx == dm.SUB_ID:
            table, cap, scope = self.subs, _MAX_SUBSCRIPTIONS, ""
        else:
            raise dm.UspError(dm.E_NOT_CREATABLE, "not creatable")
        if len(table) >= cap:
            raise dm.UspError(dm.E_RESOURCES, "at most %d rows in this table" % cap)
        row = _new_row(idx)
        if idx == dm.CT_ID and vouched:
            row["t"] = 1
        if idx == dm.SUB_ID:  # RAM only (not Persistent) until a Set makes it so
            row["r"] = self.current or 0
            row["cd"] = int(self.platform.now_s())
        else:
            self.room(_row_bytes(row))
        i = self.new_inst(idx, scope)
        if idx == dm.SUB_ID:
            row["id"] = "%d-%x" % (i, row["cd"] & 0xFFFFFF)
        table[i] = row
        self.dirty.add(A_SUBS if idx == dm.SUB_ID else A_CONTROLLERS)
        return i

    def delete(self, idx, keys):
        table = self._table(idx, keys)
        if keys[-1] not in table:
            raise dm.UspError(dm.E_NO_OBJECT, "no such object")
        if idx == dm.CT_ID:  # its subscriptions and instance counters go with it
            for s in list(self.subs):
                if self.subs[s].get("r") == keys[0]:
                    del self.subs[s]
                    self.dirty.add(A_SUBS)
            self._forget_next(keys[0])
            self.dirty.add(A_NEXT)
        del table[keys[-1]]
        self.dirty.add(A_SUBS if idx == dm.SUB_ID else A_CONTROLLERS)

    # -- requests ---------------------------------------------------------------------
    def add_request(self, originator, command, key, state):
        if len(self.reqs) >= _MAX_REQUESTS:
            raise dm.UspError(dm.E_RESOURCES, "too many pending requests")
        row = {"o": originator, "c": command, "k": key, "s": 0, "x": state}
        self.room(_row_bytes(row) + _REQ_GROWTH)
        i = self.new_inst(dm.REQ_ID)
        self.reqs[i] = row
        self.dirty.add(A_REQUESTS)
        return i

    def update_request(self, i, status=None, state=None):
        r = self.reqs[i]
        if status is not None:
            r["s"] = status
        if state is not None:
            r["x"] = state
        self.dirty.add(A_REQUESTS)

    def drop_request(self, i):
        if i in self.reqs:
            del self.reqs[i]
            self.dirty.add(A_REQUESTS)
