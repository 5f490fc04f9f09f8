"""`python -m pipeline.params` / `awd-bench check`."""

from __future__ import annotations

import sys

from pipeline.params.data_check import check_data
from pipeline.params.fields import ParamsError
from pipeline.params.studies import SUITE_NAMES
from pipeline.params.yaml_io import load_params


def main(argv=None) -> int:
    """`python -m pipeline.params [file] [--data]`: validate a config (and with --data, the CIFAR files), then the
    executor settings the stages would use (executor.yaml: the file, then what the cluster has for it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    with_data = "--data" in args
    paths = [a for a in args if a != "--data"] or ["params.yaml"]
    status = 0
    try:
        for path in paths:
            params = load_params(path)
            if with_data:
                check_data(params)
            counts = ", ".join(f"{s}: {len(getattr(params.suites, s))}" for s in SUITE_NAMES)
            print(f"{path}: ok ({counts} studies; datasets {', '.join(params.datasets()) or 'none'})")
    except ParamsError as e:
        print(e, file=sys.stderr)
        status = 2
    from jobs.cluster_check import check_command
    from pipeline.common import executor_config

    return max(status, check_command(executor_config, err=lambda line: print(line, file=sys.stderr)))
