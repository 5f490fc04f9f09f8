"""The whole params file: `Params`, the model every section and suite composes into."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import PrivateAttr

from awd.train_config import Model
from pipeline.params.plugins import Plugins
from pipeline.params.sections import EXECUTOR_HINT, AutoAttackParams, FullTrain, PruneParams
from pipeline.params.studies import SUITE_NAMES, Suites

if TYPE_CHECKING:  # made by pydantic's create_model at import time, so opaque to mypy: Any to their users
    DataParams = Any
    AdversarialParams = Any
else:
    from pipeline.params.sections import AdversarialParams, DataParams


class Params(Model):
    hints: ClassVar[dict[str, str]] = {k: EXECUTOR_HINT for k in ("executor", "slurm", "submitit")}
    data: DataParams = DataParams()
    train: FullTrain
    adversarial: AdversarialParams = AdversarialParams()
    autoattack: AutoAttackParams = AutoAttackParams()
    prune: PruneParams = PruneParams()
    methods: Plugins = {}
    suites: Suites
    _source: str = PrivateAttr("params.yaml")

    @property
    def source(self) -> str:
        return self._source

    def studies(self, suite: str | None = None):
        """(suite, index, study) for every study, in SUITE_NAMES order, or of one suite."""
        for name in (suite,) if suite else SUITE_NAMES:
            for i, study in enumerate(getattr(self.suites, name)):
                yield name, i, study

    def datasets(self) -> list[str]:
        return sorted({study.dataset for _, _, study in self.studies()})


def to_dict(params) -> dict:
    """The validated, grid-expanded params as plain JSON-able data."""
    if isinstance(params, Model):
        return {k: to_dict(getattr(params, k)) for k in type(params).model_fields}
    if isinstance(params, (list, tuple)):
        return [to_dict(v) for v in params]
    if isinstance(params, dict):
        return {k: to_dict(v) for k, v in params.items()}
    return params
