"""``OptimizeResult``: what ``minimize`` returns, a dict whose keys are also attributes.

Shaped after ``scipy.optimize.OptimizeResult`` so that code written against scipy reads
the same fields (``x``, ``fun``, ``jac``, ``nit``, ``nfev``, ``njev``, ``nhev``,
``success``, ``status``, ``message``) and can index it as a dict.
"""

from __future__ import annotations

import numpy as np


class OptimizeResult(dict):
    """A dict with attribute access: ``res.x`` is ``res["x"]``.

    >>> r = OptimizeResult(x=np.array([1.0, 2.0]), fun=0.5, success=True)
    >>> r.fun, r["success"]
    (0.5, True)
    >>> sorted(r)
    ['fun', 'success', 'x']
    """

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"OptimizeResult has no field {name!r}; it has {sorted(self)}") from None

    __setattr__ = dict.__setitem__
    __delattr__ = dict.__delitem__

    def __dir__(self):
        return list(self)

    def __repr__(self):
        if not self:
            return "OptimizeResult()"
        width = max(len(k) for k in self) + 1
        lines = []
        with np.printoptions(precision=6, threshold=12, edgeitems=3):
            for key, value in self.items():
                text = repr(value) if not isinstance(value, np.ndarray) or value.ndim < 2 \
                    else f"<array of shape {value.shape}, dtype {value.dtype}>"
                lines.append(f"{key.rjust(width)}: {text}")
        return "\n".join(lines)
