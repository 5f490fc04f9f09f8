import math
import textwrap

import numpy as np
import pytest

from jobs.keys import canonical_json, code_digest, unit_key

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


def test_code_digest_of_project_modules_is_stable():
    assert code_digest(["jobs.submit"]) == code_digest("jobs.submit")
    # importing jobs.keys runs jobs/__init__.py, which imports jobs.submit: the same file set
    assert code_digest(["jobs.keys"]) == code_digest(["jobs.submit"])
