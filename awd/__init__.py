"""Adaptive Weight Decay (Ghiasi, Shafahi, Ardekani) and the training methods it is compared with."""

import importlib

__all__ = ["AdaDecay", "AdaptiveWeightDecay", "FixedWeightDecay", "NoWeightDecay", "build_weight_decay"]


def __getattr__(name: str):
    # Lazy, so that importing a torch-free module (awd.train_config, awd.checks) from the pipeline's driver and
    # renderer does not import torch.
    if name in __all__:
        return getattr(importlib.import_module("awd.weight_decay"), name)
    raise AttributeError(f"module 'awd' has no attribute {name!r}")
