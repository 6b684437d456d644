"""Composable update rules (Sec. 3.5): rules, chains, and an Optimizer over a model."""

from .base import NonFiniteGradient, Optimizer, Transform, chain, lr_at
from .rules import momentum, sgd

__all__ = ["NonFiniteGradient", "Optimizer", "Transform", "chain", "lr_at", "momentum", "sgd"]
