"""Adaptive Weight Decay (Ghiasi, Shafahi, Ardekani) and the training methods it is compared with."""

__all__ = ["AdaDecay", "AdaptiveWeightDecay", "FixedWeightDecay", "NoWeightDecay", "build_weight_decay"]


def __getattr__(name: str):
    # Lazy, so that the pipeline's driver imports torch-free modules (awd.train_config, awd.checks) without torch.
    # An import statement, not importlib: code keys and snapshots (jobs/keys.py) still see awd.weight_decay.
    if name in __all__:
        from awd import weight_decay

        return getattr(weight_decay, name)
    raise AttributeError(f"module 'awd' has no attribute {name!r}")
