import math
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest

from jobs.keys import (
    canonical_json,
    closure_digests,
    code_closure,
    code_digest,
    combine_digests,
    config_digest,
    keyed_config,
    semantic_digest,
    unit_key,
)

ROOT = Path(__file__).resolve().parents[2]

CODE = "0" * 64


def test_canonical_json_is_order_and_container_independent():
    a = {"b": [1, (2, 3)], "a": {"y": 1.5, "x": None}}
    b = {"a": {"x": None, "y": 1.5}, "b": [1, [2, 3]]}
    assert canonical_json(a) == canonical_json(b) == '{"a":{"x":null,"y":1.5},"b":[1,[2,3]]}'


def test_canonical_json_numbers():
    assert canonical_json({"v": 0.1}) == '{"v":0.1}'
    assert canonical_json(np.float64(0.1)) == canonical_json(0.1)
    assert canonical_json(np.int64(3)) == "3"
    assert canonical_json(-0.0) == canonical_json(0.0)
    assert canonical_json(True) == "true"  # not 1: bool is kept distinct from int
    assert canonical_json(1) != canonical_json(1.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_canonical_json_rejects_non_finite(bad):
    with pytest.raises(ValueError, match=r"\['model_kw'\]\['eps'\].*finite"):
        canonical_json({"model_kw": {"eps": bad}})


def test_canonical_json_rejects_unknown_types_naming_where():
    with pytest.raises(TypeError, match=r"\['opt'\]\[1\].*set"):
        canonical_json({"opt": [1, {2}]})
    with pytest.raises(TypeError, match="keys must be str"):
        canonical_json({1: "a"})


def test_unit_key():
    cfg = {"lr": 0.1, "wd": 5e-4, "model_kw": {"depth": 28, "width": 10}}
    same = {"model_kw": {"width": 10, "depth": 28}, "wd": 5e-4, "lr": 0.1}
    k = unit_key("train", cfg, CODE)
    assert len(k) == 64 and k == unit_key("train", same, CODE)
    assert k != unit_key("train", dict(cfg, lr=0.2), CODE)
    assert k != unit_key("attack", cfg, CODE)
    assert k != unit_key("train", cfg, "1" * 64)
    with pytest.raises(ValueError, match="kind 'Train!'"):
        unit_key("Train!", cfg, CODE)


def _write(root, rel, text):
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))


@pytest.fixture()
def project(tmp_path):
    _write(tmp_path, "pkg/__init__.py", "")
    _write(tmp_path, "pkg/top.py", """
        import os
        from . import helper
        from pkg.sub import deep
        def f(): return helper.g() + deep.h()
    """)
    _write(tmp_path, "pkg/helper.py", "def g():\n    return 1\n")
    _write(tmp_path, "pkg/sub/__init__.py", "")
    _write(tmp_path, "pkg/sub/deep.py", "from ..leaf import CONST\ndef h():\n    return CONST\n")
    _write(tmp_path, "pkg/leaf.py", "CONST = 2\n")
    _write(tmp_path, "pkg/unrelated.py", "X = 1\n")
    _write(tmp_path, "other/__init__.py", "")
    return tmp_path


def _digest(root):
    return code_digest(["pkg.top"], root=root, packages=("pkg",))


@pytest.mark.parametrize("edited", ["pkg/helper.py", "pkg/sub/deep.py", "pkg/leaf.py", "pkg/top.py",
                                    "pkg/__init__.py", "pkg/sub/__init__.py"])
def test_code_digest_follows_transitive_imports(project, edited):
    before = _digest(project)
    assert before == _digest(project)
    with open(project / edited, "a") as f:
        f.write("\n# edited\n")
    assert _digest(project) == before  # a comment executes nothing
    with open(project / edited, "a") as f:
        f.write("EDITED = 1\n")
    assert _digest(project) != before


def test_code_digest_ignores_unrelated_modules(project):
    before = _digest(project)
    _write(project, "pkg/unrelated.py", "X = 2\n")
    _write(project, "other/__init__.py", "Y = 3\n")
    assert _digest(project) == before


def test_code_digest_bad_names(project):
    with pytest.raises(ValueError, match="'os'.*outside the project packages"):
        code_digest(["os"], root=project, packages=("pkg",))
    with pytest.raises(FileNotFoundError, match="'pkg.missing'"):
        code_digest(["pkg.missing"], root=project, packages=("pkg",))


def _semantic(text):
    return semantic_digest(textwrap.dedent(text))


BASE = """
    \"\"\"Module docstring.\"\"\"
    import math


    class Decay:
        \"\"\"Class docstring.\"\"\"

        def step(self, lam: float, grad) -> float:
            \"\"\"Method docstring.\"\"\"
            return lam * math.sqrt(grad)  # why: the paper's rule
"""


@pytest.mark.parametrize("same", [
    BASE.replace("Module docstring.", "A reworded module docstring."),
    BASE.replace('    \"\"\"Class docstring.\"\"\"\n', ""),
    BASE.replace("# why: the paper's rule", "# a different comment"),
    BASE.replace("lam * math.sqrt(grad)", "lam*math.sqrt( grad )").replace("\n\n\n", "\n"),
    BASE.replace("return lam * math.sqrt(grad)", "return (lam\n                    * math.sqrt(grad))"),
])
def test_semantic_digest_ignores_comments_docstrings_and_layout(same):
    assert _semantic(same) == _semantic(BASE)


@pytest.mark.parametrize("different", [
    BASE.replace("lam * math", "lam / math"),          # operator
    BASE.replace("math.sqrt(grad)", "math.sqrt(lam)"),  # name
    BASE.replace("def step", "def stop"),               # definition name
    BASE.replace("lam: float", "lam: int"),             # annotation
    BASE.replace("return lam", "x = 1\n            return lam"),
    BASE.replace('\"\"\"Method docstring.\"\"\"', '\"\"\"Method docstring.\"\"\"\n            "not a docstring"'),
])
def test_semantic_digest_changes_with_what_executes(different):
    assert _semantic(different) != _semantic(BASE)


LAZY = BASE.replace("import math", "from __future__ import annotations\n\n    import math")


@pytest.mark.parametrize("same", [
    LAZY.replace("lam: float", "lam: int"),                     # parameter annotation
    LAZY.replace(") -> float:", ') -> "float":'),               # return annotation, quoted
    LAZY.replace("grad) -> float", "grad: list[float] | None)"),  # added / removed
])
def test_postponed_signature_annotations_are_not_code(same):
    """Under PEP 563 a signature annotation is a string nothing in a unit evaluates: typing fixes retrain nothing."""
    assert _semantic(same) == _semantic(LAZY)


def test_annotations_evaluated_at_definition_still_count():
    """Without the __future__ import a signature annotation is evaluated when the function is defined."""
    assert _semantic(BASE.replace("lam: float", "lam: int")) != _semantic(BASE)


def test_annotated_class_fields_count():
    """A dataclass's fields are its annotated assignments: their annotations stay part of the digest."""
    with_field = LAZY.replace("class Decay:", "class Decay:\n        rate: float = 0.5")
    assert _semantic(with_field.replace("rate: float", "rate: ClassVar[float]")) != _semantic(with_field)


def _edited_copy(tmp_path, rel, edit):
    from jobs.keys import PROJECT_PACKAGES
    for pkg in PROJECT_PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / rel
    text = path.read_text()
    new = edit(text)
    assert new != text, f"the edit of {rel} did not apply"
    path.write_text(new)
    return tmp_path


def _comment_and_docstring_edit(text):
    """A comment added on its own line, and the module docstring's first line reworded."""
    first = text.index('"""') + 3
    return "# a comment edit\n" + text[:first] + "Reworded: " + text[first:]


REAL_MODULES = ["awd/weight_decay.py", "awd/train.py", "awd/attacks.py", "awd/prune.py", "awd/autoattack.py"]
UNIT_MODULES = {"train": "pipeline.units.train", "autoattack": "pipeline.units.autoattack",
                "prune": "pipeline.units.prune"}


@pytest.mark.parametrize("rel", REAL_MODULES)
def test_real_modules_comment_and_docstring_edits_keep_every_unit_digest(tmp_path, rel):
    before = {kind: code_digest(m) for kind, m in UNIT_MODULES.items()}
    copy = _edited_copy(tmp_path, rel, _comment_and_docstring_edit)
    assert {kind: code_digest(m, root=copy) for kind, m in UNIT_MODULES.items()} == before


# one token of what each module executes, and the unit kinds whose code runs it
ONE_TOKEN = {
    "awd/weight_decay.py": (("import math", "import math as math"), {"train", "autoattack", "prune"}),
    "awd/attacks.py": (('BN_MODES = ("train", "eval")', 'BN_MODES = ("eval", "train")'), {"train", "autoattack", "prune"}),
    "awd/prune.py": (("import copy", "import copy as copy"), {"prune"}),
    "awd/autoattack.py": (("_STATE_FORMAT = 1", "_STATE_FORMAT = 2"), {"autoattack"}),
    "pipeline/units/trained_model.py": (("from __future__ import annotations", "from __future__ import division"),
                                        {"autoattack", "prune"}),
}


@pytest.mark.parametrize("rel", sorted(ONE_TOKEN))
def test_real_modules_one_token_change_changes_exactly_the_units_that_run_it(tmp_path, rel):
    (old, new), changed = ONE_TOKEN[rel]
    before = {kind: code_digest(m) for kind, m in UNIT_MODULES.items()}
    copy = _edited_copy(tmp_path, rel, lambda text: text.replace(old, new, 1))
    after = {kind: code_digest(m, root=copy) for kind, m in UNIT_MODULES.items()}
    assert {kind for kind in UNIT_MODULES if after[kind] != before[kind]} == changed


def test_unit_closures_are_minimal():
    """Training never runs AutoAttack or pruning; AutoAttack never runs pruning, and pruning never AutoAttack."""
    closures = {kind: set(code_closure(m)) for kind, m in UNIT_MODULES.items()}
    assert not closures["train"] & {"awd.autoattack", "awd.prune", "pipeline.units.autoattack",
                                    "pipeline.units.prune", "pipeline.units.trained_model"}
    assert "awd.prune" not in closures["autoattack"] and "pipeline.units.prune" not in closures["autoattack"]
    assert "awd.autoattack" not in closures["prune"] and "pipeline.units.autoattack" not in closures["prune"]
    # no unit runs the stage drivers, the renderer or the job runner
    assert all(m.split(".")[0] != "jobs" and not m.startswith("pipeline.") or m.startswith("pipeline.units")
               for c in closures.values() for m in c)


def test_digest_is_combined_from_per_module_digests():
    per_module = closure_digests("pipeline.units.train")
    assert set(per_module) == set(code_closure("pipeline.units.train"))
    assert combine_digests(per_module) == code_digest("pipeline.units.train")


def test_keyed_config_drops_location_entries():
    from pipeline.units.train import LOCATION_KEYS

    assert all(k.startswith("_") for k in LOCATION_KEYS)  # what the job strips is what the key never had
    assert keyed_config({"lr": 0.1, "_data_root": "/x"}) == {"lr": 0.1}
    assert config_digest({"lr": 0.1, "_data_root": "/x"}) == config_digest({"lr": 0.1, "_data_root": "/y"})
    assert config_digest({"lr": 0.1}) != config_digest({"lr": 0.2})


def test_code_digest_of_project_modules_is_stable():
    assert code_digest(["jobs.driver"]) == code_digest("jobs.driver")
    # importing jobs.keys runs jobs/__init__.py, which imports jobs.driver: the same file set
    assert code_digest(["jobs.keys"]) == code_digest(["jobs.driver"])


PLUGIN = ["pipeline.units.train", "examples.sgdw"]


def _with_examples(tmp_path, edit_rel, edit):
    """A copy of the project packages and examples/ with one file of examples/ edited."""
    from jobs.keys import PROJECT_PACKAGES
    for pkg in (*PROJECT_PACKAGES, "examples"):
        shutil.copytree(ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / edit_rel
    new = edit(path.read_text())
    assert new != path.read_text(), f"the edit of {edit_rel} did not apply"
    path.write_text(new)
    return tmp_path


def test_a_plugin_run_hashes_the_plugin_and_what_it_imports_from_the_project():
    from jobs.keys import unit_closure, unit_code_digest

    closure = unit_closure(PLUGIN)
    assert {"examples", "examples.sgdw"} <= set(closure) and "awd.weight_decay" in closure
    assert set(closure) == set(code_closure("pipeline.units.train")) | {"examples", "examples.sgdw"}
    assert unit_code_digest(PLUGIN) != code_digest("pipeline.units.train")
    # a unit without a plugin: exactly the old digest (built-in keys do not move)
    assert unit_code_digest(["pipeline.units.train"]) == code_digest("pipeline.units.train")


def test_editing_the_plugin_changes_its_units_keys_and_no_built_in_unit_key(tmp_path):
    from jobs.keys import unit_code_digest

    before = {"plugin": unit_code_digest(PLUGIN), **{k: code_digest(m) for k, m in UNIT_MODULES.items()}}
    copy = _with_examples(tmp_path, "examples/sgdw.py", lambda t: t.replace('param_label = "λ_SGDW"',
                                                                             'param_label = "λ (SGDW)"'))
    after = {"plugin": unit_code_digest(PLUGIN, root=copy),
             **{k: unit_code_digest([m], root=copy) for k, m in UNIT_MODULES.items()}}
    assert {k for k in before if before[k] != after[k]} == {"plugin"}
    # a comment in the plugin retrains nothing
    copy2 = _with_examples(tmp_path / "c2", "examples/sgdw.py", lambda t: "# a note\n" + t)
    assert unit_code_digest(PLUGIN, root=copy2) == before["plugin"]


def test_a_plugin_outside_the_checkout_is_found_on_sys_path_and_an_installed_one_is_not_hashed(tmp_path,
                                                                                              monkeypatch):
    from jobs.keys import plugin_packages, unit_closure

    (tmp_path / "mymethods").mkdir()
    (tmp_path / "mymethods" / "__init__.py").write_text("")
    (tmp_path / "mymethods" / "mine.py").write_text("from awd.weight_decay import WeightDecay\nX = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert plugin_packages(["mymethods.mine"]) == {"mymethods": tmp_path.resolve()}
    closure = unit_closure(["pipeline.units.train", "mymethods.mine"])
    assert closure["mymethods.mine"] == (tmp_path / "mymethods" / "mine.py").resolve()
    assert plugin_packages(["numpy.linalg", "json"]) == {}  # installed / stdlib: versions, not code we key
    with pytest.raises(ModuleNotFoundError, match="nosuchplugin"):
        plugin_packages(["nosuchplugin.mod"])
