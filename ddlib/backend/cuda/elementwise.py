"""The cuda compilation of ``backend.elementwise``: each element function a device function.

Every rule gets one grid kernel, one thread per entry, generated from one template: the
thread reads its entry, calls the rule's element function and writes the results, or,
when the gradient entry is NaN/inf, leaves everything as it was and adds one to the
caller's counter with an atomic add (a branch costs nothing on the GPU when, as almost
always, every thread of a warp takes the same side).  The activations become two device
functions, ``act_f(code, v, alpha)`` and ``act_b(code, g, v, y, alpha)``, that branch on
the activation code and call the element functions; the fused kernels of ``cuda.core``
call them.

The kernels are compiled from generated source (see ``cpu.elementwise`` for why not
closures); under ``NUMBA_ENABLE_CUDASIM=1`` the same source runs on numba's simulator.
"""

import math

from numba import cuda

from .. import elementwise as E


def _exec(src, env, name):
    env.setdefault("math", math)
    env.setdefault("cuda", cuda)
    exec(compile(src, f"<ddlib.backend.cuda.elementwise: {name}>", "exec"), env)
    return env[name]


def rule_kernel_source(name, write_point):
    rule = E.RULES[name]
    tag = f"{name}_point" if write_point else name
    st = [f"s{k}" for k in range(len(rule.state))]
    sc = [f"h{k}" for k in range(rule.n_scalars)]
    sig = ", ".join(["w", *st, "g", *sc, "p", "bad"])
    elem_args = ", ".join(["w[i]", *(f"{s}[i]" for s in st), "gi", *sc])
    stores = "".join(f"            {a}[i] = r[{k}]\n" for k, a in enumerate(["w", *st]))
    if write_point:
        stores += f"            p[i] = r[{1 + len(st)}]\n"
    src = (f"def _kernel_{tag}({sig}):\n"
           f"    i = cuda.grid(1)\n"
           f"    if i < w.size:\n"
           f"        gi = g[i]\n"
           f"        if math.isfinite(gi):\n"
           f"            r = elem({elem_args})\n"
           f"{stores}"
           f"        else:\n"
           f"            cuda.atomic.add(bad, 0, 1)\n")
    return f"_kernel_{tag}", src


def rule_kernel(name, write_point):
    """The rule's grid kernel: ``k[blocks, threads](w, *state, g, *scalars, p, bad)`` over
    flat device arrays (p is w itself when no point is written)."""
    kname, src = rule_kernel_source(name, write_point)
    env = {"elem": cuda.jit(device=True)(E.RULES[name].element)}
    return cuda.jit(_exec(src, env, kname))


def activation_functions():
    """(act_f, act_b): device functions ``act_f(code, v, alpha)`` = f(v) and
    ``act_b(code, g, v, y, alpha)`` = g f'(v), branching on the code of
    ``numpy_ref.core.ACTIVATIONS``."""
    env = {}
    fwd = ["def act_f(code, v, alpha):\n"]
    bwd = ["def act_b(code, g, v, y, alpha):\n"]
    last = len(E.ACTIVATIONS) - 1
    for code, (kind, act) in enumerate(E.ACTIVATIONS.items()):
        env[f"f_{kind}"] = cuda.jit(device=True)(act.forward)
        env[f"b_{kind}"] = cuda.jit(device=True)(act.backward)
        test = f"    if code == {code}:\n    " if code < last else ""
        fwd.append(f"{test}    return f_{kind}(v, alpha)\n")
        bwd.append(f"{test}    return b_{kind}(g, v, y, alpha)\n")
    act_f = cuda.jit(device=True)(_exec("".join(fwd), env, "act_f"))
    act_b = cuda.jit(device=True)(_exec("".join(bwd), env, "act_b"))
    return act_f, act_b
