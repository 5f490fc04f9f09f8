"""YAML, parsed as DVC parses params (ruamel.yaml, YAML 1.2: `5e-4` is a float, `no` a string), under the caps of
jobs/bounded_yaml.py."""

from __future__ import annotations

from ruamel.yaml.error import YAMLError

from jobs import bounded_yaml
from pipeline.params.fields import ParamsError
from pipeline.params.rules import validate
from pipeline.params.schema import Params


def load_yaml(path) -> object:
    """Parse a YAML file under the caps of jobs/bounded_yaml.py; a syntax error, a duplicate key or a cap exceeded
    becomes a ParamsError naming `file:line:column` or the key."""
    try:
        text = bounded_yaml.read_text(path)
        return bounded_yaml.load_text(text, str(path))
    except FileNotFoundError:
        raise ParamsError([f"{path}: no such file"]) from None
    except bounded_yaml.SettingsFileError as e:
        raise ParamsError([str(e)]) from None
    except YAMLError as e:
        raise ParamsError([bounded_yaml.error_line(e, str(path), text)]) from None


def load_params(path="params.yaml") -> Params:
    return validate(load_yaml(path), source=str(path))
