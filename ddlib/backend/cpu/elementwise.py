"""The cpu compilation of ``backend.elementwise``: each element function inlined into loops.

For every rule two loops are generated from one template: a serial one (arrays below
``PARALLEL_MIN`` entries, where waking the worker threads costs more than the work) and a
parallel one that splits the arrays into a few chunks per thread and runs the serial loop
on each chunk.  The activations get one serial loop per kind, forward and backward, and
``act_forward``/``act_backward`` pick the loop outside it, so each loop body is branch-free.

Vectorization.  A loop body that stores only inside ``if isfinite(g)`` and counts the
others in an int64 is not vectorized at full width by LLVM on AVX2 (no masked stores; the
int64 counter halves the lanes).  Here every value is computed unconditionally and then
selected (``w_new if ok else w``), and the non-finite entries are counted in an int32
(each chunk holds fewer than 2**31 entries), so the float32 Adam and momentum loops
compile to ``<8 x float>`` code on AVX2 and wider on AVX-512.  The result is the same as
the branchy loop: an entry with a NaN/inf gradient keeps its value, bit for bit.
``tests/backend/test_vectorized.py`` reads the LLVM IR and fails if that regresses.

Why source templates rather than closures: numba keys a closure's cache entry by the
pickled closure cells, and a pickled dispatcher carries a per-process id, so closures over
element functions would be compiled again in every process.  The generated functions
are compiled from text whose file name is ``backend/elementwise.py`` (so numba's on-disk
cache works, and goes stale when the element functions change) and whose names are unique.
"""

import math

import numba as nb
import numpy as np

from .. import elementwise as E

#: Arrays smaller than this are updated on the calling thread: waking the worker threads
#: costs tens of microseconds, more than a bias vector or a small matrix takes serially.
#: Re-measured after vectorization (2-core AVX2 EPYC): the parallel loops overtake the
#: serial ones between 2**18 and 2**19 entries (momentum at 670k: 0.39 ms against 0.75).
PARALLEL_MIN = 1 << 19

#: Entries per chunk at most: the chunk loops count in int32.
_MAX_CHUNK = 1 << 30

_FILE = E.__file__
# error_model="numpy": a division by zero gives inf/NaN as in NumPy instead of raising,
# which removes the zero test numba puts before every division (it blocks vectorization)
_inline = nb.njit(inline="always", error_model="numpy")


def chunks(n):
    """Chunk count for a parallel loop over n entries: a few per thread, for balance."""
    return max(1, min(n // 4096, 4 * nb.get_num_threads()), -(-n // _MAX_CHUNK))


def _compile(src, env, names):
    # numba caches a function only if its globals name a module (it rebuilds them from
    # that module when loading; compiled nopython code does not look them up)
    env.setdefault("__name__", __name__)
    env.setdefault("math", math)
    env.setdefault("np", np)
    env.setdefault("nb", nb)
    exec(compile(src, _FILE, "exec"), env)
    return [env[n] for n in names]


def _rule_source(name, rule, write_point):
    """Serial and parallel loop sources for one rule (see the module docstring)."""
    tag = f"{name}_point" if write_point else name
    st = [f"s{k}" for k in range(len(rule.state))]
    n_sc = len(rule.prepare(*([0.5] * len(rule.hyper))))
    sc = [f"h{k}" for k in range(n_sc)]
    arrays = ["w", *st, "g", "p"]
    sig = ", ".join(["w", *st, "g", *sc, "p"])
    flat = "".join(f"    {a}f = {a}.reshape(-1)\n" for a in arrays)  # one assignment each
    elem_args = ", ".join(["wf[i]", *(f"{s}f[i]" for s in st), "gi", *sc])
    stores = []
    if write_point:
        stores.append(f"        pf[i] = r[{1 + len(st)}] if ok else pf[i]\n")
    stores += [f"        {a}f[i] = r[{k}] if ok else {a}f[i]\n"
               for k, a in enumerate(["w", *st])]
    serial = (
        f"def _serial_{tag}({sig}):\n{flat}"
        f"    bad = np.int32(0)\n"
        f"    for i in range(wf.size):\n"
        f"        gi = gf[i]\n"
        f"        ok = math.isfinite(gi)\n"
        f"        r = elem({elem_args})\n"
        + "".join(stores) +
        f"        bad = np.int32(bad + np.int32(not ok))\n"
        f"    return bad\n"
    )
    sliced = ", ".join([*(f"{a}f[lo:hi]" for a in ["w", *st, "g"]), *sc, "pf[lo:hi]"])
    parallel = (
        f"def _parallel_{tag}({sig}, nchunks):\n{flat}"
        f"    n = wf.size\n"
        f"    counts = np.zeros(nchunks, dtype=np.int64)\n"
        f"    for c in nb.prange(nchunks):\n"
        f"        lo = c * n // nchunks\n"
        f"        hi = (c + 1) * n // nchunks\n"
        f"        counts[c] = _serial_{tag}({sliced})\n"
        f"    return counts.sum()\n"
    )
    return tag, serial, parallel


class RuleKernel:
    """A rule's compiled loops; called as ``k(w, *state, g, *scalars, p, bad)`` it returns
    how many gradient entries were not finite (their parameter entries are untouched)."""

    def __init__(self, name, write_point, cache=True):
        rule = E.RULES[name]
        tag, serial, parallel = _rule_source(name, rule, write_point)
        env = {"elem": _inline(rule.element)}
        ser, par = _compile(serial + parallel, env, [f"_serial_{tag}", f"_parallel_{tag}"])
        opts = dict(cache=cache, error_model="numpy")
        # (without the cache, e.g. to read the LLVM IR: numba cannot show cached code)
        self.serial = env[f"_serial_{tag}"] = nb.njit(**opts)(ser)
        self.parallel = nb.njit(parallel=True, **opts)(par)
        self.name, self.write_point = name, write_point

    def __call__(self, w, *args):
        if w.size >= PARALLEL_MIN:
            return self.parallel(w, *args[:-1], chunks(w.size))
        return self.serial(w, *args[:-1])


def rule_kernel(name, write_point):
    return RuleKernel(name, write_point)


def activation_loops(cache=True):
    """(fwd, bwd): compiled serial loops ``fwd(code, xf, alpha, yf)`` and
    ``bwd(code, xf, yf, gf, alpha, of)`` over 1-D C-contiguous arrays, one branch on the
    activation code outside one loop per kind (codes as in ``numpy_ref.core``)."""
    env = {}
    src = []
    for kind, act in E.ACTIVATIONS.items():
        env[f"f_{kind}"] = _inline(act.forward)
        env[f"b_{kind}"] = _inline(act.backward)
        # Loops run over range(size) of a 1-D array: an index numba knows is non-negative
        # needs no wraparound check, and only then does LLVM vectorize the loop.
        src.append(f"def _fwd_{kind}(xf, alpha, yf):\n"
                   f"    for i in range(xf.size):\n"
                   f"        yf[i] = f_{kind}(xf[i], alpha)\n")
        src.append(f"def _bwd_{kind}(xf, yf, gf, alpha, of):\n"
                   f"    for i in range(xf.size):\n"
                   f"        of[i] = b_{kind}(gf[i], xf[i], yf[i], alpha)\n")
    names = [f"_{d}_{k}" for k in E.ACTIVATIONS for d in ("fwd", "bwd")]
    funcs = _compile("".join(src), env, names)
    jit = nb.njit(cache=cache, error_model="numpy")
    for n, f in zip(names, funcs):
        env[n] = jit(f)
    fwd = ["def _fwd(code, xf, alpha, yf):\n"]
    bwd = ["def _bwd(code, xf, yf, gf, alpha, of):\n"]
    for code, kind in enumerate(E.ACTIVATIONS):
        word = "if" if code == 0 else "elif"
        fwd.append(f"    {word} code == {code}:\n        _fwd_{kind}(xf, alpha, yf)\n")
        bwd.append(f"    {word} code == {code}:\n        _bwd_{kind}(xf, yf, gf, alpha, of)\n")
    fwd_f, bwd_f = _compile("".join(fwd) + "".join(bwd), env, ["_fwd", "_bwd"])
    return jit(fwd_f), jit(bwd_f), {n: env[n] for n in names}
