"""Adaptive Weight Decay (Ghiasi, Shafahi, Ardekani) and the training methods it is compared with."""

from awd.weight_decay import AdaDecay, AdaptiveWeightDecay, FixedWeightDecay, NoWeightDecay, build_weight_decay

__all__ = ["AdaDecay", "AdaptiveWeightDecay", "FixedWeightDecay", "NoWeightDecay", "build_weight_decay"]
