"""The cpu compilation of ``backend.elementwise``: each element function inlined into loops.

For every rule the loops are generated from one template: a plain and a guarded loop over
one block (below), a serial driver that walks the blocks (arrays below ``PARALLEL_MIN``
entries, where waking the worker threads costs more than the work) and a parallel one
that splits the arrays into a few chunks per thread and runs the serial driver on each.  The activations get one serial loop per kind, forward and backward, and
``act_forward``/``act_backward`` pick the loop outside it, so each loop body is branch-free.

Vectorization, keeping the promise that an entry with a NaN/inf gradient is left as it
was and counted.  A loop that stores only inside ``if isfinite(g)`` does not vectorize on
AVX2 (no masked stores); a "compute, then select the old value" loop does, but LLVM turns
the select back into a masked store (``vmaskmovps``), microcoded and about 4x slower than
plain stores on AMD Zen.  So each array is walked in blocks of ``BLOCK`` entries: a
vectorized read-only pass counts the block's non-finite gradient entries, and then the
block is updated by the plain loop (every store unconditional, full-width SIMD) when the
count is zero, or by the guarded loop when it is not.  The second read of the block's
gradient hits the L1 cache, and a NaN costs only its block the slow path.  The result is
bit for bit that of the guarded loop.  ``tests/backend/test_vectorized.py`` reads the
LLVM IR of the float32 plain loops and of the count and fails if they become scalar.

Why source templates rather than closures: numba keys a closure's cache entry by the
pickled closure cells, and a pickled dispatcher carries a per-process id, so closures over
element functions would be compiled again in every process.  The generated functions
are compiled from text whose file name is ``backend/elementwise.py`` (so numba's on-disk
cache works, and goes stale when the element functions change) and whose names are unique.
"""

import math
import os

import numba as nb
import numpy as np

from .. import elementwise as E

#: Arrays smaller than this are updated on the calling thread: waking the worker threads
#: costs tens of microseconds, more than a bias vector or a small matrix takes serially.
#: Re-measured after vectorization (2-core AVX2 EPYC): the parallel loops overtake the
#: serial ones between 2**18 and 2**19 entries (momentum at 670k: 0.39 ms against 0.75).
PARALLEL_MIN = 1 << 19

#: Entries per chunk at most (the chunks' counts stay well inside int32).
_MAX_CHUNK = 1 << 30

#: Entries per block: a block of the gradient is checked, then updated while it is still
#: in the L1 cache (4096 float32 = 16 KiB; 32 KiB in float64).
BLOCK = 4096

# numba's cache goes stale when the function's source file changes; the generated loops
# depend on two files (the element functions and the templates here), so they name
# whichever was changed last, and an edit to either compiles them again
_FILE = max([E.__file__, __file__], key=os.path.getmtime)
# error_model="numpy": a division by zero gives inf/NaN as in NumPy instead of raising,
# which removes the zero test numba puts before every division (it blocks vectorization)
_inline = nb.njit(inline="always", error_model="numpy")


@nb.njit(cache=True, error_model="numpy")
def count_nonfinite(x):
    """How many entries of the 1-D array x are NaN or inf (a vectorized int32 count)."""
    c = np.int32(0)
    for i in range(x.size):
        c = np.int32(c + np.int32(not math.isfinite(x[i])))
    return c


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
    """Block, serial and parallel loop sources for one rule (see the module docstring)."""
    tag = f"{name}_point" if write_point else name
    st = [f"s{k}" for k in range(len(rule.state))]
    sc = [f"h{k}" for k in range(rule.n_scalars)]
    sig = ", ".join(["w", *st, "g", *sc, "p"])
    elem_args = ", ".join(["w[i]", *(f"{s}[i]" for s in st), "g[i]", *sc])
    outs = ["w", *st] + (["p"] if write_point else [])
    idx = list(range(1 + len(st))) + ([1 + len(st)] if write_point else [])
    plain = "".join(f"        {a}[i] = r[{k}]\n" for a, k in zip(outs, idx))
    guarded = "".join(f"            {a}[i] = r[{k}]\n" for a, k in zip(outs, idx))
    blocks = (
        # every entry finite: store unconditionally (this is the loop that vectorizes)
        f"def _plain_{tag}({sig}):\n"
        f"    for i in range(w.size):\n"
        f"        r = elem({elem_args})\n{plain}"
        # some entry is not: the entries with a NaN/inf gradient are left untouched
        f"def _guarded_{tag}({sig}):\n"
        f"    for i in range(w.size):\n"
        f"        if math.isfinite(g[i]):\n"
        f"            r = elem({elem_args})\n{guarded}"
    )
    flat = "".join(f"    {a}f = {a}.reshape(-1)\n" for a in ["w", *st, "g", "p"])
    sliced = ", ".join([*(f"{a}f[lo:hi]" for a in ["w", *st, "g"]), *sc, "pf[lo:hi]"])
    serial = (
        f"def _serial_{tag}({sig}):\n{flat}"
        f"    n = wf.size\n"
        f"    bad = 0\n"
        f"    for lo in range(0, n, {BLOCK}):\n"
        f"        hi = min(lo + {BLOCK}, n)\n"
        f"        k = count_nonfinite(gf[lo:hi])\n"
        f"        if k == 0:\n"
        f"            _plain_{tag}({sliced})\n"
        f"        else:\n"
        f"            _guarded_{tag}({sliced})\n"
        f"            bad += k\n"
        f"    return bad\n"
    )
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
    return tag, blocks, serial, parallel


class RuleKernel:
    """A rule's compiled loops; called as ``k(w, *state, g, *scalars, p, bad)`` it returns
    how many gradient entries were not finite (their parameter entries are untouched)."""

    def __init__(self, name, write_point, cache=True):
        rule = E.RULES[name]
        tag, blocks, serial, parallel = _rule_source(name, rule, write_point)
        env = {"elem": _inline(rule.element), "count_nonfinite": count_nonfinite}
        names = [f"_plain_{tag}", f"_guarded_{tag}", f"_serial_{tag}", f"_parallel_{tag}"]
        plain, guarded, ser, par = _compile(blocks + serial + parallel, env, names)
        # (cache=False serves tests that read the LLVM IR: numba cannot show cached code)
        jit = nb.njit(cache=cache, error_model="numpy")
        self.plain = env[names[0]] = jit(plain)
        self.guarded = env[names[1]] = jit(guarded)
        self.serial = env[names[2]] = jit(ser)
        self.parallel = nb.njit(parallel=True, cache=cache, error_model="numpy")(par)
        self.name, self.write_point = name, write_point

    def __call__(self, w, *args):
        if w.size >= PARALLEL_MIN:
            return self.parallel(w, *args[:-1], chunks(w.size))
        return self.serial(w, *args[:-1])


def activation_loops(cache=True):
    """(fwd, bwd, loops): compiled serial loops ``fwd(code, xf, alpha, yf)`` and
    ``bwd(code, xf, yf, gf, alpha, of)`` over 1-D C-contiguous arrays, one branch on the
    activation code outside one loop per kind (codes as in ``numpy_ref.core``); ``loops``
    maps '_fwd_relu', '_bwd_relu', ... to the per-kind loops."""
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
