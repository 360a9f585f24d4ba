"""Controller trust (TR-181 Device.LocalAgent.ControllerTrust.): who may do what, as pure functions.

A Role is (Name, permissions); a permission row is the TR-181 Permission.{i} object as a
tuple (Order, Targets, Param, Obj, InstantiatedObj, CommandEvent), each right string
four characters "rwxn" with "-" for a missing right. No state lives here: the agent
passes the controller's role rows in and gets a yes/no back, so the table can come
from the board profile, the journal or ROLES below.

Which right each USP operation needs (TR-181 Permission.{i} descriptions):

| USP operation / notification      | column          | right |
|-----------------------------------|-----------------|-------|
| Get (each parameter)              | Param           | r     |
| Get (resolving an object path)    | Obj             | r     |
| GetSupportedDM                    | Obj / Param / CommandEvent | r |
| GetInstances                      | InstantiatedObj | r     |
| Set; parameters given to Add      | Param           | w     |
| Add (creating the row)            | Obj             | w     |
| Delete                            | InstantiatedObj | w     |
| Operate                           | CommandEvent    | x     |
| Notify ValueChange                | Param           | n     |
| Notify ObjectCreation             | Obj             | n     |
| Notify ObjectDeletion             | InstantiatedObj | n     |
| Notify Event, OperationComplete   | CommandEvent    | n     |

Matching (Targets): an entry ending in "." is a partial path and covers that object and
everything below it; any other entry names one parameter, command ("Download()") or
event ("Boot!"). A "*" segment matches any one segment (an instance number); other
search expressions ([...]) never match, so they grant nothing. Paths given to allowed()
are concrete: the agent resolves wildcards first and checks every resulting path.

Precedence: within one Role, of the permission rows whose Targets match, the one with
the highest Order decides (the first such row on a tie), also when it denies; across
the controller's Roles the rights are a union (TR-181 Role.{i}).

Identity (TR-369): a controller is trusted when its EndpointID is provisioned (board
profile, or added by a trusted controller), or, over coaps, when the DTLS layer has
verified its certificate chain to the configured CA and a subjectAltName URI is
"urn:bbf:usp:id:" + EndpointID. Everyone else gets ControllerTrust.UntrustedRole.
"""

PERMISSION_DENIED = 7006

# column index in a permission row, and right index in its 4-character string
PARAM, OBJ, INST, CMD = 2, 3, 4, 5
_RIGHT = "rwxn"
COLUMN_NAMES = ("", "", "Param", "Obj", "InstantiatedObj", "CommandEvent")

# operation -> (column, right); the keys are the agent's names for what it is doing
NEEDS = {
    "get": (PARAM, "r"), "get_obj": (OBJ, "r"), "get_supported_dm": (OBJ, "r"),
    "get_instances": (INST, "r"), "set": (PARAM, "w"), "add": (OBJ, "w"),
    "delete": (INST, "w"), "operate": (CMD, "x"), "value_change": (PARAM, "n"),
    "obj_creation": (OBJ, "n"), "obj_deletion": (INST, "n"), "event": (CMD, "n"),
    "oper_complete": (CMD, "n"),
}

# Built-in Role.{i} rows (1-based in the data model). Untrusted controllers may read the
# firmware table and who the agent is, and nothing else: no Operate, Set, Add, Subscribe.
FULL_ACCESS, UNTRUSTED = 1, 2
ROLES = (
    ("Full Access", ((0, ("Device.",), "rwxn", "rwxn", "rwxn", "rwxn"),)),
    ("Untrusted", ((0, ("Device.DeviceInfo.", "Device.LocalAgent.EndpointID",
                        "Device.LocalAgent.SupportedProtocols"), "r---", "r---", "r---", "----"),)),
)
SAN_PREFIX = "urn:bbf:usp:id:"


def _match(target, path):
    # True when `target` (one Targets entry) covers the concrete `path`
    t = target.split(".")
    p = path.split(".")
    if target.endswith("."):
        t = t[:-1]  # partial path: a prefix of the path's segments
        if len(p) < len(t):
            return False
    elif len(p) != len(t):
        return False
    for i in range(len(t)):
        a = t[i]
        if a != p[i] and not (a == "*" and p[i]):
            return False
    return True


def role_allows(perms, path, column, right):
    """The decision of one Role's permission rows for `path`: True, or False when none grants it."""
    best = None
    for row in perms:
        if best is not None and row[0] <= best[0]:
            continue
        for t in row[1]:
            if _match(t, path):
                best = row
                break
    return best is not None and best[column][_RIGHT.index(right)] == right


def allowed(roles, path, op, table=ROLES):
    """True when a controller holding `roles` (1-based Role.{i} numbers) may do `op` on `path`.

    `op` is a key of NEEDS; an unknown op or role number is a denial, never an error.
    """
    need = NEEDS.get(op)
    if need is None:
        return False
    for r in roles:
        if 0 < r <= len(table) and role_allows(table[r - 1][1], path, need[0], need[1]):
            return True
    return False


def denial(path, op):
    """(7006, one-line reason) for a refused `op` on `path`."""
    need = NEEDS.get(op, (CMD, "x"))
    return PERMISSION_DENIED, "permission denied: %s on %s needs %s '%s'" % (
        op, path, COLUMN_NAMES[need[0]], need[1])


def roles_for(endpoint_id, provisioned, san_uris=None, untrusted=(UNTRUSTED,), trusted=(FULL_ACCESS,)):
    """Role numbers for a controller: `trusted` when its identity is established, else `untrusted`.

    provisioned: EndpointIDs the board profile (or a trusted controller) added.
    san_uris: subjectAltName URIs of a certificate the DTLS layer verified against the
    configured CA (None over plain coap, or when no CA is configured).
    """
    if endpoint_id in provisioned:
        return trusted
    if san_uris and SAN_PREFIX + endpoint_id in san_uris:
        return trusted
    return untrusted


def parse_rights(s):
    """A TR-181 4-character permission string, checked; ValueError names the fault."""
    if not isinstance(s, str) or len(s) != 4:
        raise ValueError("permission string must be 4 characters like 'r--n', got %r" % (s,))
    for i in range(4):
        if s[i] != "-" and s[i] != _RIGHT[i]:
            raise ValueError("permission string %r: position %d must be '%s' or '-'" % (s, i + 1, _RIGHT[i]))
    return s
