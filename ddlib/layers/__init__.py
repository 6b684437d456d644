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
from .special import (
    CrossEntropy,
    FunctionLayer,
    Max,
    Softmax,
    function_backward,
    function_forward,
    max_backward,
    max_forward,
    softmax_backward,
    softmax_forward,
    softmax_jacobian,
)
from .tied import TiedAutoencoder

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
    "CrossEntropy",
    "FunctionLayer",
    "Max",
    "Softmax",
    "function_backward",
    "function_forward",
    "max_backward",
    "max_forward",
    "softmax_backward",
    "softmax_forward",
    "softmax_jacobian",
    "TiedAutoencoder",
]

# batch normalization (Sec. 3.6)
from .batchnorm import (  # noqa: E402
    BatchNorm,
    batchnorm_backward,
    batchnorm_forward,
    bn_mlp,
    estimate_population_statistics,
)

__all__ += [
    "BatchNorm",
    "batchnorm_backward",
    "batchnorm_forward",
    "bn_mlp",
    "estimate_population_statistics",
]

# maxout and a learnable leaky ReLU (Sec. 3.4.3)
from .maxout import Maxout, PReLU, maxout_backward, maxout_forward, prelu_backward, prelu_forward  # noqa: E402,E501

__all__ += ["Maxout", "PReLU", "maxout_backward", "maxout_forward", "prelu_backward",
            "prelu_forward"]
