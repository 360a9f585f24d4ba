"""Search expressions in paths (TR-369 "Searching with Expressions"), imported by dm.py
only when a path holds one: an agent nobody searches pays nothing for them."""
from firmware_slots.datamodel.dm import (UspError, E_PATH_SYNTAX, E_INVALID_PATH, OBJS, param_spec,
                                         to_str)


def split_segs(path):
    """Split at dots outside [...] and "..." (a search value may hold dots)."""
    out = []
    start = 0
    br = q = False
    for i in range(len(path)):
        c = path[i]
        if q:
            q = c != '"'
        elif c == '"':
            if not br:
                raise UspError(E_PATH_SYNTAX, "quote outside a search expression in %r" % path)
            q = True
        elif c == "[":
            if br or i != start:
                raise UspError(E_PATH_SYNTAX, "misplaced '[' in %r" % path)
            br = True
        elif c == "]":
            if not br or (i + 1 < len(path) and path[i + 1] != "."):
                raise UspError(E_PATH_SYNTAX, "misplaced ']' in %r" % path)
            br = False
        elif c == "." and not br:
            out.append(path[start:i])
            start = i + 1
    if br or q:
        raise UspError(E_PATH_SYNTAX, "unterminated search expression in %r" % path)
    out.append(path[start:])
    return out


# Search expressions (TR-369 "Searching with Expressions"), on parameters of the table row:
#   [Name==value] != < > <= >=, terms joined by &&; value "quoted" (string) or bare
#   (number, true/false). Numbers compare as numbers, anything else as strings;
#   < > <= >= need numbers. Bad syntax 7008, a name that is no parameter of the row 7026.
_OPS = ("==", "!=", "<=", ">=", "<", ">")


def search_keep(model, t, keys, expr):
    """True if row `keys` of table `t` satisfies `expr` (the text inside the brackets)."""
    rest = expr
    while True:
        q = False
        cut = -1
        for i in range(len(rest) - 1):  # the first && outside quotes ends the term
            c = rest[i]
            if c == '"':
                q = not q
            elif not q and c == "&" and rest[i + 1] == "&":
                cut = i
                break
        term = rest if cut < 0 else rest[:cut]
        if not _term(model, t, keys, term, expr):
            return False
        if cut < 0:
            return True
        rest = rest[cut + 2:]


def _term(model, t, keys, term, expr):
    for op in _OPS:
        p = term.find(op)
        if p > 0:
            break
    else:
        raise UspError(E_PATH_SYNTAX, "no comparison in search expression [%s]" % expr)
    name = term[:p]
    val = term[p + len(op):]
    spec = param_spec(t, name)
    if spec is None:
        raise UspError(E_INVALID_PATH, "%s is not a parameter of %s (search [%s])" % (name, OBJS[t][0], expr))
    if len(val) >= 2 and val[0] == '"' and val[-1] == '"':
        val = val[1:-1]
    elif not val or '"' in val:
        raise UspError(E_PATH_SYNTAX, "bad value in search expression [%s]" % expr)
    have = to_str(model.get(t, keys, name))
    if spec[0] in "ui" and val.lstrip("-").isdigit() and have.lstrip("-").isdigit():
        have, val = int(have), int(val)
    elif op not in ("==", "!="):
        raise UspError(E_PATH_SYNTAX, "%s needs numbers (search [%s])" % (op, expr))
    if op == "==":
        return have == val
    if op == "!=":
        return have != val
    if op == "<":
        return have < val
    if op == ">":
        return have > val
    if op == "<=":
        return have <= val
    return have >= val
