"""The generated reference pages of the documentation, and the MkDocs hook that keeps them true.

    python docs/hooks/reference.py --write   # regenerate docs/reference/*.md (`make docs` does it)
    python docs/hooks/reference.py --check   # exit 1, naming the page, when one differs from the code

- `reference/configuration.md`: every key of params.yaml and executor.yaml, read from the models that validate
  them (pipeline/params/, awd/train_config.py, jobs/executor_config.py): type, range, default and the source comment.
- `reference/tests.md`: every test the other pages name (`tests/<file>.py::<test>`), with its docstring; a name
  that is not a test fails the build, and each page links to its entry here.

As a hook (mkdocs.yml `hooks:`), `on_pre_build` refuses to build when a committed page is stale, so the site (CI
runs `mkdocs build --strict`) cannot show a reference the code has moved away from.
"""

from __future__ import annotations

import ast
import dataclasses
import io
import re
import sys
import tokenize
import typing as tp
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PARAMS_DIR = ROOT / "pipeline" / "params"
DOCS = ROOT / "docs"
PAGES = ("reference/configuration.md", "reference/tests.md")
INTERNAL = re.compile(r"\b(pydantic|mypy|noqa)\b")  # comments about the implementation, not the setting
# `tests/<file>.py::<test>` in text, or a link to its entry: `reference/tests.md#<file>--<test>`
TEST_REF = re.compile(r"tests/((?:[\w-]+/)*test_\w+)\.py::(test_\w+)|tests\.md#(test_\w+)--(test_\w+)")


# -- comments beside fields ------------------------------------------------------------------------------------------
def field_comments(path: Path, cls: str) -> dict[str, str]:
    """{field: its trailing comment, else the comment lines right above it} in class `cls` of `path`."""
    src = path.read_text(encoding="utf-8")
    comments: dict[int, tuple[str, bool]] = {}  # line -> (text, whole-line comment)
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = (tok.string.lstrip("#").strip(), tok.line.strip().startswith("#"))
    out = {}
    for node in ast.walk(ast.parse(src)):
        if not (isinstance(node, ast.ClassDef) and node.name == cls):
            continue
        for stmt in node.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                text, whole = comments.get(stmt.lineno, ("", True))
                if not text or whole:
                    above, line = [], stmt.lineno - 1
                    while line in comments and comments[line][1]:
                        above.insert(0, comments[line][0])
                        line -= 1
                    # a one-word line above a group of fields ("# slurm") heads the group, it says nothing of one
                    text = " ".join(above) if len(above) > 1 or " " in "".join(above) else ""
                out[stmt.target.id] = "" if INTERNAL.search(text) else text
    return out


# -- types in words --------------------------------------------------------------------------------------------------
def _closure_bounds(validator) -> dict | None:
    """The bounds a params Grid checks, found in its validator's closure (None when its shape changed)."""
    fn = getattr(validator, "func", None)
    for cell in getattr(fn, "__closure__", None) or ():
        inner = cell.cell_contents
        for c in getattr(inner, "__closure__", None) or ():
            if isinstance(c.cell_contents, dict):
                return c.cell_contents
    return None


def describe(annotation) -> str:
    from pydantic import BaseModel, WrapValidator

    from awd.checks import range_text
    from awd.train_config import Num, OneOf

    origin, args = tp.get_origin(annotation), tp.get_args(annotation)
    if origin is tp.Union or str(origin) == "<class 'types.UnionType'>":
        rest = [a for a in args if a is not type(None)]
        text = " or ".join(describe(a) for a in rest)
        return f"{text}, or null" if len(rest) < len(args) else text
    if origin is tp.Annotated:
        base, meta = args[0], args[1:]
        for m in meta:
            if isinstance(m, Num):
                bounds = {k: getattr(m, k) for k in ("gt", "ge", "lt", "le") if getattr(m, k) is not None}
                return ("integer" if m.integer else "number") + (f" {range_text(**bounds)}" if bounds else "")
            if isinstance(m, OneOf):
                return "one of " + ", ".join(f"`{o}`" for o in m.options)
        if base is bool:
            return "`true` or `false`"
        if base is str:
            return "non-empty string"
        if tp.get_origin(base) is tuple and tp.get_args(base)[:1] == (float,):
            bounds = next((_closure_bounds(m) for m in meta if isinstance(m, WrapValidator)), None)
            rng = f", each {range_text(**bounds)}" if bounds else ""
            return f"grid: a list of numbers{rng}, or `{{geomspace: [start, stop, num]}}` / `{{linspace: …}}`"
        if tp.get_origin(base) is tuple and tp.get_args(base)[:1] == (int,):
            return "list of distinct integer seeds >= 0"
        if tp.get_origin(base) is tuple and isinstance(tp.get_args(base)[0], type) \
                and issubclass(tp.get_args(base)[0], BaseModel):
            return f"list of studies ({tp.get_args(base)[0].__name__})"
        if isinstance(base, type) and issubclass(base, BaseModel):
            return "mapping: any `train` key, overriding it for this study" if "Overrides" in base.__name__ \
                else "mapping (section below)"
        if tp.get_origin(base) is dict:
            return "mapping of names to `package.module:Class`" if tp.get_args(base)[1] is str \
                else "mapping of keyword arguments (scalars or lists of scalars)"
        return describe(base)
    if origin is tuple and args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return f"list of {args[0].__name__}"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"list, each {describe(args[0])}"
    if origin is dict:
        return f"mapping of names to {describe(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping (section below)"
    return {bool: "`true` or `false`", int: "integer", float: "number", str: "string"}.get(annotation,
                                                                                           str(annotation))


def _default(info) -> str:
    from pydantic_core import PydanticUndefined

    if info.is_required():
        return "**required**"
    value = info.get_default(call_default_factory=True)
    if value is PydanticUndefined:
        return "**required**"
    if hasattr(value, "model_dump"):
        return "(section defaults)"
    if value in ((), {}, []):
        return "empty"
    return f"`{_yaml(value)}`"


def _yaml(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return str(value)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def model_table(model, comments: dict[str, str], required: tp.Iterable[str] = ()) -> list[str]:
    lines = ["| key | type and range | default | notes |", "|---|---|---|---|"]
    for name, info in model.model_fields.items():
        ann = tp.Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
        default = "**required**" if name in required else _default(info)
        lines.append(f"| `{name}` | {_cell(describe(ann))} | {default} | {_cell(comments.get(name, ''))} |")
    return lines


def params_reference() -> list[str]:
    from pydantic import BaseModel

    from pipeline import params as P

    train_comments = field_comments(ROOT / "awd" / "train_config.py", "TrainConfig")
    out = ["## params.yaml", "", "Validated before any stage runs (`awd-bench check [file]` checks a file without "
           "DVC); every problem is reported at once, one line each, naming the key, what is allowed and what was "
           "given. Sections: `train` and `suites` are required, the others take the defaults below.", ""]
    sections = [("data", P.DataParams, {}), ("train", P.TrainSection, train_comments),
                ("adversarial", P.AdversarialParams, train_comments),
                ("autoattack", P.AutoAttackParams, field_comments(PARAMS_DIR / "sections.py", "AutoAttackParams")),
                ("prune", P.PruneParams, field_comments(PARAMS_DIR / "sections.py", "PruneParams"))]
    for name, model, comments in sections:
        required = getattr(P, "TRAIN_REQUIRED", ()) if name == "train" else ()
        intro = ["A study's own `train:` block overrides any of these keys for that study.", ""] \
            if name == "train" else []
        out += [f"### `{name}`", ""] + intro + model_table(model, comments, required) + [""]
    out += ["### `methods`", "", "Plugin weight-decay methods: `{name: package.module:Class}`; a study lists a "
            "plugin by its name beside the built-ins (" + ", ".join(f"`{m}`" for m in P.METHODS) + "). See "
            "[Adding a method](../adding-a-method.md).", "",
            "### `suites`", "", "Each suite is a list of studies; an absent, empty or null suite is not run.", ""]
    suite_comments = field_comments(PARAMS_DIR / "studies.py", "Suites")
    for suite, info in P.Suites.model_fields.items():
        ann = tp.get_args(info.annotation)[0] if tp.get_origin(info.annotation) is tp.Annotated else info.annotation
        study = tp.get_args(ann)[0] if tp.get_origin(ann) is tuple else None
        if study is None:
            continue
        note = suite_comments.get(suite, "")
        out += [f"#### `suites.{suite}[i]`", ""] + ([note, ""] if note else []) + _shorthands(study)
        out += model_table(study, _comments_of(study, P)) + [""]
        for sub, info in study.model_fields.items():  # nested sections: a natural study's plateau, variants' runs
            ann = info.annotation
            inner = tp.get_args(ann)[0] if tp.get_origin(ann) is tuple else ann
            if isinstance(inner, type) and issubclass(inner, BaseModel) and "Overrides" not in inner.__name__:
                where = f"suites.{suite}[i].{sub}" + ("[j]" if inner is not ann else "")
                out += [f"#### `{where}`", ""] + model_table(inner, _comments_of(inner, P)) + [""]
    return out


def _comments_of(model, package) -> dict[str, str]:
    """The field comments of `model` and its bases that `package` (pipeline.params, split into modules) defines."""
    comments: dict[str, str] = {}
    for klass in reversed(model.__mro__):
        if klass.__module__.startswith(package.__name__):
            comments.update(field_comments(Path(sys.modules[klass.__module__].__file__), klass.__name__))
    return comments


def _shorthands(study) -> list[str]:
    """What a study comparing methods needs: `methods:`, or the shorthands its class declares."""
    short, required = getattr(study, "SHORTHANDS", {}), getattr(study, "REQUIRED", ())
    if not short:
        return []
    forms = ", ".join(f"`{k}` ({m})" for k, m in short.items())
    need = f"; without `methods`, {', '.join(f'`{k}`' for k in required)} required" if required else ""
    return [f"Methods and their values: `methods: {{name: values}}`, or the shorthands {forms}{need}.", ""]


def executor_reference() -> list[str]:
    from jobs import executor_config as E

    comments = field_comments(ROOT / "jobs" / "executor_config.py", "ExecutorConfig")
    out = ["## executor.yaml", "", "Where jobs run; not a DVC param and never part of a cache key. Read from "
           "`executor.yaml` in the working directory, or the file `$AWD_EXECUTOR_CONFIG` names; `$AWD_EXECUTOR` "
           "overrides `kind`. Every unknown key and wrong value is reported at once, naming the key, before anything "
           "is submitted; with the slurm kind the values are then checked against the cluster "
           "([cluster guide](../cluster.md#3-executoryaml)).", "",
           "| key | allowed | default | notes |", "|---|---|---|---|"]
    for name, info in E.ExecutorConfig.model_fields.items():
        value = info.get_default(call_default_factory=True)
        default = "unset" if value is None else "empty" if value in ({}, []) else f"`{_yaml(value)}`"
        out.append(f"| `{name}` | {_cell(E.allowed(name))} | {default} | {_cell(comments.get(name, ''))} |")
    driver_wide = sorted(getattr(E, "NOT_IN_PROFILES", ()))
    if driver_wide:
        out += ["", "`profiles: {<kind>: {…}}` takes any key above except the driver-wide ones: "
                + ", ".join(f"`{k}`" for k in driver_wide) + "."]
    return out + [""]


def module_constants(path: Path, prefix: str) -> list[tuple[str, str, str]]:
    """(name, value as written, its trailing comment) of the module-level `PREFIX... = value` lines of `path`."""
    src = path.read_text(encoding="utf-8")
    comments = {t.start[0]: t.string.lstrip("#").strip()
                for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type == tokenize.COMMENT}
    out = []
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id.startswith(prefix):
            out.append((node.targets[0].id, ast.get_source_segment(src, node.value) or "",
                        comments.get(node.lineno, "")))
    return out


def limits_reference() -> list[str]:
    """The size caps every settings file is read under, and a params file's own; none where the code has none."""
    out = []
    try:
        from jobs import bounded_yaml
    except ImportError:
        return out
    comments = field_comments(Path(bounded_yaml.__file__), "Limits")
    out += ["## Size limits", "", "Both files are read under these caps before anything else looks at them; a file "
            "over one is refused at once, naming the file, the key and the cap.", "",
            "| what | cap | notes |", "|---|---|---|"]
    for f in dataclasses.fields(bounded_yaml.Limits):
        out.append(f"| `{f.name}` | {f.default:,} | {_cell(comments.get(f.name, ''))} |")
    limits = ROOT / "pipeline" / "limits.py"
    if limits.is_file():
        out += ["", "A params file also has these (`pipeline/limits.py`):", "", "| what | cap | notes |",
                "|---|---|---|"]
        for name, value, note in module_constants(limits, "MAX_"):
            try:
                value = f"{ast.literal_eval(value):,}"
            except (ValueError, SyntaxError, TypeError):
                pass  # an expression: shown as written
            out.append(f"| `{name}` | {value} | {_cell(note)} |")
    return out + [""]


def configuration_page() -> str:
    head = ["# Configuration reference", "", "<!-- Generated by docs/hooks/reference.py from the models that validate "
            "these files; run `make docs` after changing them. -->", "",
            "Two files configure a campaign: `params.yaml` says *what* is computed (it is a DVC param: an edit "
            "reruns exactly the units whose resolved config changed) and `executor.yaml` says *where* (never part "
            "of a key: moving from a laptop to SLURM invalidates nothing). The embedded default is `params.yaml`; "
            "the paper's settings are `configs/paper.yaml`.", ""]
    return "\n".join(head + params_reference() + executor_reference() + limits_reference()).rstrip() + "\n"


# -- the tests the pages name ----------------------------------------------------------------------------------------
def test_refs(docs: Path = DOCS) -> dict[str, list[str]]:
    """{tests/<file>.py: [test names]} named anywhere in the hand-written pages, in first-mention order."""
    refs: dict[str, list[str]] = {}
    for page in sorted(docs.rglob("*.md")):
        if page.relative_to(docs).as_posix() in PAGES:
            continue
        for m in TEST_REF.finditer(page.read_text(encoding="utf-8")):
            file, name = (m.group(1), m.group(2)) if m.group(1) else (_tier_path(m.group(3)), m.group(4))
            names = refs.setdefault(f"tests/{file}.py", [])
            if name not in names:
                names.append(name)
    return refs


def _tier_path(stem: str) -> str:
    """A link names a test file by its stem (`tests.md#test_store--…`); the file lives in its tier's folder."""
    found = sorted((ROOT / "tests").rglob(f"{stem}.py"))
    return found[0].relative_to(ROOT / "tests").with_suffix("").as_posix() if len(found) == 1 else stem


def anchor(path: str, name: str) -> str:
    return f"{Path(path).stem}--{name}"


def tests_page(docs: Path = DOCS) -> str:
    lines = ["# Tests behind the guarantees", "", "<!-- Generated by docs/hooks/reference.py from the tests the other "
             "pages name; run `make docs` after changing them. -->", "",
             "Every test another page names, with what it checks (its docstring). They run in CI (`make test`; the "
             "SLURM ones against a real local cluster). Run one with `.venv/bin/python -m pytest 'FILE::NAME'`.", ""]
    missing = []
    for path, names in sorted(test_refs(docs).items()):
        file = ROOT / path
        tree = ast.parse(file.read_text(encoding="utf-8")) if file.is_file() else None
        funcs = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)} if tree else {}
        lines += [f"## `{path}`", ""]
        if tree is not None and ast.get_docstring(tree):
            lines += [ast.get_docstring(tree).split("\n\n")[0].replace("\n", " "), ""]
        for name in names:
            if name not in funcs:
                missing.append(f"{path}::{name}")
                continue
            doc = (ast.get_docstring(funcs[name]) or "").split("\n\n")[0].replace("\n", " ")
            lines += [f"### `{name}` {{#{anchor(path, name)}}}", "", doc or "(no docstring: the name says it)", ""]
    if missing:
        raise ValueError("the docs name tests that do not exist: " + ", ".join(missing))
    return "\n".join(lines).rstrip() + "\n"


def generate(docs: Path = DOCS) -> dict[str, str]:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return {"reference/configuration.md": configuration_page(), "reference/tests.md": tests_page(docs)}


def stale(docs: Path = DOCS) -> list[str]:
    pages = generate(docs)
    return [rel for rel, text in pages.items()
            if not (docs / rel).is_file() or (docs / rel).read_text(encoding="utf-8") != text]


def on_pre_build(config, **kwargs) -> None:  # the MkDocs hook
    from mkdocs.exceptions import PluginError

    try:
        behind = stale(Path(config["docs_dir"]))
    except ValueError as e:
        raise PluginError(str(e)) from None
    if behind:
        raise PluginError(f"generated pages differ from the code: {', '.join(behind)}; run `make docs` "
                          "(python docs/hooks/reference.py --write) and commit them")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args == ["--write"]:
        pages = generate()
        from jobs.atomic import atomic_write_text

        for rel, text in pages.items():
            atomic_write_text(DOCS / rel, text)
            print(f"wrote docs/{rel}")
        return 0
    if args == ["--check"]:
        behind = stale()
        for rel in behind:
            print(f"docs/{rel} differs from the code: run `make docs`", file=sys.stderr)
        return 1 if behind else 0
    print(__doc__.split("\n\n")[1], file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
