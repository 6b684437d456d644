"""Training-loop kernels as equations: what a loop needs beside the model and the optimizer.

A training loop that never waits for the host keeps its few scalars in small arrays on
the data's side and reads them all back at once, when it wants them.  On the host these
are plain NumPy operations (the cpu backend re-uses them); the cuda backend runs the same
three on the GPU, where they save a copy back per step (Sec. 3.7.1).

* ``softmax_xent_device(logits, labels, last=None, running=None)``: the mean
  cross-entropy (Eq. 3.21) written into ``last`` (a (1,) float64 array) and added to
  ``running``; returns ``(last, probs)``.
* ``take_rows(x, idx, out=None)``: ``x[idx]``, the rows of a mini-batch.
* ``pack_status(last, running, flags, status)``: ``status = [last, running, *flags]`` in
  one float64 array, so one copy brings a loop's whole status back.
"""

import numpy as np

from . import core as _core

__all__ = ["softmax_xent_device", "take_rows", "pack_status"]


def make_softmax_xent_device(softmax_xent):
    """``softmax_xent_device`` for a host backend, built on its ``softmax_xent`` kernel."""

    def softmax_xent_device(logits, labels, last=None, running=None):
        """Mean cross-entropy (Eq. 3.21) kept in a small array: returns (last, probs).

        last:    (1,) float64 array that receives the batch mean (a new one when None)
        running: optional (1,) float64 array that has the mean added to it
        """
        loss, p = softmax_xent(logits, labels)
        if last is None:
            last = np.zeros(1, dtype=np.float64)
        last[0] = loss
        if running is not None:
            running[0] += loss
        return last, p

    return softmax_xent_device


softmax_xent_device = make_softmax_xent_device(_core.softmax_xent)


def take_rows(x, idx, out=None):
    """Rows ``x[idx]`` (x of shape (N, d) or (N,), idx (n,) integers in [0, N))."""
    return np.take(x, idx, axis=0, out=out)


def pack_status(last, running, flags, status):
    """status = [last[0], running[0], flags[0], flags[1], ...] (float64, length 2 + flags)."""
    status[0] = last[0]
    status[1] = running[0]
    status[2:2 + flags.size] = flags
    return status
