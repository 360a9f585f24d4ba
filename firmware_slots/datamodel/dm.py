"""Data model engine: the supported objects as compact tuples, path resolution, types.

OBJS lists every supported object as (template, flags, params, commands, events):
- template: "Device.DeviceInfo.FirmwareImage.{i}." (TR-181 supported-path form);
- flags: MULTI (a table) | ADD (controllers may Add/Delete rows);
- params: "Name:tw ..." one word per parameter, type letter s string, b boolean,
  u unsignedInt, i int, t dateTime, x hexBinary, j JSON object (a string); a trailing
  w means readWrite (else readOnly);
- commands: ((name, async, "In1 In2", "Out1"), ...); events: ((name, "Arg1 Arg2"), ...).
Strings are parsed on use, so the device keeps a few short strings, not a table of
tuples. Values come from a backend per object (see firmware.py / localagent.py):
    insts(idx, keys) -> instance numbers of table idx under parent keys
    get(idx, keys, name) -> str/bool/int;  set(idx, keys, name, value)
    add(idx, keys) -> new instance;        delete(idx, keys)
"""

try:
    from micropython import const
except ImportError:  # CPython
    def const(x):
        return x

MULTI = 1
ADD = 2
_MULTI = const(1)  # the same, folded into OBJS
_ADD = const(2)

# TR-369 error codes used by the agent (underscored: only this module raises them)
_E_FAILED = const(7000)
E_NOT_SUPPORTED = 7001
E_INTERNAL = 7003
_E_INVALID_ARGS = const(7004)
E_RESOURCES = 7005
E_PATH_SYNTAX = 7008
_E_TYPE = const(7011)
E_VALUE = 7012
_E_NOT_WRITABLE = const(7013)
E_NO_OBJECT = 7016
E_NOT_CREATABLE = 7019
E_CMD_FAILURE = 7022
E_DELETE = 7024
E_INVALID_PATH = 7026
E_CMD_ARGS = 7027

# private consts: OBJS below folds into one constant (in flash when frozen, no heap)
_FW = const("Device.DeviceInfo.FirmwareImage.{i}.")
_CT = const("Device.LocalAgent.Controller.{i}.")
_SUM = const("SHA-1 SHA-224 SHA-256 SHA-384 SHA-512")
_TR = const("Device.LocalAgent.ControllerTrust.")

OBJS = (
    ("Device.", 0, "", (("Reboot()", 0, "Cause Reason", ""),), (("Boot!", "CommandKey Cause Reason FirmwareUpdated ParameterMap"),)),
    ("Device.DeviceInfo.", 0,
     "SoftwareVersion:s ActiveFirmwareImage:s BootFirmwareImage:sw FirmwareImageNumberOfEntries:u MaxNumberOfActivateTimeWindows:u",
     (), ()),
    (_FW, _MULTI, "Alias:sw Name:s Version:s Available:bw Status:s BootFailureLog:s",
     (("Download()", 1, "URL AutoActivate Username Password FileSize CheckSumAlgorithm CheckSum", ""),
      ("Activate()", 1, "TimeWindow.{i}.Start TimeWindow.{i}.End TimeWindow.{i}.Mode TimeWindow.{i}.UserMessage TimeWindow.{i}.MaxRetries", "")),
     ()),
    ("Device.LocalAgent.", 0,
     "EndpointID:s SupportedProtocols:s ControllerNumberOfEntries:u SubscriptionNumberOfEntries:u RequestNumberOfEntries:u",
     (), (("TransferComplete!", "Command CommandKey Requestor TransferType Affected TransferURL StartTime CompleteTime FaultCode FaultString CheckSumAlgorithm CheckSum"),)),
    (_CT, _MULTI | _ADD, "Alias:sw EndpointID:sw Enable:bw AssignedRole:s MTPNumberOfEntries:u BootParameterNumberOfEntries:u "
     "USPNotifRetryMinimumWaitInterval:uw USPNotifRetryIntervalMultiplier:uw", (), ()),
    ("Device.LocalAgent.Controller.{i}.MTP.{i}.", _MULTI | _ADD, "Alias:sw Enable:bw Protocol:sw", (), ()),
    ("Device.LocalAgent.Controller.{i}.MTP.{i}.CoAP.", 0, "Host:sw Port:uw Path:sw", (), ()),
    ("Device.LocalAgent.Controller.{i}.BootParameter.{i}.", _MULTI | _ADD, "Alias:sw Enable:bw ParameterName:sw", (), ()),
    ("Device.LocalAgent.Subscription.{i}.", _MULTI | _ADD,
     "Alias:sw Enable:bw Recipient:s ID:sw CreationDate:t NotifType:sw ReferenceList:sw Persistent:bw TimeToLive:uw NotifRetry:bw NotifExpiration:uw",
     (), ()),
    ("Device.LocalAgent.Request.{i}.", _MULTI, "Alias:sw Originator:s Command:s CommandKey:s Status:s", (), ()),
    # read-only: the roles are datamodel/trust.py's ROLES, the policy the board profile's
    (_TR, 0, "UntrustedRole:s RoleNumberOfEntries:u", (), ()),
    ("Device.LocalAgent.ControllerTrust.Role.{i}.", _MULTI, "Alias:s Enable:b Name:s PermissionNumberOfEntries:u", (), ()),
    ("Device.LocalAgent.ControllerTrust.Role.{i}.Permission.{i}.", _MULTI,
     "Alias:s Enable:b Order:u Targets:s Param:s Obj:s InstantiatedObj:s CommandEvent:s", (), ()),
)


def obj_id(template):
    """The engine's id of the object with supported path `template` (resolved once, at import)."""
    for j in range(len(OBJS)):
        if OBJS[j][0] == template:
            return j
    raise ValueError("no supported object " + template)


# ids by path: no module counts positions in OBJS
FW_PATH = _FW
DEVINFO_ID = obj_id("Device.DeviceInfo.")
FW_IDX = obj_id(_FW)
LA_ID = obj_id("Device.LocalAgent.")
CT_ID = obj_id(_CT)
MTP_ID = obj_id(_CT + "MTP.{i}.")
COAP_ID = obj_id(_CT + "MTP.{i}.CoAP.")
BP_ID = obj_id(_CT + "BootParameter.{i}.")
SUB_ID = obj_id("Device.LocalAgent.Subscription.{i}.")
REQ_ID = obj_id("Device.LocalAgent.Request.{i}.")
TRUST_ID = obj_id(_TR)
ROLE_ID = obj_id(_TR + "Role.{i}.")
PERM_ID = obj_id(_TR + "Role.{i}.Permission.{i}.")

# enumerations checked on Set/Add/Operate
ENUMS = {
    "NotifType": "ValueChange ObjectCreation ObjectDeletion OperationComplete Event",
    "CheckSumAlgorithm": _SUM,
    "Mode": "AnyTime Immediately WhenIdle ConfirmationNeeded",
    "Cause": "LocalReboot RemoteReboot",
}


class UspError(Exception):
    def __init__(self, code, msg=""):
        super().__init__(msg)
        self.code = code
        self.msg = msg


def params_of(idx):
    """[(name, type letter, writable)] of object idx."""
    out = []
    for w in OBJS[idx][2].split():
        n, t = w.split(":")
        out.append((n, t[0], t[-1] == "w"))
    return out


def param_spec(idx, name):
    """(type letter, writable) of parameter `name` of object idx, or None. Read in place
    (find, not split): the Get path resolves a parameter per requested path."""
    ps = OBJS[idx][2]
    i = 0
    while True:
        i = ps.find(name, i)
        if i < 0:
            return None
        e = i + len(name)
        if (i == 0 or ps[i - 1] == " ") and e < len(ps) and ps[e] == ":":
            w = ps.find(" ", e)
            return ps[e + 1], ps[(len(ps) if w < 0 else w) - 1] == "w"
        i += 1


def _named(entries, name):
    # the command or event `name` of OBJS[idx][3] / [4], or None
    for c in entries:
        if c[0] == name:
            return c
    return None


# ---------------------------------------------------------------- values
def to_str(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return ""
    return str(v)


def from_str(t, s):
    """Parse a USP string value of type letter t; UspError 7011 when it is not one."""
    if t == "b":
        if s in ("true", "1"):
            return True
        if s in ("false", "0"):
            return False
        raise UspError(_E_TYPE, "%r is not a boolean" % s)
    if t == "u" or t == "i":
        try:
            v = int(s)
        except ValueError:
            raise UspError(_E_TYPE, "%r is not an integer" % s)
        if t == "u" and (v < 0 or s.strip()[0] == "-"):
            raise UspError(_E_TYPE, "%r is not an unsignedInt" % s)
        return v
    return s


def iso_time(t):
    """ISO 8601 UTC for epoch seconds t (MicroPython's epoch may be 2000: use gmtime)."""
    import time
    try:
        g = time.gmtime(int(t))
    except AttributeError:  # some ports only have localtime (UTC on a board)
        g = time.localtime(int(t))
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (g[0], g[1], g[2], g[3], g[4], g[5])


# ---------------------------------------------------------------- paths
# Templates are walked in place (count, find, startswith at an offset), never split: the
# Get path resolves and names objects per requested path and per instance.
def obj_path(idx, keys):
    """Concrete path "Device.X.2.Y." of object idx at instance keys."""
    p = OBJS[idx][0]
    for k in keys:
        p = p.replace("{i}", str(k), 1)
    return p


def parent_table(idx, level):
    """Index of the table object whose template ends at the level-th {i} of idx."""
    tpl = OBJS[idx][0]
    pos = -1
    for _ in range(level + 1):
        pos = tpl.find("{i}", pos + 1)
    n = pos + 4  # the table's template: tpl up to that "{i}."
    for j in range(len(OBJS)):
        t = OBJS[j][0]
        if len(t) == n and tpl.startswith(t):
            return j
    raise UspError(E_INTERNAL, "no table for " + tpl[:n])


def children(idx, first_level=False):
    """Objects below idx (not idx itself); first_level: only direct children."""
    tpl = OBJS[idx][0]
    n = tpl.count(".")  # segments: every template ends with "."
    out = []
    for j in range(len(OBJS)):
        t = OBJS[j][0]
        if j != idx and t.startswith(tpl):
            depth = t.count(".") - n
            if OBJS[j][1] & MULTI:
                depth -= 1
            if not first_level or depth == 1:
                out.append(j)
    return out


def match_template(segs):
    """(idx, pattern keys, table_only) for object path segments, or None.

    pattern keys: int instance, None for '*'. table_only: path named a table without
    an instance ("Device.LocalAgent.Subscription."), which means all its rows.
    """
    n = len(segs)
    for j in range(len(OBJS)):
        t = OBJS[j][0]
        nt = t.count(".")
        table_only = nt == n + 1 and t.endswith("{i}.")
        if nt != n and not table_only:
            continue
        keys = _pattern(t, segs)
        if keys is not None:
            if table_only:
                keys.append(None)
            return j, keys, table_only
    return None


def _pattern(t, segs):
    # the pattern keys when segs match the first len(segs) segments of template t, else None
    keys = []
    pos = 0
    for b in segs:
        e = t.find(".", pos)
        if e - pos == 3 and t.startswith("{i}", pos):
            if b == "*":
                keys.append(None)
            elif b.startswith("["):
                keys.append(b[1:-1])  # search expression: rows it selects (Model.expand)
            elif b and b.isdigit() and b[0] != "0":
                keys.append(int(b))
            else:
                return None
        elif len(b) != e - pos or not t.startswith(b, pos):
            return None
        pos = e + 1
    return keys


def split_path(path):
    """(object segments, leaf or None) after a syntax check; UspError 7026 / 7008.
    A search expression stays one segment, brackets included: "[Status==\"Active\"]"."""
    if not isinstance(path, str) or not path.startswith("Device."):
        raise UspError(E_INVALID_PATH, "invalid path %r: must start with 'Device.'" % (path,))
    if "[" in path:
        from firmware_slots.datamodel.search import split_segs  # loaded by the first search
        segs = split_segs(path)
    else:
        segs = path.split(".")
    for g in segs[:-1]:
        if not g or (" " in g and g[0] != "["):
            raise UspError(E_INVALID_PATH, "unsupported path syntax %r" % path)
    if path.endswith("."):
        return segs[:-1], None
    if " " in segs[-1] or "]" in segs[-1]:
        raise UspError(E_INVALID_PATH, "unsupported path syntax %r" % path)
    return segs[:-1], segs[-1]


class Model:
    """Path engine over OBJS and the backends registered for their paths.

    Model(backend, ...): each backend lists the supported paths it serves in PATHS
    (obuspa-style registration by name); every object must have exactly one."""

    def __init__(self, *backends):
        reg = [None] * len(OBJS)
        for b in backends:
            for t in b.PATHS:
                j = obj_id(t)
                if reg[j] is not None:
                    raise ValueError("two backends for " + t)
                reg[j] = b
        for j in range(len(OBJS)):
            if reg[j] is None:
                raise ValueError("no backend for " + OBJS[j][0])
        self.backends = reg

    def expand(self, idx, pattern, strict=True):
        """All instance-key tuples of object idx matching pattern (ints / None).

        strict: an explicit instance that does not exist raises 7016; below a
        wildcard a missing instance just yields nothing.
        """
        results = [()]
        wild = False
        for level in range(len(pattern)):
            want = pattern[level]
            t = parent_table(idx, level)
            nxt = []
            for keys in results:
                have = self.backends[t].insts(t, keys)
                if want is None:
                    for i in have:
                        nxt.append(keys + (i,))
                elif isinstance(want, str):  # search expression: the rows it selects
                    from firmware_slots.datamodel.search import search_keep
                    for i in have:
                        if search_keep(self, t, keys + (i,), want):
                            nxt.append(keys + (i,))
                elif want in have:
                    nxt.append(keys + (want,))
                elif strict and not wild:
                    raise UspError(E_NO_OBJECT, "object %s does not exist" % obj_path(t, keys + (want,)))
            if want is None or isinstance(want, str):
                wild = True
            results = nxt
        return results

    def resolve(self, path, strict=True):
        """(idx, [keys...], leaf) for a path; leaf is a param/command/event or None."""
        segs, leaf = split_path(path)
        m = match_template(segs)
        if m is None:
            raise UspError(E_INVALID_PATH, "path %s is not in the supported data model" % path)
        idx, pattern, table_only = m
        if leaf is not None:
            o = OBJS[idx]
            if table_only or not (param_spec(idx, leaf) or _named(o[3], leaf) or _named(o[4], leaf)):
                raise UspError(E_INVALID_PATH, "%s is not a parameter, command or event of %s" % (
                    leaf, OBJS[idx][0]))
        return idx, self.expand(idx, pattern, strict), leaf

    def get(self, idx, keys, name):
        return self.backends[idx].get(idx, keys, name)

    def get_params(self, idx, keys):
        """{name: string value} of every parameter of one object instance."""
        b = self.backends[idx]
        out = {}
        ps = OBJS[idx][2]
        i = 0
        while i < len(ps):  # "Name:t Name:tw ...", read in place (the names are interned)
            c = ps.find(":", i)
            n = ps[i:c]
            out[n] = to_str(b.get(idx, keys, n))
            i = ps.find(" ", c) + 1 or len(ps)
        return out

    def subtree(self, idx, keys, max_depth=0):
        """[(idx, keys)] for the object and every instance below it (depth-limited)."""
        out = [(idx, keys)]
        if max_depth == 1:
            return out
        base = OBJS[idx][0].count(".")
        for j in children(idx):
            if max_depth:
                d = OBJS[j][0].count(".") - base
                if OBJS[j][1] & MULTI:
                    d -= 1
                if d >= max_depth:
                    continue
            n = OBJS[j][0].count("{i}")
            pat = list(keys) + [None] * (n - len(keys))
            for k in self.expand(j, pat, False):
                out.append((j, k))
        return out

    def set(self, idx, keys, name, value):
        spec = param_spec(idx, name)
        if spec is None:
            raise UspError(E_INVALID_PATH, "%s%s is not a parameter" % (obj_path(idx, keys), name))
        t, w = spec
        if not w:
            raise UspError(_E_NOT_WRITABLE, "%s%s is read-only" % (obj_path(idx, keys), name))
        v = from_str(t, value)
        en = ENUMS.get(name)
        if en and v not in en.split():
            raise UspError(E_VALUE, "%s must be one of %s" % (name, en))
        self.backends[idx].set(idx, keys, name, v)
        return v

    def unique_keys(self, idx, keys):
        b = self.backends[idx]
        uk = {}
        k = getattr(b, "KEYS", None)  # {idx: "Name Name"} where more than Alias is unique
        names = k.get(idx, "Alias") if k else "Alias"
        for n in names.split():
            uk[n] = to_str(b.get(idx, keys, n))
        return uk
