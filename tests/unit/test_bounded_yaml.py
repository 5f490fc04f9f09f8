"""jobs/bounded_yaml.py: settings files (YAML 1.2) read under caps counted on the parser's events, aliases at every
use."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from jobs.bounded_yaml import LIMITS, Limits, SettingsFileError, check_data, dumps, load

ROOT = Path(__file__).resolve().parents[2]


def _file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "settings.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_aliases_count_at_every_use_exactly(tmp_path):
    # root mapping 1; a: key 1 + list 1 + 3 items = 5; b: key 1 + list 1 + two aliases of 4 values each = 10
    path = _file(tmp_path, "a: &a [1, 2, 3]\nb: [*a, *a]\n")
    assert load(path, limits=Limits(nodes=16)) == {"a": [1, 2, 3], "b": [[1, 2, 3]] * 2}
    with pytest.raises(SettingsFileError, match=r"settings.yaml: b\[1\]: the file expands to more than 15 values"):
        load(path, limits=Limits(nodes=15))


def test_a_billion_laughs_is_refused_at_the_cap_without_expanding(tmp_path):
    rows = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 30)]  # 10^30 values
    # 1,239 values before l3, then 1,111 per alias of l2: the eighth one passes 10,000
    with pytest.raises(SettingsFileError, match=rf"l3\[7\]: the file expands to more than {LIMITS.nodes} values"):
        load(_file(tmp_path, "\n".join(rows)))


def test_depth_counts_what_an_alias_brings(tmp_path):
    path = _file(tmp_path, "a: &a [[[1]]]\nb: [*a]\n")  # b: mapping, list, then the alias's three levels
    assert load(path, limits=Limits(depth=5))["b"] == [[[[1]]]]
    with pytest.raises(SettingsFileError, match=r"b\[0\]: nested more than 4 levels deep"):
        load(path, limits=Limits(depth=4))


@pytest.mark.parametrize("levels", [40, 2_000, 100_000])  # the last two: past a recursive reader's stack
def test_deep_nesting_is_a_clear_error_not_a_recursion_error(tmp_path, levels):
    path = _file(tmp_path, "setup: " + "[" * levels + "]" * levels + "\n")
    with pytest.raises(SettingsFileError, match=rf"settings.yaml: setup\[0\].*nested more than {LIMITS.depth} levels"):
        load(path)


def test_a_node_containing_itself_is_refused(tmp_path):
    with pytest.raises(SettingsFileError, match=r"a\[1\]: alias \*r refers to a node that contains it"):
        load(_file(tmp_path, "a: &r [1, *r]\n"))


def test_one_list_is_capped_and_named(tmp_path):
    path = _file(tmp_path, "data:\n  seeds: [" + ", ".join(map(str, range(11))) + "]\n")
    assert len(load(path, limits=Limits(items=11))["data"]["seeds"]) == 11
    with pytest.raises(SettingsFileError, match=r"data.seeds: a list of more than 10 entries; at most 10 allowed"):
        load(path, limits=Limits(items=10))


def test_the_file_size_cap(tmp_path):
    cap = Limits(file_bytes=64)
    assert load(_file(tmp_path, "a: '" + "x" * 58 + "'\n"), limits=cap) == {"a": "x" * 58}
    with pytest.raises(SettingsFileError, match=r"settings.yaml: file larger than 64 bytes"):
        load(_file(tmp_path, "a: '" + "x" * 59 + "'\n"), limits=cap)


def test_text_that_is_not_utf8_is_named(tmp_path):
    with pytest.raises(SettingsFileError, match=r"settings.yaml: not UTF-8 text: byte 11 \(line 2\) is b'\\xff'"):
        load(_file(tmp_path, b"a: fine\nb: \xff\n"))


def test_an_integer_python_cannot_read_is_refused_but_a_quoted_string_of_digits_is_text(tmp_path):
    with pytest.raises(SettingsFileError, match=r"seed: an integer of 5000 digits; at most 4000 allowed"):
        load(_file(tmp_path, "seed: " + "7" * 5000 + "\n"))
    assert load(_file(tmp_path, "seed: '" + "7" * 5000 + "'\n")) == {"seed": "7" * 5000}


def test_files_within_the_caps_load_exactly_as_before(tmp_path):
    for path in (ROOT / "configs/paper.yaml", ROOT / "params.yaml"):
        assert load(path) == YAML(typ="safe", pure=True).load(path.read_text())
    # YAML 1.2, as DVC reads params.yaml: `yes` is text and 0o17 an octal int (YAML 1.1 read them the other way)
    assert load(_file(tmp_path, "a: yes\nb: 0o17\nc: 5e-4\n")) == {"a": "yes", "b": 15, "c": 0.0005}


def test_dumps_writes_what_load_reads_back_in_order(tmp_path):
    value = {"kind": "slurm", "b": {"z": 1, "a": [1e-05, "yes", "1e3", None, True]}}
    text = dumps(value)
    assert list(load(_file(tmp_path, text))) == ["kind", "b"] and load(_file(tmp_path, text)) == value
    assert [dumps(v, flow=True) for v in ("gpu", "1e3", 5)] == ["gpu", "'1e3'", "5"]


def test_syntax_errors_are_the_library_s_own(tmp_path):
    from ruamel.yaml.error import MarkedYAMLError

    with pytest.raises(MarkedYAMLError):
        load(_file(tmp_path, "a: [1, 2\nb: 3\n"))


def test_parsed_data_gets_the_same_caps_shared_objects_counted_at_every_use():
    leaf = ["x"] * 10
    bomb = leaf
    for _ in range(20):  # 10^21 values, 200 list slots
        bomb = [bomb] * 10
    with pytest.raises(SettingsFileError, match=rf"api: train.model_kw.a(\[\d\])+: more than {LIMITS.nodes} values"):
        check_data({"train": {"model_kw": {"a": bomb}}}, "api")
    shared = [1, 2, 3]
    check_data({"a": shared, "b": [shared, shared]}, "api", Limits(nodes=16))
    with pytest.raises(SettingsFileError, match="more than 15 values"):
        check_data({"a": shared, "b": [shared, shared]}, "api", Limits(nodes=15))
    loop: list = [1]
    loop.append(loop)
    with pytest.raises(SettingsFileError, match=r"api: a\[1\]: a value that contains itself"):
        check_data({"a": loop}, "api")
    with pytest.raises(SettingsFileError, match=r"api: a: a list of 6 entries; at most 5 allowed"):
        check_data({"a": list(range(6))}, "api", Limits(items=5))
    with pytest.raises(SettingsFileError, match=r"api: n: an integer of \d+ bits"):
        check_data({"n": 10 ** 5000}, "api")
