"""Sparse inference (Sec. 3.7.3, issue 16): the CSR forward pass of a pruned net against
the dense forward pass of the same net, cpu backend, float32.

The net is the 64-300-100-10 ReLU MLP (an analogue of LeNet-300-100 for the 8 x 8
digits), every weight matrix pruned by magnitude to the same sparsity
(``prune.prune_model``).  The dense forward is the model as trained (``Sequential`` with
its fused Linear + ReLU kernels, BLAS products, the pruned zeros multiplied like any
other weight).  Two CSR forwards: ``sparsify(model)`` (each weight matrix as CSR, one
``csr_matmul`` call per layer and the ReLU layers as they are) and ``sparsify(model,
fuse=True)`` (one ``SparseChain``: the whole net in one ``csr_chain`` call, which for a
few rows is one compiled loop over all layers).  All compute the same outputs (checked
before timing).  The targets are read on the chain, the form meant for inference; the
layer-by-layer row shows what the calls between layers cost.

Issue 16's figures, at 90% sparsity: the CSR forward at batch 1 >= 2x faster than the
dense one (ratio CSR / dense <= 0.5), and at batch 256 no slower than 1.5x dense
(ratio <= 1.5).  A sweep over sparsity reports the crossover: the lowest sparsity from
which the CSR forward is faster at every sparsity above it.

Both run on one thread (BLAS through ``threadpool_limits``, numba through
``set_num_threads``): on a shared 2-core machine thread pools mostly measure each
other's contention, and one thread each compares the two kinds of product fairly.
The two forwards are timed in interleaved rounds, the best round of each kept.
"""

import numba
import numpy as np
from threadpoolctl import threadpool_limits

import ddlib
from ddlib.compress import prune
from ddlib.compress import sparse as sp
from ddlib.layers import mlp

from .timing import interleaved

SIZES = [64, 300, 100, 10]
BATCHES = (1, 256)
TARGET_SPARSITY = 0.9
TARGETS = {1: 0.5, 256: 1.5}  # CSR / dense
SWEEP = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98)
ROUNDS = 9


def _nets(sparsity, seed=0):
    net = mlp(SIZES, activation="relu", rng=seed, dtype=np.float32)
    only = sparsity > 0
    if only:
        prune.prune_model(net, sparsity)
    return net, sp.sparsify(net, only_pruned=only), sp.sparsify(net, only_pruned=only,
                                                                  fuse=True)


def _time(sparsity, batch, seed=0):
    dense, csr, chain = _nets(sparsity, seed)
    x = np.random.default_rng(seed + 1).normal(size=(batch, SIZES[0])).astype(np.float32)
    want = dense.forward(x, train=False)
    for model in (csr, chain):
        np.testing.assert_allclose(model.forward(x, train=False), want, rtol=1e-4,
                                   atol=1e-4 * float(np.abs(want).max()))
    times = interleaved({"dense": lambda: dense.forward(x, train=False),
                         "csr": lambda: csr.forward(x, train=False),
                         "chain": lambda: chain.forward(x, train=False)}, rounds=ROUNDS)
    return times["dense"], times["csr"], times["chain"], chain.nnz


def _crossover(ratios):
    """The lowest swept sparsity from which CSR / dense < 1 at it and every one above."""
    found = None
    for s in sorted(ratios, reverse=True):
        if ratios[s] < 1:
            found = s
        else:
            break
    return found


def run():
    rows = []
    threads = numba.get_num_threads()
    with ddlib.use_backend("cpu"), threadpool_limits(1):
        numba.set_num_threads(1)
        try:
            for batch in BATCHES:
                t_dense, t_csr, t_chain, nnz = _time(TARGET_SPARSITY, batch)
                name = f"forward {'-'.join(map(str, SIZES))} b{batch} 90% sparse"
                ratio = t_chain / t_dense
                rows.append(dict(workload=name, variant="dense (reference)", seconds=t_dense))
                rows.append(dict(workload=name, variant="CSR layer by layer (sparsify)",
                                 seconds=t_csr, ratio=t_csr / t_dense,
                                 reference="dense forward",
                                 note=f"speed-up {t_dense / t_csr:.2f}x"))
                rows.append(dict(workload=name, variant="CSR chain (sparsify fuse=True)",
                                 seconds=t_chain, ratio=ratio, reference="dense forward",
                                 target=f"<= {TARGETS[batch]}", ok=ratio <= TARGETS[batch],
                                 note=f"speed-up {1 / ratio:.2f}x, nnz {nnz}"))
            for batch in BATCHES:
                ratios = {}
                for s in SWEEP:
                    t_dense, _, t_chain, _ = _time(s, batch)
                    ratios[s] = t_chain / t_dense
                    rows.append(dict(workload=f"sparsity sweep b{batch}",
                                     variant=f"CSR chain at {s:.0%} sparse", seconds=t_chain,
                                     ratio=ratios[s], reference="dense forward",
                                     note=f"dense {t_dense * 1e6:.1f} us"))
                cross = _crossover(ratios)
                rows.append(dict(workload=f"sparsity sweep b{batch}", variant="crossover",
                                 seconds=None, crossover=cross,
                                 note=("CSR faster from "
                                       f"{cross:.0%} sparsity up" if cross is not None
                                       else "CSR never faster in the sweep")))
        finally:
            numba.set_num_threads(threads)
    return rows
