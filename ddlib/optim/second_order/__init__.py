"""Second-order methods of Sec. 3.5.6 at the level of functions, with scipy.optimize's habits.

* ``minimize(fun, x0, jac=..., hess=..., method=...)``: steepest descent, Newton
  (Eq. 3.48), saddle-free Newton (Sec. 3.5.6.3), nonlinear CG (Fletcher-Reeves,
  Polak-Ribiere+), BFGS (Eqs. 3.52-3.56) and L-BFGS; returns an ``OptimizeResult``.
* ``linear_cg(H, b)``: conjugate gradients for H x = b (Eqs. 3.49-3.50), H a matrix or a
  product v -> H v, with the truncation controls Hessian-free optimization needs.
* ``line_search_armijo``, ``line_search_wolfe``: backtracking and strong-Wolfe searches.
* ``hessian_vector_product`` (Eq. 3.51's finite difference) and
  ``exact_hessian_vector_product``, for functions.
* For networks: ``hvp`` (exact, Pearlmutter's R-operator), ``gvp`` (Gauss-Newton) and
  ``fd_hvp`` (Eq. 3.51), or ``Curvature`` for many products at one point, on every
  backend; ``Flattener`` converts parameter dicts to flat vectors and back.
* On models, with ``Optimizer.step(closure)`` as in PyTorch: ``LBFGS``, ``HessianFree``
  (Martens 2010) and ``SecondOrder`` (any ``minimize`` method); ``closure(model, loss,
  X, y)`` builds the closure they need.
* Building blocks: ``bfgs_inverse_update`` (Eq. 3.56), ``two_loop_recursion``,
  ``lbfgs_inverse_hessian``, ``LBFGSHistory``.

>>> from ddlib.optim.second_order import minimize
>>> rosen = lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2
>>> res = minimize(rosen, [-1.2, 1.0], method="bfgs")    # finite-difference gradient
>>> bool(res.success), np.round(res.x, 4)
(True, array([1., 1.]))
"""

import numpy as np  # noqa: F401  (used by the example above)

from .bfgs import bfgs_inverse_update
from .curvature import Curvature, fd_hvp, gvp, hvp
from .flat import Flattener
from .hessian_products import exact_hessian_vector_product, hessian_vector_product
from .lbfgs import LBFGSHistory, lbfgs_inverse_hessian, two_loop_recursion
from .line_search import LineSearchResult, line_search_armijo, line_search_wolfe
from .linear_cg import LinearCGResult, linear_cg
from .minimize import METHODS, minimize
from .model_rules import (
    LBFGS,
    HessianFree,
    ModelClosure,
    SecondOrder,
    closure,
    hessian_free_rule,
    lbfgs_rule,
    minimize_rule,
)
from .result import OptimizeResult

__all__ = [
    "Curvature", "Flattener", "fd_hvp", "gvp", "hvp",
    "HessianFree", "LBFGS", "ModelClosure", "SecondOrder", "closure", "hessian_free_rule",
    "lbfgs_rule", "minimize_rule",
    "LBFGSHistory", "LineSearchResult", "LinearCGResult", "METHODS", "OptimizeResult",
    "bfgs_inverse_update", "exact_hessian_vector_product", "hessian_vector_product",
    "lbfgs_inverse_hessian", "line_search_armijo", "line_search_wolfe", "linear_cg",
    "minimize", "two_loop_recursion",
]
