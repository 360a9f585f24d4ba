"""Imports only point down the layers (issue 8): a new upward or sideways edge fails here.

Every import of our own code is read from the source (ast, so lazy imports inside
functions count too) and mapped to a layer; the edge must be in ALLOWED.
"""
import ast
import glob
import os

from mpy import ROOT

# layer of a module, by the longest matching prefix of its dotted name
LAYERS = (
    ("firmware_slots.core", "core"),
    ("firmware_slots.sim", "sim"),
    ("firmware_slots.coap", "coap"),
    ("firmware_slots.datamodel", "datamodel"),
    ("firmware_slots.transfer", "transfer"),
    ("firmware_slots.usp", "usp"),
    ("firmware_slots.mtp", "mtp"),
    ("firmware_slots.app", "app"),
    ("firmware_slots.agent_main", "app"),
    ("firmware_slots.host", "host"),
    ("firmware_slots", "package"),
    ("boards", "boards"),
    ("bootstub", "bootstub"),
    ("hil", "hil"),
)

# layer -> the layers it may import (besides itself). Device side, bottom to top:
#   core <- datamodel <- usp <- mtp <- app;  coap, transfer beside (transfer pulls images
#   into core's writer); boards and bootstub above core; sim is the host's flash for boards.
ALLOWED = {
    "core": set(),
    "sim": {"core"},
    "coap": set(),
    "datamodel": {"core"},
    "transfer": {"core", "coap"},
    "usp": {"core", "datamodel", "transfer"},
    "mtp": {"core", "coap", "usp"},
    "boards": {"core", "sim"},
    "app": {"core", "sim", "coap", "datamodel", "transfer", "usp", "mtp", "boards"},
    "bootstub": {"core", "boards", "app", "usp"},  # agentapp subclasses the agent's Platform
    "package": set(),
    # beside the device: the host and the harness may use any device layer, never each other upward
    "host": {"core", "sim", "coap", "datamodel", "transfer", "usp", "mtp", "app", "boards", "bootstub", "hil", "package"},
    "hil": {"core", "sim", "coap", "datamodel", "transfer", "usp", "mtp", "app", "boards", "bootstub", "host", "package"},
}


def layer(mod):
    for prefix, name in LAYERS:
        if mod == prefix or mod.startswith(prefix + "."):
            return name
    return None


def module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
    return rel[:-9] if rel.endswith(".__init__") else rel


def own_imports(path):
    mod = module_name(path)
    pkg = mod if path.endswith("__init__.py") else mod.rpartition(".")[0]
    tree = ast.parse(open(path).read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield node.lineno, a.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for a in node.names:
                yield node.lineno, base + "." + a.name if base in ("firmware_slots", "bootstub", "boards") else base


def sources():
    files = []
    for d in ("firmware_slots", "bootstub", "boards", "hil"):
        files += glob.glob(os.path.join(ROOT, d, "**", "*.py"), recursive=True)
    return sorted(files)


def test_every_module_has_a_layer():
    assert len(sources()) > 40
    for f in sources():
        assert layer(module_name(f)) is not None, f


def test_imports_point_down():
    bad = []
    for f in sources():
        src = layer(module_name(f))
        for line, target in own_imports(f):
            dst = layer(target)
            if dst is None or dst == src:
                continue
            if dst not in ALLOWED[src]:
                bad.append("%s:%d imports %s (%s -> %s)" % (os.path.relpath(f, ROOT), line, target, src, dst))
    assert not bad, "upward or sideways imports:\n" + "\n".join(bad)


def test_the_checker_sees_a_lazy_upward_import(tmp_path):
    # a function-level import of the agent from core must be caught, not only top-level ones
    p = tmp_path / "x.py"
    p.write_text("def f():\n    from firmware_slots.usp.agent import UspAgent\n")
    assert [t for _, t in own_imports(str(p))] == ["firmware_slots.usp.agent"]
    assert "usp" not in ALLOWED["core"]


def test_device_never_imports_the_simulator_outside_the_host_flash():
    # norsim is the host's flash (unix-virtual board, flash files); no other device layer may use it
    for f in sources():
        src = layer(module_name(f))
        if src in ("sim", "host", "hil", "boards", "app"):
            continue
        for line, target in own_imports(f):
            assert layer(target) != "sim", "%s:%d imports %s" % (f, line, target)
