"""Content keys for units: canonical JSON of the config plus a digest of the code that computes it.

Executor settings (where and how a unit runs) never enter a key, so moving from a laptop to SLURM reuses results.
Config entries whose name starts with "_" say where inputs live, not what is computed: they never enter a key.
The code digest covers what the unit's module closure executes (its AST without docstrings), not its formatting.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
import math
import numbers
import re
import sysconfig
import typing as tp
from pathlib import Path

PROJECT_PACKAGES = ("awd", "jobs", "pipeline")
KIND_RE = re.compile(r"^[a-z][a-z0-9_-]*$")


def _normalise(obj: tp.Any, where: str) -> tp.Any:
    # bool before numbers: bool is an Integral.
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, numbers.Integral):
        return int(obj)
    if isinstance(obj, numbers.Real):
        value = float(obj)
        if not math.isfinite(value):
            raise ValueError(f"canonical_json: {where} is {value!r}; keys need finite numbers "
                             "(NaN/inf are not allowed)")
        return 0.0 if value == 0.0 else value  # -0.0 and 0.0 compute the same thing
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"canonical_json: {where} has key {k!r} of type {type(k).__name__}; keys must be str")
            out[k] = _normalise(v, f"{where}[{k!r}]")
        return out
    if isinstance(obj, (list, tuple)):
        return [_normalise(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    raise TypeError(
        f"canonical_json: {where} has unsupported type {type(obj).__module__}.{type(obj).__qualname__} "
        f"(value {obj!r}); allowed: dict with str keys, list, tuple, str, int, float, bool, None"
    )


def canonical_json(obj: tp.Any) -> str:
    """One string per value: sorted keys, no whitespace, tuples as lists, floats as their shortest repr."""
    return json.dumps(_normalise(obj, "value"), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def keyed_config(config: tp.Mapping[str, tp.Any]) -> dict[str, tp.Any]:
    """The part of a unit config that decides what is computed: every entry not named "_..." (input locations)."""
    return {k: v for k, v in config.items() if not k.startswith("_")}


def config_digest(config: tp.Mapping[str, tp.Any]) -> str:
    """sha256 of the keyed config alone: equal for two units that differ only in code (see `jobs.why`)."""
    return hashlib.sha256(canonical_json(keyed_config(config)).encode("utf-8")).hexdigest()


def unit_key(kind: str, config: tp.Mapping[str, tp.Any], code: str) -> str:
    """sha256 hex of {kind, config, code}: equal keys mean the same computation by the same code."""
    if not isinstance(kind, str) or not KIND_RE.match(kind):
        raise ValueError(f"unit_key: kind {kind!r} is not allowed; use lowercase letters, digits, '_' or '-' "
                         "starting with a letter (it names a store directory)")
    if not isinstance(config, tp.Mapping):
        raise TypeError(f"unit_key: config must be a dict, got {type(config).__name__}")
    if not isinstance(code, str) or not code:
        raise TypeError(f"unit_key: code must be a non-empty digest string (see code_digest), got {code!r}")
    payload = canonical_json({"kind": kind, "config": dict(config), "code": code})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _default_root() -> Path:
    return Path(__file__).resolve().parent.parent


def _module_file(root: Path, name: str) -> Path | None:
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> tp.Iterator[str]:
    """Every module name an import statement anywhere in the file could load (over-inclusion is harmless)."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                if node.level - 1 > len(parts):
                    continue  # beyond the top-level package: Python itself would fail here
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if base:
                yield base
            for alias in node.names:
                if alias.name != "*":
                    yield f"{base}.{alias.name}" if base else alias.name


def _with_parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _parse(path: Path, source: bytes | None = None) -> ast.Module:
    return _parse_source(str(path), path.read_bytes() if source is None else source)


@functools.lru_cache(maxsize=1024)
def _parse_source(filename: str, source: bytes) -> ast.Module:
    # a stage keys several closures that share most files: each file is parsed once per process (by its bytes, so
    # an edit is seen); the trees are only read, never changed
    try:
        return ast.parse(source, filename=filename)
    except SyntaxError as e:
        raise SyntaxError(f"code_digest: cannot parse {filename}: {e}") from e


_DOC_OWNERS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


def _canonical(node: tp.Any, lazy_annotations: bool = False) -> tp.Any:
    """The executable content of an AST as plain data: no positions, no docstrings; fields that are None or empty
    are left out, so a Python release that adds an empty field (e.g. 3.12's `type_params`) keeps digests equal.

    With `from __future__ import annotations` (PEP 563) a function's parameter and return annotations are strings
    nothing in a unit evaluates, so they are left out too: a typing fix or a pyupgrade rewrite retrains nothing.
    Annotated assignments stay (a dataclass's fields are its annotations)."""
    if isinstance(node, ast.AST):
        fields = {}
        for name, value in ast.iter_fields(node):
            if name == "body" and isinstance(node, _DOC_OWNERS) and value and _is_docstring(value[0]):
                value = value[1:]
            if name == "type_comment" or value is None or value == []:
                continue
            if lazy_annotations and ((name == "annotation" and isinstance(node, ast.arg))
                                     or (name == "returns" and isinstance(node, _FUNCTIONS))):
                continue
            fields[name] = _canonical(value, lazy_annotations)
        return [type(node).__name__, fields]
    if isinstance(node, list):
        return [_canonical(v, lazy_annotations) for v in node]
    if isinstance(node, bytes):
        return {"bytes": node.hex()}
    if isinstance(node, complex):
        return {"complex": [node.real, node.imag]}
    if node is Ellipsis:
        return {"ellipsis": True}
    if isinstance(node, float) and not math.isfinite(node):
        return {"float": repr(node)}  # 1e999 in source parses to inf
    return node  # str, int, float, bool


def _postponed_annotations(tree: ast.Module) -> bool:
    return any(isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"
               and any(alias.name == "annotations" for alias in stmt.names) for stmt in tree.body)


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def semantic_digest(source: str | bytes, filename: str = "<source>") -> str:
    """sha256 of what a Python file executes: comments, docstrings, blank lines, layout and (under PEP 563) function
    signature annotations do not count; any change to a statement, name or literal does. (A module's `__doc__` is
    not part of it: unit code must not compute results from docstrings or signature annotations.)"""
    return _semantic_digest(filename, source.encode("utf-8") if isinstance(source, str) else source)


@functools.lru_cache(maxsize=1024)
def _semantic_digest(filename: str, source: bytes) -> str:
    tree = _parse_source(filename, source)
    text = json.dumps(_canonical(tree, _postponed_annotations(tree)), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


Packages = tp.Sequence[str] | tp.Mapping[str, Path]


def code_closure(module_names: str | tp.Iterable[str], root: str | Path | None = None,
                 packages: Packages = PROJECT_PACKAGES) -> dict[str, Path]:
    """{module name: source file} of the given modules and everything they import inside the project packages.

    Importing `a.b.c` runs `a/__init__.py` and `a/b/__init__.py` too, so those count as dependencies; imports
    inside functions count (a unit's lazy imports are code it runs). `packages` names the packages that count,
    all under `root`, or maps each to the directory that holds it (a plugin's package lives elsewhere).
    """
    root = Path(root).resolve() if root is not None else _default_root()
    names = [module_names] if isinstance(module_names, str) else list(module_names)
    if not names:
        raise ValueError("code_digest: no module names given")
    where = dict(packages) if isinstance(packages, tp.Mapping) else {p: root for p in packages}
    allowed = set(where)
    files: dict[str, Path] = {}
    todo: list[str] = []
    for name in names:
        if name.split(".")[0] not in allowed:
            raise ValueError(f"code_digest: module {name!r} is outside the project packages {sorted(allowed)}")
        if _module_file(Path(where[name.split(".")[0]]), name) is None:
            raise FileNotFoundError(f"code_digest: module {name!r} has no source file under "
                                    f"{where[name.split('.')[0]]}")
        todo.append(name)
    while todo:
        name = todo.pop()
        for dep in _with_parents(name):
            if dep in files or dep.split(".")[0] not in allowed:
                continue
            path = _module_file(Path(where[dep.split(".")[0]]), dep)
            if path is None:
                continue  # a namespace package, or an attribute imported with `from x import y`
            files[dep] = path
            todo.extend(_imported_names(_parse(path), dep, path.name == "__init__.py"))
    return dict(sorted(files.items()))


def combine_digests(file_digests: tp.Mapping[str, str]) -> str:
    """The code digest of a closure from its per-module semantic digests (module names sorted)."""
    digest = hashlib.sha256()
    for name in sorted(file_digests):
        digest.update(name.encode("utf-8") + b"\0" + bytes.fromhex(file_digests[name]))
    return digest.hexdigest()


def closure_digests(module_names: str | tp.Iterable[str], root: str | Path | None = None,
                    packages: Packages = PROJECT_PACKAGES) -> dict[str, str]:
    """{module name: semantic digest} over the code closure of the given modules."""
    return {name: semantic_digest(path.read_bytes(), str(path))
            for name, path in code_closure(module_names, root, packages).items()}


def code_digest(module_names: str | tp.Iterable[str], root: str | Path | None = None,
                packages: Packages = PROJECT_PACKAGES) -> str:
    """sha256 over the semantic digests of the given modules and everything they import inside the project
    packages: an edit that changes what any of them executes changes it, a comment or docstring edit does not."""
    return combine_digests(closure_digests(module_names, root, packages))


def _installed(path: Path) -> bool:
    """Inside the interpreter's standard library or site-packages: versioned with the environment, not hashed."""
    if {"site-packages", "dist-packages"} & set(path.parts):  # also a venv layered on another one's (.pth)
        return True
    paths = sysconfig.get_paths()
    for kind in ("stdlib", "platstdlib", "purelib", "platlib"):
        base = Path(paths[kind]).resolve()
        if path == base or base in path.parents:
            return True
    return False


def plugin_packages(module_names: tp.Iterable[str], root: str | Path | None = None) -> dict[str, Path]:
    """{top-level package: the directory holding it} for the given modules outside the project packages whose
    source is not an installed distribution: a plugin in the checkout (`examples/`) or on PYTHONPATH, or an
    editable install. Its code enters the unit's key like ours; an installed plugin is an environment version."""
    root = Path(root).resolve() if root is not None else _default_root()
    out: dict[str, Path] = {}
    for name in module_names:
        top = name.split(".")[0]
        if top in PROJECT_PACKAGES or top in out:
            continue
        if _module_file(root, top) is not None:  # beside the project packages, as the stages' cwd puts it
            out[top] = root
            continue
        spec = importlib.util.find_spec(top)
        if spec is None or not (spec.origin or spec.submodule_search_locations):
            raise ModuleNotFoundError(f"code_digest: plugin module {name!r}: no package {top!r} under {root} "
                                      "or on sys.path", name=top)
        origin = Path(spec.origin).resolve() if spec.origin and spec.origin not in ("built-in", "frozen") else None
        if origin is None or _installed(origin):
            continue
        out[top] = origin.parent.parent if origin.name == "__init__.py" else origin.parent
    return out


def unit_closure(module_names: str | tp.Iterable[str], root: str | Path | None = None) -> dict[str, Path]:
    """The code closure of a unit: its function's module plus the plugin modules its config names (e.g. a
    weight-decay method `package.module:Class`), each followed through the project packages and its own."""
    root = Path(root).resolve() if root is not None else _default_root()
    names = [module_names] if isinstance(module_names, str) else list(module_names)
    packages: dict[str, Path] = {p: root for p in PROJECT_PACKAGES}
    packages.update(plugin_packages(names, root))
    return code_closure([n for n in names if n.split(".")[0] in packages], root, packages)


def unit_closure_digests(module_names: str | tp.Iterable[str], root: str | Path | None = None) -> dict[str, str]:
    """{module name: semantic digest} over `unit_closure`."""
    return {name: semantic_digest(path.read_bytes(), str(path)) for name, path in unit_closure(module_names, root).items()}


def unit_code_digest(module_names: str | tp.Iterable[str], root: str | Path | None = None) -> str:
    """`code_digest` over `unit_closure`: for project modules alone it equals `code_digest`."""
    return combine_digests(unit_closure_digests(module_names, root))
