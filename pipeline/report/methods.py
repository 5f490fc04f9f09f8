"""How the report shows each weight-decay method: one mapping name -> label, hyper-parameter label, colour, marker.

The built-ins' entries are fixed (the committed figures depend on them; `tests/unit/test_report_methods.py` checks that
their labels agree with the classes in awd/weight_decay.py). A plugin method (a run whose `wd_method` is
`package.module:Class`) gets its `param_label` and `sweep` from its class attributes, read from the source with
`ast` (the renderer imports no torch, and importing a plugin usually would), and the next free colour and marker
in the order of its name.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MethodStyle:
    name: str
    label: str  # legends and panel titles
    param_label: str  # the hyper-parameter's name: axis labels, notes
    color: str
    marker: str
    sweep: str = "log"  # the x-axis scale of a sweep over its values
    spec: str = ""  # package.module:Class of a plugin; "" for a built-in


BUILTIN = {
    "fixed": MethodStyle("fixed", "fixed λ_wd", "λ_wd", "tab:blue", "o"),
    "awd": MethodStyle("awd", "AWD (DoG)", "DoG", "tab:orange", "o"),
    "adadecay": MethodStyle("adadecay", "AdaDecay", "λ_AdaDecay", "tab:green", "o"),
    "none": MethodStyle("none", "none", "none", "grey", "o"),
}
ORDER = {"fixed": 0, "awd": 1, "adadecay": 2, "none": 3}
PLUGIN_COLORS = ("tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")
PLUGIN_MARKERS = ("^", "D", "v", "P", "X", "<")

_plugins: dict[str, MethodStyle] = {}


def _class_attributes(spec: str) -> dict[str, str]:
    """String class attributes of `package.module:Class`, read from its source without importing it."""
    module, _, cls = spec.partition(":")
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None or not found.origin or not Path(found.origin).is_file():
        return {}
    tree = ast.parse(Path(found.origin).read_bytes())
    out: dict[str, str] = {}
    for node in tree.body:
        if not (isinstance(node, ast.ClassDef) and node.name == cls.split(".")[-1]):
            continue
        for stmt in node.body:
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target] if isinstance(
                stmt, ast.AnnAssign) and stmt.value is not None else []
            value = stmt.value if isinstance(stmt, (ast.Assign, ast.AnnAssign)) else None
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                out.update({t.id: value.value for t in targets if isinstance(t, ast.Name)})
    return out


def register_plugins(specs: dict[str, str]) -> None:
    """{method name: package.module:Class} of the plugin methods the runs use (inputs.load calls it)."""
    _plugins.clear()
    for i, name in enumerate(sorted(n for n in specs if n not in BUILTIN)):
        attrs = _class_attributes(specs[name])
        param = attrs.get("param_label") or name
        _plugins[name] = MethodStyle(name, f"{name} ({param})", param, PLUGIN_COLORS[i % len(PLUGIN_COLORS)],
                                     PLUGIN_MARKERS[i % len(PLUGIN_MARKERS)], attrs.get("sweep", "log"), specs[name])


def style(method: str) -> MethodStyle:
    if method in BUILTIN:
        return BUILTIN[method]
    return _plugins.get(method) or MethodStyle(str(method), str(method), str(method), "grey", "o")


def plugins() -> list[MethodStyle]:
    return [_plugins[n] for n in sorted(_plugins)]


def order_key(method) -> tuple:
    """Built-ins in the paper's order, then plugins by name."""
    return (ORDER.get(method, 9), str(method))
