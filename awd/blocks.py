"""AutoAttack's division of a test set into blocks and shards (awd/autoattack.py says why blocks), torch-free: the
pipeline's planner cuts every model's attack into units with it in each stage driver, which need not import torch."""

from __future__ import annotations

import math

from awd.checks import check_int


def shard_bounds(n: int, shards: int, block_size: int) -> list[tuple[int, int]]:
    """Splits [0, n) into at most `shards` contiguous ranges on block boundaries, as even as blocks allow.

    Fewer ranges come back when there are fewer blocks than shards; an empty shard is never returned.
    """
    n = check_int("n", n, 1)
    shards = check_int("shards", shards, 1)
    block_size = check_int("block_size", block_size, 1)
    blocks = math.ceil(n / block_size)
    shards = min(shards, blocks)
    bounds = []
    for s in range(shards):
        b0, b1 = s * blocks // shards, (s + 1) * blocks // shards
        bounds.append((b0 * block_size, min(b1 * block_size, n)))
    return bounds


def block_bounds(n: int, block_size: int) -> list[tuple[int, int]]:
    """The blocks of [0, n): the smallest units of AutoAttack work whose results do not depend on sharding."""
    return shard_bounds(n, math.ceil(check_int("n", n, 1) / check_int("block_size", block_size, 1)), block_size)
