"""A plugin method named in params is imported and checked while params are validated: a missing module or an
incomplete class is refused, naming the method and what is missing, before any unit exists."""

from __future__ import annotations

import sys
import textwrap

import pytest
import yaml

from pipeline.params import ParamsError, validate
from pipeline.suites import independent_runs
from tests.run_config_digest import ROOT

DOG_PLUGIN = '''
from examples.sgdw import SGDW


class DogLike(SGDW):
    name = "doglike"
    param = "dog"
    param_label = "DoG-ish"
'''
HALF_PLUGIN = '''
class Half:
    name = "half"
    param = "wd"
    param_label = "λ"
    sweep = "log"

    def dog(self):
        return 0
'''


@pytest.fixture()
def plugin_dir(tmp_path, monkeypatch):
    (tmp_path / "myplugins").mkdir()
    (tmp_path / "myplugins" / "__init__.py").write_text("")
    (tmp_path / "myplugins" / "doglike.py").write_text(textwrap.dedent(DOG_PLUGIN))
    (tmp_path / "myplugins" / "half.py").write_text(textwrap.dedent(HALF_PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m.split(".")[0] == "myplugins"]:
        del sys.modules[name]


def with_plugin(name: str, path: str) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["methods"] = {name: path}
    study = raw["suites"]["adversarial"][0]
    study["methods"] = {"fixed": study.pop("wds"), "awd": study.pop("dogs"), name: [1e-3, 1e-2]}
    return raw


@pytest.mark.parametrize("path, message", [
    ("nosuchpkg.methods:Mine", "method 'mine' (nosuchpkg.methods:Mine): module 'nosuchpkg' not found"),
    ("myplugins.half:Half", "method 'mine' (myplugins.half:Half): missing apply_(), state_dict(), load_state_dict()"),
    ("myplugins.half:Nope", "method 'mine' (myplugins.half:Nope): module 'myplugins.half' has no class 'Nope'"),
])
def test_a_plugin_that_cannot_be_used_is_refused_naming_it_and_what_is_missing(plugin_dir, path, message):
    with pytest.raises(ParamsError) as exc:
        validate(with_plugin("mine", path))
    lines = str(exc.value).splitlines()
    assert any(ln.startswith("params.yaml: suites.adversarial[0].methods.mine: ") and message in ln
               for ln in lines), lines


def test_a_plugin_whose_param_is_dog_gets_its_value_in_dog(plugin_dir):
    specs = independent_runs(validate(with_plugin("doglike", "myplugins.doglike:DogLike")))
    runs = [s for s in specs if s.label.get("method") == "doglike"]
    assert [(s.config["wd_method"], s.config["wd"], s.config["dog"]) for s in runs] == [
        ("myplugins.doglike:DogLike", 0.0, 1e-3), ("myplugins.doglike:DogLike", 0.0, 1e-2)]


def test_an_installed_entry_point_is_a_method_without_a_methods_line(monkeypatch):
    import importlib.metadata

    ep = importlib.metadata.EntryPoint("theirs", "examples.sgdw:SGDW", "awd_bench.methods")
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda **kw: [ep] if kw.get("group") == "awd_bench.methods" else real(**kw))
    raw = with_plugin("theirs", "examples.sgdw:SGDW")
    del raw["methods"]
    runs = [s for s in independent_runs(validate(raw)) if s.label.get("method") == "theirs"]
    assert [(s.config["wd_method"], s.config["wd"]) for s in runs] == [("examples.sgdw:SGDW", 1e-3),
                                                                       ("examples.sgdw:SGDW", 1e-2)]
