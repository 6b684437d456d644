"""Training-loop kernels on the GPU: the loss kept on the device, a row gather, the status.

Equations in ``numpy_ref.loop``.  The kernels are written beside the softmax and fill
kernels they share code with (``cuda.core``); this module is where the backend declares
them.  None of them copies anything back: ``ddlib.device.DeviceTrainer`` reads its one
small status array when it is asked to.
"""

from .core import pack_status, softmax_xent_device, take_rows

__all__ = ["softmax_xent_device", "take_rows", "pack_status"]
