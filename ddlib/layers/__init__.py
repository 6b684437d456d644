"""Decoupled layers (Table 3.1): each a forward/backward pair wrapped in a small class."""

from .activations import (
    ACTIVATION_LAYERS,
    Activation,
    HardTanh,
    Identity,
    LeakyReLU,
    ReLU,
    Sigmoid,
    Tanh,
    activation_backward,
    activation_forward,
)
from .base import Layer
from .containers import Sequential, mlp
from .linear import Linear, linear_backward, linear_forward

__all__ = [
    "ACTIVATION_LAYERS",
    "Activation",
    "HardTanh",
    "Identity",
    "Layer",
    "LeakyReLU",
    "Linear",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "activation_backward",
    "activation_forward",
    "linear_backward",
    "linear_forward",
    "mlp",
]
