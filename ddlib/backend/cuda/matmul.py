"""Matrix multiplication on the GPU three ways (Sec. 3.7.1): naive, tiled, register-blocked.

All three compute C = A B for A (n, k) and B (k, m), float32 or float64, any shape
(threads whose outputs fall outside C do nothing; tiles that hang over an edge are
padded with zeros).  They differ in how often each number is fetched from global memory:

* ``matmul_naive`` gives every output entry its own thread, the picture the chapter draws
  for a 100 x 50 by 50 x 200 product (20,000 outputs, 20,000 busy threads).  Each thread
  reads a full row of A and a full column of B, so every element of A is read m times
  and every element of B n times.  Threads that are neighbours in a warp own neighbouring
  columns, so their reads of B and writes of C are coalesced.
* ``matmul_tiled`` lets a 16 x 16 block copy a 16 x 16 tile of A and of B into shared
  memory once (coalesced, one element per thread) and reuse each staged number 16 times.
* ``matmul_blocked`` (register blocking) lets each thread own a TM x TN patch of outputs
  held in registers, so a number read from shared memory is used TM or TN times; a
  block covers BM x BN outputs and walks k in steps of BK.  Three details make it fast
  (checked in the PTX by ``make ptx-check``): unsigned indices, so numba adds no
  negative-index guards to the inner loop; adjacent rows and columns per thread in
  16-byte aligned tiles, so each k step reads them with four 128-bit loads for 64
  multiply-adds; and the next slab of A and B fetched into registers while the current
  one is multiplied.  On an H200 it runs at about 0.6 of cuBLAS SGEMM at 4096^3
  (benchmarks/results/gpu-nvidia-h200.json); the tiled kernel reaches 0.12.

>>> from ddlib.backend.cuda import matmul as mm
>>> mm.launch_plan("naive", 100, 200).describe()[:58]
'100 x 200 = 20,000 outputs; each thread computes 1 output;'
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from numba import cuda, float32, float64

from ..arrays import is_device
from .launch import SIMULATOR, TILE, LaunchPlan, plan_2d

__all__ = [
    "VARIANTS",
    "BlockConfig",
    "DEFAULT_CONFIG",
    "matmul",
    "matmul_naive",
    "matmul_tiled",
    "matmul_blocked",
    "launch_plan",
    "choose_method",
]

VARIANTS = ("naive", "tiled", "blocked")
_NUMBA_TYPES = {np.dtype(np.float32): float32, np.dtype(np.float64): float64}


class BlockConfig(NamedTuple):
    """Register-blocking geometry: a block computes bm x bn outputs, k in steps of bk,
    and each thread a tm x tn patch; threads per block = (bm / tm) * (bn / tn)."""

    bm: int
    bn: int
    bk: int
    tm: int
    tn: int

    @property
    def threads(self):
        """(threads along x = columns, threads along y = rows)."""
        return self.bn // self.tn, self.bm // self.tm

    def validate(self):
        tx, ty = self.threads
        nt = tx * ty
        problems = []
        if min(self) < 1:
            raise ValueError(f"BlockConfig{tuple(self)}: every field must be >= 1")
        if self.bm % self.tm or self.bn % self.tn:
            problems.append("bm must be a multiple of tm and bn of tn")
        elif not 1 <= nt <= 1024:
            problems.append(f"threads per block = {nt}, must be in [1, 1024]")
        elif (self.bm * self.bk) % nt or (self.bk * self.bn) % nt:
            problems.append(f"bm*bk and bk*bn must be multiples of the {nt} threads per block")
        if problems:
            raise ValueError(f"BlockConfig{tuple(self)}: " + "; ".join(problems))
        return self


#: float32: 128 x 128 outputs per block of 256 threads, 8 x 8 per thread (64 accumulators).
#: float64 uses 4 x 4 per thread: doubles take two registers each.
DEFAULT_CONFIG = {
    np.dtype(np.float32): BlockConfig(128, 128, 8, 8, 8),
    np.dtype(np.float64): BlockConfig(64, 64, 16, 4, 4),
}

#: ``matmul(method='auto')`` picks the register-blocked kernel once the output has at
#: least this many bm x bn block tiles; below that too few blocks would leave most
#: multiprocessors idle, and the 16 x 16 tiled kernel's many small blocks do better.  On
#: an H200 (132 multiprocessors; benchmarks/results/gpu-nvidia-h200.json) tiled won at
#: 512^3 (16 tiles, 1.7x) and blocked at 1024^3 (64 tiles, 2.2x); 32 is the geometric
#: middle of the two.
BLOCKED_MIN_TILES = 32


# ----------------------------------------------------------------------------- kernels
def _make_naive(dtype):
    @cuda.jit
    def naive(a, b, c):
        """One thread per output: x runs along the columns of C, y along its rows."""
        j, i = cuda.grid(2)
        if i < c.shape[0] and j < c.shape[1]:
            acc = dtype(0)
            for kk in range(a.shape[1]):
                acc += a[i, kk] * b[kk, j]
            c[i, j] = acc

    return naive


TILE_W = TILE + 1  # padded tile row; shared-array shapes must be compile-time constants


def _make_tiled(dtype, ta=False, tb=False):
    @cuda.jit
    def tiled(a, b, c):
        """TILE x TILE shared-memory tiles; thread (ty, tx) stages A[row, k0+tx] and
        B[k0+ty, col], so a warp's loads run along rows (coalesced).

        With ``ta`` the kernel is handed A transposed, as the (k, n) array it is stored in
        (``tb``: B as (m, k)).  It then stages the tile with the roles of tx and ty swapped,
        so that a warp still reads along a stored row, and writes it into shared memory
        transposed; the padded tile row (TILE + 1) keeps those writes free of bank conflicts.
        """
        sa = cuda.shared.array((TILE, TILE_W), dtype)
        sb = cuda.shared.array((TILE, TILE_W), dtype)
        tx = cuda.threadIdx.x
        ty = cuda.threadIdx.y
        col = cuda.blockIdx.x * TILE + tx
        row = cuda.blockIdx.y * TILE + ty
        if ta:
            k, n = a.shape
        else:
            n, k = a.shape
        m = b.shape[0] if tb else b.shape[1]
        acc = dtype(0)
        for t in range((k + TILE - 1) // TILE):
            if ta:  # sa[r, kk] = A[r0 + r, k0 + kk] = a[k0 + kk, r0 + r], lanes along r
                ra = cuda.blockIdx.y * TILE + tx
                kk = t * TILE + ty
                sa[tx, ty] = a[kk, ra] if (ra < n and kk < k) else dtype(0)
            else:
                ka = t * TILE + tx
                sa[ty, tx] = a[row, ka] if (row < n and ka < k) else dtype(0)
            if tb:  # sb[kk, cc] = B[k0 + kk, c0 + cc] = b[c0 + cc, k0 + kk], lanes along kk
                cb = cuda.blockIdx.x * TILE + ty
                kk = t * TILE + tx
                sb[tx, ty] = b[cb, kk] if (kk < k and cb < m) else dtype(0)
            else:
                kb = t * TILE + ty
                sb[ty, tx] = b[kb, col] if (kb < k and col < m) else dtype(0)
            cuda.syncthreads()
            for i in range(TILE):
                acc += sa[ty, i] * sb[i, tx]
            cuda.syncthreads()
        if row < n and col < m:
            c[row, col] = acc

    return tiled


def _vector_width(t):
    """Rows (or columns) a thread owns side by side: 4 where its patch allows, so that
    its shared-memory reads of them can become one 128-bit load."""
    return 4 if t % 4 == 0 else (2 if t % 2 == 0 else 1)


_U = np.uint32  # index type of the blocked kernel (see below)
# 16-byte aligned shared tiles let the compiler merge a thread's 4 adjacent reads into one
# 128-bit load; the simulator rejects the argument (and has no vector loads anyway)
_ALIGN = None if SIMULATOR else 16


def _make_blocked(dtype, cfg: BlockConfig, ta=False, tb=False, prefetch=True):
    BM, BN, BK, TM, TN = cfg
    TX, TY = cfg.threads
    NT = TX * TY
    A_LOADS = (BM * BK) // NT
    B_LOADS = (BK * BN) // NT
    # A thread owns its rows in groups of VM adjacent ones, the groups TY * VM apart (and
    # likewise columns, VN): row(i) = (i // VM) * TY * VM + ty * VM + i % VM.  Adjacent
    # rows make a thread's reads of one k-row of the staged A tile one vector load; a
    # warp's threads still read adjacent words (no bank conflicts), and its stores of C
    # stay coalesced.
    VM, VN = _vector_width(TM), _vector_width(TN)
    # A is staged transposed (k-major) so a thread's TM values sit in one row of
    # shared memory; the padding spreads a warp's transposing stores over the banks.
    SA_W = BM + 4  # a compile-time constant: shared-array shapes must be literals
    SB_W = BN + 4 if tb else BN  # staged along k when B arrives transposed: pad the rows

    @cuda.jit
    def blocked(a, b, c):
        """Each thread accumulates a TM x TN patch in registers (rows and columns as above).

        Indices are unsigned 32-bit (``_U``).  A signed index makes numba guard every
        array access against Python's negative indexing, which costs more integer work
        in the inner loop than its 64 multiply-adds; unsigned ones need no guard.

        With ``prefetch`` the next k-slab's elements are read from global memory into
        registers while the current slab is multiplied, so that memory latency overlaps
        the arithmetic (one shared-memory buffer, one register buffer).
        """
        sa = cuda.shared.array((BK, SA_W), dtype, alignment=_ALIGN)
        sb = cuda.shared.array((BK, SB_W), dtype, alignment=_ALIGN)
        acc = cuda.local.array((TM, TN), dtype)
        fa = cuda.local.array(TM, dtype)
        fb = cuda.local.array(TN, dtype)
        ra = cuda.local.array(A_LOADS, dtype)
        rb = cuda.local.array(B_LOADS, dtype)
        tx = _U(cuda.threadIdx.x)
        ty = _U(cuda.threadIdx.y)
        tid = ty * _U(TX) + tx
        row0 = _U(cuda.blockIdx.y) * _U(BM)
        col0 = _U(cuda.blockIdx.x) * _U(BN)
        if ta:
            kdim, n = _U(a.shape[0]), _U(a.shape[1])
        else:
            n, kdim = _U(a.shape[0]), _U(a.shape[1])
        m = _U(b.shape[0]) if tb else _U(b.shape[1])
        for i in range(TM):
            for j in range(TN):
                acc[i, j] = dtype(0)

        # neighbouring threads take neighbouring elements of a *stored* row, whichever
        # way round the operand arrives (ta/tb: A as (k, n), B as (m, k)); a_slot / b_slot
        # give the (k, row) of A's tile and the (k, column) of B's that load step moves
        def a_slot(step):
            e = tid + _U(step * NT)
            if ta:
                return e // _U(BM), e % _U(BM)
            return e % _U(BK), e // _U(BK)

        def b_slot(step):
            e = tid + _U(step * NT)
            if tb:
                return e % _U(BK), e // _U(BK)
            return e // _U(BN), e % _U(BN)

        def load(k0):  # global -> registers, zeros outside the matrices
            for step in range(A_LOADS):
                kk, r = a_slot(step)
                gr = row0 + r
                gk = k0 + kk
                ok = gr < n and gk < kdim
                ra[step] = (a[gk, gr] if ta else a[gr, gk]) if ok else dtype(0)
            for step in range(B_LOADS):
                kk, cc = b_slot(step)
                gk = k0 + kk
                gc = col0 + cc
                ok = gk < kdim and gc < m
                rb[step] = (b[gc, gk] if tb else b[gk, gc]) if ok else dtype(0)

        def stage():  # registers -> shared memory
            for step in range(A_LOADS):
                kk, r = a_slot(step)
                sa[kk, r] = ra[step]
            for step in range(B_LOADS):
                kk, cc = b_slot(step)
                sb[kk, cc] = rb[step]

        def own_row(i):  # the tile row of this thread's i-th output row
            return _U((i // VM) * TY * VM + i % VM) + ty * _U(VM)

        def own_col(j):
            return _U((j // VN) * TX * VN + j % VN) + tx * _U(VN)

        if prefetch:
            load(_U(0))
        for k0 in range(_U(0), kdim, _U(BK)):
            if not prefetch:
                load(k0)
            stage()
            cuda.syncthreads()
            if prefetch and k0 + _U(BK) < kdim:
                load(k0 + _U(BK))  # in flight while this slab is multiplied
            for kk in range(_U(BK)):
                for i in range(TM):
                    fa[i] = sa[kk, own_row(i)]
                for j in range(TN):
                    fb[j] = sb[kk, own_col(j)]
                for i in range(TM):
                    for j in range(TN):
                        acc[i, j] += fa[i] * fb[j]
            cuda.syncthreads()
        for i in range(TM):
            r = row0 + own_row(i)
            if r < n:
                for j in range(TN):
                    cc = col0 + own_col(j)
                    if cc < m:
                        c[r, cc] = acc[i, j]

    return blocked


_NAIVE = {dt: _make_naive(nt) for dt, nt in _NUMBA_TYPES.items()}
_TILED = {dt: _make_tiled(nt) for dt, nt in _NUMBA_TYPES.items()}
_BLOCKED = {dt: _make_blocked(nt, DEFAULT_CONFIG[dt]) for dt, nt in _NUMBA_TYPES.items()}
# the backward pass's products: dW = x^T g (A transposed) and dx = g W^T (B transposed)
_TILED_TN = {dt: _make_tiled(nt, ta=True) for dt, nt in _NUMBA_TYPES.items()}
_TILED_NT = {dt: _make_tiled(nt, tb=True) for dt, nt in _NUMBA_TYPES.items()}
_BLOCKED_TN = {dt: _make_blocked(nt, DEFAULT_CONFIG[dt], ta=True)
               for dt, nt in _NUMBA_TYPES.items()}
_BLOCKED_NT = {dt: _make_blocked(nt, DEFAULT_CONFIG[dt], tb=True)
               for dt, nt in _NUMBA_TYPES.items()}
_TILED_BY = {(False, False): _TILED, (True, False): _TILED_TN, (False, True): _TILED_NT}
_BLOCKED_BY = {(False, False): _BLOCKED, (True, False): _BLOCKED_TN, (False, True): _BLOCKED_NT}


@functools.lru_cache(maxsize=None)
def _blocked_kernel(dtype: np.dtype, cfg: BlockConfig, ta=False, tb=False):
    if cfg == DEFAULT_CONFIG[dtype]:
        return _BLOCKED_BY[ta, tb][dtype]
    return _make_blocked(_NUMBA_TYPES[dtype], cfg, ta, tb)


def _trans(who, ta, tb):
    ta, tb = bool(ta), bool(tb)
    if ta and tb:
        raise ValueError(f"{who}: trans_a and trans_b together are not supported; "
                         "use (B A)^T = A^T B^T instead")
    return ta, tb


# ------------------------------------------------------------------------ checks
_is_device = is_device  # the one definition, in backend.arrays


def _operands(who, a, b, out, ta=False, tb=False):
    """Validate (a, b, out) and return the output array (allocated when ``out`` is None).

    ``ta``/``tb``: a holds A transposed, (k, n), and b holds B transposed, (m, k)."""
    for name, x in (("a", a), ("b", b)) + ((("out", out),) if out is not None else ()):
        if not _is_device(x):
            raise TypeError(
                f"{who}: {name} is a host {type(x).__name__}"
                f"{' of shape ' + str(tuple(x.shape)) if hasattr(x, 'shape') else ''}, but the "
                f"cuda kernels compute on device arrays; move it explicitly with "
                f"ddlib.device.to_device({name}) first")
        if len(x.shape) != 2:
            raise ValueError(f"{who}: {name} must be 2-D, got shape {tuple(x.shape)}")
    if a.dtype not in _NUMBA_TYPES:
        raise TypeError(f"{who}: cuda kernels take float32 or float64 arrays, got a.dtype={a.dtype}")
    if b.dtype != a.dtype:
        raise TypeError(f"{who}: a is {a.dtype} but b is {b.dtype}; cast one so they match")
    n, k = (a.shape[1], a.shape[0]) if ta else (a.shape[0], a.shape[1])
    kb, m = (b.shape[1], b.shape[0]) if tb else (b.shape[0], b.shape[1])
    if k != kb:
        raise ValueError(f"{who}: inner dimensions differ: a{'^T' if ta else ''} is "
                         f"{(n, k)}, b{'^T' if tb else ''} is {(kb, m)}")
    if out is None:
        return cuda.device_array((n, m), dtype=a.dtype)
    if tuple(out.shape) != (n, m) or out.dtype != a.dtype:
        raise ValueError(f"{who}: out has shape {tuple(out.shape)} and dtype {out.dtype}; "
                         f"expected {(n, m)} and {a.dtype}")
    return out


# ------------------------------------------------------------------------ launches
def launch_plan(method: str, n: int, m: int, dtype=np.float32, config=None,
                threads=(TILE, TILE)) -> LaunchPlan:
    """The grid a ``method`` launch uses for an (n, m) output (see ``LaunchPlan.describe``).

    ``threads`` (x, y) is the block shape of the naive kernel (the tiled kernel is fixed
    at TILE x TILE, the blocked one follows ``config``).

    >>> launch_plan("blocked", 4096, 4096).blocks       # 128 x 128 outputs per block
    (32, 32)
    """
    if method == "naive":
        return plan_2d(n, m, _threads(threads))
    if method == "tiled":
        return plan_2d(n, m, (TILE, TILE))
    if method == "blocked":
        cfg = (config or DEFAULT_CONFIG[_dtype(dtype)]).validate()
        return plan_2d(n, m, cfg.threads, (cfg.tm, cfg.tn))
    raise ValueError(f"method={method!r}: expected one of {VARIANTS}")


def _threads(threads):
    try:
        tx, ty = (int(t) for t in threads)
    except (TypeError, ValueError):
        raise ValueError(f"threads must be a pair (x, y) of integers, got {threads!r}") from None
    if tx < 1 or ty < 1 or tx * ty > 1024:
        raise ValueError(f"threads={threads!r}: need x, y >= 1 and x * y <= 1024 per block")
    return tx, ty


def _dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in _NUMBA_TYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def choose_method(n: int, k: int, m: int, dtype=np.float32) -> str:
    """Which kernel ``matmul(method='auto')`` runs for an (n, k) x (k, m) product."""
    cfg = DEFAULT_CONFIG[_dtype(dtype)]
    tiles = math.ceil(n / cfg.bm) * math.ceil(m / cfg.bn)
    return "blocked" if tiles >= BLOCKED_MIN_TILES else "tiled"


def _run(kernel, plan, a, b, out):
    if out.shape[0] == 0 or out.shape[1] == 0:
        return out
    kernel[plan.blocks, plan.threads](a, b, out)
    return out


def matmul_naive(a, b, out=None, threads=(TILE, TILE)):
    """C = A B with one thread per output entry; a (n, k), b (k, m) device arrays -> (n, m).

    ``threads`` = (x, y) is the block shape; x runs along the columns of C.
    """
    out = _operands("matmul_naive", a, b, out)
    plan = launch_plan("naive", *out.shape, threads=threads)
    return _run(_NAIVE[a.dtype], plan, a, b, out)


def matmul_tiled(a, b, out=None, trans_a=False, trans_b=False):
    """C = A B through 16 x 16 shared-memory tiles; a (n, k), b (k, m) -> (n, m).

    ``trans_a=True``: a is stored as A^T, shape (k, n) (``trans_b``: b as B^T, (m, k)); the
    kernel reads it in place, coalesced, instead of copying a transpose first.
    """
    ta, tb = _trans("matmul_tiled", trans_a, trans_b)
    out = _operands("matmul_tiled", a, b, out, ta, tb)
    return _run(_TILED_BY[ta, tb][a.dtype], launch_plan("tiled", *out.shape), a, b, out)


def matmul_blocked(a, b, out=None, config: BlockConfig | None = None, trans_a=False,
                   trans_b=False):
    """C = A B with register blocking (each thread a tm x tn patch); a (n, k), b (k, m).

    ``config`` overrides ``DEFAULT_CONFIG[dtype]`` (the tests use small ones so the
    simulator stays quick).  ``trans_a``/``trans_b`` as in ``matmul_tiled``.
    """
    ta, tb = _trans("matmul_blocked", trans_a, trans_b)
    out = _operands("matmul_blocked", a, b, out, ta, tb)
    cfg = (DEFAULT_CONFIG[a.dtype] if config is None else BlockConfig(*config)).validate()
    plan = launch_plan("blocked", *out.shape, dtype=a.dtype, config=cfg)
    return _run(_blocked_kernel(a.dtype, cfg, ta, tb), plan, a, b, out)


_BY_NAME = {"naive": matmul_naive, "tiled": matmul_tiled, "blocked": matmul_blocked}


def matmul(a, b, out=None, method="auto", trans_a=False, trans_b=False):
    """C = A B on the device; ``method`` is 'naive', 'tiled', 'blocked' or 'auto'
    (``choose_method``: register-blocked for large outputs, tiled otherwise).

    ``trans_a``/``trans_b``: a is stored as A^T (k, n), or b as B^T (m, k), and is read in
    place (tiled and blocked kernels; the backward pass's x^T g and g W^T use them).
    """
    ta, tb = _trans("matmul", trans_a, trans_b)
    if method == "auto":
        out = _operands("matmul", a, b, out, ta, tb)
        n, k = out.shape[0], (a.shape[0] if ta else a.shape[1])
        method = choose_method(n, k, out.shape[1], a.dtype)
    elif method not in _BY_NAME:
        raise ValueError(f"method={method!r}: expected 'auto' or one of {VARIANTS}")
    if method == "naive":
        if ta or tb:
            raise ValueError("matmul_naive reads its operands as stored; transposed operands "
                             "need method='tiled', 'blocked' or 'auto'")
        return matmul_naive(a, b, out=out)
    return _BY_NAME[method](a, b, out=out, trans_a=ta, trans_b=tb)
