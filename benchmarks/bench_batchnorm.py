"""BatchNorm forward + backward on a 512 x 1024 float32 batch (Sec. 3.6 issue).

Target: the cpu backend's BatchNorm layer, one training forward and one backward, takes
at most 2 x the time of reading the input three times at this machine's memory bandwidth
(``stream_bandwidth``, measured in the same run).  Also reported: the bare cpu kernels,
and the numpy reference backend on the same layer.
"""

import numpy as np

import ddlib
from ddlib.layers.batchnorm import BatchNorm

from .timing import bench, stream_bandwidth

M, D = 512, 1024


def _layer_step(backend, x, g):
    with ddlib.use_backend(backend):
        bn = BatchNorm(D, dtype=np.float32)
        bn.check_finite = False  # as inside a network: only the first layer scans its input

    def step():
        with ddlib.use_backend(backend):
            bn.forward(x)
            bn.backward(g)

    return step


def run():
    rng = np.random.default_rng(0)
    x = rng.normal(1.0, 2.0, size=(M, D)).astype(np.float32)
    g = rng.normal(size=(M, D)).astype(np.float32)
    name = f"batchnorm fwd+bwd {M}x{D} f32"
    bw = stream_bandwidth()
    budget = 2 * 3 * x.nbytes / bw  # 2 x (reading the input three times)
    rows = [dict(workload=name, variant="3 reads of x at stream bw", seconds=3 * x.nbytes / bw,
                 note=f"bandwidth {bw / 1e9:.1f} GB/s")]

    be = ddlib.get_backend("cpu")
    gamma, beta = np.ones(D, np.float32), np.zeros(D, np.float32)
    out, dx = np.empty_like(x), np.empty_like(x)
    dgamma, dbeta = np.empty(D, np.float32), np.empty(D, np.float32)

    def kernels():
        _, mean, var = be.batchnorm_forward(x, gamma, beta, 1e-5, out=out)
        be.batchnorm_backward(g, x, gamma, mean, var, 1e-5, dx=dx, dgamma=dgamma, dbeta=dbeta)

    t_ref = bench(_layer_step("numpy", x, g), repeat=7)
    t_layer = bench(_layer_step("cpu", x, g), repeat=15)
    t_kern = bench(kernels, repeat=15)
    rows.append(dict(workload=name, variant="BatchNorm layer, backend=numpy", seconds=t_ref,
                     ratio=t_ref / budget * 2, reference="3 reads of x"))
    rows.append(dict(workload=name, variant="BatchNorm layer, backend=cpu", seconds=t_layer,
                     ratio=t_layer / budget * 2, reference="3 reads of x", target="<= 2",
                     ok=t_layer <= budget, note=f"{t_ref / t_layer:.1f}x faster than numpy"))
    rows.append(dict(workload=name, variant="cpu kernels only", seconds=t_kern,
                     ratio=t_kern / budget * 2, reference="3 reads of x"))
    return rows
