"""The attack stage keeps every example's AutoAttack outcome, in index order across shards (for McNemar)."""

from pathlib import Path

import torch

from awd.attacks import save_shard
from pipeline.attack import per_example


class FakeStore:
    def __init__(self, root: Path):
        self.root = root

    def path(self, kind, key):
        return self.root / kind / key


def test_per_example_outcomes_are_concatenated_in_shard_order(tmp_path):
    store = FakeStore(tmp_path)
    flags = {"a" * 64: [True, False, True], "b" * 64: [False, False, True, True]}
    for i, (key, f) in enumerate(flags.items()):
        start = 0 if i == 0 else 3
        (store.path("autoattack", key)).mkdir(parents=True)
        save_shard({"start": start, "stop": start + len(f), "n": len(f), "correct": torch.tensor(f),
                    "clean_correct": torch.ones(len(f), dtype=torch.bool)}, store.path("autoattack", key) / "shard.pt")
    shards = [{"unit_key": "a" * 64, "start": 0}, {"unit_key": "b" * 64, "start": 3}]
    assert per_example(store, shards) == "1010011"
