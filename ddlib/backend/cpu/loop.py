"""Training-loop kernels for the cpu backend (equations in ``numpy_ref.loop``).

A gather and a three-entry copy gain nothing from numba, so ``take_rows`` and
``pack_status`` are the reference's; the loss uses this backend's own fused softmax.
"""

from ..numpy_ref.loop import make_softmax_xent_device, pack_status, take_rows
from .core import softmax_xent as _softmax_xent

__all__ = ["softmax_xent_device", "take_rows", "pack_status"]

softmax_xent_device = make_softmax_xent_device(_softmax_xent)
