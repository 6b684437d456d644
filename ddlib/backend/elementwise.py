"""The arithmetic of the elementwise kernels, written once for the cpu and cuda backends.

Each function here is plain scalar Python: one parameter entry's update for every
first-order rule, each activation and the product of an incoming gradient with its
derivative.  Neither backend repeats this arithmetic.  ``cpu`` inlines each function into
a compiled loop (``numba.njit(inline='always')``), serial for small arrays and in chunks
across threads for large ones; ``cuda`` compiles it as a device function
(``cuda.jit(device=True)``) called by one thread per entry.  The reference backend,
``numpy_ref``, keeps its own array-at-a-time NumPy version of the same equations: it is
what these kernels are tested against, so it must not share their code.

Two tables drive the code generation:

- ``RULES``: rule name -> ``Rule(element, state, hyper, prepare, point)``.  The element
  function takes ``(w, *state, g, *scalars)`` and returns the new ``(w, *state)``; the
  momentum rules also return the lookahead point ``w + beta v``, which the kernels write
  when the row's ``point`` is set and the caller passes a ``point`` array (the Nesterov
  rules) and otherwise drop (the compiler then never computes it).  ``prepare`` turns the public hyperparameters into the scalars the element
  function reads (``1 - rho`` computed once on the host, not once per entry).
- ``ACTIVATIONS``: activation name -> ``Activation(forward, backward)``, in the order of
  ``numpy_ref.core.ACTIVATIONS`` (the codes the kernels branch on).

Adding a first-order rule is one element function and one row here, plus its entry in
``ddlib.optim``; both compiled backends then have ``<name>_step``.

Keeping the input's precision: constants are built from the operand's own type
(``v - v + 1``, ``g * 0``) because a float64 literal would promote float32 arithmetic to
float64 on both targets.  The scalars are cast to the parameter's dtype by the wrappers.
"""

import math
from typing import Callable, NamedTuple

__all__ = ["RULES", "ACTIVATIONS", "Rule", "Activation", "rule_signature"]


# --- activations: forward f(v) and backward g * f'(v) (y = f(v) passed for reuse) ------

def identity(v, alpha):
    return v


def identity_backward(g, v, y, alpha):
    return g


def sigmoid(v, alpha):
    one = v - v + 1
    return one / (one + math.exp(-v))


def sigmoid_backward(g, v, y, alpha):
    return g * (y - y * y)


def tanh(v, alpha):
    return math.tanh(v)


def tanh_backward(g, v, y, alpha):
    return g * (1 - y * y)


def relu(v, alpha):
    return v if v > 0 else v * 0


def relu_backward(g, v, y, alpha):
    return g if v > 0 else g * 0


def leaky_relu(v, alpha):
    return v if v > 0 else alpha * v


def leaky_relu_backward(g, v, y, alpha):
    return g if v > 0 else g * alpha


def hardtanh(v, alpha):
    one = v - v + 1
    return min(max(v, -one), one)


def hardtanh_backward(g, v, y, alpha):
    return g if (v > -1 and v < 1) else g * 0


class Activation(NamedTuple):
    forward: Callable
    backward: Callable


ACTIVATIONS = {
    "identity": Activation(identity, identity_backward),
    "sigmoid": Activation(sigmoid, sigmoid_backward),
    "tanh": Activation(tanh, tanh_backward),
    "relu": Activation(relu, relu_backward),
    "leaky_relu": Activation(leaky_relu, leaky_relu_backward),
    "hardtanh": Activation(hardtanh, hardtanh_backward),
}


# --- first-order update rules (equations and references in numpy_ref.optim) -----------

def sgd(w, g, lr):
    return (w - lr * g,)


def momentum(w, v, g, lr, beta):
    v = beta * v - lr * g
    w = w + v
    return w, v, w + beta * v


def delta_bar_delta(w, bar, gain, g, lr, kappa, keep, theta, one_m_theta):
    agree = bar * g
    if agree > 0:
        gain = gain + kappa
    elif agree < 0:
        gain = keep * gain
    return w - lr * gain * g, one_m_theta * g + theta * bar, gain


def adagrad(w, a, g, lr, eps):
    a = a + g * g
    return w - lr * g / (math.sqrt(a) + eps), a


def rmsprop(w, a, g, lr, rho, one_m_rho, eps):
    a = rho * a + one_m_rho * g * g
    return w - lr * g / (math.sqrt(a) + eps), a


def rmsprop_nesterov(w, v, a, g, lr, beta, rho, one_m_rho, eps):
    a = rho * a + one_m_rho * g * g
    v = beta * v - lr * g / (math.sqrt(a) + eps)
    w = w + v
    return w, v, a, w + beta * v


def adadelta(w, a, d, g, lr, rho, one_m_rho, eps):
    a = rho * a + one_m_rho * g * g
    dw = -math.sqrt(d + eps) / math.sqrt(a + eps) * g
    return w + lr * dw, a, rho * d + one_m_rho * dw * dw


def adam(w, f, a, g, lr_t, rho_f, one_m_rho_f, rho, one_m_rho, eps):
    a = rho * a + one_m_rho * g * g
    f = rho_f * f + one_m_rho_f * g
    return w - lr_t * f / (math.sqrt(a) + eps), f, a


class Rule(NamedTuple):
    element: Callable
    state: tuple      # names of the state arrays, in the element function's order
    hyper: tuple      # names of the public hyperparameters, in the step's order
    prepare: Callable  # public hyperparameters -> the element function's scalars
    point: bool = False  # the step takes ``point=``: the element's last value goes there

    @property
    def n_scalars(self):
        """How many scalars ``prepare`` hands the element function."""
        return len(self.prepare(*([0.5] * len(self.hyper))))


RULES = {
    "sgd": Rule(sgd, (), ("lr",), lambda lr: (lr,)),
    "momentum": Rule(momentum, ("v",), ("lr", "beta"), lambda lr, beta: (lr, beta)),
    "nesterov": Rule(momentum, ("v",), ("lr", "beta"), lambda lr, beta: (lr, beta), True),
    "delta_bar_delta": Rule(
        delta_bar_delta, ("bar", "gain"), ("lr", "kappa", "phi", "theta"),
        lambda lr, kappa, phi, theta: (lr, kappa, 1 - phi, theta, 1 - theta)),
    "adagrad": Rule(adagrad, ("a",), ("lr", "eps"), lambda lr, eps: (lr, eps)),
    "rmsprop": Rule(rmsprop, ("a",), ("lr", "rho", "eps"),
                    lambda lr, rho, eps: (lr, rho, 1 - rho, eps)),
    "rmsprop_nesterov": Rule(
        rmsprop_nesterov, ("v", "a"), ("lr", "beta", "rho", "eps"),
        lambda lr, beta, rho, eps: (lr, beta, rho, 1 - rho, eps), True),
    "adadelta": Rule(adadelta, ("a", "d"), ("lr", "rho", "eps"),
                     lambda lr, rho, eps: (lr, rho, 1 - rho, eps)),
    "adam": Rule(adam, ("f", "a"), ("lr_t", "rho_f", "rho", "eps"),
                 lambda lr_t, rho_f, rho, eps: (lr_t, rho_f, 1 - rho_f, rho, 1 - rho, eps)),
}


def rule_signature(name):
    """The public step's signature, e.g. ``adam_step(w, f, a, g, lr_t, rho_f, rho, eps,
    bad=None)`` (the same as ``numpy_ref.optim``'s)."""
    import inspect

    r = RULES[name]
    P = inspect.Parameter
    params = [P(n, P.POSITIONAL_OR_KEYWORD) for n in ("w", *r.state, "g", *r.hyper)]
    if r.point:
        params.append(P("point", P.POSITIONAL_OR_KEYWORD, default=None))
    params.append(P("bad", P.POSITIONAL_OR_KEYWORD, default=None))
    return inspect.Signature(params)


def make_steps(compiled, report, module):
    """The public ``<rule>_step`` functions of a backend, one per row of ``RULES``.

    ``compiled(name, write_point)`` returns the backend's kernel for a rule: called as
    ``kernel(w, *state, g, *scalars, point, bad)`` it updates in place (``point`` is w
    itself when nothing is to be written there) and returns what ``report(result, bad)``
    turns into the step's return value.  Each step checks its arrays with
    ``checks.need_step`` and casts the scalars to w's dtype.  The wrappers are generated
    as source with the rule's own argument names, so a call costs what a hand-written
    wrapper costs (no ``inspect.Signature.bind`` per step).
    """
    from . import checks

    steps = {}
    for name, rule in RULES.items():
        state = ", ".join(rule.state)
        hyper = ", ".join(rule.hyper)
        st = state + ", " if state else ""
        kw = "".join(f", {s}={s}" for s in rule.state)
        args = f"w, {st}g, {hyper}" + (", point=None" if rule.point else "") + ", bad=None"
        if rule.point:
            call = (f"    k = kernels[point is not None]\n"
                    f"    need_step({name + '_step'!r}, w, g, bad, point=point{kw})\n")
            p = "w if point is None else point"
        else:
            call = (f"    k = kernels[False]\n"
                    f"    need_step({name + '_step'!r}, w, g, bad{kw})\n")
            p = "w"
        src = (f"def {name}_step({args}):\n"
               f"{call}"
               f"    t = w.dtype.type\n"
               f"    s = [t(x) for x in prepare({hyper})]\n"
               f"    return report(k(w, {st}g, *s, {p}, bad), bad)\n")
        kernels = {False: compiled(name, False)}
        if rule.point:
            kernels[True] = compiled(name, True)
        env = {"need_step": checks.need_step, "prepare": rule.prepare, "report": report,
               "kernels": kernels}
        exec(compile(src, f"<ddlib.backend.elementwise: {module}.{name}_step>", "exec"), env)
        step = env[name + "_step"]
        step.__module__ = module
        step.__doc__ = (f"``{name}``'s update in place, in one pass over the arrays "
                        f"(arithmetic: ``ddlib.backend.elementwise.{rule.element.__name__}``; "
                        f"equations: ``numpy_ref.optim.{name}_step``).")
        steps[name + "_step"] = step
    return steps
